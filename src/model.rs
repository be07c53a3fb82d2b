//! Small value types shared by the pure core.

use std::fmt;

/// The two kinds of config a pod can consume.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigKind {
    ConfigMap,
    Secret,
}

impl ConfigKind {
    pub const ALL: [ConfigKind; 2] = [ConfigKind::ConfigMap, ConfigKind::Secret];

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
