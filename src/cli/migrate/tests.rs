use super::*;

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).expect("test YAML")
}

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Compares with the checked-in expected output; `KRELOAD_BLESS=1` rewrites it instead.
fn golden(name: &str, got: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    if std::env::var_os("KRELOAD_BLESS").is_some() {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        got,
        want,
        "differs from {} (KRELOAD_BLESS=1 rewrites it)",
        path.display()
    );
}

fn get<'a>(v: &'a Mapping, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v.get(path[0])?;
    for k in &path[1..] {
        cur = cur.get(k)?;
    }
    Some(cur)
}

fn note<'a>(m: &'a Migration, key: &str) -> &'a Note {
    m.notes
        .iter()
        .find(|n| n.key == key)
        .unwrap_or_else(|| panic!("no note for {key}: {:#?}", m.notes))
}

#[test]
fn reloaders_defaults_keep_kreloads_defaults_but_rollouts_and_deployment_configs() {
    let m = migrate(&yaml(&fixture("reloader-values-default.yaml")), None).unwrap();
    // Reloader left Argo Rollouts and DeploymentConfigs alone unless told; so does the migrated
    // kreload.
    assert_eq!(
        serde_yaml::to_string(&m.values).unwrap(),
        "ignoredWorkloadTypes:\n- rollouts\n- deploymentconfigs\n"
    );
    assert_eq!(note(&m, "reloader.isArgoRollouts").kind, NoteKind::Differs);
    assert_eq!(note(&m, "reloader.isOpenshift").kind, NoteKind::Differs);
    assert_eq!(note(&m, "reloader.enableHA").kind, NoteKind::Differs);
    // Every key of the defaults file is known: nothing else to say.
    assert_eq!(m.notes.len(), 3, "{:#?}", m.notes);
    golden(
        "reloader-values-default.kreload.yaml",
        &render(&m, "tests/fixtures/reloader-values-default.yaml"),
    );
    // An empty file is Reloader's defaults too.
    let empty = migrate(&yaml("{}"), None).unwrap();
    assert_eq!(empty.values, m.values);
}

#[test]
fn every_reloader_option_is_carried_or_explained() {
    let m = migrate(&yaml(&fixture("reloader-values-all.yaml")), None).unwrap();
    let v = &m.values;
    let s = |path: &[&str]| get(v, path).and_then(Value::as_str).map(str::to_owned);
    let b = |path: &[&str]| get(v, path).and_then(Value::as_bool);
    let list = |path: &[&str]| -> Vec<String> {
        get(v, path)
            .and_then(Value::as_sequence)
            .map(|l| l.iter().map(scalar).collect())
            .unwrap_or_default()
    };
    assert_eq!(b(&["autoReloadAll"]), Some(true));
    assert_eq!(b(&["reloadOnCreate"]), Some(true));
    assert_eq!(b(&["reloadOnDelete"]), Some(true));
    assert_eq!(list(&["resourcesToIgnore"]), ["secrets"]);
    // isArgoRollouts=true: Rollouts roll; the other two are ignored as in Reloader.
    assert_eq!(list(&["ignoredWorkloadTypes"]), ["jobs", "cronjobs"]);
    assert_eq!(
        list(&["namespacesToIgnore"]),
        ["kube-system", "kube-public"]
    );
    // Legacy selector forms are rewritten.
    assert_eq!(s(&["namespaceSelector"]).unwrap(), "team=platform,reloader");
    assert_eq!(s(&["resourceLabelSelector"]).unwrap(), "reload=enabled");
    assert_eq!(s(&["logFormat"]).unwrap(), "json");
    assert_eq!(s(&["logLevel"]).unwrap(), "warn");
    assert_eq!(b(&["metricsCountByNamespace"]), Some(true));
    assert_eq!(get(v, &["replicas"]).and_then(Value::as_u64), Some(3));
    assert_eq!(
        list(&["extraArgs"]),
        ["--webhook-url=https://hooks.example.com/reloader"]
    );
    // CSI integration is a chart value: it passes the flag and grants the RBAC it needs.
    assert_eq!(b(&["enableCSIIntegration"]), Some(true));
    // Custom annotation names become the chart's annotationNames (flags and matchConditions).
    for (key, name) in [
        ("auto", "my.company.com/auto"),
        ("configmapAuto", "my.company.com/configmap-auto"),
        ("secretAuto", "my.company.com/secret-auto"),
        ("search", "my.company.com/search"),
        ("match", "my.company.com/match"),
        ("configmapReload", "my.company.com/configmap"),
        ("secretReload", "my.company.com/secret"),
        ("pausePeriod", "my.company.com/pause-period"),
        ("pausedAt", "my.company.com/paused-at"),
    ] {
        assert_eq!(s(&["annotationNames", key]).as_deref(), Some(name), "{key}");
    }
    let env = get(v, &["extraEnv"]).and_then(Value::as_sequence).unwrap();
    let env_names: Vec<&str> = env.iter().filter_map(|e| e["name"].as_str()).collect();
    assert_eq!(
        env_names,
        [
            "ALERT_ON_RELOAD",
            "ALERT_SINK",
            "ALERT_ADDITIONAL_INFO",
            "NODE_NAME",
            "ALERT_WEBHOOK_PROXY"
        ]
    );
    assert_eq!(
        env[3]["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    assert_eq!(
        env[4]["valueFrom"]["secretKeyRef"]["name"],
        "reloader-alerts"
    );
    assert_eq!(env[4]["valueFrom"]["secretKeyRef"]["key"], "proxy_url");
    assert_eq!(
        list(&["imagePullSecrets"]).len(),
        2,
        "deploy-regcred and regcred"
    );
    assert_eq!(
        s(&["priorityClassName"]).unwrap(),
        "system-cluster-critical"
    );
    assert!(get(v, &["resources", "limits", "memory"]).is_some());
    assert!(get(v, &["nodeSelector", "kubernetes.io/os"]).is_some());
    assert!(get(v, &["affinity", "nodeAffinity"]).is_some());
    assert_eq!(list(&["tolerations"]).len(), 1);
    assert_eq!(s(&["podLabels", "team"]).unwrap(), "platform");
    assert!(get(v, &["podAnnotations"]).is_some());
    assert_eq!(
        get(v, &["podDisruptionBudget", "minAvailable"]).and_then(Value::as_u64),
        Some(1)
    );
    assert_eq!(b(&["serviceMonitor", "enabled"]), Some(true));
    assert_eq!(s(&["serviceMonitor", "namespace"]).unwrap(), "monitoring");
    assert_eq!(s(&["serviceMonitor", "scrapeTimeout"]).unwrap(), "10s");
    assert_eq!(b(&["serviceMonitor", "honorLabels"]), Some(false));
    assert_eq!(list(&["serviceMonitor", "metricRelabelings"]).len(), 1);
    assert_eq!(b(&["podMonitor", "enabled"]), Some(true));
    assert_eq!(s(&["podMonitor", "interval"]).unwrap(), "15s");
    assert_eq!(b(&["networkPolicy", "enabled"]), Some(true));
    assert!(get(v, &["networkPolicy", "metricsFrom"]).is_some());
    assert_eq!(
        get(v, &["networkPolicy", "egress"]).unwrap()[0]["ports"][0]["port"],
        443
    );

    // What did not carry over says why.
    for key in [
        "reloader.syncAfterRestart",
        "reloader.reloadStrategy",
        "reloader.enablePProf",
        "reloader.pprofAddr",
        "reloader.legacy.rbac",
        "reloader.rbac.enabled",
        "reloader.rbac.labels",
        "reloader.serviceAccount",
        "reloader.serviceAccount.labels",
        "reloader.serviceAccount.annotations",
        "reloader.service",
        "reloader.verticalPodAutoscaler",
        "reloader.deployment.securityContext",
        "reloader.deployment.containerSecurityContext",
        "reloader.deployment.topologySpreadConstraints",
        "reloader.deployment.annotations",
        "reloader.deployment.labels",
        "reloader.deployment.livenessProbe",
        "reloader.deployment.readinessProbe",
        "reloader.deployment.revisionHistoryLimit",
        "reloader.deployment.dnsConfig",
        "reloader.deployment.volumes",
        "reloader.deployment.volumeMounts",
        "reloader.deployment.gomaxprocsOverride",
        "reloader.deployment.gomemlimitOverride",
        "reloader.deployment.env.secret",
        "reloader.serviceMonitor.scheme",
        "reloader.serviceMonitor.tlsConfig",
        "reloader.serviceMonitor.bearerTokenFile",
        "reloader.serviceMonitor.targetLabels",
        "reloader.podMonitor.bearerTokenSecret",
        "reloader.podMonitor.podTargetLabels",
        "global.imageRegistry",
        "image.name",
        "image.repository",
        "image.digest",
        "image.pullPolicy",
        "kubernetes.host",
        "nameOverride",
        "fullnameOverride",
    ] {
        let n = note(&m, key);
        assert_eq!(n.kind, NoteKind::NoEquivalent, "{key}");
        assert!(!n.why.is_empty());
    }
    for key in [
        "reloader.logLevel",
        "reloader.matchLabels",
        "reloader.readOnlyRootFileSystem",
        "reloader.isOpenshift",
        "reloader.webhookUrl",
        "reloader.enableCSIIntegration",
        "reloader.deployment.env.existing.reloader-alerts",
    ] {
        assert_eq!(note(&m, key).kind, NoteKind::Differs, "{key}");
    }
    // No value of the file went unread.
    assert!(
        !m.notes.iter().any(|n| n.why.starts_with("not a value")),
        "{:#?}",
        m.notes
    );
    // The secret-bearing values are not repeated in the notes.
    let text = render(&m, "tests/fixtures/reloader-values-all.yaml");
    let comments: String = text.lines().filter(|l| l.starts_with('#')).collect();
    assert!(
        !comments.contains("hooks.example.com/services"),
        "{comments}"
    );
    golden("reloader-values-all.kreload.yaml", &text);
}

#[test]
fn namespace_scope() {
    // Single-namespace mode needs the namespace Reloader ran in.
    let v = yaml("reloader: {watchGlobally: false, namespaceSelector: 'a=b'}");
    let err = migrate(&v, None).unwrap_err();
    assert_eq!(err.key, "reloader.watchGlobally");
    assert!(err.why.contains("--reloader-namespace"), "{err}");
    let m = migrate(&v, Some("tools")).unwrap();
    assert_eq!(
        serde_yaml::to_string(&m.values["watchNamespaces"]).unwrap(),
        "- tools\n"
    );
    assert!(!m.values.contains_key("namespaceSelector"));
    assert_eq!(
        note(&m, "reloader.namespaceSelector").kind,
        NoteKind::NoEquivalent
    );
    // Scoped mode: the list (a comma string or a YAML list).
    for list in ["'a, b'", "[a, b]"] {
        let v = yaml(&format!(
            "reloader: {{watchGlobally: false, namespaces: {list}}}"
        ));
        let m = migrate(&v, None).unwrap();
        assert_eq!(
            serde_yaml::to_string(&m.values["watchNamespaces"]).unwrap(),
            "- a\n- b\n"
        );
    }
    // Reloader's chart refuses a list while watching globally; so does migrate.
    let v = yaml("reloader: {namespaces: [a]}");
    assert_eq!(migrate(&v, None).unwrap_err().key, "reloader.namespaces");
}

#[test]
fn both_config_kinds_ignored_and_bad_values() {
    let m = migrate(
        &yaml("reloader: {ignoreSecrets: true, ignoreConfigMaps: true}"),
        None,
    )
    .unwrap();
    assert_eq!(
        serde_yaml::to_string(&m.values["resourcesToIgnore"]).unwrap(),
        "- configMaps\n- secrets\n"
    );
    for (text, key) in [
        (
            "reloader: {reloadStrategy: restart}",
            "reloader.reloadStrategy",
        ),
        ("reloader: {logFormat: xml}", "reloader.logFormat"),
        ("reloader: {logLevel: loud}", "reloader.logLevel"),
        ("reloader: {autoReloadAll: maybe}", "reloader.autoReloadAll"),
        (
            "reloader: {namespaceSelector: 'a b c'}",
            "reloader.namespaceSelector",
        ),
        ("reloader: {webhookUrl: 'ftp://x'}", "reloader.webhookUrl"),
        (
            "reloader: {custom_annotations: {auto: 'Not A Key/x'}}",
            "reloader.custom_annotations.auto",
        ),
        ("reloader: [1]", "reloader"),
    ] {
        let err = migrate(&yaml(text), None).unwrap_err();
        assert_eq!(err.key, key, "{text}: {err}");
    }
}

#[test]
fn pdb_max_unavailable_and_unknown_keys_are_noted() {
    let m = migrate(
        &yaml(
            "reloader: {podDisruptionBudget: {enabled: true, maxUnavailable: 1}, futureOption: 1}\nextra: {}",
        ),
        None,
    )
    .unwrap();
    assert!(!m.values.contains_key("podDisruptionBudget"));
    assert_eq!(
        note(&m, "reloader.podDisruptionBudget.maxUnavailable").kind,
        NoteKind::NoEquivalent
    );
    assert!(
        note(&m, "reloader.futureOption")
            .why
            .starts_with("not a value")
    );
    assert!(note(&m, "extra").why.starts_with("not a value"));
}

#[test]
fn rendered_values_are_yaml_with_the_notes_as_comments() {
    let m = migrate(&yaml(&fixture("reloader-values-all.yaml")), None).unwrap();
    let text = render(&m, "x.yaml");
    let back: Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(back, Value::Mapping(m.values.clone()));
    assert!(
        text.contains("#   reloader.reloadStrategy: annotations: "),
        "{text}"
    );
    // Nothing to carry: still a valid (empty) values file.
    let empty = Migration::default();
    let back: Value = serde_yaml::from_str(&render(&empty, "x")).unwrap();
    assert_eq!(back, Value::Mapping(Mapping::new()));
}
