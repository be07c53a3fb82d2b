//! Reloader's `--*-annotation` flags: kreload started with other annotation names reads those
//! names, and only those, everywhere: the mutating webhook stamps what they opt in, the watcher
//! rolls it (and notes its pause under the renamed paused-at), the validating webhook judges
//! them (local mode widens its matchConditions to names outside Reloader's domain), and `check`,
//! `explain` and `status` read them when given the same flags.

mod common;

use std::time::Duration;

use common::workloads::*;
use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

/// The renamed annotations, as Reloader's flags take them.
const NAMES: &[&str] = &[
    "--auto-annotation=example.com/auto",
    "--auto-search-annotation=example.com/search",
    "--search-match-annotation=example.com/match",
    "--pause-deployment-annotation=example.com/pause-period",
    "--pause-deployment-time-annotation=example.com/paused-at",
];

const DEFAULT_PAUSED_AT: &str = "deployment.reloader.stakater.com/paused-at";

fn kreload_cli(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    run_with_stdin(env!("CARGO_BIN_EXE_kreload"), args, stdin)
}

fn uses(cm: &str) -> Value {
    env_from(&[cm], &[])
}

fn paused(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.paused) == Some(true)
}

#[tokio::test]
async fn custom_annotation_names_are_read_everywhere_and_reloaders_are_not() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-names").await;
    let mut flags = NAMES.to_vec();
    flags.extend(["--min-roll-interval", "0s"]);
    let kreload = kreload_for(&[&ns], &flags);

    cm("app").create(&ns).await;
    cm("matched")
        .annotations(json!({"example.com/match": "true"}))
        .create(&ns)
        .await;
    // Reloader's `match` is no longer the match annotation.
    cm("unmatched")
        .annotations(json!({"reloader.stakater.com/match": "true"}))
        .create(&ns)
        .await;
    create(
        &ns,
        deploy(
            "custom",
            json!({"example.com/auto": "true", "example.com/pause-period": "3s"}),
            uses("app"),
        ),
    )
    .await;
    create(
        &ns,
        deploy(
            "reloaders",
            json!({"reloader.stakater.com/auto": "true"}),
            uses("app"),
        ),
    )
    .await;
    create(
        &ns,
        deploy(
            "searching",
            json!({"example.com/search": "true"}),
            env_from(&["matched", "unmatched"], &[]),
        ),
    )
    .await;

    // Stamped at admission: what the custom names opt in, and nothing Reloader's names do.
    let custom = baseline(&ns, Kind::Deployment, "custom").await;
    let searching = baseline(&ns, Kind::Deployment, "searching").await;
    let reloaders = baseline(&ns, Kind::Deployment, "reloaders").await;
    assert!(custom.stamp.is_some(), "example.com/auto opts in");
    assert!(searching.stamp.is_some(), "example.com/search opts in");
    assert_eq!(
        reloaders.stamp, None,
        "reloader.stakater.com/auto is not read under --auto-annotation"
    );
    for name in ["custom", "searching", "reloaders"] {
        wait_rollout(&ns, name).await;
    }

    // A change of `app` rolls `custom`, pausing it under the renamed paused-at; kreload then
    // resumes its own pause (read back under that name).
    set_cm(&ns, "app", "k", "v1").await;
    let api: Api<Deployment> = ns.api();
    let rolled = wait_for("custom to roll and pause", ROLL_TIMEOUT, || async {
        let d = api.get("custom").await.ok()?;
        (template_stamp(&d) != custom.stamp && paused(&d)).then_some(d)
    })
    .await;
    assert!(
        rolled.annotations().contains_key("example.com/paused-at")
            && !rolled.annotations().contains_key(DEFAULT_PAUSED_AT),
        "the pause is noted under example.com/paused-at: {:?}",
        rolled.annotations()
    );
    wait_for(
        "kreload to resume its pause after 3s",
        Duration::from_secs(30),
        || async {
            let d = api.get("custom").await.ok()?;
            (!paused(&d) && !d.annotations().contains_key("example.com/paused-at")).then_some(())
        },
    )
    .await;
    wait_rollout(&ns, "custom").await;
    tokio::time::sleep(SETTLE).await;
    expect_unchanged(&ns, Kind::Deployment, "reloaders", &reloaders)
        .await
        .unwrap();

    // Search rolls for the config with the renamed match only.
    set_cm(&ns, "unmatched", "k", "v1").await;
    tokio::time::sleep(SETTLE).await;
    expect_unchanged(&ns, Kind::Deployment, "searching", &searching)
        .await
        .unwrap();
    set_cm(&ns, "matched", "k", "v1").await;
    expect_roll(&ns, Kind::Deployment, "searching", &searching)
        .await
        .unwrap();

    // The validating webhook judges the renamed keys (local mode selects them in its
    // matchConditions, or with failurePolicy Ignore the bad value would pass) and names them.
    let bad: Deployment = serde_json::from_value(deploy(
        "bad",
        json!({"example.com/auto": "yes"}),
        uses("app"),
    ))
    .unwrap();
    let denied = api
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("a bad value under the renamed auto is denied");
    let message = short(&denied);
    assert!(
        message.contains("`example.com/auto: \"yes\"` is not a boolean"),
        "{message}"
    );
    // Reloader's name means nothing here: admitted, as Reloader started with the same flag
    // would ignore it.
    let ignored: Deployment = serde_json::from_value(deploy(
        "ignored",
        json!({"reloader.stakater.com/auto": "yes"}),
        uses("app"),
    ))
    .unwrap();
    api.create(&PostParams::default(), &ignored)
        .await
        .expect("reloader.stakater.com/auto is not judged under --auto-annotation");

    // `check`, `explain` and `status` read what kreload reads when given the same flags.
    let manifest = serde_yaml::to_string(&serde_json::to_value(&bad).unwrap()).unwrap();
    let mut check = vec!["check", "-f", "-"];
    check.extend(NAMES);
    let (ok, out, _) = kreload_cli(&check, Some(&manifest));
    assert!(!ok, "check with the flags finds the bad value");
    assert!(
        out.contains("Deployment/bad: error: `example.com/auto: \"yes\"` is not a boolean"),
        "{out}"
    );
    let (ok, _, summary) = kreload_cli(&["check", "-f", "-"], Some(&manifest));
    assert!(
        ok,
        "without the flags example.com/auto is no annotation of kreload's: {summary}"
    );

    let kubeconfig = kubeconfig_path();
    let kc = kubeconfig.to_str().unwrap();
    let cluster = ["-n", ns.name.as_str(), "--kubeconfig", kc];
    let explain = |with_names: bool| {
        let mut args = vec!["explain", "deployment/custom"];
        args.extend(cluster);
        if with_names {
            args.extend(NAMES);
        }
        let (ok, out, err) = kreload_cli(&args, None);
        assert!(ok, "{err}");
        out
    };
    let out = explain(true);
    assert!(
        out.contains("opted in: true")
            && out.contains("ConfigMap/app")
            && out.contains("step auto"),
        "{out}"
    );
    let out = explain(false);
    assert!(out.contains("opted in: false"), "{out}");

    let status = |with_names: bool| {
        let mut args = vec!["status"];
        args.extend(cluster);
        if with_names {
            args.extend(NAMES);
        }
        let (ok, out, err) = kreload_cli(&args, None);
        assert!(ok, "{err}");
        out
    };
    let row = |out: &str, workload: &str| {
        out.lines()
            .find(|l| l.contains(workload))
            .map(str::to_owned)
    };
    let out = status(true);
    let custom_row = row(&out, "deployment/custom ").unwrap_or_else(|| panic!("{out}"));
    assert!(
        custom_row.split_whitespace().nth(4) == Some("yes"),
        "custom is in sync after its roll:\n{out}"
    );
    assert!(row(&out, "deployment/reloaders ").is_none(), "{out}");
    let out = status(false);
    assert!(row(&out, "deployment/custom ").is_none(), "{out}");
    assert!(row(&out, "deployment/reloaders ").is_some(), "{out}");

    // Start-up said which names are read.
    let log = kreload.log_text();
    assert!(
        log.contains("--auto-annotation=example.com/auto: kreload reads example.com/auto instead of reloader.stakater.com/auto"),
        "{log}"
    );
}

#[test]
fn annotation_names_that_collide_are_refused_at_start() {
    let (ok, _, err) = kreload_cli(
        &[
            "run",
            "--local",
            "--auto-annotation=example.com/reload",
            "--configmap-annotation=example.com/reload",
        ],
        None,
    );
    assert!(!ok);
    assert!(
        err.contains(
            "--auto-annotation and --configmap-annotation both name the annotation example.com/reload"
        ),
        "{err}"
    );
}
