//! Knowing when every watch has listed once: readiness and the first decisions wait for it.

use std::collections::BTreeSet;
use std::sync::Arc;

use parking_lot::Mutex;

use tokio::sync::watch;

/// A set of watches (named by strings such as `ConfigMap/team-a`) that each report their first
/// full listing; the receiver turns true when all have.
#[derive(Clone)]
pub struct SyncSet {
    expected: Arc<BTreeSet<String>>,
    done: Arc<Mutex<BTreeSet<String>>>,
    tx: Arc<watch::Sender<bool>>,
}

impl SyncSet {
    pub fn new(expected: impl IntoIterator<Item = String>) -> (Self, watch::Receiver<bool>) {
        let expected: BTreeSet<String> = expected.into_iter().collect();
        let (tx, rx) = watch::channel(expected.is_empty());
        (
            SyncSet {
                expected: Arc::new(expected),
                done: Default::default(),
                tx: Arc::new(tx),
            },
            rx,
        )
    }

    pub fn mark(&self, watch: &str) {
        let mut done = self.done.lock();
        done.insert(watch.to_owned());
        if self.expected.is_subset(&done) {
            let _ = self.tx.send(true);
        }
    }
}

/// The name of one watch: a kind, in one namespace or all.
pub fn watch_name(kind: &str, scope: Option<&str>) -> String {
    format!("{kind}/{}", scope.unwrap_or("*"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_watch_listed() {
        let (sync, rx) = SyncSet::new([
            watch_name("ConfigMap", Some("a")),
            watch_name("ConfigMap", Some("b")),
        ]);
        sync.mark("ConfigMap/a");
        assert!(!*rx.borrow());
        sync.mark("ConfigMap/a");
        assert!(!*rx.borrow());
        sync.mark("ConfigMap/b");
        assert!(*rx.borrow());
        assert!(*SyncSet::new(Vec::new()).1.borrow());
    }
}
