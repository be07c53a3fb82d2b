use super::*;
use proptest::prelude::*;
use serde_json::json;

fn refs_of(spec: serde_json::Value) -> References {
    serde_json::from_value::<PodSpecRefs>(spec)
        .unwrap()
        .references()
}

fn keys(k: &[&str]) -> Consumption {
    Consumption::Keys(k.iter().map(|s| s.to_string()).collect())
}

fn cm(name: &str) -> ConfigId {
    ConfigId::new(ConfigKind::ConfigMap, name)
}

fn secret(name: &str) -> ConfigId {
    ConfigId::new(ConfigKind::Secret, name)
}

#[test]
fn every_reference_style_is_found() {
    let refs = refs_of(json!({
        "initContainers": [{"name": "init", "envFrom": [{"secretRef": {"name": "init-secret"}}]}],
        "containers": [
            {"name": "a", "envFrom": [{"configMapRef": {"name": "env-from-cm"}}],
             "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "key-cm", "key": "k1"}}},
                     {"name": "Y", "valueFrom": {"secretKeyRef": {"name": "key-secret", "key": "password"}}},
                     {"name": "Z", "value": "plain"},
                     {"name": "F", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]},
            {"name": "b", "envFrom": [{"secretRef": {"name": "second-container-secret"}}]}
        ],
        "volumes": [
            {"name": "v1", "configMap": {"name": "vol-cm"}},
            {"name": "v2", "secret": {"secretName": "vol-secret", "items": [{"key": "tls.crt", "path": "c"}]}},
            {"name": "v3", "projected": {"sources": [
                {"configMap": {"name": "proj-cm", "items": [{"key": "a", "path": "a"}]}},
                {"secret": {"name": "proj-secret"}},
                {"serviceAccountToken": {"path": "token"}}
            ]}},
            {"name": "v4", "emptyDir": {}}
        ]
    }));
    let expected: References = [
        (secret("init-secret"), Consumption::All),
        (cm("env-from-cm"), Consumption::All),
        (cm("key-cm"), keys(&["k1"])),
        (secret("key-secret"), keys(&["password"])),
        (secret("second-container-secret"), Consumption::All),
        (cm("vol-cm"), Consumption::All),
        (secret("vol-secret"), keys(&["tls.crt"])),
        (cm("proj-cm"), keys(&["a"])),
        (secret("proj-secret"), Consumption::All),
    ]
    .into_iter()
    .collect();
    assert_eq!(refs, expected);
}

#[test]
fn key_references_merge_and_whole_references_win() {
    let refs = refs_of(json!({
        "containers": [{"env": [
            {"valueFrom": {"configMapKeyRef": {"name": "c", "key": "a"}}},
            {"valueFrom": {"configMapKeyRef": {"name": "c", "key": "b"}}},
            {"valueFrom": {"secretKeyRef": {"name": "s", "key": "a"}}}
        ]}],
        "volumes": [{"secret": {"secretName": "s"}}]
    }));
    assert_eq!(refs[&cm("c")], keys(&["a", "b"]));
    assert_eq!(refs[&secret("s")], Consumption::All);
}

#[test]
fn same_name_different_kinds_are_different_configs() {
    let refs = refs_of(json!({
        "containers": [{"envFrom": [{"configMapRef": {"name": "app"}}, {"secretRef": {"name": "app"}}]}]
    }));
    assert_eq!(refs.len(), 2);
}

#[test]
fn the_injected_service_account_volume_is_not_a_reference() {
    let injected = json!({"name": "kube-api-access-x7k2p", "projected": {"sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}
    ]}});
    assert!(refs_of(json!({"volumes": [injected]})).is_empty());
    // A user's own volume that projects kube-root-ca.crt is a reference like any other.
    let own = json!({"name": "ca", "projected": {"sources": [{"configMap": {"name": "kube-root-ca.crt"}}]}});
    assert_eq!(refs_of(json!({"volumes": [own]})).len(), 1);
}

#[test]
fn nulls_and_empty_specs_consume_nothing() {
    assert!(refs_of(json!({})).is_empty());
    assert!(
        refs_of(json!({"containers": null, "volumes": null, "initContainers": null})).is_empty()
    );
    assert!(
        refs_of(json!({"containers": [{"env": null, "envFrom": [{"configMapRef": null}]}]}))
            .is_empty()
    );
    assert!(refs_of(json!({"volumes": [{"configMap": {"name": ""}}]})).is_empty());
}

#[test]
fn consumption_answers_per_key() {
    assert!(Consumption::All.consumes("anything"));
    assert!(keys(&["a"]).consumes("a"));
    assert!(!keys(&["a"]).consumes("b"));
}

proptest! {
    #[test]
    fn arbitrary_json_never_panics(s in ".{0,200}") {
        let _ = serde_json::from_str::<PodSpecRefs>(&s).map(|p| p.references());
    }

    #[test]
    fn references_are_order_independent(names in proptest::collection::vec("[a-c]{1,2}", 0..8)) {
        let containers: Vec<_> = names.iter().map(|n| json!({"envFrom": [{"configMapRef": {"name": n}}]})).collect();
        let mut reversed = containers.clone();
        reversed.reverse();
        prop_assert_eq!(refs_of(json!({"containers": containers})), refs_of(json!({"containers": reversed})));
    }
}

#[test]
fn csi_classes_are_read_but_never_referenced() {
    let spec: PodSpecRefs = serde_json::from_value(json!({
        "volumes": [
            {"name": "a", "csi": {"driver": "secrets-store.csi.k8s.io", "volumeAttributes": {"secretProviderClass": "spc"}}},
            {"name": "b", "csi": {"driver": "other.csi.k8s.io", "volumeAttributes": {"secretProviderClass": "x"}}},
            {"name": "c", "csi": {"driver": "secrets-store.csi.k8s.io", "volumeAttributes": null}},
            {"name": "d", "csi": null}
        ]
    }))
    .unwrap();
    assert_eq!(spec.csi_classes(), BTreeSet::from(["spc".to_owned()]));
    assert!(spec.references().is_empty());
}

#[test]
fn a_csi_volume_of_an_unexpected_shape_reads_as_none() {
    // volumeAttributes values must be strings; a custom resource's template may not say so.
    let spec: PodSpecRefs = serde_json::from_value(json!({
        "volumes": [
            {"name": "odd", "csi": {"driver": "secrets-store.csi.k8s.io", "volumeAttributes": {"secretProviderClass": 3}}},
            {"name": "cfg", "configMap": {"name": "app"}}
        ],
        "containers": [{"name": "c", "volumeMounts": [{"name": "cfg", "mountPath": "/c"}]}]
    }))
    .expect("a pod spec with an odd CSI volume is still readable");
    assert!(spec.references().contains_key(&cm("app")));
}
