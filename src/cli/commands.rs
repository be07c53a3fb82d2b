//! The CLI's read-only commands: `check` (offline), `explain` and `status` (read the cluster).
//! Each is a thin shell over the pure core; nothing here writes to the cluster.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use kube::api::{DynamicObject, ListParams};
use kube::{Api, Client};
use serde::Deserialize;

use crate::cli::args::{CheckArgs, ClusterArgs, ExplainArgs, StatusArgs};
use crate::domain::annotations::{AnnotationNames, CONFIG_HASH};
use crate::domain::check::check_rules;
use crate::domain::config::{ConfigId, ConfigKind};
use crate::domain::decide::{Decision, Step, decide};
use crate::domain::policy::ConfigPolicy;
use crate::domain::refs::Consumption;
use crate::domain::stamp::{ConfigTrigger, HashKey};
use crate::domain::stamper::Stamper;
use crate::domain::trigger::trigger_set;
use crate::domain::workload::StampLocation;
use crate::domain::workload::{LeanPod, LeanTemplate, LeanWorkload, WorkloadKind};
use crate::reload::api_resource;
use crate::state::store::DigestStore;
use crate::watch::config::{ConfigKindMarker, ConfigMapKind, SecretKind, WatchedConfig};

// ---------------------------------------------------------------------------------------------
// check

/// One finding of `kreload check`.
#[derive(Debug, PartialEq, Eq)]
pub struct Finding {
    pub object: String,
    pub error: bool,
    pub message: String,
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

fn check_value(
    names: &AnnotationNames,
    v: &serde_json::Value,
    out: &mut Vec<Finding>,
    objects: &mut usize,
) {
    let kind = v["kind"].as_str().unwrap_or_default();
    if kind == "List" || kind.ends_with("List") && v["items"].is_array() {
        for item in v["items"].as_array().into_iter().flatten() {
            check_value(names, item, out, objects);
        }
        return;
    }
    let group = group_of(v["apiVersion"].as_str().unwrap_or_default());
    let Some(result) = check_rules(names, group, kind, &v.to_string()) else {
        return;
    };
    *objects += 1;
    let object = format!(
        "{kind}/{}",
        v["metadata"]["name"].as_str().unwrap_or("<unnamed>")
    );
    match result {
        Err(why) => out.push(Finding {
            object,
            error: true,
            message: format!("cannot be read: {why}"),
        }),
        Ok(checked) => {
            for violation in checked.violations {
                out.push(Finding {
                    object: object.clone(),
                    error: true,
                    message: violation.to_string(),
                });
            }
            for warning in checked.warnings {
                out.push(Finding {
                    object: object.clone(),
                    error: false,
                    message: warning.to_string(),
                });
            }
        }
    }
}

/// Checks every object of a multi-document YAML (or JSON) text, with the annotations under
/// `names`; returns the findings and the number of objects the rules cover.
pub fn check_text(names: &AnnotationNames, text: &str) -> Result<(Vec<Finding>, usize), String> {
    let mut findings = Vec::new();
    let mut objects = 0;
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value =
            serde_yaml::Value::deserialize(doc).map_err(|e| format!("document {}: {e}", i + 1))?;
        if value.is_null() {
            continue;
        }
        let json = serde_json::to_value(&value).map_err(|e| format!("document {}: {e}", i + 1))?;
        check_value(names, &json, &mut findings, &mut objects);
    }
    Ok((findings, objects))
}

/// `kreload check`: prints each finding as `FILE: KIND/NAME: error|warning: message`; returns
/// whether no rule was broken.
pub fn check(args: &CheckArgs) -> anyhow::Result<bool> {
    let names = args.annotation_names.names().map_err(anyhow::Error::msg)?;
    let mut clean = true;
    let (mut objects, mut errors, mut warnings) = (0, 0, 0);
    for file in &args.files {
        let label = file.display().to_string();
        let text = if file == Path::new("-") {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read standard input")?;
            s
        } else {
            std::fs::read_to_string(file).with_context(|| format!("cannot read {label}"))?
        };
        let (findings, n) =
            check_text(&names, &text).map_err(|e| anyhow::anyhow!("{label}: {e}"))?;
        objects += n;
        for f in findings {
            let severity = if f.error { "error" } else { "warning" };
            println!("{label}: {}: {severity}: {}", f.object, f.message);
            if f.error {
                clean = false;
                errors += 1;
            } else {
                warnings += 1;
            }
        }
    }
    eprintln!("{objects} objects checked: {errors} errors, {warnings} warnings");
    Ok(clean)
}

// ---------------------------------------------------------------------------------------------
// reading the cluster

fn parse_workload_arg(arg: &str) -> anyhow::Result<(WorkloadKind, String)> {
    let Some((kind, name)) = arg.split_once('/') else {
        bail!("expected KIND/NAME, e.g. deployment/web (got {arg:?})");
    };
    let kind = WorkloadKind::ALL
        .into_iter()
        .find(|k| {
            k.as_str().eq_ignore_ascii_case(kind)
                || k.plural().eq_ignore_ascii_case(kind)
                || k.plural().trim_end_matches('s').eq_ignore_ascii_case(kind)
        })
        .with_context(|| format!("unknown workload kind {kind:?}"))?;
    Ok((kind, name.to_owned()))
}

async fn load_configs<K: ConfigKindMarker>(
    client: &Client,
    names: &AnnotationNames,
    namespace: Option<&str>,
    store: &DigestStore,
) -> anyhow::Result<()> {
    let api: Api<WatchedConfig<K>> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    for c in api
        .list(&ListParams::default())
        .await
        .with_context(|| format!("cannot list {}", K::PLURAL))?
        .items
    {
        let ns = c.metadata.namespace.clone().unwrap_or_default();
        store.upsert(&ns, c.id(), Arc::new(c.entry(names)));
    }
    store.mark_synced(K::KIND);
    Ok(())
}

async fn configs(
    client: &Client,
    names: &AnnotationNames,
    namespace: Option<&str>,
) -> anyhow::Result<Arc<DigestStore>> {
    let store = Arc::new(DigestStore::new());
    load_configs::<ConfigMapKind>(client, names, namespace, &store).await?;
    load_configs::<SecretKind>(client, names, namespace, &store).await?;
    Ok(store)
}

fn dynamic(client: &Client, kind: WorkloadKind, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &api_resource(kind)),
        None => Api::all_with(client.clone(), &api_resource(kind)),
    }
}

fn lean<T: for<'de> Deserialize<'de>>(obj: &DynamicObject) -> anyhow::Result<T> {
    Ok(serde_json::from_value(serde_json::to_value(obj)?)?)
}

/// The pod template a workload's pods are made from: its own, or for a Rollout with
/// `spec.workloadRef`, the referenced Deployment's (empty when there is none to read).
async fn pod_template(
    client: &Client,
    kind: WorkloadKind,
    w: &LeanWorkload,
) -> anyhow::Result<LeanTemplate> {
    let Some(reference) = w.workload_ref(kind) else {
        return Ok(w.template(kind).clone());
    };
    let Some(name) = reference.deployment() else {
        return Ok(LeanTemplate::default());
    };
    let ns = &w.metadata.namespace;
    let d = dynamic(client, WorkloadKind::Deployment, Some(ns))
        .get_opt(name)
        .await
        .with_context(|| {
            format!(
                "cannot get Deployment {ns}/{name}, which {kind} {}/{} references",
                ns, w.metadata.name
            )
        })?;
    match d {
        Some(d) => Ok(lean::<LeanWorkload>(&d)?
            .template(WorkloadKind::Deployment)
            .clone()),
        None => Ok(LeanTemplate::default()),
    }
}

fn stamper(key: HashKey, cluster: &ClusterArgs) -> anyhow::Result<Stamper> {
    Ok(Stamper::new(key, cluster.filters.filters()?))
}

/// Why step 1 of the decision rule keeps every config of `kind` workloads in `namespace` out, if
/// it does: kreload, run with these flags, would not act there.
async fn global_filter_of(
    client: &Client,
    cluster: &ClusterArgs,
    kind: WorkloadKind,
    namespace: &str,
) -> anyhow::Result<Option<String>> {
    if cluster.filters.ignored_workload_types()?.contains(&kind) {
        return Ok(Some(format!("{kind} is in --ignored-workload-types")));
    }
    let namespaces = cluster
        .filters
        .namespace_filter(&cluster.kreload_namespace)?;
    if let Some(selector) = namespaces.selector() {
        let ns = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
            .get(namespace)
            .await
            .with_context(|| format!("cannot get namespace {namespace}"))?;
        let labels = ns.metadata.labels.unwrap_or_default();
        namespaces.set_matching(namespace, selector.matches(&labels));
    }
    Ok((!namespaces.is_watched(namespace)).then(|| {
        format!(
            "namespace {namespace} is not watched (--namespaces, --namespaces-to-ignore, \
             --namespace-selector; never kube-system nor kreload's own namespace)"
        )
    }))
}

fn short(stamp: Option<&str>) -> String {
    match stamp {
        None => "-".into(),
        Some(s) => s.rsplit_once('.').map_or(s.to_owned(), |(head, mac)| {
            format!("{head}.{}", &mac[..mac.len().min(12)])
        }),
    }
}

fn consumption(c: Option<&Consumption>) -> String {
    match c {
        None => "not referenced".into(),
        Some(Consumption::All) => "all keys".into(),
        Some(Consumption::Keys(k)) => {
            format!("keys {}", k.iter().cloned().collect::<Vec<_>>().join(","))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// explain

/// `kreload explain KIND/NAME -n NS`.
pub async fn explain(args: &ExplainArgs) -> anyhow::Result<()> {
    let (kind, name) = parse_workload_arg(&args.workload)?;
    let names = args
        .cluster
        .annotation_names
        .names()
        .map_err(anyhow::Error::msg)?;
    let client = crate::cli::client::client(args.cluster.kubeconfig.as_deref()).await?;
    let obj = dynamic(&client, kind, Some(&args.namespace))
        .get(&name)
        .await
        .with_context(|| format!("cannot get {kind} {}/{name}", args.namespace))?;
    let workload: LeanWorkload = lean(&obj)?;
    let template = &pod_template(&client, kind, &workload).await?;
    let parsed = crate::domain::policy::parse_workload(
        &names,
        workload.metadata.annotations(),
        template.annotations(),
    );
    let policy = parsed.value;
    let refs = template.spec.references();
    let store = configs(&client, &names, Some(&args.namespace)).await?;
    let filters = args.cluster.filters.filters()?;
    let auto_reload_all = filters.auto_reload_all;
    let filtered_out = global_filter_of(&client, &args.cluster, kind, &args.namespace).await?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{kind} {}/{name}: annotations read from {:?}; opted in: {}",
        args.namespace,
        policy.source,
        policy.opted_in(auto_reload_all)
    );
    if let Some(why) = &filtered_out {
        let _ = writeln!(out, "  global filter: {why}");
    }
    for v in &parsed.violations {
        let _ = writeln!(out, "  violation: {v}");
    }
    let _ = writeln!(
        out,
        "{:<40} {:<22} {:<6} DECIDED BY",
        "CONFIG", "CONSUMES", "ROLLS"
    );
    let absent = ConfigPolicy::default();
    store.with_namespace(&args.namespace, |view| {
        let mut rows: BTreeMap<ConfigId, ()> = refs.keys().map(|id| (id.clone(), ())).collect();
        for k in ConfigKind::ALL {
            for (n, _) in view.of_kind(k) {
                let id = ConfigId::new(k, n);
                if policy.reload_list(k).matches(n) || policy.excludes(k, n) {
                    rows.insert(id, ());
                }
            }
        }
        let others = ConfigKind::ALL.iter().map(|k| view.of_kind(*k).count()).sum::<usize>() - rows.keys().filter(|id| view.get(id).is_some()).count();
        for id in rows.keys() {
            let entry = view.get(id);
            let config = entry.map_or(&absent, |e| &e.policy);
            let d = if filtered_out.is_some() || !filters.admits(id.kind, entry) {
                Decision { roll: false, step: Step::GlobalFilter }
            } else {
                decide(&policy, id.kind, &id.name, config, refs.contains_key(id), auto_reload_all)
            };
            let exists = if entry.is_some() { "" } else { " (does not exist)" };
            let _ = writeln!(
                out,
                "{:<40} {:<22} {:<6} step {}: {}",
                format!("{id}{exists}"),
                consumption(refs.get(id)),
                if d.roll { "yes" } else { "no" },
                d.step.as_str(),
                d.step.explain()
            );
        }
        let _ = writeln!(out, "{others} other configs in the namespace cannot roll it (not referenced, not in a reload list).");
    });
    print!("{out}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// status

/// One row of `kreload status`.
struct StatusRow {
    namespace: String,
    workload: String,
    triggers: String,
    template: Option<String>,
    current: String,
    pods: usize,
    stale: usize,
}

/// `kreload status`.
pub async fn status(args: &StatusArgs) -> anyhow::Result<()> {
    let names = args
        .cluster
        .annotation_names
        .names()
        .map_err(anyhow::Error::msg)?;
    let client = crate::cli::client::client(args.cluster.kubeconfig.as_deref()).await?;
    let namespace = (!args.all_namespaces).then_some(args.namespace.as_str());
    let key = crate::cli::client::read_hash_key(client.clone(), &args.cluster.kreload_namespace)
        .await
        .context("is kreload installed? see --kreload-namespace")?;
    let store = configs(&client, &names, namespace).await?;
    let stamper = stamper(key, &args.cluster)?;

    // Pods by owning workload.
    let pods_api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(
            client.clone(),
            ns,
            &kube::discovery::ApiResource::erase::<k8s_openapi::api::core::v1::Pod>(&()),
        ),
        None => Api::all_with(
            client.clone(),
            &kube::discovery::ApiResource::erase::<k8s_openapi::api::core::v1::Pod>(&()),
        ),
    };
    let mut pods: BTreeMap<(String, WorkloadKind, String), Vec<Option<String>>> = BTreeMap::new();
    for p in pods_api
        .list(&ListParams::default())
        .await
        .context("cannot list pods")?
        .items
    {
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let pod: LeanPod = lean(&p)?;
        // Under each workload that may own it; only opted-in workloads are looked up below.
        for (kind, name) in pod.owner_candidates() {
            pods.entry((ns.clone(), kind, name))
                .or_default()
                .push(pod.metadata().stamp().map(str::to_owned));
        }
    }

    let mut rows = Vec::new();
    for kind in WorkloadKind::ALL {
        let list = match dynamic(&client, kind, namespace)
            .list(&ListParams::default())
            .await
        {
            Ok(list) => list.items,
            Err(kube::Error::Api(s)) if s.code == 404 => continue, // e.g. no Argo Rollouts CRD
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", kind.plural())),
        };
        for obj in list {
            let w: LeanWorkload = lean(&obj)?;
            let template = &pod_template(&client, kind, &w).await?;
            let policy = crate::domain::policy::parse_workload(
                &names,
                w.metadata.annotations(),
                template.annotations(),
            )
            .value;
            let refs = template.spec.references();
            let ns = w.metadata.namespace.clone();
            let Some(current) = store.with_namespace(&ns, |view| {
                stamper.workload_stamp(&ns, view, &policy, &refs)
            }) else {
                continue;
            };
            let set = store.with_namespace(&ns, |view| {
                trigger_set(&policy, &refs, view, stamper.filters())
            });
            let triggers: Vec<String> = set
                .iter()
                .map(|(id, t)| match t {
                    ConfigTrigger::Absent => format!("{id}(absent)"),
                    ConfigTrigger::Present(keys) => format!(
                        "{id}[{}]",
                        keys.keys().cloned().collect::<Vec<_>>().join(",")
                    ),
                })
                .collect();
            let stamp = match StampLocation::of(kind, &policy, w.workload_ref(kind).is_some()) {
                StampLocation::Template => template.stamp(),
                StampLocation::Object => w
                    .metadata
                    .annotations()
                    .get(CONFIG_HASH)
                    .map(String::as_str),
            };
            let owned = pods
                .get(&(ns.clone(), kind, w.metadata.name.clone()))
                .cloned()
                .unwrap_or_default();
            let stale = owned
                .iter()
                .filter(|s| s.as_deref() != Some(current.as_str()))
                .count();
            rows.push(StatusRow {
                namespace: ns,
                workload: format!("{}/{}", kind.as_str().to_ascii_lowercase(), w.metadata.name),
                triggers: if triggers.is_empty() {
                    "-".into()
                } else {
                    triggers.join(" ")
                },
                template: stamp.map(str::to_owned),
                current,
                pods: owned.len(),
                stale,
            });
        }
    }
    print!("{}", render_status(&rows));
    Ok(())
}

fn render_status(rows: &[StatusRow]) -> String {
    let header = [
        "NAMESPACE",
        "WORKLOAD",
        "TEMPLATE STAMP",
        "CURRENT HASH",
        "IN-SYNC",
        "PODS",
        "STALE",
        "TRIGGERS",
    ];
    let mut table: Vec<[String; 8]> = vec![header.map(str::to_owned)];
    for r in rows {
        let in_sync = if r.template.as_deref() == Some(r.current.as_str()) {
            "yes"
        } else {
            "no"
        };
        table.push([
            r.namespace.clone(),
            r.workload.clone(),
            short(r.template.as_deref()),
            short(Some(&r.current)),
            in_sync.into(),
            r.pods.to_string(),
            r.stale.to_string(),
            r.triggers.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|c| table.iter().map(|row| row[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &table {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

#[cfg(test)]
mod tests;
