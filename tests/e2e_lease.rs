//! Leader election through a real Lease on the harness control plane: exactly one of two
//! candidates leads; an aborted leader is replaced once its lease expires; a leader that shuts
//! down gracefully releases the lease, so the other takes over at once.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use kreload::reload::lease::{self, LeaseConfig};
use kube::{Api, Client};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

const LEASE: &str = "kreload-leader";

/// One candidate: its leadership flag, its task and the trigger for its graceful shutdown.
struct Elector {
    identity: String,
    leading: watch::Receiver<bool>,
    handle: JoinHandle<()>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Elector {
    fn start(
        client: &Client,
        ns: &TestNamespace,
        identity: &str,
        lease_duration: Duration,
        renew_every: Duration,
    ) -> Elector {
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let config = LeaseConfig {
            namespace: ns.name.clone(),
            name: LEASE.to_owned(),
            identity: identity.to_owned(),
            lease_duration,
            renew_every,
        };
        let (leading, handle) = lease::spawn(client.clone(), config, async move {
            let _ = shutdown_rx.await;
        });
        Elector {
            identity: identity.to_owned(),
            leading,
            handle,
            shutdown: Some(shutdown),
        }
    }

    fn leads(&self) -> bool {
        *self.leading.borrow()
    }

    /// Signals a graceful shutdown and waits for the task to finish (it releases the lease).
    async fn shut_down(mut self) {
        let _ = self.shutdown.take().expect("not shut down yet").send(());
        tokio::time::timeout(Duration::from_secs(10), &mut self.handle)
            .await
            .expect("elector finishes within 10s of shutdown")
            .expect("elector task does not panic");
        assert!(!self.leads(), "a shut-down elector does not lead");
    }

    /// Kills the task without any release, as a crashed process would.
    async fn abort(self) {
        self.handle.abort();
        let _ = self.handle.await;
        // Keep the shutdown sender alive until the task is gone, so it cannot release.
        drop(self.shutdown);
    }
}

/// Waits until exactly one of the two electors leads; returns (leader, follower).
async fn wait_single_leader(a: Elector, b: Elector) -> (Elector, Elector) {
    let leader_is_a = wait_for(
        "exactly one of two electors to lead",
        Duration::from_secs(10),
        || {
            let (la, lb) = (a.leads(), b.leads());
            async move { (la != lb).then_some(la) }
        },
    )
    .await;
    if leader_is_a { (a, b) } else { (b, a) }
}

async fn holder(api: &Api<Lease>) -> Option<String> {
    api.get(LEASE)
        .await
        .expect("read the Lease")
        .spec
        .and_then(|s| s.holder_identity)
}

#[tokio::test]
async fn exactly_one_of_two_leads() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "kreload-lease-one").await;
    let (dur, renew) = (Duration::from_secs(3), Duration::from_millis(500));
    let a = Elector::start(&client, &ns, "candidate-a", dur, renew);
    let b = Elector::start(&client, &ns, "candidate-b", dur, renew);

    let (leader, follower) = wait_single_leader(a, b).await;

    // Never both, never neither, for 3 s of steady state.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < deadline {
        let (l, f) = (leader.leads(), follower.leads());
        assert!(!(l && f), "both electors believe they lead");
        assert!(l, "{} stopped leading without contention", leader.identity);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let api: Api<Lease> = ns.api();
    assert_eq!(
        holder(&api).await.as_deref(),
        Some(leader.identity.as_str())
    );
    let spec = api.get(LEASE).await.unwrap().spec.unwrap();
    assert_eq!(spec.lease_duration_seconds, Some(3));
    assert!(spec.renew_time.is_some() && spec.acquire_time.is_some());

    leader.shut_down().await;
    follower.shut_down().await;
}

#[tokio::test]
async fn aborted_leader_is_replaced_after_expiry() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "kreload-lease-abort").await;
    let (dur, renew) = (Duration::from_secs(3), Duration::from_millis(500));
    let a = Elector::start(&client, &ns, "candidate-a", dur, renew);
    let b = Elector::start(&client, &ns, "candidate-b", dur, renew);
    let (leader, follower) = wait_single_leader(a, b).await;

    let api: Api<Lease> = ns.api();
    let before = api.get(LEASE).await.unwrap().spec.unwrap();
    let old = leader.identity.clone();
    leader.abort().await;

    // The lease expires 3 s after the last renewal; the follower looks every 500 ms.
    wait_for(
        "the follower to take over the aborted leader's lease",
        Duration::from_secs(8),
        || {
            let leads = follower.leads();
            async move { leads.then_some(()) }
        },
    )
    .await;
    let after = api.get(LEASE).await.unwrap().spec.unwrap();
    assert_eq!(
        after.holder_identity.as_deref(),
        Some(follower.identity.as_str())
    );
    assert_ne!(after.holder_identity.as_deref(), Some(old.as_str()));
    assert!(
        after.lease_transitions.unwrap_or(0) > before.lease_transitions.unwrap_or(0),
        "a takeover bumps leaseTransitions: {before:?} -> {after:?}"
    );
    assert!(
        after.acquire_time > before.acquire_time,
        "takeover sets acquireTime"
    );

    follower.shut_down().await;
}

#[tokio::test]
async fn graceful_shutdown_releases_at_once() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "kreload-lease-release").await;
    // A long lease: only a release lets the follower take over within 2.5 s.
    let (dur, renew) = (Duration::from_secs(10), Duration::from_millis(500));
    let a = Elector::start(&client, &ns, "candidate-a", dur, renew);
    let b = Elector::start(&client, &ns, "candidate-b", dur, renew);
    let (leader, follower) = wait_single_leader(a, b).await;
    // Let the leader renew at least once, so that the lease is fresh when it goes.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(leader.leads() && !follower.leads());

    let api: Api<Lease> = ns.api();
    let old = leader.identity.clone();
    let started = tokio::time::Instant::now();
    leader.shut_down().await;
    assert_ne!(
        holder(&api).await.as_deref(),
        Some(old.as_str()),
        "a gracefully stopped leader no longer holds the lease"
    );

    let remaining = Duration::from_millis(2500).saturating_sub(started.elapsed());
    wait_for(
        "the follower to take over the released lease",
        remaining,
        || {
            let leads = follower.leads();
            async move { leads.then_some(()) }
        },
    )
    .await;
    assert_eq!(
        holder(&api).await.as_deref(),
        Some(follower.identity.as_str())
    );

    follower.shut_down().await;
}
