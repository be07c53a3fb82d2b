//! Self-managed certificates: kreload creates a CA and a serving certificate, keeps them in a
//! Secret in its namespace, writes the CA bundle into its webhook configurations, and rotates
//! before expiry. The previous CA stays in the bundle through a rotation, so the API server
//! trusts the old and the new serving certificate alike and no request fails.
//!
//! The CA's key is never kept: each rotation makes a new CA and a new certificate together.
//!
//! Replicas converge through the Secret (optimistic concurrency on its resourceVersion): one
//! writes new material, every replica reads it, publishes the bundle and then serves it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::admission::tls::{CertResolver, GeneratedCerts};
use crate::domain::annotations::FIELD_MANAGER;

/// Annotation on the Secret: when the current serving certificate (and its CA) expire.
const NOT_AFTER: &str = "kreload.dev/not-after";
/// Annotation on the Secret: when the previous CA, still in the bundle, expires.
const PREVIOUS_NOT_AFTER: &str = "kreload.dev/previous-ca-not-after";

#[derive(Clone, Debug)]
pub struct SelfManagedConfig {
    pub namespace: String,
    pub secret: String,
    /// DNS names and IP addresses of the serving certificate.
    pub names: Vec<String>,
    pub validity: Duration,
    /// Rotate when the certificate has less than this left.
    pub renew_before: Duration,
    pub check_every: Duration,
    /// The webhook configurations whose caBundle kreload keeps.
    pub webhook_config: String,
}

/// The material in the Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Material {
    ca: String,
    cert: String,
    key: String,
    not_after: OffsetDateTime,
    previous_ca: Option<(String, OffsetDateTime)>,
}

impl Material {
    fn bundle(&self, now: OffsetDateTime) -> String {
        let mut bundle = self.ca.clone();
        if let Some((prev, until)) = &self.previous_ca
            && *until > now
        {
            bundle.push_str(prev);
        }
        bundle
    }

    fn needs_renewal(&self, now: OffsetDateTime, renew_before: Duration) -> bool {
        self.not_after - renew_before <= now
    }

    fn from_secret(s: &Secret) -> Option<Material> {
        let data = s.data.as_ref()?;
        let text = |k: &str| {
            data.get(k)
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
        };
        let annotations = s.metadata.annotations.as_ref()?;
        let time = |k: &str| {
            annotations
                .get(k)
                .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        };
        Some(Material {
            ca: text("ca.crt")?,
            cert: text("tls.crt")?,
            key: text("tls.key")?,
            not_after: time(NOT_AFTER)?,
            previous_ca: text("ca-previous.crt").zip(time(PREVIOUS_NOT_AFTER)),
        })
    }

    fn to_secret(&self, config: &SelfManagedConfig, resource_version: Option<String>) -> Secret {
        let mut data = BTreeMap::from([
            (
                "ca.crt".to_owned(),
                ByteString(self.ca.clone().into_bytes()),
            ),
            (
                "tls.crt".to_owned(),
                ByteString(self.cert.clone().into_bytes()),
            ),
            (
                "tls.key".to_owned(),
                ByteString(self.key.clone().into_bytes()),
            ),
        ]);
        let fmt = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
        let mut annotations = BTreeMap::from([(NOT_AFTER.to_owned(), fmt(self.not_after))]);
        if let Some((prev, until)) = &self.previous_ca {
            data.insert(
                "ca-previous.crt".into(),
                ByteString(prev.clone().into_bytes()),
            );
            annotations.insert(PREVIOUS_NOT_AFTER.into(), fmt(*until));
        }
        Secret {
            metadata: ObjectMeta {
                name: Some(config.secret.clone()),
                namespace: Some(config.namespace.clone()),
                annotations: Some(annotations),
                resource_version,
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(data),
            ..Default::default()
        }
    }

    /// Fresh material; the CA it replaces (if still valid) stays in the bundle.
    fn generate(
        config: &SelfManagedConfig,
        replacing: Option<&Material>,
        now: OffsetDateTime,
    ) -> anyhow::Result<Material> {
        let certs = GeneratedCerts::generate(&config.names, config.validity)?;
        Ok(Material {
            ca: certs.ca_pem,
            cert: certs.cert_pem,
            key: certs.key_pem,
            not_after: now + config.validity,
            previous_ca: replacing
                .filter(|m| m.not_after > now)
                .map(|m| (m.ca.clone(), m.not_after)),
        })
    }
}

pub struct SelfManaged {
    client: Client,
    config: SelfManagedConfig,
}

impl SelfManaged {
    pub fn new(client: Client, config: SelfManagedConfig) -> Self {
        SelfManaged { client, config }
    }

    /// The current material, creating or rotating it when needed. Concurrent replicas converge:
    /// a write that loses the race re-reads the winner's.
    async fn current(&self) -> anyhow::Result<(Material, String)> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.config.namespace);
        loop {
            let now = OffsetDateTime::now_utc();
            let existing = api.get_opt(&self.config.secret).await?;
            let material = existing.as_ref().and_then(Material::from_secret);
            if let (Some(s), Some(m)) = (&existing, &material)
                && !m.needs_renewal(now, self.config.renew_before)
            {
                let version = s.metadata.resource_version.clone().unwrap_or_default();
                return Ok((m.clone(), version));
            }
            let fresh = Material::generate(&self.config, material.as_ref(), now)?;
            let pp = PostParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..Default::default()
            };
            let written = match &existing {
                None => api.create(&pp, &fresh.to_secret(&self.config, None)).await,
                Some(s) => {
                    api.replace(
                        &self.config.secret,
                        &pp,
                        &fresh.to_secret(&self.config, s.metadata.resource_version.clone()),
                    )
                    .await
                }
            };
            match written {
                Ok(s) => {
                    tracing::info!(
                        secret = self.config.secret,
                        rotated = existing.is_some(),
                        "wrote a new serving certificate"
                    );
                    return Ok((fresh, s.metadata.resource_version.unwrap_or_default()));
                }
                // Another replica wrote first: use its material.
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Writes the CA bundle into both webhook configurations (only the caBundle fields).
    async fn publish_bundle(&self, bundle: &str) -> anyhow::Result<()> {
        let name = &self.config.webhook_config;
        let ca = ByteString(bundle.as_bytes().to_vec());
        let pp = PatchParams::apply("kreload-ca-bundle").force();
        let m_api: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        let v_api: Api<ValidatingWebhookConfiguration> = Api::all(self.client.clone());
        if let Some(m) = m_api.get_opt(name).await? {
            let webhooks: Vec<_> = m
                .webhooks
                .iter()
                .flatten()
                .map(|w| json!({"name": w.name, "clientConfig": {"caBundle": ca}}))
                .collect();
            let patch = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration", "metadata": {"name": name}, "webhooks": webhooks});
            m_api.patch(name, &pp, &Patch::Apply(&patch)).await?;
        }
        if let Some(v) = v_api.get_opt(name).await? {
            let webhooks: Vec<_> = v
                .webhooks
                .iter()
                .flatten()
                .map(|w| json!({"name": w.name, "clientConfig": {"caBundle": ca}}))
                .collect();
            let patch = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration", "metadata": {"name": name}, "webhooks": webhooks});
            v_api.patch(name, &pp, &Patch::Apply(&patch)).await?;
        }
        Ok(())
    }

    /// First material, bundle published; returns what to serve.
    pub async fn start(&self) -> anyhow::Result<Arc<CertResolver>> {
        let (material, _) = self.current().await?;
        self.publish_bundle(&material.bundle(OffsetDateTime::now_utc()))
            .await?;
        let key = crate::admission::tls::certified_key(
            material.cert.as_bytes(),
            material.key.as_bytes(),
            std::path::Path::new(&self.config.secret),
        )?;
        Ok(CertResolver::new(key))
    }

    /// Keeps the certificate current forever: rotates when due, and follows rotations made by
    /// other replicas. The bundle (old and new CA) is published before the new certificate is
    /// served, and the API server is given `propagation` to pick it up.
    pub async fn run(self, resolver: Arc<CertResolver>, propagation: Duration) {
        let mut served: Option<String> = None;
        loop {
            match self.current().await {
                Ok((material, version)) if served.as_deref() != Some(version.as_str()) => {
                    let switch = async {
                        self.publish_bundle(&material.bundle(OffsetDateTime::now_utc()))
                            .await?;
                        if served.is_some() {
                            tokio::time::sleep(propagation).await;
                        }
                        let key = crate::admission::tls::certified_key(
                            material.cert.as_bytes(),
                            material.key.as_bytes(),
                            std::path::Path::new(&self.config.secret),
                        )?;
                        resolver.swap(key);
                        anyhow::Ok(())
                    };
                    match switch.await {
                        Ok(()) => {
                            if served.is_some() {
                                tracing::info!("serving the rotated certificate");
                            }
                            served = Some(version);
                        }
                        Err(error) => {
                            tracing::warn!(%error, "could not switch to the new certificate; will retry")
                        }
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "could not read or rotate the serving certificate; will retry")
                }
            }
            tokio::time::sleep(self.config.check_every).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SelfManagedConfig {
        SelfManagedConfig {
            namespace: "kreload".into(),
            secret: "kreload-webhook-tls".into(),
            names: vec!["kreload.kreload.svc".into()],
            validity: Duration::from_secs(3600),
            renew_before: Duration::from_secs(600),
            check_every: Duration::from_secs(60),
            webhook_config: "kreload".into(),
        }
    }

    #[test]
    fn material_round_trips_through_the_secret() {
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let first = Material::generate(&config(), None, now).unwrap();
        assert_eq!(
            Material::from_secret(&first.to_secret(&config(), None)),
            Some(first.clone())
        );
        let second = Material::generate(&config(), Some(&first), now).unwrap();
        assert_eq!(
            Material::from_secret(&second.to_secret(&config(), None)),
            Some(second)
        );
    }

    #[test]
    fn rotation_keeps_the_previous_ca_until_it_expires() {
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let first = Material::generate(&config(), None, now).unwrap();
        assert!(!first.needs_renewal(now, config().renew_before));
        let later = now + Duration::from_secs(3000);
        assert!(first.needs_renewal(later, config().renew_before));
        let second = Material::generate(&config(), Some(&first), later).unwrap();
        let bundle = second.bundle(later);
        assert!(bundle.contains(&second.ca) && bundle.contains(&first.ca));
        // Once the old CA has expired, it leaves the bundle.
        assert!(
            !second
                .bundle(now + Duration::from_secs(3601))
                .contains(&first.ca)
        );
    }
}
