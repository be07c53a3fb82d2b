use super::*;
use crate::domain::config::ConfigKind;
use crate::domain::workload::WorkloadKind;
use proptest::prelude::*;

fn w(name: &str) -> WorkloadId {
    WorkloadId {
        kind: WorkloadKind::Deployment,
        namespace: "ns".into(),
        name: name.into(),
    }
}

fn reason(config: &str, key: &str) -> Reasons {
    Reasons::from([(
        ConfigId::new(ConfigKind::ConfigMap, config),
        BTreeSet::from([key.to_owned()]),
    )])
}

const S: Duration = Duration::from_secs(1);

#[test]
fn changes_within_the_window_are_one_roll() {
    let t0 = Instant::now();
    let mut q = ReloadQueue::new(S, 10 * S);
    assert_eq!(q.push(w("a"), reason("cm", "x"), t0), Pushed::Scheduled);
    assert_eq!(
        q.push(w("a"), reason("secret", "y"), t0 + S / 5),
        Pushed::Merged
    );
    assert!(q.pop_due(t0 + S / 2).is_empty());
    let rolls = q.pop_due(t0 + S);
    assert_eq!(rolls.len(), 1);
    assert_eq!(rolls[0].1.reasons.len(), 2);
    assert_eq!(rolls[0].1.merged, 1);
    assert!(q.is_empty());
}

#[test]
fn a_zero_window_rolls_at_once() {
    let t0 = Instant::now();
    let mut q = ReloadQueue::new(Duration::ZERO, Duration::ZERO);
    q.push(w("a"), reason("cm", "x"), t0);
    assert_eq!(q.pop_due(t0).len(), 1);
}

#[test]
fn the_storm_guard_defers_but_never_drops() {
    let t0 = Instant::now();
    let mut q = ReloadQueue::new(S, 10 * S);
    q.push(w("a"), reason("cm", "1"), t0);
    let first = q.pop_due(t0 + S);
    q.rolled(&first[0].0, t0 + S);
    assert_eq!(
        q.push(w("a"), reason("cm", "2"), t0 + 2 * S),
        Pushed::Deferred
    );
    for i in 3..20 {
        assert_eq!(
            q.push(
                w("a"),
                reason("cm", &i.to_string()),
                t0 + 2 * S + i * S / 10
            ),
            Pushed::Merged
        );
    }
    assert!(q.pop_due(t0 + 10 * S).is_empty(), "not before the interval");
    let second = q.pop_due(t0 + 11 * S);
    assert_eq!(second.len(), 1);
    assert_eq!(
        second[0].1.reasons.values().next().unwrap().len(),
        18,
        "every deferred change is carried"
    );
    // Another workload is not held back by the first one's interval.
    assert_eq!(
        q.push(w("b"), reason("cm", "x"), t0 + 2 * S),
        Pushed::Scheduled
    );
}

#[test]
fn failed_rolls_are_retried_with_their_reasons_and_a_growing_wait() {
    let t0 = Instant::now();
    let mut q = ReloadQueue::new(S, S);
    q.push(w("a"), reason("cm", "x"), t0);
    let (id, p) = q.pop_due(t0 + S).pop().unwrap();
    assert_eq!(q.retry(id, p, t0 + S), RETRY_FIRST);
    assert_eq!(q.failing(), 1);
    assert_eq!(q.next_due(), Some(t0 + S + RETRY_FIRST));
    let (id, p) = q.pop_due(t0 + S + RETRY_FIRST).pop().unwrap();
    assert_eq!(p.reasons.len(), 1);
    assert_eq!(q.retry(id, p, t0), 2 * RETRY_FIRST);
    assert_eq!(backoff(1), RETRY_FIRST);
    assert_eq!(backoff(3), 4 * RETRY_FIRST);
    assert_eq!(backoff(40), RETRY_CAP);
    assert_eq!(backoff(u32::MAX), RETRY_CAP);
}

#[test]
fn accounting_is_not_a_roll_and_a_roll_takes_it_over() {
    let t0 = Instant::now();
    let mut q = ReloadQueue::new(S, 10 * S);
    assert!(q.push_account(w("a"), t0));
    let (id, p) = q.pop_due(t0 + S).pop().unwrap();
    assert!(!p.roll);
    // Accounting is not a roll: the storm guard does not hold the next roll back.
    assert_eq!(
        q.push(id.clone(), reason("cm", "x"), t0 + S),
        Pushed::Scheduled
    );
    assert!(
        !q.push_account(id.clone(), t0 + S),
        "a pending roll accounts for it"
    );
    let (id, p) = q.pop_due(t0 + 2 * S).pop().unwrap();
    assert!(p.roll);
    q.rolled(&id, t0 + 2 * S);
    // Accounting pending, then a roll within the interval: a deferred roll.
    assert!(q.push_account(id.clone(), t0 + 3 * S));
    assert_eq!(
        q.push(id.clone(), reason("cm", "y"), t0 + 3 * S),
        Pushed::Deferred
    );
    assert_eq!(q.next_due(), Some(t0 + 12 * S));
    assert!(q.pop_due(t0 + 12 * S)[0].1.roll);
}

proptest! {
    /// However changes arrive (rolls and accounting mixed, some writes failing and retried),
    /// every workload that got a roll-worthy change is rolled with it, rolls of one workload are
    /// at least the interval apart, accounting alone never rolls, and no change is lost.
    #[test]
    fn no_change_is_lost_and_rolls_respect_the_interval(events in proptest::collection::vec((0u8..3, 0u64..5000, any::<bool>(), 0u8..4), 1..60)) {
        let t0 = Instant::now();
        let (window, interval) = (Duration::from_millis(300), Duration::from_millis(2000));
        let mut q = ReloadQueue::new(window, interval);
        let mut events = events;
        events.sort_by_key(|(_, at, _, _)| *at);
        let mut pushed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut rolled: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut last: HashMap<String, Instant> = HashMap::new();
        // The i-th pop of a roll fails when the i-th event's fail counter says so.
        let fails: Vec<u8> = events.iter().map(|e| e.3).collect();
        let mut pops = 0usize;
        let mut drain = |q: &mut ReloadQueue, until: Instant, rolled: &mut BTreeMap<String, BTreeSet<String>>| -> Result<(), TestCaseError> {
            while let Some(due) = q.next_due().filter(|d| *d <= until) {
                for (id, p) in q.pop_due(due) {
                    if !p.roll {
                        prop_assert!(p.reasons.is_empty(), "accounting carries no change");
                        continue;
                    }
                    pops += 1;
                    if fails[pops % fails.len()] == 0 && p.failures < 3 {
                        q.retry(id, p, due);
                        continue;
                    }
                    if let Some(prev) = last.get(&id.name) {
                        prop_assert!(due.duration_since(*prev) >= interval);
                    }
                    last.insert(id.name.clone(), due);
                    q.rolled(&id, due);
                    for keys in p.reasons.values() {
                        rolled.entry(id.name.clone()).or_default().extend(keys.iter().cloned());
                    }
                }
            }
            Ok(())
        };
        for (i, (workload, at, roll, _)) in events.iter().enumerate() {
            let now = t0 + Duration::from_millis(*at);
            drain(&mut q, now, &mut rolled)?;
            let name = workload.to_string();
            if *roll {
                q.push(w(&name), reason("cm", &i.to_string()), now);
                pushed.entry(name).or_default().insert(i.to_string());
            } else {
                q.push_account(w(&name), now);
            }
        }
        drain(&mut q, t0 + Duration::from_secs(3600), &mut rolled)?;
        prop_assert!(q.is_empty());
        prop_assert_eq!(pushed, rolled);
    }
}

#[test]
fn pacing_holds_rolls_back_and_lets_accounting_through() {
    let t0 = Instant::now();
    let mut q = ReloadQueue::new(Duration::ZERO, Duration::ZERO);
    for name in ["a", "b", "c"] {
        q.push(w(name), reason("cm", "x"), t0);
    }
    q.push_account(w("d"), t0);
    let mut pace = Pace::new(Some(2), None);
    let budget = pace.budget(t0, 0);
    let popped = q.pop_due_paced(t0, budget);
    assert_eq!(popped.iter().filter(|(_, p)| p.roll).count(), 2);
    assert!(popped.iter().any(|(id, p)| id.name == "d" && !p.roll));
    for _ in 0..2 {
        pace.started(t0);
    }
    assert!(q.has_due_roll(t0), "the third roll waits, first in line");
    assert_eq!(pace.budget(t0 + S, 0), 0);
    assert_eq!(pace.next_slot(), Some(t0 + Duration::from_secs(60)));
    assert_eq!(pace.budget(t0 + Duration::from_secs(60), 0), 2);
    let mut pace = Pace::new(None, Some(1));
    assert_eq!(pace.budget(t0, 1), 0);
    assert_eq!(pace.budget(t0, 0), 1);
    assert!(
        !Pace::new(Some(0), Some(0)).is_limited(),
        "0 means no limit"
    );
}

proptest! {
    /// Under cluster-wide pacing, at most `per_minute` rolls start in any minute, at most
    /// `concurrent` rollouts are in progress, and every change still rolls in the end.
    #[test]
    fn pacing_keeps_its_limits_and_drops_nothing(
        events in proptest::collection::vec((0u8..8, 0u64..30_000), 1..40),
        durations in proptest::collection::vec(1u64..20_000, 8),
        per_minute in proptest::option::of(1u32..5),
        concurrent in proptest::option::of(1u32..4),
    ) {
        let t0 = Instant::now();
        let mut q = ReloadQueue::new(Duration::from_millis(200), Duration::from_millis(1000));
        let mut pace = Pace::new(per_minute, concurrent);
        let mut events = events;
        events.sort_by_key(|(_, at)| *at);
        let mut pushed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut rolled: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut starts: Vec<Instant> = Vec::new();
        // Rollouts in progress: when each ends.
        let mut running: Vec<Instant> = Vec::new();
        let mut next_event = 0;
        let mut now = t0;
        let end = t0 + Duration::from_secs(3600);
        while now < end {
            while next_event < events.len() && t0 + Duration::from_millis(events[next_event].1) <= now {
                let (workload, _) = events[next_event];
                let name = workload.to_string();
                q.push(w(&name), reason("cm", &next_event.to_string()), now);
                pushed.entry(name).or_default().insert(next_event.to_string());
                next_event += 1;
            }
            running.retain(|done| *done > now);
            let budget = pace.budget(now, running.len());
            for (id, p) in q.pop_due_paced(now, budget) {
                prop_assert!(p.roll);
                pace.started(now);
                starts.push(now);
                q.rolled(&id, now);
                let d = durations[id.name.parse::<usize>().unwrap()];
                running.push(now + Duration::from_millis(d));
                if let Some(c) = concurrent {
                    prop_assert!(running.len() <= c as usize, "{} rollouts at once", running.len());
                }
                if let Some(n) = per_minute {
                    let in_minute = starts.iter().filter(|s| now.duration_since(**s) < Duration::from_secs(60)).count();
                    prop_assert!(in_minute <= n as usize, "{in_minute} starts in a minute");
                }
                for keys in p.reasons.values() {
                    rolled.entry(id.name.clone()).or_default().extend(keys.iter().cloned());
                }
            }
            if next_event == events.len() && q.is_empty() {
                break;
            }
            now += Duration::from_millis(100);
        }
        prop_assert!(q.is_empty(), "rolls still waiting after an hour");
        prop_assert_eq!(pushed, rolled);
    }
}

#[test]
fn csi_rolls_coalesce_with_config_rolls_and_the_latest_rotation_wins() {
    let window = Duration::from_secs(1);
    let mut q = ReloadQueue::new(window, Duration::from_secs(10));
    let t0 = Instant::now();
    let csi = |v: &str| CsiRoll {
        class: "spc".into(),
        value: v.into(),
    };
    assert_eq!(q.push_csi(w("a"), csi("v1"), t0), Pushed::Scheduled);
    assert_eq!(q.push_csi(w("a"), csi("v2"), t0), Pushed::Merged);
    assert_eq!(q.push(w("a"), reason("c", "k"), t0), Pushed::Merged);
    let due = q.pop_due(t0 + window);
    assert_eq!(due.len(), 1);
    let p = &due[0].1;
    assert!(p.roll && p.rolls());
    assert_eq!(p.csi, Some(csi("v2")));
    // A CSI roll alone is a roll (paced, storm-guarded), not accounting.
    q.rolled(&w("a"), t0 + window);
    assert_eq!(q.push_csi(w("a"), csi("v3"), t0 + window), Pushed::Deferred);
    assert!(q.pop_due_paced(t0 + Duration::from_secs(20), 0).is_empty());
    let due = q.pop_due(t0 + Duration::from_secs(20));
    assert!(!due[0].1.roll && due[0].1.rolls());
    // Accounting pending becomes a CSI roll; a failed CSI roll keeps its value on retry.
    assert!(q.push_account(w("b"), t0));
    q.push_csi(w("b"), csi("v4"), t0);
    let (id, p) = q.pop_due(t0 + window).pop().unwrap();
    assert!(p.rolls());
    q.retry(id, p, t0 + window);
    let (_, p) = q.pop_due(t0 + Duration::from_secs(60)).pop().unwrap();
    assert_eq!(p.csi, Some(csi("v4")));
}
