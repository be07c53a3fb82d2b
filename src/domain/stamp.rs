//! The trigger set's canonical encoding, its keyed hash, and the versioned stamp
//! `v2.<key-id>.<hex>` written to `kreload.dev/config-hash`.
//!
//! Recipe v2 hashes the namespace with the set, so equal Secret values under equal names in two
//! namespaces never give equal stamps (v1 did: anyone able to dry-run a pod in their own namespace
//! could test guesses of another namespace's Secret). A v1 stamp is an unknown baseline.

use std::collections::BTreeMap;
use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::config::{ConfigId, ConfigKind, ValueDigest};

/// Version of the encoding and hash recipe. A stamp of another version is an unknown baseline.
pub const STAMP_VERSION: &str = "v2";
const DOMAIN: &[u8] = b"kreload.dev/trigger-set/v2\0";

/// What a workload's trigger set holds of one config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigTrigger {
    /// The config is referenced but does not exist.
    Absent,
    /// The config exists: each relevant key with its value digest, or `None` where a referenced
    /// key is missing from the config.
    Present(BTreeMap<String, Option<ValueDigest>>),
}

/// Exactly the configs (at key precision) whose change would roll a workload.
pub type TriggerSet = BTreeMap<ConfigId, ConfigTrigger>;

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Length-prefixed, so no two different strings concatenate alike.
    out.extend_from_slice(&(s.len() as u64).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Writes the canonical encoding piece by piece, so that a caller can encode a trigger set from
/// borrowed data (the store's entries, a pod's references) without building a [`TriggerSet`].
/// [`encode`] is written with it too, so there is one encoding. The caller announces counts
/// before the items they count, in the set's order (configs by kind then name, keys by name).
pub struct Encoder {
    out: Vec<u8>,
    #[cfg(debug_assertions)]
    left: (usize, usize),
}

impl Encoder {
    /// Starts a set of `configs` configs.
    /// An encoding of a set of `configs` configs in `namespace`.
    pub fn new(namespace: &str, configs: usize, capacity: usize) -> Self {
        let mut out = Vec::with_capacity(DOMAIN.len() + 16 + namespace.len() + capacity);
        out.extend_from_slice(DOMAIN);
        put_str(&mut out, namespace);
        out.extend_from_slice(&(configs as u64).to_be_bytes());
        Encoder {
            out,
            #[cfg(debug_assertions)]
            left: (configs, 0),
        }
    }

    fn config(&mut self, kind: ConfigKind, name: &str) {
        #[cfg(debug_assertions)]
        {
            assert_eq!(self.left.1, 0, "keys of the previous config missing");
            self.left.0 -= 1;
        }
        self.out.push(match kind {
            ConfigKind::ConfigMap => b'C',
            ConfigKind::Secret => b'S',
        });
        put_str(&mut self.out, name);
    }

    /// A referenced config that does not exist.
    pub fn absent(&mut self, kind: ConfigKind, name: &str) {
        self.config(kind, name);
        self.out.push(0);
    }

    /// A config that exists, followed by exactly `keys` calls of [`Encoder::key`].
    pub fn present(&mut self, kind: ConfigKind, name: &str, keys: usize) {
        self.config(kind, name);
        self.out.push(1);
        self.out.extend_from_slice(&(keys as u64).to_be_bytes());
        // Name, length and digest: reserve once rather than grow key by key.
        self.out.reserve(keys * (8 + 16 + 1 + 32));
        #[cfg(debug_assertions)]
        {
            self.left.1 = keys;
        }
    }

    /// One key of the current config, with its value's digest (`None`: the key is missing).
    pub fn key(&mut self, key: &str, digest: Option<&ValueDigest>) {
        #[cfg(debug_assertions)]
        {
            self.left.1 -= 1;
        }
        put_str(&mut self.out, key);
        match digest {
            None => self.out.push(0),
            Some(d) => {
                self.out.push(1);
                self.out.extend_from_slice(&d.0);
            }
        }
    }

    pub fn finish(self) -> Vec<u8> {
        #[cfg(debug_assertions)]
        assert_eq!(self.left, (0, 0), "fewer configs or keys than announced");
        self.out
    }
}

/// Canonical, unambiguous encoding: a domain tag, then per config (in order) its kind, name and
/// presence, and per key its name and digest (or a missing marker). Every variable-length field is
/// length-prefixed and every list is counted, so distinct sets never encode alike.
pub fn encode(namespace: &str, set: &TriggerSet) -> Vec<u8> {
    let mut e = Encoder::new(namespace, set.len(), set.len() * 64);
    for (id, trigger) in set {
        match trigger {
            ConfigTrigger::Absent => e.absent(id.kind, &id.name),
            ConfigTrigger::Present(keys) => {
                e.present(id.kind, &id.name, keys.len());
                for (key, digest) in keys {
                    e.key(key, digest.as_ref());
                }
            }
        }
    }
    e.finish()
}

/// The HMAC key, with the id that names it in stamps.
#[derive(Clone)]
pub struct HashKey {
    /// The HMAC with the key already absorbed: cloned per stamp instead of re-keyed.
    mac: Hmac<Sha256>,
    id: String,
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the hash key must be at least 32 bytes, got {0}")]
pub struct KeyTooShort(pub usize);

impl HashKey {
    pub const MIN_LEN: usize = 32;

    pub fn new(key: Vec<u8>) -> Result<Self, KeyTooShort> {
        if key.len() < Self::MIN_LEN {
            return Err(KeyTooShort(key.len()));
        }
        // The id is itself keyed, so it says which key was used without revealing anything of it.
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
        mac.update(b"kreload.dev/key-id");
        let id = hex::encode(&mac.finalize().into_bytes()[..4]);
        let mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
        Ok(HashKey { mac, id })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The stamp for a trigger set in a namespace: `v2.<key-id>.<hex of HMAC-SHA-256(encoding)>`.
    pub fn stamp(&self, namespace: &str, set: &TriggerSet) -> String {
        self.stamp_encoded(&encode(namespace, set))
    }

    /// The stamp for a trigger set already encoded (with [`encode`] or an [`Encoder`]).
    pub fn stamp_encoded(&self, encoding: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(encoding);
        let digest = mac.finalize().into_bytes();
        let mut stamp = String::with_capacity(STAMP_VERSION.len() + self.id.len() + 2 + 64);
        stamp.push_str(STAMP_VERSION);
        stamp.push('.');
        stamp.push_str(&self.id);
        stamp.push('.');
        stamp.push_str(&hex::encode(digest));
        stamp
    }

    /// Whether a stamp was made with this recipe and key. One that was not is an unknown
    /// baseline: nothing is rolled because of it.
    pub fn is_current(&self, stamp: &str) -> bool {
        parse(stamp).is_some_and(|s| s.version == STAMP_VERSION && s.key_id == self.id)
    }
}

/// A stamp split into its parts.
#[derive(Debug, PartialEq, Eq)]
pub struct ParsedStamp<'a> {
    pub version: &'a str,
    pub key_id: &'a str,
    pub mac: &'a str,
}

pub fn parse(stamp: &str) -> Option<ParsedStamp<'_>> {
    let mut parts = stamp.splitn(3, '.');
    let (version, key_id, mac) = (parts.next()?, parts.next()?, parts.next()?);
    (!version.is_empty() && !key_id.is_empty() && !mac.is_empty()).then_some(ParsedStamp {
        version,
        key_id,
        mac,
    })
}

#[cfg(test)]
mod tests;
