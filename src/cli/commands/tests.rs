use super::*;

#[test]
fn check_finds_violations_in_multi_document_yaml_and_lists() {
    let text = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: bad
  annotations:
    reloader.stakater.com/auto: "true"
    reloader.stakater.com/search: "true"
spec:
  template:
    spec: {containers: []}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cm, annotations: {reloader.stakater.com/match: "yes"}}
---
apiVersion: v1
kind: Service
metadata: {name: ignored}
---
apiVersion: v1
kind: List
items:
  - apiVersion: apps/v1
    kind: StatefulSet
    metadata: {name: fine, annotations: {reloader.stakater.com/auto: "true"}}
    spec: {template: {metadata: {annotations: {reloader.stakater.com/match: "true"}}}}
"#;
    let (findings, objects) = check_text(&AnnotationNames::default(), text).unwrap();
    assert_eq!(objects, 3);
    let errors: Vec<_> = findings
        .iter()
        .filter(|f| f.error)
        .map(|f| f.object.as_str())
        .collect();
    assert_eq!(errors, vec!["Deployment/bad", "ConfigMap/cm"]);
    let auto_search = &findings[0].message;
    assert!(
        auto_search.contains("reloader.stakater.com/auto")
            && auto_search.contains("reloader.stakater.com/search")
    );
    assert!(
        findings
            .iter()
            .any(|f| !f.error && f.object == "StatefulSet/fine"),
        "{findings:?}"
    );
}

#[test]
fn check_reads_the_annotation_names_it_is_given() {
    let text = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: custom
  annotations:
    example.com/auto: "yes"
spec: {template: {spec: {containers: []}}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: reloaders
  annotations:
    reloader.stakater.com/auto: "yes"
spec: {template: {spec: {containers: []}}}
"#;
    let custom = AnnotationNames {
        auto: "example.com/auto".into(),
        ..AnnotationNames::default()
    };
    let errors = |names: &AnnotationNames| -> Vec<String> {
        check_text(names, text)
            .unwrap()
            .0
            .into_iter()
            .filter(|f| f.error)
            .map(|f| format!("{}: {}", f.object, f.message))
            .collect()
    };
    let found = errors(&custom);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("Deployment/custom: `example.com/auto: \"yes\"` is not a boolean"),
        "{found:?}"
    );
    let found = errors(&AnnotationNames::default());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("Deployment/reloaders:"), "{found:?}");
}

#[test]
fn check_explains_unreadable_yaml() {
    assert!(check_text(&AnnotationNames::default(), "a: [unclosed").is_err());
}

#[test]
fn workload_arguments_take_kubectl_spellings() {
    assert_eq!(
        parse_workload_arg("deployment/web").unwrap(),
        (WorkloadKind::Deployment, "web".into())
    );
    assert_eq!(
        parse_workload_arg("deployments/web").unwrap().0,
        WorkloadKind::Deployment
    );
    assert_eq!(
        parse_workload_arg("CronJob/x").unwrap().0,
        WorkloadKind::CronJob
    );
    assert!(parse_workload_arg("web").is_err());
    assert!(parse_workload_arg("pod/web").is_err());
}

#[test]
fn status_table_aligns_columns() {
    let row = StatusRow {
        namespace: "a-long-namespace-name".into(),
        workload: "deployment/web".into(),
        triggers: "ConfigMap/app[k]".into(),
        template: Some("v1.k.aaaaaaaaaaaaaaaa".into()),
        current: "v1.k.bbbbbbbbbbbbbbbb".into(),
        pods: 3,
        stale: 2,
    };
    let text = render_status(&[row]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0].find("WORKLOAD"), lines[1].find("deployment/web"));
    assert!(lines[1].contains(" no ") && lines[1].ends_with("ConfigMap/app[k]"));
}

#[test]
fn stamps_are_shortened_for_tables() {
    assert_eq!(
        short(Some("v1.abcd1234.0123456789abcdef0123")),
        "v1.abcd1234.0123456789ab"
    );
    assert_eq!(short(None), "-");
}
