//! Issue 10, "do no harm" in the watcher: a change kreload skips on purpose (a config's
//! annotations or labels, a create or delete without `--reload-on-create`/`--reload-on-delete`)
//! never rolls anything, neither now nor after a restart or a leader change; a namespace that
//! starts matching `--namespace-selector` has its earlier workloads rolled; kreload's own
//! namespace and `kube-system` are never acted on.
//!
//! A roll is a new template stamp plus a new revision whose pods are Ready carrying it; "no roll"
//! is the same stamp and revision count after waiting past the coalescing window and the storm
//! guard. Each test runs its own kreload(s), scoped to its own namespaces.

mod common;

use std::time::Duration;

use common::workloads::*;
use common::*;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

/// Waits past the coalescing window and the storm guard, then checks that none of `cases`
/// rolled since `bases`. One line per workload that did, naming `when`.
async fn nothing_rolled(
    ns: &TestNamespace,
    cases: &[Case],
    bases: &[Base],
    when: &str,
) -> Vec<String> {
    tokio::time::sleep(STORM_GUARD).await;
    let mut failures = Vec::new();
    for (c, b) in cases.iter().zip(bases) {
        if let Err(e) = expect_unchanged(ns, c.kind, c.name, b).await {
            failures.push(format!("[{}] {when}: {e} ({})", ns.name, c.why));
        }
    }
    failures
}

/// A pod spec taking everything from a Secret that may be absent.
fn optional_secret(name: &str) -> serde_json::Value {
    json!({"containers": [{"name": "app", "image": IMAGE,
        "envFrom": [{"secretRef": {"name": name, "optional": true}}]}]})
}

async fn lease_holder(client: &kube::Client, name: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kreload");
    leases.get_opt(name).await.ok()??.spec?.holder_identity
}

/// One replica of kreload in HA, acting in `ns` only, with webhook configurations of its own,
/// contending for Lease `lease` as `<ns>-<who>`.
fn ha_replica(ns: &TestNamespace, lease: &str, lease_duration: &str, who: &str) -> Running {
    let identity = format!("{}-{who}", ns.name);
    let webhook = format!("kreload-{}-{who}", ns.name);
    Running(Kreload::start(&[
        "--namespaces",
        &ns.name,
        "--webhook-config-name",
        &webhook,
        "--enable-ha",
        "--lease-name",
        lease,
        "--lease-duration",
        lease_duration,
        "--identity",
        &identity,
        "--log-level",
        "debug",
    ]))
}

/// Which of `ids` holds Lease `lease`, once one does.
async fn wait_leader(client: &kube::Client, lease: &str, ids: &[String]) -> usize {
    wait_for(
        &format!("one of {ids:?} to hold Lease kreload/{lease}"),
        Duration::from_secs(30),
        || async {
            let h = lease_holder(client, lease).await?;
            ids.iter().position(|i| *i == h)
        },
    )
    .await
}

/// Waits until `id` holds Lease `lease`.
async fn wait_holder(client: &kube::Client, lease: &str, id: &str, within: Duration) {
    wait_for(
        &format!("{id} to hold Lease kreload/{lease}"),
        within,
        || async { (lease_holder(client, lease).await.as_deref() == Some(id)).then_some(()) },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Tests

/// Issue 10 rule 3 / defect 3: adding and removing `ignore` or `match` and relabelling a config roll nothing, now or after a restart; a data change then rolls once.
#[tokio::test]
async fn config_annotation_edits_never_roll() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-s-annot").await;
    cm("app-cm").create(&ns).await;
    let matched = json!({"reloader.stakater.com/match": "true"});
    cm("search-a")
        .annotations(matched.clone())
        .create(&ns)
        .await;
    cm("search-b").create(&ns).await;
    let first = kreload_for(&[&ns], &[]);
    create(
        &ns,
        deploy(
            "auto",
            json!({"reloader.stakater.com/auto": "true"}),
            env_from(&["app-cm"], &[]),
        ),
    )
    .await;
    create(
        &ns,
        deploy(
            "search",
            json!({"reloader.stakater.com/search": "true"}),
            env_from(&["search-a", "search-b"], &[]),
        ),
    )
    .await;
    let d = Kind::Deployment;
    let keep = [
        keeps(d, "auto", "auto; its ConfigMap's ignore/labels edited"),
        keeps(
            d,
            "search",
            "search; match moved from one ConfigMap to another",
        ),
    ];
    let bases = baselines(&ns, &keep).await;
    let mut failures = Vec::new();

    // `ignore` added, a label added; `match` removed from one config.
    let ignore = "reloader.stakater.com/ignore";
    let matcher = "reloader.stakater.com/match";
    patch_cm(
        &ns,
        "app-cm",
        json!({"metadata": {"annotations": {ignore: "true"}, "labels": {"team": "a"}}}),
    )
    .await;
    patch_cm(
        &ns,
        "search-a",
        json!({"metadata": {"annotations": {matcher: null}}}),
    )
    .await;
    failures
        .extend(nothing_rolled(&ns, &keep, &bases, "after adding ignore and removing match").await);

    // `ignore` removed; `match` added to the other config, which is relabelled.
    patch_cm(
        &ns,
        "app-cm",
        json!({"metadata": {"annotations": {ignore: null}, "labels": {"team": "b"}}}),
    )
    .await;
    patch_cm(
        &ns,
        "search-b",
        json!({"metadata": {"annotations": {matcher: "true"}, "labels": {"team": "b"}}}),
    )
    .await;
    failures
        .extend(nothing_rolled(&ns, &keep, &bases, "after removing ignore and adding match").await);

    // A restart: what was skipped stays skipped (search's trigger set did change).
    first.terminate();
    let second = kreload_for(&[&ns], &[]);
    failures.extend(nothing_rolled(&ns, &keep, &bases, "after a kreload restart").await);

    // A real change of a consumed key rolls each exactly once.
    set_cm(&ns, "app-cm", "k", "v1").await;
    set_cm(&ns, "search-b", "k", "v1").await;
    let roll = [
        rolls(d, "auto", "its ConfigMap's data changed"),
        rolls(d, "search", "its matched ConfigMap's data changed"),
    ];
    failures.extend(verify(&ns, &roll, &bases).await);
    check(failures, &[&first, &second]);
}

/// Issue 10 rule 3 / defect 4: a Secret created after its workload, or deleted, without the flags rolls nothing now, after a leader change or a restart; with the flags it rolls once.
#[tokio::test]
async fn skipped_creates_and_deletes_never_roll_later() {
    let client = client().await;
    let off = TestNamespace::new(&client, "e2e-s-crdel-off").await;
    let on = TestNamespace::new(&client, "e2e-s-crdel-on").await;
    for ns in [&off, &on] {
        secret("gone-secret").create(ns).await;
    }
    // Without the flags: two replicas, one leader.
    let lease = format!("kreload-{}", off.name);
    let replica = |who: &str| ha_replica(&off, &lease, "4s", who);
    let a = replica("a");
    let b = replica("b");
    let with_flags = kreload_for(&[&on], &["--reload-on-create", "--reload-on-delete"]);
    let auto = json!({"reloader.stakater.com/auto": "true"});
    for ns in [&off, &on] {
        create(
            ns,
            deploy("late", auto.clone(), optional_secret("late-secret")),
        )
        .await;
        create(
            ns,
            deploy("gone", auto.clone(), optional_secret("gone-secret")),
        )
        .await;
    }
    let d = Kind::Deployment;
    let keep = [
        keeps(
            d,
            "late",
            "its Secret was created after it, no --reload-on-create",
        ),
        keeps(d, "gone", "its Secret was deleted, no --reload-on-delete"),
    ];
    let roll = [
        rolls(
            d,
            "late",
            "its Secret was created after it, --reload-on-create",
        ),
        rolls(d, "gone", "its Secret was deleted, --reload-on-delete"),
    ];
    let bases_off = baselines(&off, &keep).await;
    let bases_on = baselines(&on, &roll).await;
    for ns in [&off, &on] {
        secret("late-secret").create(ns).await;
        ns.api::<Secret>()
            .delete("gone-secret", &DeleteParams::default())
            .await
            .expect("delete gone-secret");
    }
    let (mut failures, rolled) = tokio::join!(
        nothing_rolled(&off, &keep, &bases_off, "right after the create and delete"),
        verify(&on, &roll, &bases_on)
    );
    failures.extend(rolled);

    // A leader change: the survivor takes over and compares every workload with its baseline.
    let ids = [format!("{}-a", off.name), format!("{}-b", off.name)];
    let leader = wait_leader(&client, &lease, &ids).await;
    let (leader_k, survivor_k) = if leader == 0 { (&a, &b) } else { (&b, &a) };
    let survivor = &ids[1 - leader];
    leader_k.stop();
    wait_holder(&client, &lease, survivor, Duration::from_secs(30)).await;
    failures.extend(nothing_rolled(&off, &keep, &bases_off, "after a leader change").await);

    // A restart: the last replica goes, a new one starts and leads.
    survivor_k.terminate();
    let c = replica("c");
    let c_id = format!("{}-c", off.name);
    wait_holder(&client, &lease, &c_id, Duration::from_secs(30)).await;
    failures.extend(nothing_rolled(&off, &keep, &bases_off, "after a restart").await);

    // Clean up what the killed replica could not.
    c.terminate();
    let killed = format!("kreload-{}", ids[leader]);
    let _ = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .delete(&killed, &DeleteParams::default())
        .await;
    let _ = Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .delete(&killed, &DeleteParams::default())
        .await;
    let _ = Api::<Lease>::namespaced(client.clone(), "kreload")
        .delete(&lease, &DeleteParams::default())
        .await;
    check(failures, &[&a, &b, &c, &with_flags]);
}

/// Sets (`Some`) or removes (`None`) a label on a namespace.
async fn label_namespace(client: &kube::Client, name: &str, key: &str, value: Option<&str>) {
    Api::<Namespace>::all(client.clone())
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {key: value}}})),
        )
        .await
        .unwrap_or_else(|e| panic!("label namespace {name}: {e}"));
}

/// Issue 10 defect 7: workloads created before their namespace matched --namespace-selector roll once it matches, and not after it stops matching.
#[tokio::test]
async fn namespace_selector_applies_to_earlier_workloads() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-s-nssel").await;
    cm("app-cm").create(&ns).await;
    // Before the namespace matches and before kreload starts (so: unstamped).
    create(
        &ns,
        deploy(
            "web",
            json!({"reloader.stakater.com/auto": "true"}),
            env_from(&["app-cm"], &[]),
        ),
    )
    .await;
    let d = Kind::Deployment;
    let web = [rolls(
        d,
        "web",
        "its namespace was labelled to match after it was created",
    )];
    let bases = baselines(&ns, &web).await;
    // A label no other test uses, and --namespaces too, so that parallel tests do not meet.
    let key = format!("e2e-sel-{}", ns.name);
    let selector = format!("{key}=yes");
    let kreload = kreload_for(&[&ns], &["--namespace-selector", &selector]);
    let mut failures = Vec::new();

    label_namespace(&client, &ns.name, &key, Some("yes")).await;
    // kreload acts in the namespace once it knows the label (its webhook then stamps a copy).
    let selected = try_wait_for(Duration::from_secs(20), || async {
        fresh_stamp(&ns, "web").await.map(|_| ())
    })
    .await;
    if selected.is_none() {
        failures.push(format!(
            "[{}] the webhook did not stamp in the namespace within 20s of it matching --namespace-selector",
            ns.name
        ));
    }
    set_cm(&ns, "app-cm", "k", "v1").await;
    failures.extend(verify(&ns, &web, &bases).await);

    // It stops matching: a change rolls nothing.
    label_namespace(&client, &ns.name, &key, None).await;
    let unselected = try_wait_for(Duration::from_secs(20), || async {
        fresh_stamp(&ns, "web").await.is_none().then_some(())
    })
    .await;
    if unselected.is_none() {
        failures.push(format!(
            "[{}] the webhook still stamps in the namespace 20s after it stopped matching --namespace-selector",
            ns.name
        ));
    }
    let after = [keeps(
        d,
        "web",
        "its namespace no longer matches --namespace-selector",
    )];
    let bases_after = vec![baseline(&ns, d, "web").await];
    set_cm(&ns, "app-cm", "k", "v2").await;
    failures
        .extend(nothing_rolled(&ns, &after, &bases_after, "after unlabelling the namespace").await);
    check(failures, &[&kreload]);
}

/// Removes a Deployment and a ConfigMap from kube-system when the test ends, however it ends.
struct KubeSystemObjects {
    name: String,
}

impl Drop for KubeSystemObjects {
    /// The test's runtime is ending (or unwinding), and a client made on it would wait for it
    /// forever: the request runs on a runtime and a client of its own.
    fn drop(&mut self) {
        let name = self.name.clone();
        std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let client = client().await;
                let dp = DeleteParams::default();
                let _ = Api::<Deployment>::namespaced(client.clone(), "kube-system")
                    .delete(&name, &dp)
                    .await;
                let _ = Api::<ConfigMap>::namespaced(client, "kube-system")
                    .delete(&name, &dp)
                    .await;
            });
        })
        .join()
        .ok();
    }
}

/// Issue 10 defect 9 (kube-system / own namespace): with --auto-reload-all, kreload neither stamps nor rolls a Deployment in its own namespace or in kube-system.
#[tokio::test]
async fn own_namespace_and_kube_system_are_never_acted_on() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-s-own").await;
    cm("app-cm").create(&ns).await;
    // kreload's own namespace is the test's.
    let own = kreload_for(&[&ns], &["--namespace", &ns.name, "--auto-reload-all"]);
    create(&ns, deploy("web", json!({}), env_from(&["app-cm"], &[]))).await;
    let d = Kind::Deployment;
    let web = [keeps(d, "web", "in kreload's own namespace")];
    let bases = baselines(&ns, &web).await;
    let mut failures = Vec::new();
    if let Some(s) = &bases[0].stamp {
        failures.push(format!(
            "[{}] Deployment web in kreload's own namespace was stamped at CREATE ({s})",
            ns.name
        ));
    }
    set_cm(&ns, "app-cm", "k", "v1").await;

    // kube-system, with a kreload scoped to it alone (its webhooks see only kube-system).
    let name = format!("kreload-e2e-{}", ns.name);
    let _cleanup = KubeSystemObjects { name: name.clone() };
    let webhook = format!("kreload-ks-{}", ns.name);
    let system = Running(Kreload::start(&[
        "--namespaces",
        "kube-system",
        "--webhook-config-name",
        &webhook,
        "--auto-reload-all",
        "--log-level",
        "debug",
    ]));
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    let config: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v0"}})).unwrap();
    cms.create(&PostParams::default(), &config)
        .await
        .expect("create a ConfigMap in kube-system");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "kube-system");
    let manifest = deploy(&name, json!({}), env_from(&[&name], &[]));
    let created = deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(manifest).unwrap(),
        )
        .await
        .expect("create a Deployment in kube-system");
    if let Some(s) = template_stamp(&created) {
        failures.push(format!(
            "Deployment kube-system/{name} was stamped at CREATE ({s})"
        ));
    }
    let sets = || async {
        Api::<ReplicaSet>::namespaced(client.clone(), "kube-system")
            .list(&ListParams::default().labels(&format!("app={name}")))
            .await
            .map(|l| l.items.len())
            .unwrap_or(0)
    };
    wait_for(
        &format!("Deployment kube-system/{name} to have its ReplicaSet"),
        Duration::from_secs(60),
        || async { (sets().await == 1).then_some(()) },
    )
    .await;
    cms.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "v1"}})),
    )
    .await
    .expect("change the ConfigMap in kube-system");

    failures.extend(nothing_rolled(&ns, &web, &bases, "a change in kreload's own namespace").await);
    let now = deployments
        .get(&name)
        .await
        .expect("the kube-system Deployment");
    if template_stamp(&now).is_some() || sets().await != 1 {
        failures.push(format!(
            "Deployment kube-system/{name} was rolled: template stamp {:?}, {} ReplicaSets",
            template_stamp(&now),
            sets().await
        ));
    }
    check(failures, &[&own, &system]);
}

/// Rule 3 in HA: changes skipped on purpose while the leader is dead and before the other
/// replica takes the Lease (a Secret created, `ignore` added) roll nothing when it takes over:
/// the follower saw them and accounts for them instead of rolling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_changes_during_a_leader_gap_never_roll() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-s-gap").await;
    cm("watched").create(&ns).await;
    let lease = format!("kreload-{}", ns.name);
    let replica = |who: &str| ha_replica(&ns, &lease, "8s", who);
    let a = replica("a");
    let b = replica("b");
    let auto = json!({"reloader.stakater.com/auto": "true"});
    create(
        &ns,
        deploy("late", auto.clone(), optional_secret("late-secret")),
    )
    .await;
    create(&ns, deploy("ign", auto, env_from(&["watched"], &[]))).await;
    let d = Kind::Deployment;
    let keep = [
        keeps(
            d,
            "late",
            "its Secret was created in the leader gap, no --reload-on-create",
        ),
        keeps(d, "ign", "its ConfigMap got `ignore` in the leader gap"),
    ];
    let bases = baselines(&ns, &keep).await;
    let ids = [format!("{}-a", ns.name), format!("{}-b", ns.name)];
    let leader = wait_leader(&client, &lease, &ids).await;
    let (dead, survivor) = if leader == 0 {
        (&a, &ids[1])
    } else {
        (&b, &ids[0])
    };
    // Killed, not stopped: the Lease is not released, so nobody leads for a while.
    dead.stop();
    secret("late-secret").create(&ns).await;
    patch_cm(
        &ns,
        "watched",
        json!({"metadata": {"annotations": {"reloader.stakater.com/ignore": "true"}}}),
    )
    .await;
    assert_eq!(
        lease_holder(&client, &lease).await.as_ref(),
        Some(&ids[leader]),
        "the changes must land while the dead leader still holds the Lease"
    );
    wait_holder(&client, &lease, survivor, Duration::from_secs(60)).await;
    let failures = nothing_rolled(&ns, &keep, &bases, "after the takeover").await;
    check(failures, &[&a, &b]);
}

/// The other side of the leader gap: a consumed-data change made while the leader is dead rolls
/// once when the other replica takes over, also for a workload kreload never stamped (created
/// before kreload was installed, so it has no baseline and shows no drift).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_change_in_a_leader_gap_rolls_unstamped_workloads_too() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-s-gaproll").await;
    cm("data").create(&ns).await;
    let auto = json!({"reloader.stakater.com/auto": "true"});
    // Before any kreload acts here: no webhook stamps it.
    create(&ns, deploy("old", auto.clone(), env_from(&["data"], &[]))).await;
    let lease = format!("kreload-{}", ns.name);
    let replica = |who: &str| ha_replica(&ns, &lease, "8s", who);
    let a = replica("a");
    let b = replica("b");
    create(&ns, deploy("new", auto, env_from(&["data"], &[]))).await;
    let d = Kind::Deployment;
    let cases = [
        rolls(
            d,
            "old",
            "unstamped; its ConfigMap's data changed in the leader gap",
        ),
        rolls(
            d,
            "new",
            "stamped; its ConfigMap's data changed in the leader gap",
        ),
    ];
    let bases = baselines(&ns, &cases).await;
    assert_eq!(
        bases[0].stamp, None,
        "the workload created before kreload is unstamped"
    );
    let ids = [format!("{}-a", ns.name), format!("{}-b", ns.name)];
    let leader = wait_leader(&client, &lease, &ids).await;
    let (dead, survivor) = if leader == 0 {
        (&a, &ids[1])
    } else {
        (&b, &ids[0])
    };
    // Killed, not stopped: the Lease is not released, so nobody leads for a while.
    dead.stop();
    set_cm(&ns, "data", "k", "changed-in-the-gap").await;
    assert_eq!(
        lease_holder(&client, &lease).await.as_ref(),
        Some(&ids[leader]),
        "the change must land while the dead leader still holds the Lease"
    );
    wait_holder(&client, &lease, survivor, Duration::from_secs(60)).await;
    let failures = verify(&ns, &cases, &bases).await;
    check(failures, &[&a, &b]);
}
