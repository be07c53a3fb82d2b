//! Names of configs (kind and name) and digests of their values: what every other part of the
//! core refers to a ConfigMap or Secret by.

use std::fmt;

use serde::Deserialize;

/// The two kinds of config a pod can consume.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigKind {
    ConfigMap,
    Secret,
}

impl ConfigKind {
    pub const ALL: [ConfigKind; 2] = [ConfigKind::ConfigMap, ConfigKind::Secret];

    /// The config kind an API group and kind name denote (both live in the core group).
    pub fn from_group_kind(group: &str, kind: &str) -> Option<Self> {
        if !group.is_empty() {
            return None;
        }
        Self::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ConfigKind::ConfigMap => "ConfigMap",
            ConfigKind::Secret => "Secret",
        }
    }
}

impl fmt::Display for ConfigKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A config in a namespace, named by kind and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigId {
    pub kind: ConfigKind,
    pub name: String,
}

impl ConfigId {
    pub fn new(kind: ConfigKind, name: impl Into<String>) -> Self {
        ConfigId {
            kind,
            name: name.into(),
        }
    }
}

impl fmt::Display for ConfigId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// SHA-256 of one config value. Only digests are kept in memory, never values; the Debug form
/// is redacted so a digest cannot reach a log line by accident.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ValueDigest(pub [u8; 32]);

impl ValueDigest {
    pub fn of(value: &[u8]) -> Self {
        use sha2::Digest;
        ValueDigest(sha2::Sha256::digest(value).into())
    }
}

impl fmt::Debug for ValueDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ValueDigest(..)")
    }
}

/// A value digested as it is deserialized: the value itself is dropped at once, so neither the
/// store nor the deserialized object ever holds config data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DigestedValue(pub ValueDigest);

impl<'de> Deserialize<'de> for DigestedValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Borrowed when the JSON has no escapes; owned (and dropped right here) when it has.
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        Ok(DigestedValue(ValueDigest::of(s.as_bytes())))
    }
}
