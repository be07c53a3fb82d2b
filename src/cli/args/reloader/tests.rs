use clap::Parser;

use super::*;
use crate::cli::args::{Cli, Command, LogFormat};

fn run_args(args: &[&str]) -> Result<RunArgs, clap::Error> {
    let mut argv = vec!["kreload", "run"];
    argv.extend(args);
    match Cli::try_parse_from(argv)?.command {
        Command::Run(a) => Ok(*a),
        _ => unreachable!(),
    }
}

fn parse(args: &[&str]) -> RunArgs {
    run_args(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// The flags Reloader's Helm chart renders with every option on (custom annotations and
/// --webhook-url as two arguments, as the chart writes them), plus Reloader's other flags.
const RELOADER_FLAGS: &[&str] = &[
    "--log-format=json",
    "--log-level=warning",
    "--resources-to-ignore=secrets",
    "--ignored-workload-types=jobs,cronjobs",
    "--namespaces-to-ignore=kube-system,kube-public",
    "--namespace-selector=team:platform,reloader=*",
    "--resource-label-selector=reload:enabled",
    "--configmap-annotation",
    "my.company.com/configmap",
    "--secret-annotation",
    "my.company.com/secret",
    "--auto-annotation",
    "my.company.com/auto",
    "--secret-auto-annotation",
    "my.company.com/secret-auto",
    "--configmap-auto-annotation",
    "my.company.com/configmap-auto",
    "--auto-search-annotation",
    "my.company.com/search",
    "--search-match-annotation",
    "my.company.com/match",
    "--pause-deployment-annotation",
    "my.company.com/pause-period",
    "--pause-deployment-time-annotation",
    "my.company.com/paused-at",
    "--ignore-annotation",
    "my.company.com/ignore",
    "--webhook-url",
    "https://hooks.example.com/services/T0/B0/SECRET",
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
    "--namespaces=team-a,team-b",
];

#[test]
fn reloaders_full_flag_set_parses() {
    let a = parse(RELOADER_FLAGS);
    assert_eq!(a.log_format, LogFormat::Json);
    assert_eq!(a.log_level, "warning");
    assert!(a.filters.auto_reload_all && a.reload_on_create && a.reload_on_delete && a.enable_ha);
    assert_eq!(a.filters.resources_to_ignore, ["secrets"]);
    assert_eq!(ignored(&a), ["cronjobs", "jobs"]);
    assert_eq!(
        a.filters.namespaces_to_ignore,
        ["kube-system", "kube-public"]
    );
    assert_eq!(a.filters.watch_namespaces(), ["team-a", "team-b"]);
    assert_eq!(
        a.filters.namespace_selector().unwrap(),
        "team=platform,reloader"
    );
    assert_eq!(
        a.filters.resource_label_selector().unwrap(),
        "reload=enabled"
    );
    let r = &a.reloader;
    assert_eq!(a.filters.is_argo_rollouts, Some(true));
    assert_eq!(r.reload_strategy, Some(ReloadStrategy::Annotations));
    assert_eq!(r.sync_after_restart, Some(true));
    assert_eq!(r.enable_pprof, Some(true));
    assert_eq!(r.pprof_addr.as_deref(), Some(":6060"));
    assert_eq!(r.enable_csi_integration, Some(true));
    assert_eq!(
        r.webhook_url.as_ref().unwrap().expose(),
        "https://hooks.example.com/services/T0/B0/SECRET"
    );
    let names = &r.annotation_names;
    assert_eq!(
        names.configmap_reload.as_deref(),
        Some("my.company.com/configmap")
    );
    assert_eq!(names.paused_at.as_deref(), Some("my.company.com/paused-at"));
    let read = names.names().unwrap();
    assert!(
        read.all().iter().all(|k| k.starts_with("my.company.com/")),
        "{read:?}"
    );

    // One notice per setting that kreload does not carry out as Reloader would.
    let notices = notices(&a);
    let settings: Vec<&str> = notices.iter().map(|n| n.setting).collect();
    assert_eq!(
        settings,
        [
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
            "--ignore-annotation",
            "--pause-deployment-annotation",
            "--pause-deployment-time-annotation",
            "--namespace-selector",
            "--resource-label-selector",
        ]
    );
    for n in &notices {
        assert!(n.message.starts_with(n.setting), "{n:?}");
        assert!(!n.message.contains("SECRET"), "a URL leaked: {n:?}");
    }
    // Nothing is left "not yet acting": CSI integration acts, and says how it differs.
    assert!(
        notices.iter().all(|n| !n.message.contains("not yet")),
        "{notices:?}"
    );
    let csi = notices
        .iter()
        .find(|n| n.setting == "--enable-csi-integration")
        .unwrap();
    assert_eq!(csi.level, NoticeLevel::Info);
    assert!(
        csi.message.contains("SecretProviderClassPodStatus"),
        "{csi:?}"
    );
    // Renamed annotations act: the notice says which name is read, and where the validating
    // webhook needs it.
    let notice = |s: &str| notices.iter().find(|n| n.setting == s).unwrap();
    let n = notice("--configmap-annotation");
    assert_eq!(n.level, NoticeLevel::Info);
    assert!(
        n.message.contains(
            "reads my.company.com/configmap instead of configmap.reloader.stakater.com/reload"
        ) && n.message.contains("matchConditions"),
        "{n:?}"
    );
    let n = notice("--pause-deployment-time-annotation");
    assert_eq!(n.level, NoticeLevel::Info);
    assert!(
        n.message.contains("pauses under my.company.com/paused-at")
            && !n.message.contains("matchConditions"),
        "{n:?}"
    );
}

#[test]
fn annotation_names_resolve_once_with_reloaders_defaults() {
    let a = parse(&["--auto-annotation=example.com/auto"]);
    let names = a.reloader.annotation_names.names().unwrap();
    assert_eq!(names.auto, "example.com/auto");
    assert_eq!(
        AnnotationNames {
            auto: crate::domain::annotations::AUTO.into(),
            ..names
        },
        AnnotationNames::default()
    );
    // A name in Reloader's domain reaches the validating webhook as shipped: no hint needed.
    let a = parse(&["--ignore-annotation=reloader.stakater.com/skip"]);
    assert!(!notices(&a)[0].message.contains("matchConditions"));
    // Two annotations under one name cannot be told apart: refused, naming both flags.
    let a = parse(&[
        "--auto-annotation=example.com/reload",
        "--configmap-annotation=example.com/reload",
    ]);
    let err = a.reloader.annotation_names.names().unwrap_err();
    assert!(
        err.contains("--auto-annotation and --configmap-annotation"),
        "{err}"
    );
    let a = parse(&["--ignore-annotation=kreload.dev/config-hash"]);
    assert!(a.reloader.annotation_names.names().is_err());
}

#[test]
fn go_booleans_and_bare_flags() {
    for (flag, want) in [
        ("--reload-on-create", true),
        ("--reload-on-create=true", true),
        ("--reload-on-create=True", true),
        ("--reload-on-create=1", true),
        ("--reload-on-create=t", true),
        ("--reload-on-create=false", false),
        ("--reload-on-create=FALSE", false),
        ("--reload-on-create=0", false),
        ("--reload-on-create=", false),
    ] {
        assert_eq!(parse(&[flag]).reload_on_create, want, "{flag}");
    }
    assert!(parse(&["--reload-on-create", "true"]).reload_on_create);
    assert!(!parse(&["--reload-on-create", "false"]).reload_on_create);
    assert!(parse(&["--enable-ha"]).enable_ha);
    assert!(parse(&["--auto-reload-all=T"]).filters.auto_reload_all);
    assert!(!parse(&[]).filters.auto_reload_all);
    let err = run_args(&["--reload-on-create=yes"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a boolean"), "{err}");
    // A bare boolean does not swallow the next flag.
    let a = parse(&["--enable-pprof", "--pprof-addr", ":7070"]);
    assert_eq!(a.reloader.enable_pprof, Some(true));
    assert_eq!(a.reloader.pprof_addr.as_deref(), Some(":7070"));
}

#[test]
fn lists_repeat_and_split_on_commas() {
    let a = parse(&[
        "--namespaces=a,b",
        "--namespaces",
        "c",
        "--namespaces-to-ignore=x",
        "--namespaces-to-ignore=y,z",
        "--ignored-workload-types=jobs",
        "--ignored-workload-types=cronjobs",
        "--namespace-selector=team:a",
        "--namespace-selector",
        "env in (prod,dev)",
        "--resource-label-selector=app=*",
    ]);
    assert_eq!(a.filters.watch_namespaces(), ["a", "b", "c"]);
    assert_eq!(a.filters.namespaces_to_ignore, ["x", "y", "z"]);
    assert_eq!(a.filters.ignored_workload_types, ["jobs", "cronjobs"]);
    assert_eq!(
        a.filters.namespace_selector().unwrap(),
        "team=a,env in (prod,dev)"
    );
    assert_eq!(a.filters.resource_label_selector().unwrap(), "app");
    assert_eq!(parse(&[]).filters.namespace_selector(), None);
}

#[test]
fn reloader_defaults_and_empty_log_format() {
    let a = parse(&["--log-format="]);
    assert_eq!(a.log_format, LogFormat::Text);
    assert!(notices(&a).is_empty());
    assert!(run_args(&["--log-format=xml"]).is_err());
    // Flags set to Reloader's defaults say nothing.
    let a = parse(&[
        "--auto-annotation=reloader.stakater.com/auto",
        "--sync-after-restart=false",
        "--enable-pprof=false",
        "--enable-csi-integration=false",
        "--is-Argo-Rollouts=true",
    ]);
    assert!(notices(&a).is_empty(), "{:?}", notices(&a));
}

#[test]
fn argo_rollouts_false_ignores_rollouts() {
    let a = parse(&["--is-Argo-Rollouts=false", "--ignored-workload-types=jobs"]);
    assert_eq!(ignored(&a), ["jobs", "rollouts"]);
    assert_eq!(notices(&a)[0].setting, "--is-Argo-Rollouts");
    assert!(ignored(&parse(&[])).is_empty());
}

#[test]
fn is_openshift_false_ignores_deployment_configs_and_auto_is_the_default() {
    let a = parse(&["--is-openshift=false", "--ignored-workload-types=jobs"]);
    assert_eq!(ignored(&a), ["deploymentconfigs", "jobs"]);
    assert_eq!(notices(&a)[0].setting, "--is-openshift");
    // Reloader's discovery (auto, empty) and true are what kreload does anyway: no notice.
    for flag in [
        "--is-openshift=auto",
        "--is-openshift=",
        "--is-openshift=True",
        "--is-openshift",
    ] {
        let a = parse(&[flag]);
        assert!(ignored(&a).is_empty(), "{flag}");
        assert!(notices(&a).is_empty(), "{flag}: {:?}", notices(&a));
    }
    assert_eq!(
        parse(&["--is-openshift=AUTO"]).filters.is_openshift,
        Some(OpenShift::Auto)
    );
    assert_eq!(
        parse(&["--is-openshift", "0"]).filters.is_openshift,
        Some(OpenShift::Off)
    );
    let a = parse(&[
        "--is-openshift=1",
        "--ignored-workload-types=deploymentconfigs",
    ]);
    assert!(
        notices(&a)[0].message.contains("no effect"),
        "{:?}",
        notices(&a)
    );
    let err = run_args(&["--is-openshift=maybe"]).unwrap_err().to_string();
    assert!(err.contains("true, false or auto"), "{err}");
}

#[test]
fn bad_values_get_clear_errors() {
    for (args, says) in [
        (&["--reload-strategy=restart"][..], "restart"),
        (&["--auto-annotation=Bad Key"][..], "not an annotation key"),
        (
            &["--configmap-annotation=Example.com/x"][..],
            "DNS subdomain",
        ),
        (&["--webhook-url=ftp://example.com/x"][..], "http"),
        (&["--webhook-url=not a url"][..], "URL"),
        (&["--alert-webhook-url=https:///path-only"][..], "URL"),
    ] {
        let err = run_args(args).unwrap_err().to_string();
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // The URL error never repeats the value (it may hold a token).
    let err = run_args(&["--webhook-url=ftp://host/TOKEN"])
        .unwrap_err()
        .to_string();
    assert!(!err.contains("TOKEN"), "{err}");
}

#[test]
fn annotation_keys() {
    for good in [
        "reloader.stakater.com/auto",
        "example.com/a_b.c-d",
        "plain",
        "a/b",
    ] {
        assert_eq!(annotation_key(good).as_deref(), Ok(good));
    }
    for bad in [
        "",
        "/x",
        "x/",
        "ex ample.com/x",
        "-x",
        "x-",
        "Example.com/x",
        &"a".repeat(64),
    ] {
        assert!(annotation_key(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn urls_are_redacted_in_debug_and_display() {
    let url = http_url("https://user:pw@hooks.example.com:8443/services/T0/SECRET?x=1").unwrap();
    assert_eq!(url.to_string(), "https://hooks.example.com:8443/…");
    assert!(!format!("{url:?}").contains("SECRET"));
    assert!(!format!("{url:?}").contains("pw"));
    let a = parse(&["--alert-webhook-url=https://hooks.example.com/SECRET"]);
    assert!(
        !format!("{a:?}").contains("SECRET"),
        "RunArgs' Debug leaks the URL"
    );
}

#[test]
fn alerts_and_their_notices() {
    let a = parse(&[
        "--alert-on-reload=true",
        "--alert-sink=Teams",
        "--alert-webhook-url=https://example.com/hook/SECRET",
        "--alert-webhook-proxy=http://proxy.internal:3128",
        "--alert-additional-info=prod",
    ]);
    let alerts = &a.reloader.alerts;
    assert_eq!(alerts.alert_on_reload, Some(true));
    assert_eq!(alerts.alert_sink.as_ref().unwrap().sink, AlertSink::Teams);
    assert_eq!(alerts.alert_additional_info.as_deref(), Some("prod"));
    let n = notices(&a);
    assert_eq!(
        n.iter().map(|n| n.setting).collect::<Vec<_>>(),
        ["ALERT_ON_RELOAD", "ALERT_SINK", "ALERT_WEBHOOK_PROXY"]
    );
    assert!(n.iter().all(|n| !n.message.contains("SECRET")));
    assert!(
        n[0].message.contains("each roll sends an alert"),
        "{:?}",
        n[0]
    );
    // Reloader reads an unknown sink as its plain webhook; so does kreload, and says so.
    let a = parse(&["--alert-sink=discord"]);
    let sink = a.reloader.alerts.alert_sink.as_ref().unwrap();
    assert_eq!((sink.sink, sink.recognized), (AlertSink::Webhook, false));
    assert!(notices(&a)[0].message.contains("read as webhook"));
    for (given, want) in [
        ("slack", AlertSink::Slack),
        ("gchat", AlertSink::GoogleChat),
        ("raw", AlertSink::Webhook),
        ("webhook", AlertSink::Webhook),
    ] {
        assert_eq!(alert_sink(given).unwrap().sink, want);
    }
}

#[test]
fn kubernetes_namespace_and_metrics_by_namespace() {
    let a = parse(&["--kubernetes-namespace=tools"]);
    assert_eq!(a.filters.watch_namespaces(), ["tools"]);
    assert!(
        notices(&a)[0]
            .message
            .contains("acting only in namespace tools")
    );
    let a = parse(&["--kubernetes-namespace=tools", "--namespaces=a"]);
    assert_eq!(a.filters.watch_namespaces(), ["a"]);
    assert!(notices(&a)[0].message.contains("not used"));
    assert!(
        parse(&["--metrics-count-by-namespace=enabled"])
            .reloader
            .count_by_namespace()
    );
    let a = parse(&["--metrics-count-by-namespace=true"]);
    assert!(!a.reloader.count_by_namespace());
    assert!(notices(&a)[0].message.contains("only the value enabled"));
}

#[test]
fn both_config_kinds_ignored_is_warned() {
    let a = parse(&["--resources-to-ignore=configMaps,secrets"]);
    let n = notices(&a);
    assert_eq!(n[0].setting, "--resources-to-ignore");
    assert_eq!(n[0].level, NoticeLevel::Warn);
}

#[test]
fn a_boolean_flag_never_takes_the_next_argument() {
    // As Go's flag package: `--auto-reload-all deployment/web` is the flag, then the workload.
    let cli = crate::cli::args::Cli::try_parse_from([
        "kreload",
        "explain",
        "--auto-reload-all",
        "deployment/web",
    ])
    .expect("parses");
    let crate::cli::args::Command::Explain(e) = cli.command else {
        panic!("explain")
    };
    assert_eq!(e.workload, "deployment/web");
    assert!(e.cluster.filters.auto_reload_all);
    assert!(!parse(&["--auto-reload-all=false"]).filters.auto_reload_all);
}

#[test]
fn explain_and_status_read_the_flags_that_decide_where_run_acts() {
    use crate::domain::workload::WorkloadKind;
    for command in ["explain", "status"] {
        let mut argv = vec![
            "kreload",
            command,
            "--is-Argo-Rollouts=false",
            "--is-openshift=false",
            "--kubernetes-namespace=tools",
        ];
        if command == "explain" {
            argv.push("rollout/web");
        }
        let cli = crate::cli::args::Cli::try_parse_from(&argv)
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        let filters = match cli.command {
            crate::cli::args::Command::Explain(e) => e.cluster.filters,
            crate::cli::args::Command::Status(s) => s.cluster.filters,
            _ => panic!("{command}"),
        };
        let ignored = filters.ignored_workload_types().unwrap();
        assert!(ignored.contains(&WorkloadKind::Rollout), "{command}");
        assert!(
            ignored.contains(&WorkloadKind::DeploymentConfig),
            "{command}"
        );
        assert_eq!(filters.watch_namespaces(), ["tools"], "{command}");
    }
}

/// The ignored workload kinds, by plural name, sorted.
fn ignored(a: &RunArgs) -> Vec<&'static str> {
    let mut names: Vec<&str> = a
        .filters
        .ignored_workload_types()
        .unwrap()
        .into_iter()
        .map(|k| k.plural())
        .collect();
    names.sort_unstable();
    names
}
