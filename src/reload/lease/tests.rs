use super::*;

const DEFAULT: Duration = Duration::from_secs(15);

fn ts(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

fn spec(holder: Option<&str>, renewed: Option<i64>, duration: Option<i32>) -> LeaseSpec {
    LeaseSpec {
        holder_identity: holder.map(str::to_owned),
        renew_time: renewed.map(|s| MicroTime(ts(s))),
        acquire_time: renewed.map(|s| MicroTime(ts(s - 100))),
        lease_duration_seconds: duration,
        ..Default::default()
    }
}

#[test]
fn no_spec_is_taken_over() {
    assert_eq!(decide(None, "me", ts(0), DEFAULT), Action::TakeOver);
}

#[test]
fn empty_holder_is_taken_over() {
    for holder in [None, Some("")] {
        let s = spec(holder, Some(0), Some(15));
        // Even with a fresh renewTime: a released lease is free.
        assert_eq!(decide(Some(&s), "me", ts(1), DEFAULT), Action::TakeOver);
    }
}

#[test]
fn held_by_me_is_renewed_fresh_or_expired() {
    let s = spec(Some("me"), Some(0), Some(15));
    assert_eq!(decide(Some(&s), "me", ts(1), DEFAULT), Action::Renew);
    assert_eq!(decide(Some(&s), "me", ts(1000), DEFAULT), Action::Renew);
}

#[test]
fn held_by_other_and_fresh_waits() {
    let s = spec(Some("other"), Some(0), Some(15));
    assert_eq!(decide(Some(&s), "me", ts(0), DEFAULT), Action::Wait);
    assert_eq!(decide(Some(&s), "me", ts(14), DEFAULT), Action::Wait);
    // A renewTime ahead of our clock is fresh too.
    assert_eq!(decide(Some(&s), "me", ts(-5), DEFAULT), Action::Wait);
}

#[test]
fn held_by_other_and_expired_is_taken_over() {
    let s = spec(Some("other"), Some(0), Some(15));
    assert_eq!(decide(Some(&s), "me", ts(15), DEFAULT), Action::TakeOver);
    assert_eq!(decide(Some(&s), "me", ts(16), DEFAULT), Action::TakeOver);
}

#[test]
fn expiry_is_sub_second() {
    let s = spec(Some("other"), Some(0), Some(3));
    let just_before = ts(3).checked_sub(SignedDuration::from_millis(1)).unwrap();
    assert_eq!(decide(Some(&s), "me", just_before, DEFAULT), Action::Wait);
}

#[test]
fn released_lease_duration_one_second() {
    // Release convention: holder cleared, duration 1. Free at once, whatever the time.
    let s = spec(None, Some(0), Some(1));
    assert_eq!(decide(Some(&s), "me", ts(0), DEFAULT), Action::TakeOver);
}

#[test]
fn missing_renew_time_falls_back_to_acquire_time() {
    let mut s = spec(Some("other"), None, Some(15));
    s.acquire_time = Some(MicroTime(ts(0)));
    assert_eq!(decide(Some(&s), "me", ts(10), DEFAULT), Action::Wait);
    assert_eq!(decide(Some(&s), "me", ts(20), DEFAULT), Action::TakeOver);
}

#[test]
fn missing_both_timestamps_is_taken_over() {
    let s = spec(Some("other"), None, Some(15));
    assert_eq!(decide(Some(&s), "me", ts(0), DEFAULT), Action::TakeOver);
}

#[test]
fn missing_lease_duration_uses_the_default() {
    let s = spec(Some("other"), Some(0), None);
    assert_eq!(decide(Some(&s), "me", ts(14), DEFAULT), Action::Wait);
    assert_eq!(decide(Some(&s), "me", ts(15), DEFAULT), Action::TakeOver);
    let short = Duration::from_secs(2);
    assert_eq!(decide(Some(&s), "me", ts(2), short), Action::TakeOver);
}

#[test]
fn non_positive_lease_duration_is_expired() {
    for d in [0, -5] {
        let s = spec(Some("other"), Some(0), Some(d));
        assert_eq!(decide(Some(&s), "me", ts(0), DEFAULT), Action::TakeOver);
    }
}

#[test]
fn lease_duration_seconds_rounds_up() {
    let mut c = LeaseConfig::new("ns", "n", "me");
    assert_eq!(c.lease_duration_seconds(), 15);
    c.lease_duration = Duration::from_millis(2500);
    assert_eq!(c.lease_duration_seconds(), 3);
    c.lease_duration = Duration::from_millis(10);
    assert_eq!(c.lease_duration_seconds(), 1);
    c.lease_duration = Duration::ZERO;
    assert_eq!(c.lease_duration_seconds(), 1);
}

#[test]
fn trust_ends_one_renew_period_before_expiry() {
    let mut c = LeaseConfig::new("ns", "n", "me");
    assert_eq!(c.trust_for(), Duration::from_secs(13));
    c.renew_every = Duration::from_secs(20);
    assert_eq!(c.trust_for(), Duration::ZERO);
}

#[test]
fn a_fresh_candidate_takes_over_at_once_only_a_lease_it_saw_alive() {
    let s = spec(Some("other"), Some(0), Some(15));
    // Following since before the holder's last renewal: it saw every change; at expiry.
    assert_eq!(
        decide_fresh(Some(&s), ts(15), DEFAULT, ts(-10)),
        Action::TakeOver
    );
    // Started after it: one lease duration more, for a replica that saw the gap.
    assert_eq!(decide_fresh(Some(&s), ts(16), DEFAULT, ts(5)), Action::Wait);
    assert_eq!(decide_fresh(Some(&s), ts(29), DEFAULT, ts(5)), Action::Wait);
    assert_eq!(
        decide_fresh(Some(&s), ts(30), DEFAULT, ts(5)),
        Action::TakeOver
    );
    // Not expired: wait, as anyone.
    assert_eq!(
        decide_fresh(Some(&s), ts(14), DEFAULT, ts(-10)),
        Action::Wait
    );
    // Free or released: at once.
    assert_eq!(decide_fresh(None, ts(0), DEFAULT, ts(5)), Action::TakeOver);
    let released = spec(Some(""), Some(0), Some(15));
    assert_eq!(
        decide_fresh(Some(&released), ts(1), DEFAULT, ts(5)),
        Action::TakeOver
    );
}

#[test]
fn a_fresh_process_does_not_renew_its_predecessors_lease() {
    // The same identity, held by an earlier process that died after renewing at 0.
    let s = spec(Some("me"), Some(0), Some(15));
    assert_eq!(decide(Some(&s), "me", ts(1), DEFAULT), Action::Renew);
    assert_eq!(decide_fresh(Some(&s), ts(1), DEFAULT, ts(5)), Action::Wait);
    assert_eq!(
        decide_fresh(Some(&s), ts(30), DEFAULT, ts(5)),
        Action::TakeOver
    );
}
