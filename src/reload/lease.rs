//! Leader election through a `coordination.k8s.io/v1` Lease.
//!
//! One task per process reads the Lease every `renew_every`, and either renews it (we hold it),
//! takes it over (it is free or expired) or waits (someone else holds a fresh lease). Every
//! write is a `replace` carrying the resourceVersion that was read, so two candidates racing
//! for the same Lease cannot both win: the loser gets a 409 Conflict and tries again next round.
//!
//! Whether this process leads is published on a [`watch`] channel. It turns `false` as soon as
//! the lease could have expired by our last successful renewal (minus a safety margin of one
//! renew period), even while the API server does not answer, so that we never believe we lead
//! past the lease.
//!
//! The decision itself is the pure function [`decide`].

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Which Lease to contend for, as whom, and how fast.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This candidate's identity, written to `holderIdentity`; unique per process.
    pub identity: String,
    /// How long a lease stays valid without renewal (`leaseDurationSeconds`, rounded up).
    pub lease_duration: Duration,
    /// How often the holder renews, and how often the others look. Must be well below
    /// `lease_duration`: it is also the safety margin by which a holder steps down early.
    pub renew_every: Duration,
}

impl LeaseConfig {
    pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
    pub const DEFAULT_RENEW_EVERY: Duration = Duration::from_secs(2);

    /// A configuration with the default durations (15 s lease, renewed every 2 s).
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        LeaseConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Self::DEFAULT_LEASE_DURATION,
            renew_every: Self::DEFAULT_RENEW_EVERY,
        }
    }

    /// `leaseDurationSeconds`: the duration rounded up to whole seconds, at least 1.
    fn lease_duration_seconds(&self) -> i32 {
        let d = self.lease_duration;
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        i32::try_from(secs.max(1)).unwrap_or(i32::MAX)
    }

    /// How long after a successful renewal we still believe we lead.
    fn trust_for(&self) -> Duration {
        self.lease_duration.saturating_sub(self.renew_every)
    }
}

/// What to do with a Lease as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// We hold it: renew it (keep `acquireTime` and `leaseTransitions`).
    Renew,
    /// Nobody holds it, or the holder let it expire: take it over.
    TakeOver,
    /// Someone else holds a lease that has not expired.
    Wait,
}

/// Decides what `me` should do with a Lease whose spec is `spec` (`None`: no spec at all), at
/// `now`.
///
/// The lease of another holder expires `leaseDurationSeconds` after its `renewTime` (or, when
/// that is missing, its `acquireTime`); without either timestamp it counts as expired, since
/// nothing shows it is alive. A missing `leaseDurationSeconds` counts as `default_duration`.
pub fn decide(
    spec: Option<&LeaseSpec>,
    me: &str,
    now: Timestamp,
    default_duration: Duration,
) -> Action {
    let Some(spec) = spec else {
        return Action::TakeOver;
    };
    match spec.holder_identity.as_deref() {
        None | Some("") => return Action::TakeOver,
        Some(holder) if holder == me => return Action::Renew,
        Some(_) => {}
    }
    held_lease(spec, now, default_duration, None)
}

/// [`decide`] for a candidate that has not led since it began to follow at `since` (with every
/// watch synced). A replica that takes over rolls the drift it did not see caused by a
/// consumed-data change (docs/operations.md), so the Lease should go to a replica that was
/// following while the old holder was alive: this one takes an expired lease at once only if
/// the holder renewed it after `since`, and otherwise one lease duration later, leaving that
/// time to a replica that saw the gap. A lease held under its own identity counts as another
/// holder's: an earlier process of the same name, whose last changes it did not see.
pub fn decide_fresh(
    spec: Option<&LeaseSpec>,
    now: Timestamp,
    default_duration: Duration,
    since: Timestamp,
) -> Action {
    let Some(spec) = spec else {
        return Action::TakeOver;
    };
    if spec.holder_identity.as_deref().is_none_or(str::is_empty) {
        return Action::TakeOver;
    }
    held_lease(spec, now, default_duration, Some(since))
}

/// A lease someone else holds: taken over once expired (for a fresh candidate, see
/// [`decide_fresh`]).
fn held_lease(
    spec: &LeaseSpec,
    now: Timestamp,
    default_duration: Duration,
    fresh_since: Option<Timestamp>,
) -> Action {
    let Some(MicroTime(renewed)) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return Action::TakeOver;
    };
    let duration = match spec.lease_duration_seconds {
        Some(secs) => SignedDuration::from_secs(i64::from(secs.max(0))),
        None => SignedDuration::try_from(default_duration).unwrap_or(SignedDuration::MAX),
    };
    // Not expired, or so far in the future that it does not fit a timestamp: wait.
    let Ok(expires) = renewed.checked_add(duration) else {
        return Action::Wait;
    };
    let due = match fresh_since {
        Some(since) if *renewed < since => expires.checked_add(duration).ok(),
        _ => Some(expires),
    };
    if due.is_some_and(|t| t <= now) {
        Action::TakeOver
    } else {
        Action::Wait
    }
}

/// Spawns the election loop. The receiver says whether this process currently leads.
///
/// The loop runs until `shutdown` completes; then, if we hold the Lease, it releases it (clears
/// `holderIdentity`, sets `leaseDurationSeconds` to 1) so that another candidate can take over
/// at once, publishes `false` and returns. API errors never end the loop: it logs them and
/// tries again one renew period later.
pub fn spawn(
    client: Client,
    config: LeaseConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (watch::Receiver<bool>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let handle = tokio::spawn(run(api, config, tx, shutdown));
    (rx, handle)
}

/// The result of one round of reading and writing the Lease.
#[derive(Debug)]
enum Round {
    /// We hold the lease as of this round's start.
    Leading,
    /// Someone else holds a fresh lease.
    Following { holder: String },
    /// Our write lost a race (409 Conflict): someone else changed the Lease meanwhile.
    Conflict,
}

fn publish(tx: &watch::Sender<bool>, leading: bool) {
    tx.send_if_modified(|v| std::mem::replace(v, leading) != leading);
}

async fn run(
    api: Api<Lease>,
    config: LeaseConfig,
    tx: watch::Sender<bool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let lease = format!("{}/{}", config.namespace, config.name);
    let identity = config.identity.as_str();
    if config.renew_every >= config.lease_duration {
        tracing::warn!(
            %lease, ?config.renew_every, ?config.lease_duration,
            "lease renew period is not below the lease duration; leadership cannot be kept"
        );
    }
    tokio::pin!(shutdown);
    let mut ticks = tokio::time::interval(config.renew_every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // While we lead: when our last successful write started.
    let mut last_renew: Option<Instant> = None;
    // Until we first lead: since when we follow (spawned once every watch has synced).
    let mut fresh_since = Some(Timestamp::now());

    loop {
        // While leading, the moment we stop believing it unless renewed before.
        let trust_until = last_renew.map(|t| t + config.trust_for());
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            () = sleep_until_opt(trust_until) => {
                last_renew = None;
                publish(&tx, false);
                tracing::info!(%lease, identity, "lost leadership: lease not renewed in time");
                continue;
            }
            _ = ticks.tick() => {}
        }

        let started = Instant::now();
        // Never wait on the API server past the moment we would have to step down.
        let attempt_deadline = trust_until.unwrap_or(started + config.lease_duration);
        let outcome = tokio::select! {
            biased;
            () = &mut shutdown => break,
            r = tokio::time::timeout_at(attempt_deadline, round(&api, &config, fresh_since)) => r,
        };
        match outcome {
            Ok(Ok(Round::Leading)) => {
                fresh_since = None;
                if last_renew.is_none() {
                    tracing::info!(%lease, identity, "became leader");
                }
                last_renew = Some(started);
                publish(&tx, true);
            }
            Ok(Ok(Round::Following { holder })) => {
                if last_renew.take().is_some() {
                    tracing::info!(%lease, identity, %holder, "lost leadership: lease taken over");
                }
                publish(&tx, false);
            }
            Ok(Ok(Round::Conflict)) => {
                if last_renew.is_some() {
                    tracing::warn!(%lease, identity, "lease renewal conflicted; retrying");
                } else {
                    tracing::debug!(%lease, identity, "lost the race for the lease");
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(%lease, identity, %error, "lease election round failed");
            }
            Err(_) => {
                tracing::warn!(%lease, identity, "lease election round timed out");
            }
        }
        // A failed renewal: step down at once when the lease may have expired meanwhile.
        if let Some(t) = last_renew
            && Instant::now() >= t + config.trust_for()
        {
            last_renew = None;
            publish(&tx, false);
            tracing::info!(%lease, identity, "lost leadership: lease not renewed in time");
        }
    }

    publish(&tx, false);
    match tokio::time::timeout(config.lease_duration, release(&api, &config)).await {
        Ok(Ok(true)) => tracing::info!(%lease, identity, "released leadership"),
        Ok(Ok(false)) => tracing::debug!(%lease, identity, "not holding the lease at shutdown"),
        Ok(Err(error)) => tracing::warn!(%lease, identity, %error, "cannot release the lease"),
        Err(_) => tracing::warn!(%lease, identity, "releasing the lease timed out"),
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == code)
}

/// One round: read the Lease (creating it when absent), decide, write.
async fn round(
    api: &Api<Lease>,
    config: &LeaseConfig,
    fresh_since: Option<Timestamp>,
) -> Result<Round, kube::Error> {
    let now = Timestamp::now();
    let lease = match api.get_opt(&config.name).await? {
        Some(lease) => lease,
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.clone()),
                    namespace: Some(config.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(config.identity.clone()),
                    lease_duration_seconds: Some(config.lease_duration_seconds()),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => return Ok(Round::Leading),
                // Someone else created it first: look at theirs.
                Err(e) if is_status(&e, 409) => api.get(&config.name).await?,
                Err(e) => return Err(e),
            }
        }
    };

    let mut lease = lease;
    let action = match fresh_since {
        Some(since) => decide_fresh(lease.spec.as_ref(), now, config.lease_duration, since),
        None => decide(
            lease.spec.as_ref(),
            &config.identity,
            now,
            config.lease_duration,
        ),
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    match action {
        Action::Wait => {
            return Ok(Round::Following {
                holder: spec.holder_identity.clone().unwrap_or_default(),
            });
        }
        Action::Renew => {}
        Action::TakeOver => {
            spec.holder_identity = Some(config.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
    }
    spec.lease_duration_seconds = Some(config.lease_duration_seconds());
    spec.renew_time = Some(MicroTime(now));
    // `lease` still carries the resourceVersion we read: optimistic concurrency.
    match api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(Round::Leading),
        Err(e) if is_status(&e, 409) => Ok(Round::Conflict),
        Err(e) => Err(e),
    }
}

/// Releases the Lease if we hold it: clears the holder so that others take over at once.
/// Returns whether there was anything to release.
async fn release(api: &Api<Lease>, config: &LeaseConfig) -> Result<bool, kube::Error> {
    const ATTEMPTS: usize = 3;
    for attempt in 1..=ATTEMPTS {
        let Some(mut lease) = api.get_opt(&config.name).await? else {
            return Ok(false);
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
            return Ok(false);
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match api
            .replace(&config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => return Ok(true),
            Err(e) if is_status(&e, 409) && attempt < ATTEMPTS => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!("the last attempt returns")
}

#[cfg(test)]
mod tests;
