//! The install manifests in deploy/: the Helm chart lints, the checked-in renderings are current,
//! and everything passes server-side validation. The RBAC they grant is exercised for real:
//! kreload runs on a token of its own ServiceAccount, bound only by the chart's roles, and still
//! stamps, rolls and denies; in namespace-scoped mode the ServiceAccount can neither write Secrets
//! (except creating its hash key at home) nor read them outside the watched namespaces.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const STAMP: &str = "kreload.dev/config-hash";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a command (tests run in the repository's root); returns (success, stdout, stderr).
fn run(program: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    run_with_stdin(program, args, stdin)
}

/// `helm template` of the chart into `namespace`, with `--set` values.
fn helm_template(namespace: &str, sets: &[&str]) -> String {
    let mut args = vec![
        "template",
        "kreload",
        "deploy/helm/kreload",
        "--namespace",
        namespace,
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    let (ok, out, err) = run(helm(), &args, None);
    assert!(ok, "helm {args:?} failed:\n{err}");
    out
}

/// The documents of a multi-document YAML stream, as JSON values (empty ones dropped).
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn kind_of(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

/// A kubectl `List` of these objects, for `kubectl apply -f -`.
fn list(items: Vec<Value>) -> String {
    json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

/// Runs `kubectl delete` for cluster-scoped objects when dropped, so they go even when the test
/// fails.
struct DeleteOnDrop(Vec<String>);

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let mut args = vec!["delete", "--ignore-not-found", "--wait=false"];
        args.extend(self.0.iter().map(String::as_str));
        let (ok, _, err) = kubectl(&args, None);
        if !ok {
            eprintln!("cleanup of {:?} failed: {err}", self.0);
        }
    }
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{:x}{nanos:08x}", std::process::id())
}

#[test]
fn chart_lints_and_checked_in_manifests_are_current() {
    for sets in [
        vec![],
        vec![
            "rbac.namespaced=true",
            "watchNamespaces={a,b}",
            "certificates.mode=cert-manager",
        ],
        vec![
            "certificates.mode=files",
            "certificates.files.secretName=tls",
            "certificates.files.caBundle=Q0E=",
        ],
        vec!["certificates.mode=cert-manager"],
        vec![
            "serviceMonitor.enabled=true",
            "podMonitor.enabled=true",
            "networkPolicy.enabled=true",
            "metricsCountByNamespace=true",
            "extraEnv[0].name=ALERT_SINK",
            "extraEnv[0].value=slack",
        ],
    ] {
        let mut args = vec!["lint", "--strict", "deploy/helm/kreload"];
        for s in &sets {
            args.extend(["--set", s]);
        }
        let (ok, out, err) = run(helm(), &args, None);
        assert!(ok, "helm {args:?}:\n{out}{err}");
    }

    // deploy/kreload.yaml, deploy/kustomize/ and the chart's copies of webhook-config/ are what
    // deploy/render makes now.
    let (ok, out, err) = run(&repo().join("deploy/render"), &["--check"], None);
    assert!(ok, "deploy/render --check:\n{out}{err}");

    // Values that do not fit together fail the render with a reason.
    for (sets, says) in [
        (vec!["rbac.namespaced=true"], "needs watchNamespaces"),
        (vec!["certificates.mode=files"], "caBundle"),
        (
            // Self-managed certificates, the default, need the ClusterRole.
            vec!["rbac.namespaced=true", "watchNamespaces={a}"],
            "needs a ClusterRole",
        ),
        (vec!["serviceMonitor.enabled=yes"], "serviceMonitor"),
        (vec!["networkPolicy.from=x"], "networkPolicy"),
        (vec!["logFormat=xml"], "logFormat"),
    ] {
        let mut args = vec!["template", "kreload", "deploy/helm/kreload"];
        for s in &sets {
            args.extend(["--set", s]);
        }
        let (ok, _, err) = run(helm(), &args, None);
        assert!(!ok && err.contains(says), "{sets:?}: {err}");
    }
}

#[test]
fn chart_defaults_ship_the_webhook_configurations_unchanged() {
    // With default values the chart's webhook configurations are webhook-config/ plus labels.
    let rendered = documents(&helm_template("kreload", &[]));
    for (kind, file) in [
        (
            "MutatingWebhookConfiguration",
            "webhook-config/mutating.yaml",
        ),
        (
            "ValidatingWebhookConfiguration",
            "webhook-config/validating.yaml",
        ),
    ] {
        let mut got = rendered
            .iter()
            .find(|d| kind_of(d) == kind)
            .unwrap_or_else(|| panic!("the chart renders a {kind}"))
            .clone();
        got["metadata"].as_object_mut().unwrap().remove("labels");
        let want = documents(&std::fs::read_to_string(repo().join(file)).unwrap()).remove(0);
        assert_eq!(got, want, "{kind} differs from {file}");
    }

    // Namespace-scoped: no cluster-wide role, Roles in each watched namespace, --namespaces
    // passed, and the webhooks narrowed to those namespaces.
    let docs = documents(&helm_template(
        "kr",
        &[
            "rbac.namespaced=true",
            "watchNamespaces={a,b}",
            "certificates.mode=cert-manager",
        ],
    ));
    assert!(
        !docs.iter().any(|d| kind_of(d).starts_with("ClusterRole")),
        "no ClusterRole in namespace-scoped mode"
    );
    let roles: BTreeSet<(String, String)> = docs
        .iter()
        .filter(|d| kind_of(d) == "Role")
        .map(|d| {
            (
                d["metadata"]["namespace"].as_str().unwrap().to_owned(),
                d["metadata"]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        [
            ("a", "kreload-watched"),
            ("b", "kreload-watched"),
            ("kr", "kreload")
        ]
        .map(|(n, r)| (n.to_owned(), r.to_owned()))
        .into(),
    );
    let deployment = docs.iter().find(|d| kind_of(d) == "Deployment").unwrap();
    let args = &deployment["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(
        args.as_array()
            .unwrap()
            .contains(&json!("--namespaces=a,b")),
        "{args}"
    );
    for d in docs
        .iter()
        .filter(|d| kind_of(d).ends_with("WebhookConfiguration"))
    {
        assert_eq!(
            d["webhooks"][0]["namespaceSelector"],
            json!({"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["a", "b"]}]})
        );
        assert_eq!(
            d["webhooks"][0]["clientConfig"]["service"]["namespace"],
            "kr"
        );
        assert_eq!(
            d["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            "kr/kreload-serving"
        );
    }
}

#[test]
fn chart_passes_flags_that_kreload_accepts() {
    let all_values = [
        "watchNamespaces={a,b}",
        "namespacesToIgnore={c}",
        "namespaceSelector=env in (prod)",
        "resourceLabelSelector=team=a",
        "resourcesToIgnore={configMaps,secrets}",
        "ignoredWorkloadTypes={jobs,rollouts}",
        "extraWorkloads={serving.knative.dev/v1/services:/spec/template,e2e.kreload.dev/v1/widgets:/spec/a~1b}",
        "autoReloadAll=true",
        "reloadOnCreate=true",
        "reloadOnDelete=true",
        "coalesceWindow=2s",
        "minRollInterval=0s",
        "ha.enabled=false",
        "ha.leaseName=other",
        "ha.leaseDuration=30s",
        "logFormat=json",
        "logLevel=debug",
        "port=9443",
        "healthPort=9091",
        "extraArgs={--webhook-config-name=extra}",
    ];
    for sets in [&[][..], &all_values[..]] {
        let docs = documents(&helm_template("kreload", sets));
        let deployment = docs.iter().find(|d| kind_of(d) == "Deployment").unwrap();
        let args: Vec<String> = serde_json::from_value(
            deployment["spec"]["template"]["spec"]["containers"][0]["args"].clone(),
        )
        .unwrap();
        assert_eq!(args[0], "run");
        // clap parses (and rejects unknown flags and bad values) before it acts on --help.
        let out = Command::new(env!("CARGO_BIN_EXE_kreload"))
            .args(&args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kreload refuses the chart's arguments {args:?}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if !sets.is_empty() {
            for flag in [
                "--namespaces=a,b",
                "--namespaces-to-ignore=c",
                "--namespace-selector=env in (prod)",
                "--resource-label-selector=team=a",
                "--resources-to-ignore=configMaps,secrets",
                "--ignored-workload-types=jobs,rollouts",
                "--extra-workload=serving.knative.dev/v1/services:/spec/template",
                "--extra-workload=e2e.kreload.dev/v1/widgets:/spec/a~1b",
                "--auto-reload-all=true",
                "--reload-on-create=true",
                "--reload-on-delete=true",
                "--coalesce-window=2s",
                "--min-roll-interval=0s",
                "--enable-ha=false",
                "--lease-name=other",
                "--lease-duration=30s",
                "--log-format=json",
                "--log-level=debug",
                "--listen=0.0.0.0:9443",
                "--health-listen=0.0.0.0:9091",
                "--webhook-config-name=extra",
            ] {
                assert!(args.iter().any(|a| a == flag), "{flag} not in {args:?}");
            }
        }
    }
}

#[test]
fn chart_annotation_names_pass_the_flags_and_select_them_for_validation() {
    let names = [
        ("auto", "--auto-annotation", "example.com/auto"),
        (
            "configmapAuto",
            "--configmap-auto-annotation",
            "example.com/configmap-auto",
        ),
        (
            "secretAuto",
            "--secret-auto-annotation",
            "example.com/secret-auto",
        ),
        ("search", "--auto-search-annotation", "example.com/search"),
        ("match", "--search-match-annotation", "example.com/match"),
        (
            "configmapReload",
            "--configmap-annotation",
            "example.com/configmap",
        ),
        ("secretReload", "--secret-annotation", "example.com/secret"),
        // In Reloader's domain: passed, and selected by the shipped condition already.
        (
            "ignore",
            "--ignore-annotation",
            "reloader.stakater.com/skip",
        ),
        (
            "pausePeriod",
            "--pause-deployment-annotation",
            "example.com/pause-period",
        ),
        // Written by kreload, never judged: not selected.
        (
            "pausedAt",
            "--pause-deployment-time-annotation",
            "example.com/paused-at",
        ),
    ];
    let sets: Vec<String> = names
        .iter()
        .map(|(value, _, name)| format!("annotationNames.{value}={name}"))
        .collect();
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let docs = documents(&helm_template("kreload", &sets));
    let deployment = docs.iter().find(|d| kind_of(d) == "Deployment").unwrap();
    let args: Vec<String> = serde_json::from_value(
        deployment["spec"]["template"]["spec"]["containers"][0]["args"].clone(),
    )
    .unwrap();
    for (_, flag, name) in names {
        assert!(
            args.contains(&format!("{flag}={name}")),
            "{flag}={name} not in {args:?}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_kreload"))
        .args(&args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kreload refuses the chart's arguments {args:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The validating webhook's matchConditions are what local mode registers for the same
    // names: one definition of the widening, in Rust and in the chart.
    let got = docs
        .iter()
        .find(|d| kind_of(d) == "ValidatingWebhookConfiguration")
        .unwrap()["webhooks"][0]["matchConditions"]
        .clone();
    let annotation_names = kreload::domain::annotations::AnnotationNames {
        auto: names[0].2.into(),
        configmap_auto: names[1].2.into(),
        secret_auto: names[2].2.into(),
        search: names[3].2.into(),
        search_match: names[4].2.into(),
        configmap_reload: names[5].2.into(),
        secret_reload: names[6].2.into(),
        ignore: names[7].2.into(),
        pause_period: names[8].2.into(),
        paused_at: names[9].2.into(),
    };
    let (_, mut want) = kreload::admission::webhooks::shipped();
    kreload::admission::webhooks::select_annotation_names(&mut want, &annotation_names);
    let want = serde_json::to_value(&want.webhooks.unwrap()[0].match_conditions).unwrap();
    assert_eq!(got, want);
    let expression = got[0]["expression"].as_str().unwrap();
    assert!(
        expression.contains("'example.com/auto'")
            && !expression.contains("example.com/paused-at")
            && !expression.contains("reloader.stakater.com/skip"),
        "{expression}"
    );
    // A misspelt value is refused by the schema, not ignored.
    let (ok, _, err) = run(
        helm(),
        &[
            "template",
            "kreload",
            "deploy/helm/kreload",
            "--set",
            "annotationNames.configmap=example.com/x",
        ],
        None,
    );
    assert!(!ok && err.contains("configmap"), "{err}");
}

/// Minimal CRDs for cert-manager's Certificate and Issuer (any spec accepted), so the
/// certificate objects of cert-manager mode pass server-side dry-run: the harness has no
/// cert-manager.
fn ensure_cert_manager_crds() -> DeleteOnDrop {
    ensure_crds(
        "cert-manager.io",
        &[("certificates", "Certificate"), ("issuers", "Issuer")],
    )
}

/// Minimal CRDs for the Prometheus Operator's ServiceMonitor and PodMonitor (any spec
/// accepted): the harness has no Prometheus Operator. One test uses them, so no other test's
/// cleanup can remove them under it.
fn ensure_monitoring_crds() -> DeleteOnDrop {
    ensure_crds(
        "monitoring.coreos.com",
        &[
            ("servicemonitors", "ServiceMonitor"),
            ("podmonitors", "PodMonitor"),
        ],
    )
}

/// Minimal v1 CRDs of `group` (any spec accepted), created only where missing; the guard
/// deletes the ones created here.
fn ensure_crds(group: &str, kinds: &[(&str, &str)]) -> DeleteOnDrop {
    let mut created = Vec::new();
    for (plural, kind) in kinds {
        let name = format!("{plural}.{group}");
        let (exists, _, _) = kubectl(&["get", "crd", &name], None);
        if exists {
            continue;
        }
        let crd = json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": name},
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind},
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {
                        "type": "object", "x-kubernetes-preserve-unknown-fields": true
                    }}
                }]
            }
        });
        let (ok, _, err) = kubectl(&["create", "-f", "-"], Some(&crd.to_string()));
        assert!(
            ok || err.contains("AlreadyExists"),
            "create CRD {name}: {err}"
        );
        if ok {
            created.push(format!("crd/{name}"));
        }
        let (ok, _, err) = kubectl(
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=30s",
                &format!("crd/{name}"),
            ],
            None,
        );
        assert!(ok, "CRD {name} established: {err}");
    }
    DeleteOnDrop(created)
}

fn server_dry_run(what: &str, manifest: &str) {
    let (ok, out, err) = kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(manifest));
    assert!(ok, "server dry-run of {what} failed:\n{out}{err}");
    // kubectl may warn (e.g. about a Namespace created without last-applied-configuration);
    // every object must be accepted.
    assert!(
        !out.is_empty() && out.lines().all(|l| l.ends_with("(server dry run)")),
        "{what}:\n{out}{err}"
    );
    assert!(!err.to_lowercase().contains("error"), "{what}:\n{out}{err}");
    eprintln!("{what}: {} objects accepted", out.lines().count());
}

#[tokio::test]
async fn manifests_pass_server_side_dry_run() {
    let client = client().await;
    let _crds = ensure_cert_manager_crds();
    // The manifests' namespaced objects live in `kreload`; a dry-run does not create the
    // Namespace, so it must exist (local-mode kreload creates it too, and leaves it).
    let (exists, _, _) = kubectl(&["get", "namespace", "kreload"], None);
    if !exists {
        let (ok, _, err) = kubectl(&["create", "namespace", "kreload"], None);
        assert!(ok || err.contains("AlreadyExists"), "{err}");
    }
    let watched = TestNamespace::new(&client, "e2e-deploy-dry").await;

    let (ok, kustomized, err) = kubectl(&["kustomize", "deploy/kustomize"], None);
    assert!(ok, "kubectl kustomize deploy/kustomize: {err}");
    server_dry_run("kubectl kustomize deploy/kustomize", &kustomized);
    server_dry_run(
        "deploy/kreload.yaml",
        &std::fs::read_to_string(repo().join("deploy/kreload.yaml")).unwrap(),
    );
    server_dry_run(
        "helm template (defaults)",
        &helm_template("kreload", &["namespace.create=true"]),
    );
    server_dry_run(
        "helm template (cert-manager certificates)",
        &helm_template("kreload", &["certificates.mode=cert-manager"]),
    );
    let watch = format!("watchNamespaces={{{}}}", watched.name);
    server_dry_run(
        "helm template (rbac.namespaced, files certificates)",
        &helm_template(
            "kreload",
            &[
                "rbac.namespaced=true",
                &watch,
                "certificates.mode=files",
                "certificates.files.secretName=my-tls",
                "certificates.files.caBundle=Q0E=",
            ],
        ),
    );
}

/// The rules of the role `kind/name` in rendered documents, as (apiGroup, resource, verb) triples.
fn role_rules(docs: &[Value], kind: &str, name: &str) -> BTreeSet<(String, String, String)> {
    let role = docs
        .iter()
        .find(|d| kind_of(d) == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"));
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                for verb in rule["verbs"].as_array().unwrap() {
                    out.insert((
                        group.as_str().unwrap().to_owned(),
                        resource.as_str().unwrap().to_owned(),
                        verb.as_str().unwrap().to_owned(),
                    ));
                }
            }
        }
    }
    out
}

/// The API groups of the workload kinds kreload rolls.
const WORKLOAD_GROUPS: [&str; 4] = ["apps", "batch", "argoproj.io", "apps.openshift.io"];

#[test]
fn chart_rbac_grants_only_the_workload_kinds_kreload_rolls() {
    let kinds = |rules: &BTreeSet<(String, String, String)>| -> BTreeSet<String> {
        rules
            .iter()
            .filter(|(g, _, _)| WORKLOAD_GROUPS.contains(&g.as_str()))
            .map(|(_, r, _)| r.clone())
            .collect()
    };
    // Writes on workloads other than the rolling patch.
    let writes = |rules: &BTreeSet<(String, String, String)>| -> BTreeSet<(String, String)> {
        rules
            .iter()
            .filter(|(g, _, _)| WORKLOAD_GROUPS.contains(&g.as_str()))
            .filter(|(_, _, v)| ["create", "delete", "update"].contains(&v.as_str()))
            .map(|(_, r, v)| (r.clone(), v.clone()))
            .collect()
    };
    let all: BTreeSet<String> = [
        "cronjobs",
        "daemonsets",
        "deployments",
        "deploymentconfigs",
        "jobs",
        "rollouts",
        "statefulsets",
    ]
    .map(String::from)
    .into();

    // Default: every kind; Jobs are deleted and created again, nothing else is written but
    // patched.
    let rules = role_rules(
        &documents(&helm_template("kreload", &[])),
        "ClusterRole",
        "kreload",
    );
    assert_eq!(kinds(&rules), all);
    assert_eq!(
        writes(&rules),
        [("jobs", "create"), ("jobs", "delete")]
            .map(|(r, v)| (r.to_owned(), v.to_owned()))
            .into()
    );

    // Jobs ignored: no Job rule at all, so no workload is created or deleted.
    let rules = role_rules(
        &documents(&helm_template("kreload", &["ignoredWorkloadTypes={jobs}"])),
        "ClusterRole",
        "kreload",
    );
    assert!(!kinds(&rules).contains("jobs"), "{rules:?}");
    assert!(writes(&rules).is_empty(), "{rules:?}");
    assert_eq!(kinds(&rules).len(), all.len() - 1);

    // Deployments ignored, Rollouts not: a Rollout with workloadRef still reads its
    // Deployment's template (get only; no list, watch or patch of Deployments).
    let rules = role_rules(
        &documents(&helm_template(
            "kreload",
            &["ignoredWorkloadTypes={deployments}"],
        )),
        "ClusterRole",
        "kreload",
    );
    let deployments: BTreeSet<String> = rules
        .iter()
        .filter(|(g, r, _)| g == "apps" && r == "deployments")
        .map(|(_, _, v)| v.clone())
        .collect();
    assert_eq!(deployments, BTreeSet::from(["get".to_owned()]), "{rules:?}");

    // Every kind ignored: configs, Events and Namespaces only. Namespaced mode likewise.
    let every = "ignoredWorkloadTypes={deployments,statefulsets,daemonsets,cronjobs,jobs,rollouts,deploymentconfigs}";
    let rules = role_rules(
        &documents(&helm_template("kreload", &[every])),
        "ClusterRole",
        "kreload",
    );
    assert!(kinds(&rules).is_empty(), "{rules:?}");
    assert!(rules.contains(&("".into(), "secrets".into(), "watch".into())));
    let docs = documents(&helm_template(
        "kreload",
        &[
            "ignoredWorkloadTypes={jobs,rollouts,deploymentconfigs}",
            "rbac.namespaced=true",
            "watchNamespaces={a}",
            "certificates.mode=cert-manager",
        ],
    ));
    let rules = role_rules(&docs, "Role", "kreload-watched");
    assert_eq!(
        kinds(&rules),
        ["cronjobs", "daemonsets", "deployments", "statefulsets"]
            .map(String::from)
            .into()
    );
    assert!(writes(&rules).is_empty(), "{rules:?}");

    // extraWorkloads: each kind is watched and patched, and sent to both webhooks at CREATE
    // and UPDATE; in namespaced mode too.
    let extra = "extraWorkloads={serving.knative.dev/v1/services:/spec/template}";
    for sets in [
        &[extra][..],
        &[
            extra,
            "rbac.namespaced=true",
            "watchNamespaces={a}",
            "certificates.mode=cert-manager",
        ][..],
    ] {
        let docs = documents(&helm_template("kreload", sets));
        let (kind, name) = if sets.len() > 1 {
            ("Role", "kreload-watched")
        } else {
            ("ClusterRole", "kreload")
        };
        let rules = role_rules(&docs, kind, name);
        let knative: BTreeSet<String> = rules
            .iter()
            .filter(|(g, r, _)| g == "serving.knative.dev" && r == "services")
            .map(|(_, _, v)| v.clone())
            .collect();
        assert_eq!(
            knative,
            ["get", "list", "patch", "watch"].map(String::from).into(),
            "{rules:?}"
        );
        for config in [
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
        ] {
            let c = docs.iter().find(|d| kind_of(d) == config).unwrap();
            for w in c["webhooks"].as_array().unwrap() {
                assert!(
                    w["rules"].as_array().unwrap().contains(&json!({
                        "apiGroups": ["serving.knative.dev"], "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"], "resources": ["services"],
                        "scope": "Namespaced"
                    })),
                    "{config}: {}",
                    w["rules"]
                );
            }
        }
    }

    // And kreload, given the same list, watches none of those kinds (so it needs no more).
    let deployment = docs.iter().find(|d| kind_of(d) == "Deployment").unwrap();
    assert!(
        deployment["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .contains(&json!(
                "--ignored-workload-types=jobs,rollouts,deploymentconfigs"
            ))
    );
}

#[tokio::test]
async fn chart_monitoring_and_network_policy_are_off_by_default_and_pass_dry_run() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-deploy-monitoring").await;
    // Off by default, in the chart and in the rendered manifests.
    let defaults = documents(&helm_template(&ns.name, &[]));
    for kind in ["ServiceMonitor", "PodMonitor", "NetworkPolicy"] {
        assert!(
            !defaults.iter().any(|d| kind_of(d) == kind),
            "{kind} rendered by default"
        );
    }
    assert!(
        !defaults
            .iter()
            .any(|d| d["metadata"]["name"] == "kreload-metrics")
    );
    let manifest = std::fs::read_to_string(repo().join("deploy/kreload.yaml")).unwrap();
    assert!(!manifest.contains("monitoring.coreos.com") && !manifest.contains("NetworkPolicy"));

    let on = [
        "serviceMonitor.enabled=true",
        "serviceMonitor.interval=30s",
        "serviceMonitor.labels.release=prometheus",
        "podMonitor.enabled=true",
        "podMonitor.scrapeTimeout=5s",
        "networkPolicy.enabled=true",
        "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=monitoring",
        "networkPolicy.egress[0].ports[0].port=443",
        "networkPolicy.egress[0].ports[0].protocol=TCP",
    ];
    let rendered = helm_template(&ns.name, &on);
    let docs = documents(&rendered);
    let find = |kind: &str| {
        docs.iter()
            .find(|d| kind_of(d) == kind)
            .unwrap_or_else(|| panic!("{kind} not rendered"))
            .clone()
    };
    let service = docs
        .iter()
        .find(|d| d["metadata"]["name"] == "kreload-metrics")
        .expect("the metrics Service");
    let sm = find("ServiceMonitor");
    // The ServiceMonitor selects the metrics Service (not the webhook Service), on its port.
    let selector = sm["spec"]["selector"]["matchLabels"].as_object().unwrap();
    for (k, v) in selector {
        assert_eq!(&service["metadata"]["labels"][k], v, "{k}");
    }
    let webhook_service = docs
        .iter()
        .find(|d| kind_of(d) == "Service" && d["metadata"]["name"] == "kreload")
        .unwrap();
    assert!(
        selector
            .iter()
            .any(|(k, v)| &webhook_service["metadata"]["labels"][k] != v)
    );
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "health");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(sm["spec"]["endpoints"][0]["interval"], "30s");
    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
    let pm = find("PodMonitor");
    assert_eq!(pm["spec"]["podMetricsEndpoints"][0]["port"], "health");
    assert_eq!(pm["spec"]["podMetricsEndpoints"][0]["scrapeTimeout"], "5s");
    // The pods carry what the PodMonitor selects, and the named port it scrapes.
    let deployment = find("Deployment");
    for (k, v) in pm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&deployment["spec"]["template"]["metadata"]["labels"][k], v);
    }
    let ports = &deployment["spec"]["template"]["spec"]["containers"][0]["ports"];
    assert!(
        ports
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "health")
    );
    let np = find("NetworkPolicy");
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(np["spec"]["ingress"][0]["ports"][0]["port"], "https");
    assert!(
        np["spec"]["ingress"][0].get("from").is_none(),
        "webhook port open to all"
    );
    assert_eq!(np["spec"]["ingress"][1]["ports"][0]["port"], "health");
    assert_eq!(
        np["spec"]["ingress"][1]["from"][0]["namespaceSelector"]["matchLabels"]["team"],
        "monitoring"
    );
    // Without egress rules, egress is not restricted.
    let np_ingress_only = documents(&helm_template(&ns.name, &["networkPolicy.enabled=true"]))
        .into_iter()
        .find(|d| kind_of(d) == "NetworkPolicy")
        .unwrap();
    assert_eq!(np_ingress_only["spec"]["policyTypes"], json!(["Ingress"]));

    // The API server accepts every object (with minimal Prometheus Operator CRDs: the harness
    // has no Prometheus Operator).
    let _crds = ensure_monitoring_crds();
    let objects: Vec<Value> = docs
        .into_iter()
        .filter(|d| {
            matches!(
                kind_of(d),
                "ServiceMonitor" | "PodMonitor" | "NetworkPolicy" | "Service" | "Deployment"
            )
        })
        .collect();
    assert_eq!(objects.len(), 6, "{objects:#?}");
    server_dry_run(
        "monitors, network policy, Services, Deployment",
        &list(objects),
    );
}

/// deploy/kreload.yaml moved into namespace `ns`, with cluster-scoped names suffixed by `suffix`
/// and the webhooks narrowed to a namespace that does not exist: applied on the shared harness,
/// it then meets no other test's objects and no other test's pods call its webhooks (nothing
/// serves them). Returns the objects and the `kind/name` of each cluster-scoped one.
fn relocated_manifest(ns: &str, suffix: &str) -> (Vec<Value>, Vec<String>) {
    let text = std::fs::read_to_string(repo().join("deploy/kreload.yaml")).unwrap();
    let webhook_name = format!("kreload-{suffix}");
    let mut cluster_scoped = Vec::new();
    let mut objects = Vec::new();
    for mut doc in documents(&text) {
        let kind = kind_of(&doc).to_owned();
        match kind.as_str() {
            "Namespace" => {
                doc["metadata"]["name"] = json!(ns);
                doc["metadata"]["labels"]["kreload-e2e"] = json!("true");
            }
            "ClusterRole" | "ClusterRoleBinding" => {
                let name = format!("{}-{suffix}", doc["metadata"]["name"].as_str().unwrap());
                doc["metadata"]["name"] = json!(name);
                if kind == "ClusterRoleBinding" {
                    let role = format!("{}-{suffix}", doc["roleRef"]["name"].as_str().unwrap());
                    doc["roleRef"]["name"] = json!(role);
                }
                let rules = doc.get_mut("rules").and_then(Value::as_array_mut);
                for rule in rules.into_iter().flatten() {
                    if rule["resourceNames"] == json!(["kreload"]) {
                        rule["resourceNames"] = json!([webhook_name]);
                    }
                }
                cluster_scoped.push(format!("{}/{name}", kind.to_lowercase()));
            }
            "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => {
                doc["metadata"]["name"] = json!(webhook_name);
                for w in doc["webhooks"].as_array_mut().unwrap() {
                    w["clientConfig"]["service"]["namespace"] = json!(ns);
                    w["namespaceSelector"] = json!({"matchExpressions": [{
                        "key": "kubernetes.io/metadata.name", "operator": "In",
                        "values": [format!("{ns}-nothing")]}]});
                }
                cluster_scoped.push(format!("{}/{webhook_name}", kind.to_lowercase()));
            }
            _ => {
                assert_eq!(doc["metadata"]["namespace"], "kreload", "{kind}");
                doc["metadata"]["namespace"] = json!(ns);
            }
        }
        let subjects = doc.get_mut("subjects").and_then(Value::as_array_mut);
        for subject in subjects.into_iter().flatten() {
            subject["namespace"] = json!(ns);
        }
        if kind == "Deployment" {
            let args = &mut doc["spec"]["template"]["spec"]["containers"][0]["args"];
            let moved: Vec<Value> = args
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    json!(
                        a.as_str()
                            .unwrap()
                            .replace(".kreload.svc", &format!(".{ns}.svc"))
                    )
                })
                .collect();
            *args = json!(moved);
        }
        objects.push(doc);
    }
    (objects, cluster_scoped)
}

#[tokio::test]
async fn single_manifest_applies_server_side_without_cert_manager() {
    let client = client().await;
    let text = std::fs::read_to_string(repo().join("deploy/kreload.yaml")).unwrap();
    // Nothing of cert-manager's: no Certificate or Issuer, no CA-injection annotation.
    for doc in documents(&text) {
        let api = doc["apiVersion"].as_str().unwrap_or_default();
        assert!(
            !api.starts_with("cert-manager.io"),
            "{} needs cert-manager",
            kind_of(&doc)
        );
        assert!(
            doc["metadata"]["annotations"]
                .get("cert-manager.io/inject-ca-from")
                .is_none(),
            "{}",
            kind_of(&doc)
        );
    }
    assert!(text.contains("--self-managed-certs"));

    let suffix = unique("e2e");
    let ns = format!("e2e-manifest-{}", &suffix[4..]);
    let (objects, mut cluster_scoped) = relocated_manifest(&ns, &suffix);
    cluster_scoped.push(format!("namespace/{ns}"));
    let _cleanup = DeleteOnDrop(cluster_scoped);
    let kinds: BTreeSet<&str> = objects.iter().map(kind_of).collect();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "MutatingWebhookConfiguration",
            "Namespace",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            "ValidatingWebhookConfiguration",
        ]
        .into()
    );

    // Server-side apply, as `kubectl apply --server-side -f deploy/kreload.yaml` does.
    let (ok, out, err) = kubectl(
        &[
            "apply",
            "--server-side",
            "--field-manager=e2e-manifest",
            "-f",
            "-",
        ],
        Some(&list(objects.clone())),
    );
    assert!(ok, "server-side apply of deploy/kreload.yaml:\n{out}{err}");
    assert_eq!(
        out.lines()
            .filter(|l| l.ends_with("serverside-applied"))
            .count(),
        objects.len(),
        "{out}{err}"
    );

    // Every object is there.
    for o in &objects {
        let kind = kind_of(o).to_lowercase();
        let name = o["metadata"]["name"].as_str().unwrap();
        let mut args = vec!["get", &kind, name];
        let ns_flag;
        if let Some(n) = o["metadata"]["namespace"].as_str() {
            ns_flag = format!("--namespace={n}");
            args.push(&ns_flag);
        }
        let (ok, _, err) = kubectl(&args, None);
        assert!(ok, "{kind}/{name}: {err}");
    }
    // The Deployment comes up as far as the harness goes: its pods are scheduled onto the fake
    // nodes and reported ready (no container runs, so nothing writes the caBundle).
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    wait_for(
        "the manifest's Deployment to report its replicas available",
        Duration::from_secs(90),
        || async {
            let d = deployments.get("kreload").await.ok()?;
            let status = d.status?;
            (status.available_replicas == Some(2)).then_some(())
        },
    )
    .await;
    let (ok, out, err) = kubectl(
        &[
            "get",
            "poddisruptionbudget",
            "kreload",
            "-n",
            &ns,
            "-o",
            "jsonpath={.status.currentHealthy}",
        ],
        None,
    );
    assert!(ok, "{err}");
    eprintln!("PodDisruptionBudget kreload: {out} healthy");
}

#[test]
fn migrate_output_is_chart_values_that_kreload_accepts() {
    let dir = std::env::temp_dir().join(unique("kreload-migrate"));
    std::fs::create_dir_all(&dir).unwrap();
    for (fixture, expect_args) in [
        (
            "reloader-values-default.yaml",
            &["--ignored-workload-types=rollouts,deploymentconfigs"][..],
        ),
        (
            "reloader-values-all.yaml",
            &[
                "--auto-reload-all=true",
                "--namespace-selector=team=platform,reloader",
                "--resource-label-selector=reload=enabled",
                "--ignored-workload-types=jobs,cronjobs",
                "--log-level=warn",
                "--configmap-annotation=my.company.com/configmap",
                "--webhook-url=https://hooks.example.com/reloader",
                "--enable-csi-integration=true",
            ][..],
        ),
    ] {
        let path = repo().join("tests/fixtures").join(fixture);
        let out = Command::new(env!("CARGO_BIN_EXE_kreload"))
            .args(["migrate", "--reloader-values"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kreload migrate {fixture}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let values = dir.join(format!("{fixture}.kreload.yaml"));
        std::fs::write(&values, &out.stdout).unwrap();
        let values = values.to_str().unwrap();
        let (ok, lint, err) = run(
            helm(),
            &["lint", "--strict", "deploy/helm/kreload", "-f", values],
            None,
        );
        assert!(
            ok,
            "helm lint with the migrated values of {fixture}:\n{lint}{err}"
        );
        let (ok, rendered, err) = run(
            helm(),
            &[
                "template",
                "kreload",
                "deploy/helm/kreload",
                "-n",
                "kreload",
                "-f",
                values,
            ],
            None,
        );
        assert!(
            ok,
            "helm template with the migrated values of {fixture}:\n{err}"
        );
        let docs = documents(&rendered);
        let deployment = docs.iter().find(|d| kind_of(d) == "Deployment").unwrap();
        let args: Vec<String> = serde_json::from_value(
            deployment["spec"]["template"]["spec"]["containers"][0]["args"].clone(),
        )
        .unwrap();
        for flag in expect_args {
            assert!(args.iter().any(|a| a == flag), "{flag} not in {args:?}");
        }
        // kreload accepts every argument the chart passes (clap rejects before --help).
        let check = Command::new(env!("CARGO_BIN_EXE_kreload"))
            .args(&args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "kreload refuses the migrated arguments {args:?}:\n{}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
    // Single-namespace Reloader: its namespace is asked for, and then watched.
    let single = dir.join("single.yaml");
    std::fs::write(&single, "reloader:\n  watchGlobally: false\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kreload"))
        .args(["migrate", "--reloader-values"])
        .arg(&single)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--reloader-namespace"));
    let out = Command::new(env!("CARGO_BIN_EXE_kreload"))
        .args([
            "migrate",
            "--reloader-namespace",
            "tools",
            "--reloader-values",
        ])
        .arg(&single)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("watchNamespaces:\n- tools\n"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The chart's RBAC objects (ServiceAccount, roles, bindings) for a release in `namespace`, with
/// cluster-scoped names made unique by `suffix` (so test runs never collide); returns them and
/// the `kind/name` of each cluster-scoped one.
fn rbac_objects(namespace: &str, sets: &[&str], suffix: &str) -> (Vec<Value>, Vec<String>) {
    let mut objects = Vec::new();
    let mut cluster_scoped = Vec::new();
    for mut doc in documents(&helm_template(namespace, sets)) {
        match kind_of(&doc) {
            "ServiceAccount" | "Role" | "RoleBinding" => {}
            "ClusterRole" | "ClusterRoleBinding" => {
                let name = format!("{}-{suffix}", doc["metadata"]["name"].as_str().unwrap());
                doc["metadata"]["name"] = json!(name);
                if kind_of(&doc) == "ClusterRoleBinding" {
                    let role = format!("{}-{suffix}", doc["roleRef"]["name"].as_str().unwrap());
                    doc["roleRef"]["name"] = json!(role);
                }
                cluster_scoped.push(format!("{}/{name}", kind_of(&doc).to_lowercase()));
            }
            _ => continue,
        }
        objects.push(doc);
    }
    (objects, cluster_scoped)
}

fn can_i(sa: &str, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i"];
    all.extend(args);
    all.push(sa);
    let (ok, out, err) = kubectl(&all, None);
    match out.trim() {
        "yes" => true,
        "no" => false,
        _ => panic!("kubectl {all:?}: ok={ok} {out}{err}"),
    }
}

/// kreload as a child process in certificate-file mode; killed when dropped.
struct Child {
    child: std::process::Child,
    log: PathBuf,
}

impl Child {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn kreload_runs_on_its_service_account_with_the_cluster_rbac() {
    runs_on_its_service_account(false).await;
}

#[tokio::test]
async fn kreload_runs_on_its_service_account_with_the_namespaced_rbac() {
    runs_on_its_service_account(true).await;
}

/// kreload on a token of the chart's ServiceAccount, bound only by the chart's RBAC (ClusterRole
/// mode, or namespace-scoped mode with the test namespace as the one watched), stamps at create,
/// rolls a Deployment and recreates an opted-in Job on a ConfigMap edit, records its Event, leads
/// through its Lease, and denies.
async fn runs_on_its_service_account(namespaced: bool) {
    let admin = client().await;
    // The release namespace (the chart's `kreload`, unique per run) and the watched namespace.
    let home = TestNamespace::new(&admin, "e2e-deploy-home").await;
    let ns = TestNamespace::new(&admin, "e2e-deploy-rbac").await;
    let suffix = unique("e2e");

    // The chart's RBAC, applied for real.
    let watch = format!("watchNamespaces={{{}}}", ns.name);
    let sets: &[&str] = if namespaced {
        &[
            "rbac.namespaced=true",
            &watch,
            "certificates.mode=cert-manager",
        ]
    } else {
        &[]
    };
    let (objects, cluster_scoped) = rbac_objects(&home.name, sets, &suffix);
    assert_eq!(cluster_scoped.is_empty(), namespaced, "{cluster_scoped:?}");
    let _cleanup = DeleteOnDrop(cluster_scoped);
    let (ok, _, err) = kubectl(&["apply", "-f", "-"], Some(&list(objects)));
    assert!(ok, "apply the chart's RBAC: {err}");

    let sa = format!("--as=system:serviceaccount:{}:kreload", home.name);
    assert!(!can_i(&sa, &["create", "mutatingwebhookconfigurations"]));
    assert!(!can_i(&sa, &["create", "secrets", "-n", &ns.name]));
    assert!(!can_i(&sa, &["update", "secrets", "-n", &home.name]));
    assert!(can_i(&sa, &["patch", "deployments", "-n", &ns.name]));

    // A token of the ServiceAccount (TokenRequest), in a kubeconfig of its own.
    let (ok, token, err) = kubectl(
        &[
            "create",
            "token",
            "kreload",
            "-n",
            &home.name,
            "--duration=1h",
        ],
        None,
    );
    assert!(ok, "kubectl create token: {err}");
    // Kept when the test fails, for kreload.log; removed at the end otherwise.
    let dir = std::env::temp_dir().join(unique("kreload-e2e-deploy"));
    std::fs::create_dir_all(&dir).unwrap();
    eprintln!(
        "kreload's kubeconfig, certificates and log: {}",
        dir.display()
    );
    let sa_kubeconfig = dir.join("sa.kubeconfig");
    token_kubeconfig(token.trim(), &sa_kubeconfig);

    // Serving certificate files (not local mode: that writes webhook configurations, which the
    // ServiceAccount may not).
    let (ok, _, err) = run(
        &repo().join("certs/make-certs"),
        &[dir.to_str().unwrap(), "127.0.0.1"],
        None,
    );
    assert!(ok, "certs/make-certs: {err}");
    let ca_pem = std::fs::read_to_string(dir.join("ca.crt")).unwrap();

    let (port, health_port) = (free_port(), free_port());
    let log = dir.join("kreload.log");
    let kreload = Child {
        child: Command::new(env!("CARGO_BIN_EXE_kreload"))
            .arg("run")
            .arg("--kubeconfig")
            .arg(&sa_kubeconfig)
            .args(["--namespace", &home.name, "--namespaces", &ns.name])
            .arg("--tls-cert-file")
            .arg(dir.join("tls.crt"))
            .arg("--tls-key-file")
            .arg(dir.join("tls.key"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--health-listen", &format!("127.0.0.1:{health_port}")])
            .args([
                "--enable-ha",
                "--exit-on-stdin-close",
                "--log-level",
                "debug",
            ])
            .env_remove("KUBECONFIG")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start kreload"),
        log,
    };

    // Ready (every watch listed with the ServiceAccount's rights) and leader (the Lease).
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let health = format!("http://127.0.0.1:{health_port}");
    wait_for(
        "kreload on the ServiceAccount token to be ready and lead",
        Duration::from_secs(60),
        || async {
            let ready = http.get(format!("{health}/readyz")).send().await.ok()?;
            if !ready.status().is_success() {
                return None;
            }
            let metrics = http.get(format!("{health}/metrics")).send().await.ok()?;
            let text = metrics.text().await.ok()?;
            text.lines()
                .any(|l| l.starts_with("kreload_leader") && l.trim_end().ends_with(" 1"))
                .then_some(())
        },
    )
    .await;

    // Webhook configurations (written with the admin client) pointing at it.
    let webhook_name = unique("kreload-e2e-deploy");
    let _webhooks = DeleteOnDrop(vec![
        format!("mutatingwebhookconfiguration/{webhook_name}"),
        format!("validatingwebhookconfiguration/{webhook_name}"),
    ]);
    let (m, v) = kreload::admission::webhooks::local(
        &format!("https://127.0.0.1:{port}"),
        &ca_pem,
        &webhook_name,
        &BTreeSet::from([ns.name.clone()]),
    );
    kreload::admission::webhooks::apply(admin.clone(), &m, &v)
        .await
        .expect("register the webhook configurations");

    // A Deployment with `auto` consuming a ConfigMap is stamped at create. The API server
    // picks up new webhook configurations within moments: wait for a server-side dry-run
    // create to come back stamped, then create it for real.
    let cms: Api<ConfigMap> = ns.api();
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "app-config"}, "data": {"level": "info"}
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    let deployments: Api<Deployment> = ns.api();
    let app = deployment(
        "app",
        1,
        json!({"reloader.stakater.com/auto": "true"}),
        json!({"containers": [{"name": "app", "image": "registry.invalid/app:1",
            "envFrom": [{"configMapRef": {"name": "app-config"}}]}]}),
    );
    let template_stamp = |d: &Deployment| {
        d.spec
            .as_ref()?
            .template
            .metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get(STAMP)
            .cloned()
    };
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    wait_for(
        "the webhook to stamp a dry-run create",
        Duration::from_secs(20),
        || async {
            let created = deployments.create(&dry_run, &app).await.ok()?;
            template_stamp(&created)
        },
    )
    .await;
    let created = deployments
        .create(&PostParams::default(), &app)
        .await
        .expect("create the Deployment");
    let first = template_stamp(&created).expect("stamped at create");
    // An opted-in Job consuming the same ConfigMap: it rolls by recreation (delete + create).
    let jobs: Api<Job> = ns.api();
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "batch", "annotations": {"reloader.stakater.com/auto": "true"}},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "a", "image": "registry.invalid/a:1",
                "envFrom": [{"configMapRef": {"name": "app-config"}}]}]}}}
    }))
    .unwrap();
    let job_uid = jobs
        .create(&PostParams::default(), &job)
        .await
        .expect("create the Job")
        .metadata
        .uid;
    wait_rollout(&ns, "app").await;
    assert_eq!(replica_sets(&ns, "app").await.len(), 1);

    // Editing the ConfigMap rolls it: a new stamp, a new ReplicaSet, and an Event.
    cms.patch(
        "app-config",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"level": "debug"}})),
    )
    .await
    .unwrap();
    let second = wait_for(
        "kreload to roll the Deployment",
        Duration::from_secs(30),
        || async {
            let d = deployments.get("app").await.ok()?;
            template_stamp(&d).filter(|s| *s != first)
        },
    )
    .await;
    assert!(second.starts_with("v2."), "{second}");
    wait_for(
        "kreload to recreate the opted-in Job",
        Duration::from_secs(30),
        || async {
            let j = jobs.get_opt("batch").await.ok()??;
            (j.metadata.uid != job_uid).then_some(())
        },
    )
    .await;
    wait_rollout(&ns, "app").await;
    assert_eq!(
        replica_sets(&ns, "app").await.len(),
        2,
        "one new ReplicaSet"
    );
    let events: Api<Event> = ns.api();
    wait_for("a Reloaded Event", Duration::from_secs(20), || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("Reloaded")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("app")
            })
            .then_some(())
    })
    .await;

    // `auto` + `search` is denied.
    let bad = deployment(
        "bad",
        1,
        json!({"reloader.stakater.com/auto": "true", "reloader.stakater.com/search": "true"}),
        json!({}),
    );
    let err = deployments
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("auto + search must be denied");
    let message = err.to_string();
    assert!(
        message.contains("reloader.stakater.com/auto")
            && message.contains("reloader.stakater.com/search"),
        "{message}"
    );

    let text = kreload.log_text();
    assert!(
        !text.to_lowercase().contains("forbidden"),
        "kreload was refused something by RBAC:\n{text}"
    );
    // The lease is held under the ServiceAccount's rights (the Role in its namespace).
    let (ok, holder, err) = kubectl(
        &[
            "get",
            "lease",
            "kreload",
            "-n",
            &home.name,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
        None,
    );
    assert!(ok && !holder.is_empty(), "lease: {holder} {err}");
    drop(kreload);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn namespaced_rbac_confines_secrets_to_the_watched_namespaces() {
    let admin = client().await;
    let home = TestNamespace::new(&admin, "e2e-deploy-home").await;
    let watched = TestNamespace::new(&admin, "e2e-deploy-watched").await;
    let other = TestNamespace::new(&admin, "e2e-deploy-other").await;

    let watch = format!("watchNamespaces={{{}}}", watched.name);
    let (objects, cluster_scoped) = rbac_objects(
        &home.name,
        &[
            "rbac.namespaced=true",
            &watch,
            "certificates.mode=cert-manager",
        ],
        "unused",
    );
    assert!(cluster_scoped.is_empty(), "{cluster_scoped:?}");
    let (ok, _, err) = kubectl(&["apply", "-f", "-"], Some(&list(objects)));
    assert!(ok, "apply the chart's namespaced RBAC: {err}");

    let sa = format!("--as=system:serviceaccount:{}:kreload", home.name);
    let (w, o, h) = (
        watched.name.as_str(),
        other.name.as_str(),
        home.name.as_str(),
    );
    // RBAC changes take effect at once, but be patient with the authorizer's cache anyway.
    wait_for(
        "the Roles to take effect",
        Duration::from_secs(10),
        || async { can_i(&sa, &["list", "secrets", "-n", w]).then_some(()) },
    )
    .await;

    // No Secret can be written anywhere...
    for ns in [w, o, h] {
        for verb in ["update", "patch", "delete", "deletecollection"] {
            assert!(
                !can_i(&sa, &[verb, "secrets", "-n", ns]),
                "{verb} secrets in {ns}"
            );
        }
    }
    assert!(!can_i(&sa, &["create", "secrets", "-n", w]));
    assert!(!can_i(&sa, &["create", "secrets", "-n", o]));
    // ...except creating the hash key at home: create cannot be limited to a name.
    assert!(can_i(&sa, &["create", "secrets", "-n", h]));

    // Secrets are readable in the watched namespace only (and the hash key at home).
    for verb in ["get", "list", "watch"] {
        assert!(can_i(&sa, &[verb, "secrets", "-n", w]), "{verb} in watched");
        assert!(!can_i(&sa, &[verb, "secrets", "-n", o]), "{verb} in other");
        assert!(
            !can_i(&sa, &[verb, "secrets", "--all-namespaces"]),
            "{verb} -A"
        );
    }
    assert!(can_i(&sa, &["get", "secrets/kreload-hash-key", "-n", h]));
    assert!(!can_i(&sa, &["get", "secrets/other", "-n", h]));
    assert!(!can_i(&sa, &["list", "secrets", "-n", h]));

    // Workloads: read and patched in the watched namespace only; no webhook configurations.
    assert!(can_i(&sa, &["patch", "deployments.apps", "-n", w]));
    assert!(!can_i(&sa, &["patch", "deployments.apps", "-n", o]));
    assert!(!can_i(&sa, &["list", "configmaps", "-n", o]));
    assert!(!can_i(&sa, &["list", "namespaces"]));
    assert!(!can_i(&sa, &["create", "mutatingwebhookconfigurations"]));
    assert!(!can_i(&sa, &["patch", "validatingwebhookconfigurations"]));
}
