//! The API client, and the HMAC key: created once, in a Secret in kreload's namespace, and read
//! at start. Replicas starting together converge on one key: whoever loses the create race reads
//! the winner's.

use std::collections::BTreeMap;

use anyhow::Context;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use rand::RngCore;

use crate::domain::annotations::{FIELD_MANAGER, HASH_KEY_DATA, HASH_KEY_SECRET};
use crate::domain::stamp::HashKey;

/// A client from `--kubeconfig`, else KUBECONFIG / ~/.kube/config / the in-cluster config.
pub async fn client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig found and not running in a cluster")?,
    };
    Ok(Client::try_from(config)?)
}

/// The user this client acts as (a SelfSubjectReview): kreload's own writes are told apart by
/// it. `None` when the API server does not say (kreload then treats no write as its own).
pub async fn own_user(client: &Client) -> Option<String> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    match api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
    {
        Ok(review) => review.status?.user_info?.username,
        Err(error) => {
            tracing::warn!(%error, "cannot tell which user kreload acts as (SelfSubjectReview); none of its writes will be told apart from others'");
            None
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read or create Secret {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: &'static str,
        source: kube::Error,
    },
    #[error("Secret {namespace}/{name} has no usable key in data.{field}: {reason}")]
    Unusable {
        namespace: String,
        name: &'static str,
        field: &'static str,
        reason: String,
    },
}

fn from_secret(namespace: &str, secret: &Secret) -> Result<HashKey, KeyError> {
    let unusable = |reason: String| KeyError::Unusable {
        namespace: namespace.to_owned(),
        name: HASH_KEY_SECRET,
        field: HASH_KEY_DATA,
        reason,
    };
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(HASH_KEY_DATA))
        .ok_or_else(|| unusable("missing".into()))?;
    HashKey::new(bytes.0.clone()).map_err(|e| unusable(e.to_string()))
}

/// Reads the key, which must exist (the CLI's read-only commands never create it).
pub async fn read_hash_key(client: Client, namespace: &str) -> Result<HashKey, KeyError> {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let secret = api
        .get(HASH_KEY_SECRET)
        .await
        .map_err(|source| KeyError::Api {
            namespace: namespace.to_owned(),
            name: HASH_KEY_SECRET,
            source,
        })?;
    from_secret(namespace, &secret)
}

/// Reads the key, creating it first if it does not exist.
pub async fn load_or_create(client: Client, namespace: &str) -> Result<HashKey, KeyError> {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let api_error = |source| KeyError::Api {
        namespace: namespace.to_owned(),
        name: HASH_KEY_SECRET,
        source,
    };
    if let Some(secret) = api.get_opt(HASH_KEY_SECRET).await.map_err(api_error)? {
        return from_secret(namespace, &secret);
    }
    let mut key = vec![0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(HASH_KEY_SECRET.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/name".to_owned(),
                "kreload".to_owned(),
            )])),
            ..Default::default()
        },
        immutable: Some(true),
        data: Some(BTreeMap::from([(
            HASH_KEY_DATA.to_owned(),
            ByteString(key),
        )])),
        ..Default::default()
    };
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..Default::default()
    };
    match api.create(&pp, &secret).await {
        Ok(created) => {
            tracing::info!(namespace, secret = HASH_KEY_SECRET, "created the hash key");
            from_secret(namespace, &created)
        }
        // Another replica created it first: use theirs.
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let secret = api.get(HASH_KEY_SECRET).await.map_err(api_error)?;
            from_secret(namespace, &secret)
        }
        Err(e) => Err(api_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_or_missing_keys_are_explained() {
        let mut s = Secret::default();
        assert!(
            from_secret("kreload", &s)
                .unwrap_err()
                .to_string()
                .contains("missing")
        );
        s.data = Some(BTreeMap::from([(
            HASH_KEY_DATA.to_owned(),
            ByteString(vec![1; 4]),
        )]));
        assert!(
            from_secret("kreload", &s)
                .unwrap_err()
                .to_string()
                .contains("at least 32 bytes")
        );
        s.data = Some(BTreeMap::from([(
            HASH_KEY_DATA.to_owned(),
            ByteString(vec![1; 32]),
        )]));
        assert!(from_secret("kreload", &s).is_ok());
    }
}
