//! The watcher on the real control plane: config changes roll exactly the workloads the decision
//! rule names, once per change, through the real workload controllers (kwok fakes the kubelets).
//!
//! A roll is detected by the workload's pod-template stamp changing AND, for kinds with a
//! controller in the harness, a new ReplicaSet / ControllerRevision whose pods become Ready
//! carrying the new stamp; never by log lines. A non-roll is asserted by recording the baseline,
//! acting, waiting longer than the coalescing window, and finding the same template stamp and the
//! same number of revisions.
//!
//! Isolation: tests run in parallel, each with its own kreload(s) scoped to its own namespaces
//! (`--namespaces`, `--webhook-config-name kreload-<ns>`), so no two kreloads watch one namespace.
//! The one test whose kreload is not narrowed (`--namespace-selector`) runs alone.

mod common;

use std::time::Duration;

use common::observe::*;
use common::workloads::*;
use common::*;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

/// Tests whose kreload is not narrowed to their own namespaces run alone: every other test holds
/// this for reading, those hold it for writing.
static CLUSTER_WIDE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn every_reference_style_triggers_a_roll() {
    let _shared = CLUSTER_WIDE.read().await;
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-w-refs").await;
    for c in [
        "vol-cm",
        "proj-cm",
        "envfrom-cm",
        "keyref-cm",
        "init-cm",
        "second-cm",
    ] {
        cm(c).data(json!({"k": "v0", "a": "a0"})).create(&ns).await;
    }
    for s in [
        "vol-secret",
        "proj-secret",
        "envfrom-secret",
        "keyref-secret",
    ] {
        secret(s)
            .data(json!({"k": "v0", "a": "a0"}))
            .create(&ns)
            .await;
    }
    let kreload = kreload_for(&[&ns], &[]);
    let auto = json!({"reloader.stakater.com/auto": "true"});
    let mounted = |vol: Value| {
        json!({"containers": [{"name": "app", "image": IMAGE,
            "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}]}],
            "volumes": [vol]})
    };
    let manifests = [
        deploy(
            "vol-cm",
            auto.clone(),
            mounted(json!({"name": "cfg", "configMap": {"name": "vol-cm"}})),
        ),
        deploy(
            "vol-secret",
            auto.clone(),
            mounted(json!({"name": "cfg", "secret": {"secretName": "vol-secret"}})),
        ),
        deploy(
            "proj-cm",
            auto.clone(),
            mounted(json!({"name": "cfg", "projected": {"sources": [
            {"configMap": {"name": "proj-cm", "items": [{"key": "k", "path": "k"}]}}]}})),
        ),
        deploy(
            "proj-secret",
            auto.clone(),
            mounted(json!({"name": "cfg", "projected": {"sources": [
            {"secret": {"name": "proj-secret"}}]}})),
        ),
        deploy("envfrom-cm", auto.clone(), env_from(&["envfrom-cm"], &[])),
        deploy(
            "envfrom-secret",
            auto.clone(),
            env_from(&[], &["envfrom-secret"]),
        ),
        deploy(
            "keyref-cm",
            auto.clone(),
            json!({"containers": [{"name": "app", "image": IMAGE,
            "env": [{"name": "K", "valueFrom": {"configMapKeyRef": {"name": "keyref-cm", "key": "k"}}}]}]}),
        ),
        deploy(
            "keyref-secret",
            auto.clone(),
            json!({"containers": [{"name": "app", "image": IMAGE,
            "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "keyref-secret", "key": "k"}}}]}]}),
        ),
        deploy(
            "init",
            auto.clone(),
            json!({
            "initContainers": [{"name": "init", "image": IMAGE, "envFrom": [{"configMapRef": {"name": "init-cm"}}]}],
            "containers": [{"name": "app", "image": IMAGE}]}),
        ),
        deploy(
            "second",
            auto.clone(),
            json!({"containers": [
            {"name": "app", "image": IMAGE},
            {"name": "sidecar", "image": IMAGE,
             "env": [{"name": "K", "valueFrom": {"configMapKeyRef": {"name": "second-cm", "key": "k"}}}]}]}),
        ),
    ];
    for m in manifests {
        create(&ns, m).await;
    }
    let d = Kind::Deployment;
    let cases = [
        rolls(d, "vol-cm", "configMap volume"),
        rolls(d, "vol-secret", "secret volume"),
        rolls(
            d,
            "proj-cm",
            "configMap source of a projected volume (items key k)",
        ),
        rolls(d, "proj-secret", "secret source of a projected volume"),
        rolls(d, "envfrom-cm", "envFrom configMapRef"),
        rolls(d, "envfrom-secret", "envFrom secretRef"),
        rolls(d, "keyref-cm", "env valueFrom configMapKeyRef"),
        rolls(d, "keyref-secret", "env valueFrom secretKeyRef"),
        rolls(d, "init", "envFrom in an init container"),
        rolls(d, "second", "configMapKeyRef in the second container"),
    ];
    let bases = baselines(&ns, &cases).await;
    for c in [
        "vol-cm",
        "proj-cm",
        "envfrom-cm",
        "keyref-cm",
        "init-cm",
        "second-cm",
    ] {
        set_cm(&ns, c, "k", "v1").await;
    }
    for s in [
        "vol-secret",
        "proj-secret",
        "envfrom-secret",
        "keyref-secret",
    ] {
        set_secret(&ns, s, "k", "v1").await;
    }
    check(verify(&ns, &cases, &bases).await, &[&kreload]);
}

#[tokio::test]
async fn annotations_decide_which_changes_roll() {
    let _shared = CLUSTER_WIDE.read().await;
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-w-annot").await;
    let matched = json!({"reloader.stakater.com/match": "true"});
    for name in [
        "auto-cm",
        "cmauto-cm",
        "cmauto2-cm",
        "secauto-cm",
        "secauto2-cm",
        "nomatch-cm",
        "list-one",
        "list-two",
        "unref-cm",
        "rx-alpha",
        "ry-1x",
        "excl-cm",
        "excl2-cm",
        "exclpos-cm",
        "exlist-cm",
        "tmpl-cm",
        "both-a",
        "both-b",
        "meta-cm",
    ] {
        cm(name).create(&ns).await;
    }
    for name in ["match-cm", "match2-cm", "shared-cm"] {
        cm(name).annotations(matched.clone()).create(&ns).await;
    }
    for name in ["ignored-cm", "ignored2-cm"] {
        cm(name)
            .annotations(json!({"reloader.stakater.com/ignore": "true"}))
            .create(&ns)
            .await;
    }
    cm("keys-cm")
        .data(json!({"a": "a0", "b": "b0"}))
        .create(&ns)
        .await;
    for name in [
        "cmauto-secret",
        "cmauto2-secret",
        "secauto-secret",
        "secauto2-secret",
        "slist-secret",
        "sexcl-secret",
    ] {
        secret(name).create(&ns).await;
    }
    let kreload = kreload_for(&[&ns], &[]);

    let auto = json!({"reloader.stakater.com/auto": "true"});
    let cm_auto = json!({"configmap.reloader.stakater.com/auto": "true"});
    let secret_auto = json!({"secret.reloader.stakater.com/auto": "true"});
    let search = json!({"reloader.stakater.com/search": "true"});
    let none = json!({});
    let cm_reload = |list: &str| json!({"configmap.reloader.stakater.com/reload": list});
    let manifests = [
        deploy("auto", auto.clone(), env_from(&["auto-cm"], &[])),
        deploy(
            "cm-auto",
            cm_auto.clone(),
            env_from(&["cmauto-cm"], &["cmauto-secret"]),
        ),
        deploy(
            "cm-auto-secret",
            cm_auto.clone(),
            env_from(&["cmauto2-cm"], &["cmauto2-secret"]),
        ),
        deploy(
            "secret-auto",
            secret_auto.clone(),
            env_from(&["secauto-cm"], &["secauto-secret"]),
        ),
        deploy(
            "secret-auto-cm",
            secret_auto.clone(),
            env_from(&["secauto2-cm"], &["secauto2-secret"]),
        ),
        deploy(
            "search",
            search.clone(),
            json!({
            "containers": [{"name": "app", "image": IMAGE, "volumeMounts": [{"name": "c", "mountPath": "/c"}]}],
            "volumes": [{"name": "c", "configMap": {"name": "match-cm"}}]}),
        ),
        deploy("match-only", none.clone(), env_from(&["match2-cm"], &[])),
        deploy(
            "search-nomatch",
            search.clone(),
            env_from(&["nomatch-cm"], &[]),
        ),
        deploy(
            "shared-search",
            search.clone(),
            env_from(&["shared-cm"], &[]),
        ),
        deploy("shared-plain", none.clone(), env_from(&["shared-cm"], &[])),
        deploy(
            "list",
            cm_reload("list-one, list-two"),
            env_from(&["list-one", "list-two"], &[]),
        ),
        deploy("list-unref", cm_reload("unref-cm"), json!({})),
        deploy("list-regex", cm_reload("rx-[a-z]+"), json!({})),
        deploy("list-regex-anchored", cm_reload("ry-[0-9]+"), json!({})),
        deploy(
            "secret-list",
            json!({"secret.reloader.stakater.com/reload": "slist-secret"}),
            env_from(&[], &["slist-secret"]),
        ),
        deploy(
            "exclude",
            json!({"reloader.stakater.com/auto": "true",
            "configmaps.exclude.reloader.stakater.com/reload": "excl-cm"}),
            env_from(&["excl-cm"], &[]),
        ),
        deploy(
            "exclude-other",
            json!({"reloader.stakater.com/auto": "true",
            "configmaps.exclude.reloader.stakater.com/reload": "excl2-cm"}),
            env_from(&["excl2-cm", "exclpos-cm"], &[]),
        ),
        deploy(
            "secret-exclude",
            json!({"reloader.stakater.com/auto": "true",
            "secrets.exclude.reloader.stakater.com/reload": "sexcl-secret"}),
            env_from(&[], &["sexcl-secret"]),
        ),
        deploy(
            "exclude-beats-list",
            json!({"configmap.reloader.stakater.com/reload": "exlist-cm",
            "configmaps.exclude.reloader.stakater.com/reload": "exlist-cm"}),
            env_from(&["exlist-cm"], &[]),
        ),
        deploy("ignored", auto.clone(), env_from(&["ignored-cm"], &[])),
        deploy(
            "ignored-listed",
            cm_reload("ignored2-cm"),
            env_from(&["ignored2-cm"], &[]),
        ),
        with_template_annotations(
            deploy("template-only", none.clone(), env_from(&["tmpl-cm"], &[])),
            Kind::Deployment,
            auto.clone(),
        ),
        with_template_annotations(
            deploy(
                "both",
                cm_reload("both-a"),
                env_from(&["both-a", "both-b"], &[]),
            ),
            Kind::Deployment,
            auto.clone(),
        ),
        deploy("metadata", auto.clone(), env_from(&["meta-cm"], &[])),
        deploy(
            "unconsumed-key",
            auto.clone(),
            json!({"containers": [{"name": "app", "image": IMAGE,
            "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "keys-cm", "key": "a"}}}]}]}),
        ),
    ];
    for m in manifests {
        create(&ns, m).await;
    }
    let d = Kind::Deployment;
    let cases = [
        rolls(d, "auto", "auto: a referenced ConfigMap changed"),
        rolls(
            d,
            "cm-auto",
            "configmap auto: a referenced ConfigMap changed",
        ),
        keeps(d, "cm-auto-secret", "configmap auto ignores Secrets"),
        rolls(d, "secret-auto", "secret auto: a referenced Secret changed"),
        keeps(d, "secret-auto-cm", "secret auto ignores ConfigMaps"),
        rolls(d, "search", "search + a referenced ConfigMap with match"),
        keeps(
            d,
            "match-only",
            "match on the ConfigMap, no search on the workload",
        ),
        keeps(
            d,
            "search-nomatch",
            "search, but the ConfigMap has no match",
        ),
        rolls(
            d,
            "shared-search",
            "shares a matched ConfigMap and searches",
        ),
        keeps(
            d,
            "shared-plain",
            "shares a matched ConfigMap but does not search",
        ),
        rolls(
            d,
            "list",
            "reload list with two (space-padded) names, the second changed",
        ),
        rolls(
            d,
            "list-unref",
            "reload list names a ConfigMap the pod does not reference",
        ),
        rolls(
            d,
            "list-regex",
            "reload list regex rx-[a-z]+ matches rx-alpha",
        ),
        keeps(
            d,
            "list-regex-anchored",
            "reload list regex ry-[0-9]+ must match the whole name, not ry-1x",
        ),
        rolls(d, "secret-list", "secret reload list"),
        keeps(d, "exclude", "auto, but the changed ConfigMap is excluded"),
        rolls(
            d,
            "exclude-other",
            "auto with an exclude list; a non-excluded ConfigMap changed",
        ),
        keeps(
            d,
            "secret-exclude",
            "auto, but the changed Secret is excluded",
        ),
        keeps(
            d,
            "exclude-beats-list",
            "the ConfigMap is in both the reload and the exclude list",
        ),
        keeps(d, "ignored", "auto, but the ConfigMap has ignore: true"),
        keeps(
            d,
            "ignored-listed",
            "reload list names it, but the ConfigMap has ignore: true",
        ),
        rolls(d, "template-only", "auto on the pod template only"),
        keeps(
            d,
            "both",
            "workload annotations present, so the template's auto is not read",
        ),
        keeps(
            d,
            "metadata",
            "only labels and annotations of the ConfigMap changed",
        ),
        keeps(
            d,
            "unconsumed-key",
            "key b changed; the workload consumes only key a",
        ),
    ];
    let bases = baselines(&ns, &cases).await;

    for name in [
        "auto-cm",
        "cmauto-cm",
        "secauto2-cm",
        "match-cm",
        "match2-cm",
        "nomatch-cm",
        "shared-cm",
        "list-two",
        "unref-cm",
        "rx-alpha",
        "ry-1x",
        "excl-cm",
        "exclpos-cm",
        "exlist-cm",
        "ignored-cm",
        "ignored2-cm",
        "tmpl-cm",
        "both-b",
    ] {
        set_cm(&ns, name, "k", "v1").await;
    }
    for name in [
        "cmauto2-secret",
        "secauto-secret",
        "slist-secret",
        "sexcl-secret",
    ] {
        set_secret(&ns, name, "k", "v1").await;
    }
    patch_cm(
        &ns,
        "meta-cm",
        json!({"metadata": {"labels": {"tier": "x"}, "annotations": {"note": "changed"}}}),
    )
    .await;
    set_cm(&ns, "keys-cm", "b", "b1").await;

    check(verify(&ns, &cases, &bases).await, &[&kreload]);
}

#[tokio::test]
async fn auto_reload_all_rolls_unannotated_workloads_and_auto_false_opts_out() {
    let _shared = CLUSTER_WIDE.read().await;
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-w-all").await;
    for name in ["plain-cm", "optout-cm", "optout2-cm"] {
        cm(name).create(&ns).await;
    }
    secret("plain-secret").create(&ns).await;
    let kreload = kreload_for(&[&ns], &["--auto-reload-all"]);
    let off = json!({"reloader.stakater.com/auto": "false"});
    create(
        &ns,
        deploy("plain", json!({}), env_from(&["plain-cm"], &[])),
    )
    .await;
    create(
        &ns,
        deploy("plain-secret", json!({}), env_from(&[], &["plain-secret"])),
    )
    .await;
    create(
        &ns,
        deploy("opt-out", off.clone(), env_from(&["optout-cm"], &[])),
    )
    .await;
    create(
        &ns,
        with_template_annotations(
            deploy(
                "opt-out-template",
                json!({}),
                env_from(&["optout2-cm"], &[]),
            ),
            Kind::Deployment,
            off.clone(),
        ),
    )
    .await;
    let d = Kind::Deployment;
    let cases = [
        rolls(
            d,
            "plain",
            "no annotation under --auto-reload-all (ConfigMap)",
        ),
        rolls(
            d,
            "plain-secret",
            "no annotation under --auto-reload-all (Secret)",
        ),
        keeps(
            d,
            "opt-out",
            "auto: \"false\" opts out of --auto-reload-all",
        ),
        keeps(
            d,
            "opt-out-template",
            "auto: \"false\" on the pod template opts out",
        ),
    ];
    let bases = baselines(&ns, &cases).await;
    for name in ["plain-cm", "optout-cm", "optout2-cm"] {
        set_cm(&ns, name, "k", "v1").await;
    }
    set_secret(&ns, "plain-secret", "k", "v1").await;
    check(verify(&ns, &cases, &bases).await, &[&kreload]);
}

#[tokio::test]
async fn resources_to_ignore_and_ignored_workload_types_filter_changes() {
    let _shared = CLUSTER_WIDE.read().await;
    let client = client().await;
    let ns_a = TestNamespace::new(&client, "e2e-w-ignsec").await;
    let ns_b = TestNamespace::new(&client, "e2e-w-igncm").await;
    for ns in [&ns_a, &ns_b] {
        cm("app-cm").create(ns).await;
        secret("app-secret").create(ns).await;
    }
    let kreload_a = kreload_for(
        &[&ns_a],
        &[
            "--resources-to-ignore",
            "secrets",
            "--ignored-workload-types",
            "statefulsets",
        ],
    );
    let kreload_b = kreload_for(&[&ns_b], &["--resources-to-ignore", "configMaps"]);
    let auto = json!({"reloader.stakater.com/auto": "true"});
    for ns in [&ns_a, &ns_b] {
        create(
            ns,
            deploy("cm-user", auto.clone(), env_from(&["app-cm"], &[])),
        )
        .await;
        create(
            ns,
            deploy("secret-user", auto.clone(), env_from(&[], &["app-secret"])),
        )
        .await;
    }
    create(
        &ns_a,
        workload(
            Kind::StatefulSet,
            "sts",
            1,
            auto.clone(),
            env_from(&["app-cm"], &[]),
        ),
    )
    .await;
    let d = Kind::Deployment;
    let cases_a = [
        rolls(
            d,
            "cm-user",
            "--resources-to-ignore secrets does not block ConfigMaps",
        ),
        keeps(d, "secret-user", "--resources-to-ignore secrets"),
        keeps(
            Kind::StatefulSet,
            "sts",
            "--ignored-workload-types statefulsets",
        ),
    ];
    let cases_b = [
        keeps(d, "cm-user", "--resources-to-ignore configMaps"),
        rolls(
            d,
            "secret-user",
            "--resources-to-ignore configMaps does not block Secrets",
        ),
    ];
    let bases_a = baselines(&ns_a, &cases_a).await;
    let bases_b = baselines(&ns_b, &cases_b).await;
    for ns in [&ns_a, &ns_b] {
        set_cm(ns, "app-cm", "k", "v1").await;
        set_secret(ns, "app-secret", "k", "v1").await;
    }
    let (mut fa, fb) = tokio::join!(
        verify(&ns_a, &cases_a, &bases_a),
        verify(&ns_b, &cases_b, &bases_b)
    );
    fa.extend(fb);
    check(fa, &[&kreload_a, &kreload_b]);
}

#[tokio::test]
async fn namespace_selector_and_namespaces_to_ignore_scope_the_watcher() {
    // This kreload's webhooks are not narrowed to our namespaces: run alone.
    let _alone = CLUSTER_WIDE.write().await;
    let client = client().await;
    let group = format!("g{:08x}", rand::random::<u32>());
    let watched = TestNamespace::with_labels(&client, "e2e-w-sel", &[("e2e-group", &group)]).await;
    let ignored =
        TestNamespace::with_labels(&client, "e2e-w-selign", &[("e2e-group", &group)]).await;
    let unlabeled = TestNamespace::new(&client, "e2e-w-selno").await;
    let all = [&watched, &ignored, &unlabeled];
    for ns in all {
        cm("app-cm").create(ns).await;
    }
    let selector = format!("e2e-group={group}");
    let webhook = format!("kreload-{}", watched.name);
    let kreload = Running(Kreload::start(&[
        "--namespace-selector",
        &selector,
        "--namespaces-to-ignore",
        &ignored.name,
        "--webhook-config-name",
        &webhook,
        "--log-level",
        "debug",
    ]));
    let auto = json!({"reloader.stakater.com/auto": "true"});
    for ns in all {
        create(ns, deploy("web", auto.clone(), env_from(&["app-cm"], &[]))).await;
    }
    let d = Kind::Deployment;
    let cases_watched = [rolls(d, "web", "namespace matches --namespace-selector")];
    let cases_ignored = [keeps(d, "web", "namespace in --namespaces-to-ignore")];
    let cases_unlabeled = [keeps(
        d,
        "web",
        "namespace does not match --namespace-selector",
    )];
    let bw = baselines(&watched, &cases_watched).await;
    let bi = baselines(&ignored, &cases_ignored).await;
    let bu = baselines(&unlabeled, &cases_unlabeled).await;
    for ns in all {
        set_cm(ns, "app-cm", "k", "v1").await;
    }
    let (mut f, fi, fu) = tokio::join!(
        verify(&watched, &cases_watched, &bw),
        verify(&ignored, &cases_ignored, &bi),
        verify(&unlabeled, &cases_unlabeled, &bu)
    );
    f.extend(fi);
    f.extend(fu);
    check(f, &[&kreload]);
}

#[tokio::test]
async fn resource_label_selector_filters_configs() {
    let _shared = CLUSTER_WIDE.read().await;
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-w-label").await;
    cm("labeled-cm")
        .labels(json!({"e2e-reload": "yes"}))
        .create(&ns)
        .await;
    cm("unlabeled-cm").create(&ns).await;
    cm("other-label-cm")
        .labels(json!({"e2e-reload": "no"}))
        .create(&ns)
        .await;
    secret("labeled-secret")
        .labels(json!({"e2e-reload": "yes"}))
        .create(&ns)
        .await;
    let kreload = kreload_for(&[&ns], &["--resource-label-selector", "e2e-reload=yes"]);
    let auto = json!({"reloader.stakater.com/auto": "true"});
    create(
        &ns,
        deploy("labeled", auto.clone(), env_from(&["labeled-cm"], &[])),
    )
    .await;
    create(
        &ns,
        deploy(
            "labeled-secret",
            auto.clone(),
            env_from(&[], &["labeled-secret"]),
        ),
    )
    .await;
    create(
        &ns,
        deploy("unlabeled", auto.clone(), env_from(&["unlabeled-cm"], &[])),
    )
    .await;
    create(
        &ns,
        deploy(
            "other-label",
            auto.clone(),
            env_from(&["other-label-cm"], &[]),
        ),
    )
    .await;
    let d = Kind::Deployment;
    let cases = [
        rolls(d, "labeled", "ConfigMap matches --resource-label-selector"),
        rolls(
            d,
            "labeled-secret",
            "Secret matches --resource-label-selector",
        ),
        keeps(d, "unlabeled", "ConfigMap without the label"),
        keeps(
            d,
            "other-label",
            "ConfigMap with the label key but another value",
        ),
    ];
    let bases = baselines(&ns, &cases).await;
    for name in ["labeled-cm", "unlabeled-cm", "other-label-cm"] {
        set_cm(&ns, name, "k", "v1").await;
    }
    set_secret(&ns, "labeled-secret", "k", "v1").await;
    check(verify(&ns, &cases, &bases).await, &[&kreload]);
}

#[tokio::test]
async fn reload_on_create_and_on_delete_only_with_their_flags() {
    let _shared = CLUSTER_WIDE.read().await;
    let client = client().await;
    let ns_on = TestNamespace::new(&client, "e2e-w-crdel-on").await;
    let ns_off = TestNamespace::new(&client, "e2e-w-crdel-off").await;
    for ns in [&ns_on, &ns_off] {
        cm("gone-cm").create(ns).await;
        secret("gone-secret").create(ns).await;
    }
    let kreload_on = kreload_for(&[&ns_on], &["--reload-on-create", "--reload-on-delete"]);
    let kreload_off = kreload_for(&[&ns_off], &[]);
    let auto = json!({"reloader.stakater.com/auto": "true"});
    for ns in [&ns_on, &ns_off] {
        create(
            ns,
            deploy(
                "later",
                json!({"configmap.reloader.stakater.com/reload": "later-cm"}),
                json!({}),
            ),
        )
        .await;
        create(
            ns,
            deploy(
                "gone",
                auto.clone(),
                json!({"containers": [{"name": "app", "image": IMAGE,
                "envFrom": [{"configMapRef": {"name": "gone-cm", "optional": true}}]}]}),
            ),
        )
        .await;
        create(
            ns,
            deploy(
                "gone-secret",
                auto.clone(),
                json!({"containers": [{"name": "app", "image": IMAGE,
                "envFrom": [{"secretRef": {"name": "gone-secret", "optional": true}}]}]}),
            ),
        )
        .await;
    }
    let d = Kind::Deployment;
    let cases_on = [
        rolls(
            d,
            "later",
            "--reload-on-create: the listed ConfigMap was created",
        ),
        rolls(
            d,
            "gone",
            "--reload-on-delete: the referenced ConfigMap was deleted",
        ),
        rolls(
            d,
            "gone-secret",
            "--reload-on-delete: the referenced Secret was deleted",
        ),
    ];
    let cases_off = [
        keeps(
            d,
            "later",
            "no --reload-on-create: creating a listed ConfigMap rolls nothing",
        ),
        keeps(
            d,
            "gone",
            "no --reload-on-delete: deleting a ConfigMap rolls nothing",
        ),
        keeps(
            d,
            "gone-secret",
            "no --reload-on-delete: deleting a Secret rolls nothing",
        ),
    ];
    let bases_on = baselines(&ns_on, &cases_on).await;
    let bases_off = baselines(&ns_off, &cases_off).await;
    for ns in [&ns_on, &ns_off] {
        cm("later-cm").create(ns).await;
        ns.api::<ConfigMap>()
            .delete("gone-cm", &DeleteParams::default())
            .await
            .unwrap();
        ns.api::<Secret>()
            .delete("gone-secret", &DeleteParams::default())
            .await
            .unwrap();
    }
    let (mut f, f_off) = tokio::join!(
        verify(&ns_on, &cases_on, &bases_on),
        verify(&ns_off, &cases_off, &bases_off)
    );
    f.extend(f_off);
    check(f, &[&kreload_on, &kreload_off]);
}

#[tokio::test]
async fn statefulsets_daemonsets_cronjobs_and_rollouts_are_rolled() {
    let _shared = CLUSTER_WIDE.read().await;
    let client = client().await;
    // kreload discovers the CRD when it starts.
    ensure_rollout_crd(&client).await;
    let ns = TestNamespace::new(&client, "e2e-w-kinds").await;
    for name in ["sts-cm", "ds-cm", "cron-cm", "ro-cm", "rorestart-cm"] {
        cm(name).create(&ns).await;
    }
    let kreload = kreload_for(&[&ns], &[]);
    let auto = json!({"reloader.stakater.com/auto": "true"});
    let restart = json!({"reloader.stakater.com/auto": "true", "reloader.stakater.com/rollout-strategy": "restart"});
    for (kind, name, replicas, annotations, config) in [
        (Kind::StatefulSet, "sts", 2, &auto, "sts-cm"),
        (Kind::DaemonSet, "ds", 1, &auto, "ds-cm"),
        (Kind::CronJob, "cron", 1, &auto, "cron-cm"),
        (Kind::Rollout, "ro", 1, &auto, "ro-cm"),
        (Kind::Rollout, "ro-restart", 1, &restart, "rorestart-cm"),
    ] {
        let w = workload(
            kind,
            name,
            replicas,
            annotations.clone(),
            env_from(&[config], &[]),
        );
        create(&ns, w).await;
    }
    let cases = [
        rolls(Kind::StatefulSet, "sts", "StatefulSet with auto"),
        rolls(Kind::DaemonSet, "ds", "DaemonSet with auto"),
        rolls(
            Kind::CronJob,
            "cron",
            "CronJob with auto: the job template is stamped",
        ),
        rolls(
            Kind::Rollout,
            "ro",
            "Argo Rollout with auto (default strategy: template change)",
        ),
    ];
    let bases = baselines(&ns, &cases).await;
    let restart_at = || async {
        get_json(&ns, Kind::Rollout, "ro-restart")
            .await
            .and_then(|o| o.pointer("/spec/restartAt").cloned())
    };
    let restart_before = restart_at().await;
    assert_eq!(restart_before, None, "a new Rollout has no restartAt");
    for name in ["sts-cm", "ds-cm", "cron-cm", "ro-cm", "rorestart-cm"] {
        set_cm(&ns, name, "k", "v1").await;
    }
    let mut failures = verify(&ns, &cases, &bases).await;

    let jobs = ns
        .api::<Job>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    if !jobs.is_empty() {
        failures.push(format!(
            "CronJob cron: {} Job(s) started out of schedule: {:?}",
            jobs.len(),
            jobs.iter().map(|j| j.name_any()).collect::<Vec<_>>()
        ));
    }
    match try_wait_for(ROLL_TIMEOUT, || async { restart_at().await.filter(|v| !v.is_null()) }).await {
        None => failures.push(format!(
            "Rollout ro-restart (rollout-strategy: restart): spec.restartAt was not set within {ROLL_TIMEOUT:?}"
        )),
        Some(v) => {
            if v.as_str().is_none_or(|s| !s.contains('T')) {
                failures.push(format!("Rollout ro-restart: spec.restartAt {v} is not an RFC 3339 time"));
            }
        }
    }
    check(failures, &[&kreload]);
}

/// Waits until the Deployment's template carries the current hash (what the webhook stamps on a
/// fresh copy), differs from `before`, is rolled out, and its pods carry it. Returns the stamp.
async fn expect_converged(ns: &TestNamespace, name: &str, before: &Base) -> Result<String, String> {
    let reached = try_wait_for(ROLL_TIMEOUT, || async {
        let now = workload_stamp(ns, Kind::Deployment, name).await?;
        let fresh = fresh_stamp(ns, name).await?;
        (now == fresh && Some(&now) != before.stamp.as_ref()).then_some(now)
    })
    .await;
    let Some(stamp) = reached else {
        let now = workload_stamp(ns, Kind::Deployment, name).await;
        let fresh = fresh_stamp(ns, name).await;
        return Err(format!(
            "Deployment {name}: the template stamp did not reach the current hash within {ROLL_TIMEOUT:?} \
             (before {:?}, template now {now:?}, current hash {fresh:?})",
            before.stamp
        ));
    };
    try_wait_for(Duration::from_secs(90), || async {
        settled(ns, Kind::Deployment, name).await.then_some(())
    })
    .await
    .ok_or_else(|| format!("Deployment {name}: rollout did not complete within 90s"))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match pods_carry(ns, Kind::Deployment, name, &stamp).await {
            Ok(()) => return Ok(stamp),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(format!("Deployment {name}: {e}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[tokio::test]
async fn changes_are_coalesced_and_storms_are_damped() {
    let _shared = CLUSTER_WIDE.read().await;
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-w-coalesce").await;
    cm("pair-cm").create(&ns).await;
    secret("pair-secret").create(&ns).await;
    cm("burst-cm").create(&ns).await;
    let kreload = kreload_for(&[&ns], &[]);
    let auto = json!({"reloader.stakater.com/auto": "true"});
    create(
        &ns,
        deploy(
            "pair",
            auto.clone(),
            env_from(&["pair-cm"], &["pair-secret"]),
        ),
    )
    .await;
    create(
        &ns,
        deploy("burst", auto.clone(), env_from(&["burst-cm"], &[])),
    )
    .await;
    let d = Kind::Deployment;
    let cases = [
        rolls(d, "pair", "a ConfigMap and a Secret changed 200 ms apart"),
        rolls(d, "burst", "20 changes within 2 s"),
    ];
    let bases = baselines(&ns, &cases).await;
    let (pair_before, burst_before) = (&bases[0], &bases[1]);

    let pair = async {
        set_cm(&ns, "pair-cm", "k", "v1").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        set_secret(&ns, "pair-secret", "k", "v1").await;
    };
    let burst = async {
        let start = tokio::time::Instant::now();
        for i in 0..20u64 {
            tokio::time::sleep_until(start + Duration::from_millis(100 * i)).await;
            set_cm(&ns, "burst-cm", "k", &format!("burst-{i}")).await;
        }
        // How long the burst really took on this machine: the storm guard (10 s) allows one
        // more roll per interval the burst spans, so that decides the expectation below.
        start.elapsed()
    };
    let ((), burst_took) = tokio::join!(pair, burst);
    let max_sets = 2 + i64::try_from(burst_took.as_secs() / 10).unwrap_or(0);

    let (pair_stamp, burst_stamp) = tokio::join!(
        expect_converged(&ns, "pair", pair_before),
        expect_converged(&ns, "burst", burst_before)
    );
    // Any further (deferred) roll would show within the storm-guard interval.
    tokio::time::sleep(STORM_GUARD).await;

    let mut failures = Vec::new();
    match pair_stamp {
        Err(e) => failures.push(e),
        Ok(stamp) => {
            let now = baseline(&ns, d, "pair").await;
            if now.revisions != pair_before.revisions + 1 {
                failures.push(format!(
                    "Deployment pair: ConfigMap + Secret changed 200 ms apart gave {} new ReplicaSets; want exactly 1",
                    now.revisions as i64 - pair_before.revisions as i64
                ));
            }
            if now.stamp.as_ref() != Some(&stamp) {
                failures.push(format!(
                    "Deployment pair: stamp moved again: {stamp} -> {:?}",
                    now.stamp
                ));
            }
        }
    }
    match burst_stamp {
        Err(e) => failures.push(e),
        Ok(_) => {
            let now = baseline(&ns, d, "burst").await;
            let new_sets = now.revisions as i64 - burst_before.revisions as i64;
            eprintln!("burst: {new_sets} new ReplicaSet(s) for 20 changes in {burst_took:?}");
            if !(1..=max_sets).contains(&new_sets) {
                failures.push(format!(
                    "Deployment burst: 20 changes in {burst_took:?} gave {new_sets} new ReplicaSets; want 1 to {max_sets} (the storm guard allows one roll per 10 s)"
                ));
            }
            let fresh = fresh_stamp(&ns, "burst").await;
            if now.stamp != fresh {
                failures.push(format!(
                    "Deployment burst: final template stamp {:?} is not the current hash {fresh:?} (last change lost?)",
                    now.stamp
                ));
            }
            if let Some(s) = &now.stamp
                && let Err(e) = pods_carry(&ns, d, "burst", s).await
            {
                failures.push(format!("Deployment burst: final pods: {e}"));
            }
        }
    }
    check(failures, &[&kreload]);
}

#[tokio::test]
async fn restart_rolls_only_what_changed_while_down() {
    let _shared = CLUSTER_WIDE.read().await;
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-w-restart").await;
    cm("app-cm").create(&ns).await;
    cm("late-cm").create(&ns).await;
    let auto = json!({"reloader.stakater.com/auto": "true"});
    let d = Kind::Deployment;

    let first = kreload_for(&[&ns], &[]);
    create(&ns, deploy("web", auto.clone(), env_from(&["app-cm"], &[]))).await;
    let web = [rolls(d, "web", "")];
    let base = baselines(&ns, &web).await.remove(0);
    assert!(
        base.stamp.is_some(),
        "the webhook stamps an opted-in Deployment at CREATE"
    );

    // Restart with no change in between: nothing rolls. (A graceful restart: SIGTERM. If kreload
    // does not exit, `terminate` kills it after 20 s; that is reported, and the test goes on.)
    let mut failures = Vec::new();
    if first.terminate().is_none() {
        failures.push(format!(
            "kreload did not exit within 20 s of SIGTERM (killed); log: {}",
            first.log.display()
        ));
    }
    let second = kreload_for(&[&ns], &[]);
    tokio::time::sleep(SETTLE).await;
    if let Err(e) = expect_unchanged(&ns, d, "web", &base).await {
        panic!(
            "a restart without any change rolled a workload: {e}\nlogs: {} {}",
            first.log.display(),
            second.log.display()
        );
    }

    // Crash, change the config while down, create an (unstamped) workload while down, start again.
    second.stop();
    set_cm(&ns, "app-cm", "k", "changed-while-down").await;
    create(
        &ns,
        deploy("late", auto.clone(), env_from(&["late-cm"], &[])),
    )
    .await;
    let late = [keeps(d, "late", "")];
    let late_base = baselines(&ns, &late).await.remove(0);
    let third = kreload_for(&[&ns], &[]);

    match expect_roll(&ns, d, "web", &base).await {
        Err(e) => failures.push(format!("{e} (a change made while kreload was down)")),
        Ok(stamp) => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let now = baseline(&ns, d, "web").await;
            if now.revisions != base.revisions + 1 || now.stamp.as_ref() != Some(&stamp) {
                failures.push(format!(
                    "Deployment web: want exactly one roll for the change made while down; revisions {} -> {}, stamp {stamp} -> {:?}",
                    base.revisions, now.revisions, now.stamp
                ));
            }
            let fresh = fresh_stamp(&ns, "web").await;
            if now.stamp != fresh {
                failures.push(format!(
                    "Deployment web: template stamp {:?} is not the current hash {fresh:?}",
                    now.stamp
                ));
            }
        }
    }
    if let Err(e) = expect_unchanged(&ns, d, "late", &late_base).await {
        failures.push(format!(
            "{e} (created unstamped while kreload was down; its config did not change, so start-up must leave it alone)"
        ));
    }
    check(failures, &[&first, &second, &third]);
}

async fn lease_holder(client: &kube::Client, name: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kreload");
    leases.get_opt(name).await.ok()??.spec?.holder_identity
}

/// Issue 10, item 10 (the failover test did not control whether the change was still pending
/// when the leader died): the leader has seen the change and holds it in a long coalescing
/// window when it is killed; the new leader rolls it exactly once, and so a later change.
#[tokio::test]
async fn leader_failover_rolls_each_change_exactly_once() {
    let _shared = CLUSTER_WIDE.read().await;
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-w-ha").await;
    cm("app-cm").create(&ns).await;
    let lease = format!("kreload-{}", ns.name);
    let lease_duration = Duration::from_secs(4);
    let start = |who: &str| {
        let identity = format!("{}-{who}", ns.name);
        let webhook = format!("kreload-{}-{who}", ns.name);
        Running(Kreload::start(&[
            "--namespaces",
            &ns.name,
            "--webhook-config-name",
            &webhook,
            "--enable-ha",
            "--lease-name",
            &lease,
            "--lease-duration",
            "4s",
            "--identity",
            &identity,
            "--coalesce-window",
            "6s",
            "--log-level",
            "debug",
        ]))
    };
    let a = start("a");
    let b = start("b");
    let ids = [format!("{}-a", ns.name), format!("{}-b", ns.name)];
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
    let base = baselines(&ns, &[rolls(d, "web", "")]).await.remove(0);

    let leader = wait_for(
        &format!("one of {ids:?} to hold Lease kreload/{lease}"),
        Duration::from_secs(30),
        || async {
            let h = lease_holder(&client, &lease).await?;
            ids.iter().position(|i| *i == h)
        },
    )
    .await;
    let (leader_k, survivor_k) = if leader == 0 { (&a, &b) } else { (&b, &a) };
    let survivor_id = ids[1 - leader].clone();
    let leader_id = ids[leader].clone();

    // A change the leader has seen (its watch counted it) and holds in its 6 s coalescing
    // window when it dies.
    let seen = scrape(leader_k).await;
    let config_events = [("kind", "ConfigMap")];
    set_cm(&ns, "app-cm", "k", "before-kill").await;
    wait_metric(
        leader_k,
        "kreload_watch_events_total",
        &config_events,
        Duration::from_secs(5),
        |v| v > seen.get("kreload_watch_events_total", &config_events),
    )
    .await
    .unwrap_or_else(|e| panic!("the leader did not see the change: {e}"));
    leader_k.stop();
    assert_eq!(
        workload_stamp(&ns, d, "web").await,
        base.stamp,
        "the change was still pending when the leader died"
    );
    let killed = tokio::time::Instant::now();
    let margin = Duration::from_secs(4);
    let took_over = try_wait_for(lease_duration + margin, || async {
        (lease_holder(&client, &lease).await.as_deref() == Some(survivor_id.as_str())).then_some(())
    })
    .await;
    let mut failures = Vec::new();
    if took_over.is_none() {
        failures.push(format!(
            "{survivor_id} did not take over Lease kreload/{lease} within {:?} of killing {leader_id} (holder now {:?})",
            lease_duration + margin,
            lease_holder(&client, &lease).await
        ));
    } else {
        eprintln!("takeover after {:?}", killed.elapsed());
    }

    match expect_roll(&ns, d, "web", &base).await {
        Err(e) => failures.push(format!(
            "{e} (change made just before the leader was killed)"
        )),
        Ok(first) => {
            let reloaded = events(&ns, "web", "Reloaded").await;
            let by: Vec<_> = reloaded
                .iter()
                .map(|e| e.reporting_instance.clone().unwrap_or_default())
                .collect();
            if by != [survivor_id.clone()] {
                failures.push(format!(
                    "the pending change: want one Reloaded Event, by the new leader {survivor_id}; have {:?}",
                    notes(&reloaded)
                ));
            }
            let after_first = Base {
                stamp: Some(first.clone()),
                revisions: base.revisions + 1,
            };
            // A change after the failover.
            set_cm(&ns, "app-cm", "k", "after-kill").await;
            match expect_roll(&ns, d, "web", &after_first).await {
                Err(e) => failures.push(format!("{e} (change made after the failover)")),
                Ok(second) => {
                    tokio::time::sleep(STORM_GUARD).await;
                    let now = baseline(&ns, d, "web").await;
                    if now.revisions != base.revisions + 2 {
                        failures.push(format!(
                            "Deployment web: two changes across a failover gave {} new ReplicaSets; want exactly 2",
                            now.revisions as i64 - base.revisions as i64
                        ));
                    }
                    let fresh = fresh_stamp(&ns, "web").await;
                    if now.stamp.as_ref() != Some(&second) || now.stamp != fresh {
                        failures.push(format!(
                            "Deployment web: final template stamp {:?}; second roll stamped {second}, current hash {fresh:?}",
                            now.stamp
                        ));
                    }
                }
            }
        }
    }
    // Clean up what the killed instance could not.
    survivor_k.terminate();
    let killed_webhook = format!("kreload-{leader_id}");
    let _ = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .delete(&killed_webhook, &DeleteParams::default())
        .await;
    let _ = Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .delete(&killed_webhook, &DeleteParams::default())
        .await;
    let _ = Api::<Lease>::namespaced(client.clone(), "kreload")
        .delete(&lease, &DeleteParams::default())
        .await;
    check(failures, &[&a, &b]);
}

#[tokio::test]
async fn walkthrough_nginx_search_match_rolls_on_configmap_edit() {
    let _shared = CLUSTER_WIDE.read().await;
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-w-nginx").await;
    cm("nginx-cm")
        .annotations(json!({"reloader.stakater.com/match": "true"}))
        .data(json!({"index.html": "<h1>v1</h1>"}))
        .create(&ns)
        .await;
    let kreload = kreload_for(&[&ns], &[]);
    create(
        &ns,
        workload(
            Kind::Deployment,
            "nginx",
            2,
            json!({"reloader.stakater.com/search": "true"}),
            json!({
                "containers": [{"name": "nginx", "image": "nginx:1.27",
                    "volumeMounts": [{"name": "cfg", "mountPath": "/data/cfg"}]}],
                "volumes": [{"name": "cfg", "configMap": {"name": "nginx-cm"}}]
            }),
        ),
    )
    .await;
    let d = Kind::Deployment;
    let cases = [rolls(
        d,
        "nginx",
        "search + match: the mounted ConfigMap was edited",
    )];
    let bases = baselines(&ns, &cases).await;
    set_cm(&ns, "nginx-cm", "index.html", "<h1>v2</h1>").await;
    let mut failures = verify(&ns, &cases, &bases).await;

    // The roll is kreload's patch, and it left an Event naming the config and the changed key.
    let deployment: Deployment = ns.api().get("nginx").await.unwrap();
    let managers: Vec<String> = deployment
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    if !managers.iter().any(|m| m == "kreload") {
        failures.push(format!(
            "Deployment nginx: no managedFields entry for field manager kreload (managers: {managers:?})"
        ));
    }
    let event = try_wait_for(Duration::from_secs(10), || async {
        ns.api::<Event>()
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| {
                e.involved_object.name.as_deref() == Some("nginx")
                    && e.involved_object.kind.as_deref() == Some("Deployment")
                    && e.reason.as_deref() == Some("Reloaded")
            })
    })
    .await;
    match event {
        None => failures.push("Deployment nginx: no Event with reason Reloaded".into()),
        Some(e) => {
            let message = e.message.unwrap_or_default();
            if !(message.contains("nginx-cm") && message.contains("index.html")) {
                failures.push(format!(
                    "Deployment nginx: the Reloaded Event does not name nginx-cm and key index.html: {message:?}"
                ));
            }
        }
    }
    check(failures, &[&kreload]);
}
