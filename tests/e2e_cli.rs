//! The CLI against the real control plane: `check` says what the webhook says, `status` finds
//! stale pods, `explain` names the rule step.

mod common;

use std::time::Duration;

use common::workloads::*;
use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

fn kreload_cli(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    run_with_stdin(kreload_bin(), args, stdin)
}

const AUTO_AND_SEARCH: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: conflicting
  annotations:
    reloader.stakater.com/auto: "true"
    reloader.stakater.com/search: "true"
spec:
  selector: {matchLabels: {app: conflicting}}
  template:
    metadata: {labels: {app: conflicting}}
    spec: {containers: [{name: app, image: registry.invalid/app:1}]}
"#;

#[tokio::test]
async fn check_says_what_the_webhook_says() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-cli-check").await;
    let _kreload = Kreload::start(&[
        "--namespaces",
        &ns.name,
        "--webhook-config-name",
        &format!("kreload-{}", ns.name),
    ]);
    let (ok, stdout, _) = kreload_cli(&["check", "-f", "-"], Some(AUTO_AND_SEARCH));
    assert!(!ok, "check exits non-zero on a violation");
    let (applied, _, denied) =
        kubectl(&["apply", "-n", &ns.name, "-f", "-"], Some(AUTO_AND_SEARCH));
    assert!(!applied);
    // The webhook's message is "kreload: <violation>"; check prints "<file>: <object>: error: <violation>".
    let violation = stdout
        .split(": error: ")
        .nth(1)
        .expect("check names the object")
        .trim();
    assert!(
        stdout.starts_with("-: Deployment/conflicting: error: "),
        "{stdout}"
    );
    assert!(
        denied.contains(&format!("kreload: {violation}")),
        "webhook: {denied}\ncheck: {stdout}"
    );
    let (ok, _, summary) = kreload_cli(
        &["check", "-f", "-"],
        Some(&AUTO_AND_SEARCH.replace("    reloader.stakater.com/search: \"true\"\n", "")),
    );
    assert!(ok, "{summary}");
    assert!(summary.contains("1 objects checked: 0 errors"), "{summary}");
}

fn stale_of(status: &str, workload: &str) -> (String, usize, usize) {
    let line = status
        .lines()
        .find(|l| l.contains(workload))
        .unwrap_or_else(|| panic!("{workload} missing from:\n{status}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    (
        cols[4].to_owned(),
        cols[5].parse().unwrap(),
        cols[6].parse().unwrap(),
    )
}

#[tokio::test]
async fn status_reports_stale_pods_until_the_roll_and_explain_names_the_step() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-cli-status").await;
    let webhook_name = format!("kreload-{}", ns.name);
    let kreload = Kreload::start(&[
        "--namespaces",
        &ns.name,
        "--webhook-config-name",
        &webhook_name,
    ]);
    let cms: Api<ConfigMap> = ns.api();
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "app"}, "data": {"k": "1"}})).unwrap(),
    )
    .await
    .unwrap();
    let api: Api<Deployment> = ns.api();
    let spec = json!({"containers": [{"name": "app", "image": "registry.invalid/app:1", "envFrom": [{"configMapRef": {"name": "app"}}]}]});
    api.create(
        &PostParams::default(),
        &deployment(
            "web",
            2,
            json!({"reloader.stakater.com/auto": "true"}),
            spec,
        ),
    )
    .await
    .unwrap();
    wait_rollout(&ns, "web").await;
    let kubeconfig = kubeconfig_path();
    let kc = kubeconfig.to_str().unwrap();
    let status = || kreload_cli(&["status", "-n", &ns.name, "--kubeconfig", kc], None);
    let (ok, out, err) = status();
    assert!(ok, "{err}");
    assert_eq!(
        stale_of(&out, "deployment/web"),
        ("yes".into(), 2, 0),
        "{out}"
    );

    // While kreload is stopped (no rolling), a config change leaves both pods stale.
    kreload.stop();
    cms.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await
    .unwrap();
    let (_, out, _) = status();
    assert_eq!(
        stale_of(&out, "deployment/web"),
        ("no".into(), 2, 2),
        "{out}"
    );

    let (ok, explained, err) = kreload_cli(
        &[
            "explain",
            "deployment/web",
            "-n",
            &ns.name,
            "--kubeconfig",
            kc,
        ],
        None,
    );
    assert!(ok, "{err}");
    assert!(
        explained.contains("ConfigMap/app") && explained.contains("step auto"),
        "{explained}"
    );

    // A new kreload rolls what changed while it was down; then nothing is stale.
    let _kreload = Kreload::start(&[
        "--namespaces",
        &ns.name,
        "--webhook-config-name",
        &webhook_name,
    ]);
    wait_for(
        "the roll to leave no stale pod",
        Duration::from_secs(60),
        || async {
            let (_, out, _) = status();
            (stale_of(&out, "deployment/web") == ("yes".into(), 2, 0)).then_some(())
        },
    )
    .await;
}

/// The step `explain` names for `config` (e.g. `ConfigMap/app`), and whether it says it rolls.
fn explained_step(explained: &str, config: &str) -> (String, String) {
    let line = explained
        .lines()
        .find(|l| l.split_whitespace().next() == Some(config))
        .unwrap_or_else(|| panic!("{config} missing from explain:\n{explained}"));
    let (columns, step) = line
        .split_once(" step ")
        .unwrap_or_else(|| panic!("no step for {config}: {line}"));
    let step = step.split(':').next().unwrap_or_default();
    // CONFIG, CONSUMES (which may hold spaces), ROLLS.
    let rolls = columns.split_whitespace().last().unwrap_or_default();
    (step.to_owned(), rolls.to_owned())
}

#[tokio::test]
async fn explain_names_every_step_of_the_decision_rule() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-cli-explain").await;
    // Every config but `unlabelled` matches the resource label selector explain is run with.
    let labelled = json!({"explain": "yes"});
    cm("unlabelled").create(&ns).await;
    cm("ignored")
        .labels(labelled.clone())
        .annotations(json!({"reloader.stakater.com/ignore": "true"}))
        .create(&ns)
        .await;
    cm("excluded").labels(labelled.clone()).create(&ns).await;
    cm("extra-1").labels(labelled.clone()).create(&ns).await;
    cm("matched")
        .labels(labelled.clone())
        .annotations(json!({"reloader.stakater.com/match": "true"}))
        .create(&ns)
        .await;
    cm("plain").labels(labelled.clone()).create(&ns).await;
    secret("creds").labels(labelled).create(&ns).await;
    create(
        &ns,
        workload(
            Kind::Deployment,
            "web",
            0,
            json!({
                "reloader.stakater.com/search": "true",
                "configmap.reloader.stakater.com/auto": "true",
                "configmap.reloader.stakater.com/reload": "extra-.*",
                "configmaps.exclude.reloader.stakater.com/reload": "excluded",
            }),
            env_from(
                &["unlabelled", "ignored", "excluded", "matched", "plain"],
                &["creds"],
            ),
        ),
    )
    .await;

    let kubeconfig = kubeconfig_path();
    let kc = kubeconfig.to_str().unwrap();
    let explain = |flags: &[&str]| {
        let mut args = vec![
            "explain",
            "deployment/web",
            "-n",
            &ns.name,
            "--kubeconfig",
            kc,
        ];
        args.extend_from_slice(flags);
        let (ok, out, err) = kreload_cli(&args, None);
        assert!(ok, "kreload explain {flags:?} failed: {err}");
        out
    };
    let explained = explain(&["--resource-label-selector", "explain=yes"]);
    for (config, step, rolls) in [
        ("ConfigMap/unlabelled", "global_filter", "no"),
        ("ConfigMap/ignored", "ignored", "no"),
        ("ConfigMap/excluded", "excluded", "no"),
        ("ConfigMap/extra-1", "reload_list", "yes"),
        ("ConfigMap/matched", "search", "yes"),
        ("ConfigMap/plain", "auto", "yes"),
        ("Secret/creds", "not_opted_in", "no"),
    ] {
        assert_eq!(
            explained_step(&explained, config),
            (step.to_owned(), rolls.to_owned()),
            "{config}:\n{explained}"
        );
    }
    // The global filters that concern the workload or its namespace keep every config out.
    for flags in [
        ["--namespaces-to-ignore", ns.name.as_str()],
        ["--ignored-workload-types", "deployments"],
        // Reloader's single-namespace mode, as `run` reads it.
        ["--kubernetes-namespace", "elsewhere"],
    ] {
        let explained = explain(&flags);
        assert!(
            explained.contains("global filter: "),
            "{flags:?}:\n{explained}"
        );
        for config in ["ConfigMap/plain", "ConfigMap/extra-1", "Secret/creds"] {
            assert_eq!(
                explained_step(&explained, config).0,
                "global_filter",
                "{flags:?}, {config}:\n{explained}"
            );
        }
    }
}

#[test]
fn works_as_a_kubectl_plugin() {
    // kubectl runs `kubectl-kreload` from PATH for `kubectl kreload ...`.
    let dir = std::env::temp_dir().join(format!("kreload-plugin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_kreload"), dir.join("kubectl-kreload")).unwrap();
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/kubectl"),
    )
    .args(["kreload", "check", "-f", "-"])
    .env("PATH", path)
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .and_then(|mut c| {
        use std::io::Write;
        c.stdin
            .take()
            .unwrap()
            .write_all(AUTO_AND_SEARCH.as_bytes())?;
        c.wait_with_output()
    })
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Deployment/conflicting: error:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
