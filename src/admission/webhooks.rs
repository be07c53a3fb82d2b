//! The webhook configurations. `webhook-config/` is their one definition; local mode and the
//! self-managed certificate mode load it from there and change only the client config.

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, RuleWithOperations, ValidatingWebhookConfiguration,
    WebhookClientConfig,
};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::domain::annotations::{
    AnnotationNames, FIELD_MANAGER, MUTATE_PATH, MUTATING_WEBHOOK_CONFIG, RELOADER_DOMAIN,
    VALIDATE_PATH,
};
use crate::domain::workload::WorkloadKind;

pub const MUTATING_YAML: &str = include_str!("../../webhook-config/mutating.yaml");
pub const VALIDATING_YAML: &str = include_str!("../../webhook-config/validating.yaml");

/// The in-cluster configurations as shipped.
pub fn shipped() -> (MutatingWebhookConfiguration, ValidatingWebhookConfiguration) {
    (
        serde_yaml::from_str(MUTATING_YAML)
            .expect("webhook-config/mutating.yaml is valid (tested)"),
        serde_yaml::from_str(VALIDATING_YAML)
            .expect("webhook-config/validating.yaml is valid (tested)"),
    )
}

/// The shipped configurations pointed at `base_url` (e.g. `https://127.0.0.1:8443`) with `ca_pem`
/// as their CA bundle, and without the cert-manager annotation (kreload manages the bundle).
pub fn pointed_at(
    base_url: &str,
    ca_pem: &str,
) -> (MutatingWebhookConfiguration, ValidatingWebhookConfiguration) {
    local(base_url, ca_pem, MUTATING_WEBHOOK_CONFIG, &BTreeSet::new())
}

/// Local mode's configurations: pointed at `base_url`, named `name`, and (when `namespaces` is
/// not empty) sent only requests from those namespaces.
pub fn local(
    base_url: &str,
    ca_pem: &str,
    name: &str,
    namespaces: &BTreeSet<String>,
) -> (MutatingWebhookConfiguration, ValidatingWebhookConfiguration) {
    let (mut mutating, mut validating) = shipped();
    mutating.metadata.name = Some(name.to_owned());
    validating.metadata.name = Some(name.to_owned());
    if !namespaces.is_empty() {
        let selector = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "kubernetes.io/metadata.name".into(),
                operator: "In".into(),
                values: Some(namespaces.iter().cloned().collect()),
            }]),
            match_labels: None,
        };
        for w in mutating.webhooks.iter_mut().flatten() {
            w.namespace_selector = Some(selector.clone());
        }
        for w in validating.webhooks.iter_mut().flatten() {
            w.namespace_selector = Some(selector.clone());
        }
    }
    let client = |path: &str| WebhookClientConfig {
        url: Some(format!("{base_url}{path}")),
        service: None,
        ca_bundle: Some(ByteString(ca_pem.as_bytes().to_vec())),
    };
    for w in mutating.webhooks.iter_mut().flatten() {
        w.client_config = client(MUTATE_PATH);
    }
    for w in validating.webhooks.iter_mut().flatten() {
        w.client_config = client(VALIDATE_PATH);
    }
    mutating.metadata.annotations = None;
    validating.metadata.annotations = None;
    (mutating, validating)
}

/// The shipped validating webhook's `matchConditions` select objects by a key containing
/// [`RELOADER_DOMAIN`]; renamed annotations outside that domain must be selected too, or the
/// validator would never see them. Each such test becomes `(that test || k in [names])`, with
/// the names sorted, as the chart's template renders it (deploy/helm/kreload/templates/
/// webhooks.yaml). With Reloader's names nothing changes.
pub fn select_annotation_names(
    validating: &mut ValidatingWebhookConfiguration,
    names: &AnnotationNames,
) {
    let outside = names.outside_domain();
    if outside.is_empty() {
        return;
    }
    let test = format!("k.contains('{RELOADER_DOMAIN}')");
    let list = outside
        .iter()
        .map(|k| format!("'{k}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let widened = format!("({test} || k in [{list}])");
    for w in validating.webhooks.iter_mut().flatten() {
        for c in w.match_conditions.iter_mut().flatten() {
            c.expression = c.expression.replace(&test, &widened);
        }
    }
}

/// Adds a CREATE and UPDATE rule for each extra workload kind (`--extra-workload`) to every
/// webhook of both configurations, as the built-in kinds have (local mode; the chart renders the
/// same rules from its `extraWorkloads` value).
pub fn add_extra_kinds(
    mutating: &mut MutatingWebhookConfiguration,
    validating: &mut ValidatingWebhookConfiguration,
    kinds: &[WorkloadKind],
) {
    let rules: Vec<RuleWithOperations> = kinds
        .iter()
        .map(|k| RuleWithOperations {
            api_groups: Some(vec![k.group().to_owned()]),
            api_versions: Some(vec![k.version().to_owned()]),
            operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
            resources: Some(vec![k.plural().to_owned()]),
            scope: Some("Namespaced".into()),
        })
        .collect();
    if rules.is_empty() {
        return;
    }
    for w in mutating.webhooks.iter_mut().flatten() {
        w.rules.get_or_insert_with(Vec::new).extend(rules.clone());
    }
    for w in validating.webhooks.iter_mut().flatten() {
        w.rules.get_or_insert_with(Vec::new).extend(rules.clone());
    }
}

/// Creates or updates both configurations (server-side apply under kreload's field manager).
pub async fn apply(
    client: Client,
    mutating: &MutatingWebhookConfiguration,
    validating: &ValidatingWebhookConfiguration,
) -> Result<(), kube::Error> {
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let name = |m: &kube::api::ObjectMeta| m.name.clone().unwrap_or_default();
    let mut m = mutating.clone();
    m.metadata.managed_fields = None;
    let mut v = validating.clone();
    v.metadata.managed_fields = None;
    let m_api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    m_api
        .patch(
            &name(&m.metadata),
            &pp,
            &Patch::Apply(with_type_meta(&m, "MutatingWebhookConfiguration")),
        )
        .await?;
    let v_api: Api<ValidatingWebhookConfiguration> = Api::all(client);
    v_api
        .patch(
            &name(&v.metadata),
            &pp,
            &Patch::Apply(with_type_meta(&v, "ValidatingWebhookConfiguration")),
        )
        .await?;
    Ok(())
}

/// Deletes both configurations of that name (local mode, on exit); absent ones are fine.
pub async fn delete(client: Client, name: &str) {
    let dp = kube::api::DeleteParams::default();
    let m: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let v: Api<ValidatingWebhookConfiguration> = Api::all(client);
    for result in [
        m.delete(name, &dp).await.map(|_| ()),
        v.delete(name, &dp).await.map(|_| ()),
    ] {
        if let Err(error) = result {
            tracing::debug!(%error, name, "could not delete a webhook configuration");
        }
    }
}

fn with_type_meta<T: serde::Serialize>(obj: &T, kind: &str) -> serde_json::Value {
    let mut value = serde_json::to_value(obj).expect("serializable");
    value["apiVersion"] = "admissionregistration.k8s.io/v1".into();
    value["kind"] = kind.into();
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::annotations::{
        DEFAULT_NAMESPACE, MUTATING_WEBHOOK_NAME, SYSTEM_NAMESPACE, VALIDATING_WEBHOOK_NAME,
    };

    #[test]
    fn shipped_configs_parse_and_follow_the_spec() {
        let (m, v) = shipped();
        let mw = &m.webhooks.as_ref().unwrap()[0];
        assert_eq!(mw.name, MUTATING_WEBHOOK_NAME);
        assert_eq!(mw.failure_policy.as_deref(), Some("Ignore"));
        assert_eq!(mw.side_effects, "None");
        assert_eq!(mw.reinvocation_policy.as_deref(), Some("IfNeeded"));
        assert_eq!(
            mw.client_config.service.as_ref().unwrap().path.as_deref(),
            Some(MUTATE_PATH)
        );
        let vw = &v.webhooks.as_ref().unwrap()[0];
        assert_eq!(vw.name, VALIDATING_WEBHOOK_NAME);
        assert_eq!(
            vw.client_config.service.as_ref().unwrap().path.as_deref(),
            Some(VALIDATE_PATH)
        );
        assert_eq!(vw.match_conditions.as_ref().unwrap().len(), 1);
        for ns in [&mw.namespace_selector, &vw.namespace_selector] {
            let values = ns.as_ref().unwrap().match_expressions.as_ref().unwrap()[0]
                .values
                .clone()
                .unwrap();
            // The same exclusions as the namespace filter's (the one definition in Rust).
            assert_eq!(
                values,
                vec![SYSTEM_NAMESPACE.to_string(), DEFAULT_NAMESPACE.to_string()]
            );
        }
    }

    #[test]
    fn local_configs_point_at_the_url_with_the_ca() {
        let (m, v) = pointed_at("https://127.0.0.1:9443", "PEM");
        let mc = &m.webhooks.unwrap()[0].client_config;
        assert_eq!(mc.url.as_deref(), Some("https://127.0.0.1:9443/mutate"));
        assert!(mc.service.is_none());
        assert_eq!(mc.ca_bundle.as_ref().unwrap().0, b"PEM");
        assert_eq!(
            v.webhooks.unwrap()[0].client_config.url.as_deref(),
            Some("https://127.0.0.1:9443/validate")
        );
        assert!(m.metadata.annotations.is_none());
    }

    #[test]
    fn renamed_annotations_outside_reloaders_domain_are_selected_too() {
        let expression = |v: &ValidatingWebhookConfiguration| {
            v.webhooks.as_ref().unwrap()[0]
                .match_conditions
                .as_ref()
                .unwrap()[0]
                .expression
                .clone()
        };
        let (_, shipped_v) = shipped();
        let mut v = shipped_v.clone();
        select_annotation_names(&mut v, &AnnotationNames::default());
        assert_eq!(v, shipped_v, "Reloader's names: the shipped condition");

        let names = AnnotationNames {
            auto: "example.com/auto".into(),
            search: "example.com/search".into(),
            // In Reloader's domain: selected already.
            ignore: "reloader.stakater.com/skip".into(),
            ..AnnotationNames::default()
        };
        select_annotation_names(&mut v, &names);
        let got = expression(&v);
        let widened = "(k.contains('reloader.stakater.com') || k in ['example.com/auto', 'example.com/search'])";
        // Object, pod template, CronJob's pod template.
        assert_eq!(got.matches(widened).count(), 3, "{got}");
        assert_eq!(
            got.replace(widened, "k.contains('reloader.stakater.com')"),
            expression(&shipped_v)
        );
    }

    #[test]
    fn local_configs_can_be_named_and_narrowed() {
        let only = BTreeSet::from(["team-a".to_string()]);
        let (m, v) = local("https://127.0.0.1:1", "PEM", "kreload-test", &only);
        assert_eq!(m.metadata.name.as_deref(), Some("kreload-test"));
        assert_eq!(v.metadata.name.as_deref(), Some("kreload-test"));
        let sel = m.webhooks.unwrap()[0].namespace_selector.clone().unwrap();
        let req = &sel.match_expressions.unwrap()[0];
        assert_eq!(
            (req.operator.as_str(), req.values.clone().unwrap()),
            ("In", vec!["team-a".to_string()])
        );
    }
}
