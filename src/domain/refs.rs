//! Which configs a pod spec consumes, at key precision.
//!
//! The types here are lean mirrors of the Kubernetes pod spec: they deserialize only the fields
//! that reference ConfigMaps and Secrets and skip everything else, so the admission path and the
//! workload index never build (or keep) a full `PodSpec`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer};

use crate::domain::config::{ConfigId, ConfigKind};

/// Treats an explicit JSON `null` like an absent field.
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct PodSpecRefs {
    #[serde(deserialize_with = "null_default")]
    pub containers: Vec<ContainerRefs>,
    #[serde(deserialize_with = "null_default")]
    pub init_containers: Vec<ContainerRefs>,
    #[serde(deserialize_with = "null_default")]
    pub volumes: Vec<VolumeRefs>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerRefs {
    #[serde(deserialize_with = "null_default")]
    pub env: Vec<EnvVarRefs>,
    #[serde(deserialize_with = "null_default")]
    pub env_from: Vec<EnvFromRefs>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct EnvVarRefs {
    #[serde(deserialize_with = "null_default")]
    pub value_from: Option<EnvVarSourceRefs>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct EnvVarSourceRefs {
    #[serde(deserialize_with = "null_default")]
    pub config_map_key_ref: Option<KeyRef>,
    #[serde(deserialize_with = "null_default")]
    pub secret_key_ref: Option<KeyRef>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct KeyRef {
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    #[serde(deserialize_with = "null_default")]
    pub key: String,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct EnvFromRefs {
    #[serde(deserialize_with = "null_default")]
    pub config_map_ref: Option<NameRef>,
    #[serde(deserialize_with = "null_default")]
    pub secret_ref: Option<NameRef>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct NameRef {
    #[serde(deserialize_with = "null_default")]
    pub name: String,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct VolumeRefs {
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    #[serde(deserialize_with = "null_default")]
    pub config_map: Option<ConfigMapSource>,
    #[serde(deserialize_with = "null_default")]
    pub secret: Option<SecretSource>,
    #[serde(deserialize_with = "null_default")]
    pub projected: Option<ProjectedSource>,
    /// A CSI volume: read only for Secrets Store CSI rolls, never for a trigger set.
    #[serde(deserialize_with = "lenient_csi")]
    pub csi: Option<CsiSource>,
}

/// A CSI volume of an unexpected shape (a custom resource's template that its API server does
/// not validate, say) reads as none: it must never make a pod spec unreadable, which would deny
/// the object or stop a watch.
fn lenient_csi<'de, D: Deserializer<'de>>(d: D) -> Result<Option<CsiSource>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(d)?;
    Ok(value.and_then(|v| serde_json::from_value(v).ok()))
}

/// A CSI volume's driver and attributes (the SecretProviderClass it mounts).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct CsiSource {
    #[serde(deserialize_with = "null_default")]
    pub driver: String,
    #[serde(deserialize_with = "null_default")]
    pub volume_attributes: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ConfigMapSource {
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    #[serde(deserialize_with = "null_default")]
    pub items: Vec<KeyToPath>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SecretSource {
    #[serde(deserialize_with = "null_default")]
    pub secret_name: String,
    #[serde(deserialize_with = "null_default")]
    pub items: Vec<KeyToPath>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ProjectedSource {
    #[serde(deserialize_with = "null_default")]
    pub sources: Vec<ProjectionRefs>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ProjectionRefs {
    #[serde(deserialize_with = "null_default")]
    pub config_map: Option<ConfigMapSource>,
    /// Present (whatever its content) in the service-account volume the API server injects.
    #[serde(deserialize_with = "null_default")]
    pub service_account_token: Option<serde::de::IgnoredAny>,
    #[serde(deserialize_with = "null_default")]
    pub secret: Option<ConfigMapSource>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct KeyToPath {
    #[serde(deserialize_with = "null_default")]
    pub key: String,
}

/// What a pod consumes of one config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Consumption {
    /// Every key (a whole-volume mount or `envFrom`).
    All,
    /// Only these keys (`items` or a key reference).
    Keys(BTreeSet<String>),
}

impl Consumption {
    fn merge(&mut self, other: Consumption) {
        match (self, other) {
            (Consumption::All, _) => {}
            (this, Consumption::All) => *this = Consumption::All,
            (Consumption::Keys(mine), Consumption::Keys(theirs)) => mine.extend(theirs),
        }
    }

    pub fn consumes(&self, key: &str) -> bool {
        match self {
            Consumption::All => true,
            Consumption::Keys(keys) => keys.contains(key),
        }
    }
}

/// Every config a pod spec consumes, with the keys it consumes.
pub type References = BTreeMap<ConfigId, Consumption>;

fn add(refs: &mut References, kind: ConfigKind, name: &str, consumption: Consumption) {
    // An unnamed reference is invalid and the API server rejects it; it consumes nothing.
    if name.is_empty() {
        return;
    }
    match refs.get_mut(&ConfigId {
        kind,
        name: name.to_owned(),
    }) {
        Some(existing) => existing.merge(consumption),
        None => {
            refs.insert(ConfigId::new(kind, name), consumption);
        }
    }
}

fn items_consumption(items: &[KeyToPath]) -> Consumption {
    if items.is_empty() {
        Consumption::All
    } else {
        Consumption::Keys(items.iter().map(|i| i.key.clone()).collect())
    }
}

impl VolumeRefs {
    /// The `kube-api-access-*` volume that the API server's ServiceAccount admission adds to
    /// every pod (token, `kube-root-ca.crt`, namespace). It is not in the workload's template, so
    /// counting it would make a pod's stamp differ from its template's; and the kubelet keeps it
    /// current itself, so a change to it never needs a roll.
    fn is_injected_service_account_volume(&self) -> bool {
        self.name.starts_with("kube-api-access-")
            && self
                .projected
                .as_ref()
                .is_some_and(|p| p.sources.iter().any(|s| s.service_account_token.is_some()))
    }
}

impl PodSpecRefs {
    /// The SecretProviderClasses this spec mounts through the Secrets Store CSI driver. Not
    /// part of [`Self::references`]: no stamp or trigger set includes them.
    pub fn csi_classes(&self) -> BTreeSet<String> {
        self.volumes
            .iter()
            .filter_map(|v| v.csi.as_ref())
            .filter(|c| c.driver == crate::domain::csi::DRIVER)
            .filter_map(|c| c.volume_attributes.get(crate::domain::csi::CLASS_ATTRIBUTE))
            .filter(|class| !class.is_empty())
            .cloned()
            .collect()
    }

    /// The configs this spec consumes (containers and init containers; volumes, projected
    /// sources, `envFrom`, `valueFrom`).
    pub fn references(&self) -> References {
        let mut refs = References::new();
        for c in self.containers.iter().chain(&self.init_containers) {
            for from in &c.env_from {
                if let Some(r) = &from.config_map_ref {
                    add(&mut refs, ConfigKind::ConfigMap, &r.name, Consumption::All);
                }
                if let Some(r) = &from.secret_ref {
                    add(&mut refs, ConfigKind::Secret, &r.name, Consumption::All);
                }
            }
            for var in &c.env {
                let Some(src) = &var.value_from else { continue };
                if let Some(r) = &src.config_map_key_ref {
                    let keys = Consumption::Keys(BTreeSet::from([r.key.clone()]));
                    add(&mut refs, ConfigKind::ConfigMap, &r.name, keys);
                }
                if let Some(r) = &src.secret_key_ref {
                    let keys = Consumption::Keys(BTreeSet::from([r.key.clone()]));
                    add(&mut refs, ConfigKind::Secret, &r.name, keys);
                }
            }
        }
        for v in self
            .volumes
            .iter()
            .filter(|v| !v.is_injected_service_account_volume())
        {
            if let Some(cm) = &v.config_map {
                add(
                    &mut refs,
                    ConfigKind::ConfigMap,
                    &cm.name,
                    items_consumption(&cm.items),
                );
            }
            if let Some(s) = &v.secret {
                add(
                    &mut refs,
                    ConfigKind::Secret,
                    &s.secret_name,
                    items_consumption(&s.items),
                );
            }
            for p in v.projected.iter().flat_map(|p| &p.sources) {
                if let Some(cm) = &p.config_map {
                    add(
                        &mut refs,
                        ConfigKind::ConfigMap,
                        &cm.name,
                        items_consumption(&cm.items),
                    );
                }
                if let Some(s) = &p.secret {
                    add(
                        &mut refs,
                        ConfigKind::Secret,
                        &s.name,
                        items_consumption(&s.items),
                    );
                }
            }
        }
        refs
    }
}

#[cfg(test)]
mod tests;
