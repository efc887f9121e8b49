//! The breaker state machine, stepped by hand: time is an argument, never read.

use super::*;

const HOST: &str = "example.com:80";

fn breakers(threshold: u32) -> Breakers {
    Breakers::new(BreakerOptions {
        failure_threshold: threshold,
        open_for: Duration::from_secs(10),
    })
}

fn fail(b: &mut Breakers, host: &str, now: Instant) {
    let permit = b.admit(host, now).expect("admitted");
    b.record(permit, false, now);
}

fn succeed(b: &mut Breakers, host: &str, now: Instant) {
    let permit = b.admit(host, now).expect("admitted");
    b.record(permit, true, now);
}

fn phase(b: &Breakers, host: &str, now: Instant) -> Option<BreakerState> {
    b.snapshot(now).into_iter().find(|s| s.host == host)
}

#[test]
fn opens_after_threshold_consecutive_failures() {
    let t0 = Instant::now();
    let mut b = breakers(3);
    fail(&mut b, HOST, t0);
    fail(&mut b, HOST, t0);
    assert_eq!(
        phase(&b, HOST, t0).map(|s| s.state),
        Some(BreakerPhase::Closed)
    );
    fail(&mut b, HOST, t0);
    let state = phase(&b, HOST, t0).expect("tracked");
    assert_eq!(state.state, BreakerPhase::Open);
    assert_eq!(state.consecutive_failures, 3);
    assert_eq!(state.times_opened, 1);
    assert_eq!(
        b.admit(HOST, t0 + Duration::from_secs(9)),
        Err(Rejected::Open {
            until: t0 + Duration::from_secs(10)
        })
    );
}

#[test]
fn a_success_resets_the_count() {
    let t0 = Instant::now();
    let mut b = breakers(3);
    fail(&mut b, HOST, t0);
    fail(&mut b, HOST, t0);
    succeed(&mut b, HOST, t0);
    fail(&mut b, HOST, t0);
    fail(&mut b, HOST, t0);
    let state = phase(&b, HOST, t0).expect("tracked");
    assert_eq!(state.state, BreakerPhase::Closed);
    assert_eq!(state.consecutive_failures, 2);
}

#[test]
fn half_open_lets_exactly_one_trial_through_and_its_success_closes() {
    let t0 = Instant::now();
    let mut b = breakers(1);
    fail(&mut b, HOST, t0);
    let t1 = t0 + Duration::from_secs(10);
    assert_eq!(
        phase(&b, HOST, t1).map(|s| s.state),
        Some(BreakerPhase::HalfOpen)
    );
    let trial = b.admit(HOST, t1).expect("trial admitted");
    assert!(trial.is_trial());
    assert_eq!(b.admit(HOST, t1), Err(Rejected::TrialInFlight));
    b.record(trial, true, t1);
    let state = phase(&b, HOST, t1).expect("tracked");
    assert_eq!(state.state, BreakerPhase::Closed);
    assert_eq!(state.consecutive_failures, 0);
    assert!(b.admit(HOST, t1).is_ok_and(|p| !p.is_trial()));
}

#[test]
fn a_failed_trial_reopens() {
    let t0 = Instant::now();
    let mut b = breakers(1);
    fail(&mut b, HOST, t0);
    let t1 = t0 + Duration::from_secs(11);
    let trial = b.admit(HOST, t1).expect("trial admitted");
    b.record(trial, false, t1);
    let state = phase(&b, HOST, t1).expect("tracked");
    assert_eq!(state.state, BreakerPhase::Open);
    assert_eq!(state.times_opened, 2);
    assert_eq!(
        b.admit(HOST, t1),
        Err(Rejected::Open {
            until: t1 + Duration::from_secs(10)
        })
    );
}

#[test]
fn an_abandoned_trial_frees_the_slot() {
    let t0 = Instant::now();
    let mut b = breakers(1);
    fail(&mut b, HOST, t0);
    let t1 = t0 + Duration::from_secs(10);
    let trial = b.admit(HOST, t1).expect("trial admitted");
    b.abandon(trial, t1);
    assert!(b.admit(HOST, t1).is_ok_and(|p| p.is_trial()));
}

#[test]
fn stale_results_do_not_move_an_open_breaker() {
    let t0 = Instant::now();
    let mut b = breakers(1);
    let early = b.admit(HOST, t0).expect("admitted");
    fail(&mut b, HOST, t0);
    b.record(early, true, t0);
    assert_eq!(
        phase(&b, HOST, t0).map(|s| s.state),
        Some(BreakerPhase::Open)
    );
}

#[test]
fn hosts_are_independent() {
    let t0 = Instant::now();
    let mut b = breakers(1);
    fail(&mut b, HOST, t0);
    assert!(b.admit("other.example:80", t0).is_ok());
}

#[test]
fn successes_alone_track_nothing() {
    let t0 = Instant::now();
    let mut b = breakers(3);
    for i in 0..100 {
        succeed(&mut b, &format!("h{i}:80"), t0);
    }
    assert!(b.is_empty());
}

#[test]
fn the_map_is_bounded_and_evicts_idle_then_least_recently_used() {
    let t0 = Instant::now();
    let mut b = Breakers::with_max_hosts(
        BreakerOptions {
            failure_threshold: 2,
            open_for: Duration::from_secs(10),
        },
        3,
    );
    fail(&mut b, "a:80", t0);
    succeed(&mut b, "a:80", t0); // idle now
    fail(&mut b, "b:80", t0 + Duration::from_secs(1));
    fail(&mut b, "c:80", t0 + Duration::from_secs(2));
    fail(&mut b, "d:80", t0 + Duration::from_secs(3)); // evicts idle a
    let hosts: Vec<String> = b.snapshot(t0).into_iter().map(|s| s.host).collect();
    assert_eq!(hosts, ["b:80", "c:80", "d:80"]);
    fail(&mut b, "e:80", t0 + Duration::from_secs(4)); // evicts least recently used b
    let hosts: Vec<String> = b.snapshot(t0).into_iter().map(|s| s.host).collect();
    assert_eq!(hosts, ["c:80", "d:80", "e:80"]);
    assert_eq!(b.len(), 3);
}

#[test]
fn a_zero_threshold_acts_as_one() {
    let t0 = Instant::now();
    let mut b = breakers(0);
    succeed(&mut b, HOST, t0);
    assert!(b.admit(HOST, t0).is_ok());
    fail(&mut b, HOST, t0);
    assert!(b.admit(HOST, t0).is_err());
}

#[test]
fn phases_have_their_metric_names() {
    assert_eq!(BreakerPhase::Closed.as_str(), "closed");
    assert_eq!(BreakerPhase::Open.as_str(), "open");
    assert_eq!(BreakerPhase::HalfOpen.as_str(), "half_open");
}
