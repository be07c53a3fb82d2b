//! Which namespaces kreload acts in: `--namespaces`, `--namespaces-to-ignore` and
//! `--namespace-selector` (the last one is kept current by a watch of Namespace labels).

use std::collections::{BTreeSet, HashSet};

use parking_lot::RwLock;

use crate::domain::annotations::SYSTEM_NAMESPACE;
use crate::domain::selector::Selector;

#[derive(Debug, Default)]
pub struct NamespaceFilter {
    only: BTreeSet<String>,
    ignore: BTreeSet<String>,
    selector: Option<Selector>,
    /// Namespaces whose labels match the selector (kept by the namespace watch).
    selected: RwLock<HashSet<String>>,
}

impl NamespaceFilter {
    pub fn new(
        only: BTreeSet<String>,
        ignore: BTreeSet<String>,
        selector: Option<Selector>,
    ) -> Self {
        NamespaceFilter {
            only,
            ignore,
            selector,
            selected: Default::default(),
        }
    }

    /// The filter of a kreload running in `own_namespace`: as [`NamespaceFilter::new`], and never
    /// `kube-system` nor its own namespace, for the webhooks and the watcher alike.
    pub fn excluding_system(
        only: BTreeSet<String>,
        mut ignore: BTreeSet<String>,
        selector: Option<Selector>,
        own_namespace: &str,
    ) -> Self {
        ignore.insert(SYSTEM_NAMESPACE.to_owned());
        ignore.insert(own_namespace.to_owned());
        Self::new(only, ignore, selector)
    }

    pub fn is_watched(&self, namespace: &str) -> bool {
        (self.only.is_empty() || self.only.contains(namespace))
            && !self.ignore.contains(namespace)
            && (self.selector.is_none() || self.selected.read().contains(namespace))
    }

    /// The one namespace to watch when `--namespaces` names exactly one (watches can then be
    /// namespaced instead of cluster-wide).
    pub fn single(&self) -> Option<&str> {
        (self.only.len() == 1)
            .then(|| self.only.first().map(String::as_str))
            .flatten()
    }

    /// `--namespaces`, for narrowing the webhook configurations in local mode.
    pub fn only(&self) -> &BTreeSet<String> {
        &self.only
    }

    pub fn has_selector(&self) -> bool {
        self.selector.is_some()
    }

    pub fn selector(&self) -> Option<&Selector> {
        self.selector.as_ref()
    }

    /// Replaces the namespaces known to match the selector (after a full listing).
    pub fn set_selected(&self, names: HashSet<String>) {
        *self.selected.write() = names;
    }

    /// A namespace now matches the selector (`true`) or no longer does.
    pub fn set_matching(&self, name: &str, matches: bool) {
        let mut selected = self.selected.write();
        if matches {
            selected.insert(name.to_owned());
        } else {
            selected.remove(name);
        }
    }

    #[cfg(test)]
    fn select(&self, names: &[&str]) {
        self.set_selected(names.iter().map(|s| s.to_string()).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_ignore_and_selector_combine() {
        assert!(NamespaceFilter::default().is_watched("any"));
        let f = NamespaceFilter::new(set(&["a", "b"]), set(&["b"]), None);
        assert!(f.is_watched("a") && !f.is_watched("b") && !f.is_watched("c"));
        let f = NamespaceFilter::new(set(&[]), set(&["x"]), Some("team=a".parse().unwrap()));
        f.select(&["s", "x"]);
        assert!(f.is_watched("s") && !f.is_watched("x") && !f.is_watched("t"));
        assert_eq!(
            NamespaceFilter::new(set(&["a"]), set(&[]), None).single(),
            Some("a")
        );
    }
}
