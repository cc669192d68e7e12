//! Happy Eyeballs (RFC 8305) as a pure schedule: which address to try
//! next, and when, given the clock and what the attempts did. No sockets,
//! no timers: `connect_host.rs` acts on its answers, and the tests here
//! drive it with a fake clock.
//!
//! - Order (section 4): the addresses as the resolver sorted them (RFC
//!   6724), with the families interleaved, starting with the first one's.
//! - Stagger (section 5): one attempt starts at once; each further one
//!   starts when the one before has had its 250 ms (the Connection Attempt
//!   Delay), or at once when an attempt fails. Attempts under way go on.
//! - The first attempt to connect wins (the caller closes the others); when
//!   every address has failed, the last error is the answer.

use std::time::Duration;

use crate::sys::{Errno, SockAddr};

/// RFC 8305's recommended Connection Attempt Delay.
pub(super) const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// `addrs` in the order of RFC 8305 section 4: the families alternate,
/// starting with the first address's, each family in its given order.
pub(super) fn interleave(addrs: Vec<SockAddr>) -> Vec<SockAddr> {
    let Some(first_family) = addrs.first().map(SockAddr::family) else {
        return addrs;
    };
    let (mut first, mut other): (Vec<_>, Vec<_>) =
        addrs.into_iter().partition(|a| a.family() == first_family);
    let mut out = Vec::with_capacity(first.len() + other.len());
    first.reverse();
    other.reverse();
    loop {
        match (first.pop(), other.pop()) {
            (None, None) => return out,
            (a, b) => out.extend(a.into_iter().chain(b)),
        }
    }
}

/// What to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Start an attempt to address `index` now (then ask again).
    Start(usize),
    /// Nothing until this time (the loop's clock, ns), unless an attempt
    /// ends first.
    WaitUntil(u64),
    /// Every address has its attempt: wait for them.
    Wait,
    /// Every attempt failed: this was the last error.
    Fail(Errno),
}

/// Where the attempts over `count` addresses are.
#[derive(Debug)]
pub(super) struct Stagger {
    count: usize,
    /// The next address to try.
    next: usize,
    in_flight: usize,
    /// When the next attempt is due, if none ends before.
    due: u64,
    last_error: Errno,
}

impl Stagger {
    pub(super) fn new(count: usize) -> Stagger {
        Stagger {
            count,
            next: 0,
            in_flight: 0,
            due: 0,
            // What connecting to no address at all fails with.
            last_error: libc::EADDRNOTAVAIL,
        }
    }

    /// The next step at time `now` (ns). Ask again after each `Start`.
    pub(super) fn step(&mut self, now: u64) -> Step {
        if self.next < self.count && (self.in_flight == 0 || now >= self.due) {
            let index = self.next;
            self.next += 1;
            self.in_flight += 1;
            self.due = now.saturating_add(ATTEMPT_DELAY.as_nanos() as u64);
            return Step::Start(index);
        }
        match (self.in_flight, self.next < self.count) {
            (0, _) => Step::Fail(self.last_error),
            (_, true) => Step::WaitUntil(self.due),
            (_, false) => Step::Wait,
        }
    }

    /// An attempt ended with `error`: the next one may start at once.
    pub(super) fn failed(&mut self, error: Errno) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.last_error = error;
        self.due = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::TestRng;

    const MS: u64 = 1_000_000;

    fn addr(text: &str) -> SockAddr {
        SockAddr::from_std(text.parse().unwrap())
    }

    fn texts(addrs: &[SockAddr]) -> Vec<String> {
        addrs.iter().map(|a| format!("{a:?}")).collect()
    }

    #[test]
    fn families_alternate_from_the_first_ones() {
        let six = ["[::1]:1", "[::2]:1", "[::3]:1"];
        let four = ["10.0.0.1:1", "10.0.0.2:1"];
        let given = vec![
            addr(six[0]),
            addr(six[1]),
            addr(six[2]),
            addr(four[0]),
            addr(four[1]),
        ];
        assert_eq!(
            texts(&interleave(given)),
            [six[0], four[0], six[1], four[1], six[2]]
        );
        let given = vec![addr(four[0]), addr(six[0]), addr(six[1]), addr(four[1])];
        assert_eq!(
            texts(&interleave(given)),
            [four[0], six[0], four[1], six[1]]
        );
        assert!(interleave(Vec::new()).is_empty());
        assert_eq!(texts(&interleave(vec![addr(four[1])])), [four[1]]);
    }

    #[test]
    fn attempts_start_250_ms_apart_and_never_early() {
        let mut s = Stagger::new(3);
        assert_eq!(s.step(0), Step::Start(0));
        assert_eq!(s.step(0), Step::WaitUntil(250 * MS));
        assert_eq!(s.step(249 * MS), Step::WaitUntil(250 * MS), "early");
        assert_eq!(s.step(250 * MS), Step::Start(1));
        assert_eq!(s.step(250 * MS), Step::WaitUntil(500 * MS));
        // A late timer: the delay counts from the attempt's real start.
        assert_eq!(s.step(530 * MS), Step::Start(2));
        assert_eq!(s.step(530 * MS), Step::Wait);
        assert_eq!(s.step(10_000 * MS), Step::Wait, "no address is left");
    }

    #[test]
    fn a_failure_starts_the_next_attempt_at_once() {
        let mut s = Stagger::new(3);
        assert_eq!(s.step(0), Step::Start(0));
        s.failed(libc::ECONNREFUSED);
        assert_eq!(s.step(MS), Step::Start(1), "not 250 ms later");
        assert_eq!(s.step(2 * MS), Step::WaitUntil(251 * MS));
        assert_eq!(s.step(251 * MS), Step::Start(2));
        // Attempt 1 fails while 2 goes on: nothing left to start, wait.
        s.failed(libc::ETIMEDOUT);
        assert_eq!(s.step(300 * MS), Step::Wait);
        s.failed(libc::ENETUNREACH);
        assert_eq!(s.step(301 * MS), Step::Fail(libc::ENETUNREACH));
    }

    #[test]
    fn no_address_fails_and_one_address_waits_for_its_attempt() {
        assert_eq!(Stagger::new(0).step(0), Step::Fail(libc::EADDRNOTAVAIL));
        let mut s = Stagger::new(1);
        assert_eq!(s.step(0), Step::Start(0));
        assert_eq!(s.step(1_000 * MS), Step::Wait);
        s.failed(libc::ECONNREFUSED);
        assert_eq!(s.step(1_000 * MS), Step::Fail(libc::ECONNREFUSED));
    }

    /// Seeded random clocks and failures: attempts start in address order,
    /// at most one each, never before the previous one's delay unless an
    /// attempt failed since, and the schedule fails only once every
    /// started attempt has failed and none is left.
    #[test]
    fn random_schedules_keep_the_rules() {
        let mut rng = TestRng::new(0x8305);
        for _ in 0..2_000 {
            let count = (rng.next() % 6) as usize;
            let mut s = Stagger::new(count);
            let mut now = 0u64;
            let mut started: Vec<u64> = Vec::new();
            let mut running = 0usize;
            let mut failed_since_start = false;
            let mut failures = 0usize;
            loop {
                match s.step(now) {
                    Step::Start(i) => {
                        assert_eq!(i, started.len(), "in order, once each");
                        if let Some(&last) = started.last() {
                            assert!(
                                failed_since_start || now >= last + 250 * MS || running == 0,
                                "attempt {i} at {now} after one at {last}"
                            );
                        }
                        started.push(now);
                        running += 1;
                        failed_since_start = false;
                    }
                    Step::WaitUntil(due) => {
                        assert!(due > now && started.len() < count && running > 0);
                        match rng.next() % 3 {
                            0 => now = due + rng.next() % (50 * MS),
                            1 => now += rng.next() % (due - now),
                            _ => {
                                now += rng.next() % (300 * MS);
                                s.failed(libc::ECONNREFUSED);
                                running -= 1;
                                failures += 1;
                                failed_since_start = true;
                            }
                        }
                    }
                    Step::Wait => {
                        assert!(running > 0 && started.len() == count);
                        now += rng.next() % (300 * MS);
                        s.failed(libc::ETIMEDOUT);
                        running -= 1;
                        failures += 1;
                        failed_since_start = true;
                    }
                    Step::Fail(_) => {
                        assert_eq!(running, 0);
                        assert_eq!(started.len(), count);
                        assert_eq!(failures, count);
                        break;
                    }
                }
            }
        }
    }
}
