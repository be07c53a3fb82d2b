//! A drop-in for Reloader: kreload started with the command line and environment that Reloader's
//! own Helm chart (Reloader v1.4.21) renders with every option on runs: it syncs, serves
//! admission, calls `--webhook-url` instead of rolling (as Reloader), serves Reloader's metric
//! names, and says at start, once per setting, what it does instead of what Reloader would.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

/// The arguments Reloader's chart renders with every option on, in its order: each value set
/// (`reloader.logFormat=json`, `reloader.ignoreSecrets`, `ignoreJobs`, `ignoreCronJobs`,
/// `ignoreNamespaces`, `namespaceSelector`, `resourceLabelSelector`, every
/// `custom_annotations.*` and `webhookUrl` as two arguments each, `isArgoRollouts`,
/// `reloadOnCreate`, `reloadOnDelete`, `syncAfterRestart`, `reloadStrategy`, `enableHA`,
/// `autoReloadAll`, `enablePProf` with `pprofAddr`, `enableCSIIntegration`, and scoped
/// `namespaces`, which comes last here because the test fills it in). The selectors use
/// Reloader's legacy forms `key:value` and `key=*`. The test namespace carries the label
/// `kreload-e2e: "true"`.
const RELOADER_CHART_ARGS: &[&str] = &[
    "--log-format=json",
    "--log-level=debug",
    "--resources-to-ignore=secrets",
    "--ignored-workload-types=jobs,cronjobs",
    "--namespaces-to-ignore=kube-system,kube-public",
    "--namespace-selector=kreload-e2e:true",
    "--resource-label-selector=reload=*",
    "--configmap-annotation",
    "example.com/configmap",
    "--secret-annotation",
    "example.com/secret",
    "--auto-annotation",
    "example.com/auto",
    "--secret-auto-annotation",
    "example.com/secret-auto",
    "--configmap-auto-annotation",
    "example.com/configmap-auto",
    "--auto-search-annotation",
    "example.com/search",
    "--search-match-annotation",
    "example.com/match",
    "--pause-deployment-annotation",
    "example.com/pause-period",
    "--pause-deployment-time-annotation",
    "example.com/paused-at",
    "--webhook-url",
    "http://127.0.0.1:9/reloader/TOKEN-IN-PATH",
    "--is-Argo-Rollouts=true",
    "--reload-on-create=true",
    "--reload-on-delete=true",
    "--sync-after-restart=true",
    "--reload-strategy=annotations",
    "--enable-ha=true",
    "--auto-reload-all=true",
    "--enable-pprof",
    "--pprof-addr=:6060",
    "--enable-csi-integration=true",
];

/// The chart's environment with every option on: single-namespace mode (`KUBERNETES_NAMESPACE`,
/// filled in by the test), HA (`POD_NAME`, `POD_NAMESPACE`), `enableMetricsByNamespace`, and
/// the alert variables of `reloader.deployment.env`.
const RELOADER_CHART_ENV: &[(&str, &str)] = &[
    ("POD_NAME", "reloader-e2e-0"),
    ("POD_NAMESPACE", "kreload"),
    ("METRICS_COUNT_BY_NAMESPACE", "enabled"),
    ("ALERT_ON_RELOAD", "true"),
    ("ALERT_SINK", "slack"),
    (
        "ALERT_WEBHOOK_URL",
        "https://hooks.invalid/services/T0/B0/TOKEN-IN-PATH",
    ),
    ("ALERT_WEBHOOK_PROXY", "http://proxy.invalid:3128"),
    ("ALERT_ADDITIONAL_INFO", "e2e cluster"),
];

/// Every setting above that kreload carries out differently, or not yet, says so once at start.
const NOTICED: &[&str] = &[
    "--reload-strategy",
    "--sync-after-restart",
    "--enable-pprof",
    "--pprof-addr",
    "--enable-csi-integration",
    "--webhook-url",
    "--auto-annotation",
    "--configmap-auto-annotation",
    "--secret-auto-annotation",
    "--auto-search-annotation",
    "--search-match-annotation",
    "--configmap-annotation",
    "--secret-annotation",
    "--pause-deployment-annotation",
    "--pause-deployment-time-annotation",
    "ALERT_ON_RELOAD",
    "ALERT_SINK",
    "ALERT_WEBHOOK_PROXY",
    "KUBERNETES_NAMESPACE",
    "METRICS_COUNT_BY_NAMESPACE",
    "--namespace-selector",
    "--resource-label-selector",
];

#[tokio::test]
async fn reloaders_full_chart_command_line_runs() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-reloader-flags").await;
    let unique = ns.name.clone();

    let namespaces = format!("--namespaces={}", ns.name);
    let mut args: Vec<&str> = RELOADER_CHART_ARGS.to_vec();
    args.push(&namespaces);
    // kreload's own scoping, so that parallel runs do not meet: its webhook configurations and
    // its Lease get names of their own.
    args.extend(["--webhook-config-name", &unique, "--lease-name", &unique]);
    let mut env: Vec<(&str, &str)> = RELOADER_CHART_ENV.to_vec();
    env.push(("KUBERNETES_NAMESPACE", &ns.name));
    eprintln!(
        "kreload run --local ... {}\nenvironment: {env:?}",
        args.join(" ")
    );
    let kreload = Kreload::start_with_env(&args, &env);

    // Synced (ready) and leading (HA, its own Lease).
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let metrics = || async {
        http.get(format!("{}/metrics", kreload.health))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    };
    wait_for(
        "kreload to be ready and lead",
        Duration::from_secs(60),
        || async {
            let ready = http
                .get(format!("{}/readyz", kreload.health))
                .send()
                .await
                .ok()?;
            let text = metrics().await?;
            (ready.status().is_success() && text.lines().any(|l| l == "kreload_leader 1"))
                .then_some(())
        },
    )
    .await;

    // One notice per setting, as JSON lines (--log-format=json); no URL's path in the log.
    let log = kreload.log_text();
    for setting in NOTICED {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(&format!("\"setting\":\"{setting}\"")))
            .collect();
        assert_eq!(lines.len(), 1, "one notice for {setting}:\n{log}");
        assert!(lines[0].starts_with('{'), "JSON log: {}", lines[0]);
    }
    assert!(
        !log.contains("TOKEN-IN-PATH"),
        "a URL leaked into the log:\n{log}"
    );

    // A ConfigMap matching the legacy `reload=*` selector, consumed by a Deployment without any
    // annotation (--auto-reload-all): stamped at admission, rolled on a change.
    let cms: Api<ConfigMap> = ns.api();
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "app-config", "labels": {"reload": "yes"}},
            "data": {"level": "info"}
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    let deployments: Api<Deployment> = ns.api();
    let app = deployment(
        "app",
        1,
        json!({}),
        json!({"containers": [{"name": "app", "image": "registry.invalid/app:1",
            "envFrom": [{"configMapRef": {"name": "app-config"}}]}]}),
    );
    let created = deployments
        .create(&PostParams::default(), &app)
        .await
        .expect("create the Deployment");
    let first = template_stamp(&created).expect("stamped at admission (--auto-reload-all)");
    wait_rollout(&ns, "app").await;

    // With --webhook-url (Reloader's chart renders it when set), a change calls the URL
    // instead of rolling, as Reloader does: nothing listens on port 9, so the call is retried,
    // then counted as failed; the Deployment keeps its stamp.
    cms.patch(
        "app-config",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"level": "debug"}})),
    )
    .await
    .unwrap();
    let text = wait_for(
        "the --webhook-url call to be given up",
        Duration::from_secs(60),
        || async {
            let text = metrics().await?;
            text.lines()
                .any(|l| l == "kreload_alerts_failed_total{} 1")
                .then_some(text)
        },
    )
    .await;
    let d = deployments.get("app").await.unwrap();
    assert_eq!(
        template_stamp(&d),
        Some(first),
        "--webhook-url: nothing is rolled"
    );
    assert_eq!(replica_sets(&ns, "app").await.len(), 1);
    // Reloader's metric names are served (nothing rolled: 0); the per-namespace counter too
    // (METRICS_COUNT_BY_NAMESPACE=enabled).
    assert!(
        text.contains("reloader_reload_executed_total{success=\"true\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE reloader_reload_executed_total_by_namespace counter"),
        "{text}"
    );

    let status = kreload.terminate();
    assert!(
        status.is_some_and(|s| s.success()),
        "kreload exits cleanly: {status:?}"
    );
}
