//! The trigger set's canonical encoding, its keyed hash, and the versioned stamp
//! `v1.<key-id>.<hex>` written to `kreload.dev/config-hash`.

use std::collections::BTreeMap;
use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::model::{ConfigId, ConfigKind, ValueDigest};

/// Version of the encoding and hash recipe. A stamp of another version is an unknown baseline.
pub const STAMP_VERSION: &str = "v1";
const DOMAIN: &[u8] = b"kreload.dev/trigger-set/v1\0";

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
    pub fn new(configs: usize, capacity: usize) -> Self {
        let mut out = Vec::with_capacity(DOMAIN.len() + 8 + capacity);
        out.extend_from_slice(DOMAIN);
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
pub fn encode(set: &TriggerSet) -> Vec<u8> {
    let mut e = Encoder::new(set.len(), set.len() * 64);
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

    /// The stamp for a trigger set: `v1.<key-id>.<hex of HMAC-SHA-256(encoding)>`.
    pub fn stamp(&self, set: &TriggerSet) -> String {
        self.stamp_encoded(&encode(set))
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> HashKey {
        HashKey::new(vec![7; 32]).unwrap()
    }

    fn present(keys: &[(&str, Option<&[u8]>)]) -> ConfigTrigger {
        ConfigTrigger::Present(
            keys.iter()
                .map(|(k, v)| (k.to_string(), v.map(ValueDigest::of)))
                .collect(),
        )
    }

    #[test]
    fn stamp_is_versioned_keyed_and_hex() {
        let set = TriggerSet::from([(
            ConfigId::new(ConfigKind::Secret, "db"),
            present(&[("password", Some(b"hunter2"))]),
        )]);
        let stamp = key().stamp(&set);
        let parsed = parse(&stamp).unwrap();
        assert_eq!(parsed.version, "v1");
        assert_eq!(parsed.key_id, key().id());
        assert_eq!(parsed.mac.len(), 64);
        assert!(key().is_current(&stamp));
        let other = HashKey::new(vec![8; 32]).unwrap();
        assert_ne!(other.stamp(&set), stamp);
        assert!(!other.is_current(&stamp));
    }

    #[test]
    fn stamp_reveals_nothing_of_the_value() {
        use sha2::Digest;
        let set = TriggerSet::from([(
            ConfigId::new(ConfigKind::Secret, "db"),
            present(&[("password", Some(b"hunter2"))]),
        )]);
        let stamp = key().stamp(&set);
        let sha256 = hex::encode(sha2::Sha256::digest(b"hunter2"));
        assert!(!stamp.contains("hunter2"));
        assert!(!stamp.contains(&sha256[..16]));
    }

    #[test]
    fn absent_config_missing_key_and_empty_config_differ() {
        let id = ConfigId::new(ConfigKind::ConfigMap, "c");
        let sets = [
            TriggerSet::new(),
            TriggerSet::from([(id.clone(), ConfigTrigger::Absent)]),
            TriggerSet::from([(id.clone(), present(&[]))]),
            TriggerSet::from([(id.clone(), present(&[("k", None)]))]),
            TriggerSet::from([(id.clone(), present(&[("k", Some(b""))]))]),
            TriggerSet::from([(
                ConfigId::new(ConfigKind::Secret, "c"),
                present(&[("k", Some(b""))]),
            )]),
        ];
        let stamps: std::collections::BTreeSet<_> = sets.iter().map(|s| key().stamp(s)).collect();
        assert_eq!(stamps.len(), sets.len());
    }

    #[test]
    fn foreign_or_malformed_stamps_are_not_current() {
        let k = key();
        assert!(!k.is_current(""));
        assert!(!k.is_current("v1"));
        assert!(!k.is_current(&format!("v2.{}.abcd", k.id())));
        assert!(!k.is_current("v1.deadbeef.abcd"));
        assert!(!k.is_current("0123456789abcdef"));
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(HashKey::new(vec![1; 31]).is_err());
        assert!(!format!("{:?}", key()).contains("7, 7"));
    }

    fn arb_set() -> impl Strategy<Value = TriggerSet> {
        let kind = prop_oneof![Just(ConfigKind::ConfigMap), Just(ConfigKind::Secret)];
        let digest = proptest::option::of(
            proptest::collection::vec(any::<u8>(), 0..3).prop_map(|v| ValueDigest::of(&v)),
        );
        let keys = proptest::collection::btree_map("[a.b]{0,3}", digest, 0..3);
        let trigger = prop_oneof![
            Just(ConfigTrigger::Absent),
            keys.prop_map(ConfigTrigger::Present)
        ];
        let id = (kind, "[ab.]{0,3}").prop_map(|(k, n)| ConfigId::new(k, n));
        proptest::collection::btree_map(id, trigger, 0..4)
    }

    proptest! {
        #[test]
        fn different_sets_never_encode_alike(a in arb_set(), b in arb_set()) {
            prop_assert_eq!(a == b, encode(&a) == encode(&b));
        }

        #[test]
        fn parse_never_panics(s in ".{0,80}") {
            let _ = parse(&s);
            let _ = key().is_current(&s);
        }
    }
}
