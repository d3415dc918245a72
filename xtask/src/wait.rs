//! The one wait: ask a condition until it holds, bounded by a deadline, polled at an
//! interval that may back off, cut short by the command's [`Cancel`], with a progress
//! callback for each answer that says "not yet". The cluster's `/readyz`, Tilt's
//! Tiltfile and the Vault bootstrap Job all wait through [`until`].

use std::time::{Duration, Instant};

use crate::cancel::Cancel;
use crate::error::Result;

/// What one look at the condition found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check<T, S> {
    /// It holds (or the wait must end anyway, e.g. a failure that cannot heal): stop.
    Done(T),
    /// Not yet: what was seen, for progress and for the timeout's message.
    Pending(S),
}

/// How a wait ended; an interruption or a check's error is the `Err` of [`until`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waited<T, S> {
    Done(T),
    /// The deadline passed: the last thing seen.
    TimedOut(S),
}

/// How often to look: every `first`, growing by `factor` after each look up to `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Poll {
    pub first: Duration,
    pub max: Duration,
    pub factor: f64,
}

impl Poll {
    /// A fixed interval.
    pub fn every(interval: Duration) -> Poll {
        Poll { first: interval, max: interval, factor: 1.0 }
    }

    /// Doubling from `first` up to `max`.
    pub fn backoff(first: Duration, max: Duration) -> Poll {
        Poll { first, max, factor: 2.0 }
    }

    /// The interval after `interval`.
    fn next(&self, interval: Duration) -> Duration {
        interval.mul_f64(self.factor).min(self.max)
    }
}

/// Look at the condition (`check`) until it is `Done`, the `timeout` passes (the last
/// `Pending` is returned), `check` fails (its error is returned) or `cancel` is
/// requested (an `Interrupted` error, at once, even mid-check: checks only read).
/// `progress` hears every `Pending` with the time waited so far. The last look happens
/// at the deadline, not an interval after it.
pub async fn until<T, S>(
    cancel: &Cancel,
    timeout: Duration,
    poll: Poll,
    mut check: impl AsyncFnMut() -> Result<Check<T, S>>,
    mut progress: impl FnMut(&S, Duration),
) -> Result<Waited<T, S>> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut interval = poll.first;
    loop {
        match cancel.unless_interrupted(check()).await?? {
            Check::Done(value) => return Ok(Waited::Done(value)),
            Check::Pending(seen) => {
                progress(&seen, started.elapsed());
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(Waited::TimedOut(seen));
                }
                cancel.sleep(interval.min(left)).await?;
                interval = poll.next(interval);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorKind, Signal, failed};

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn backoff_doubles_up_to_its_cap_and_every_stays_put() {
        let poll = Poll::backoff(100 * MS, 350 * MS);
        let mut seen = vec![poll.first];
        for _ in 0..3 {
            seen.push(poll.next(*seen.last().unwrap()));
        }
        assert_eq!(seen, [100 * MS, 200 * MS, 350 * MS, 350 * MS]);
        assert_eq!(Poll::every(500 * MS).next(500 * MS), 500 * MS);
    }

    #[tokio::test]
    async fn done_ends_the_wait_and_progress_hears_each_pending() {
        let (mut looks, mut heard) = (0, Vec::new());
        let waited = until(
            &Cancel::new(),
            Duration::from_secs(5),
            Poll::every(MS),
            async || {
                looks += 1;
                Ok(if looks == 3 { Check::Done("ready") } else { Check::Pending(looks) })
            },
            |seen: &i32, _| heard.push(*seen),
        )
        .await
        .unwrap();
        assert_eq!(waited, Waited::Done("ready"));
        assert_eq!(heard, [1, 2]);
    }

    #[tokio::test]
    async fn the_deadline_returns_the_last_pending_after_a_look_at_the_deadline() {
        let started = Instant::now();
        let mut looks = 0;
        let waited = until(
            &Cancel::new(),
            30 * MS,
            Poll::every(Duration::from_secs(60)),
            async || {
                looks += 1;
                Ok(Check::<(), _>::Pending(looks))
            },
            |_, _| {},
        )
        .await
        .unwrap();
        // One look at once, one at the deadline (the 60 s interval is cut to what is left).
        assert_eq!(waited, Waited::TimedOut(2));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_failing_check_ends_the_wait_with_its_error() {
        let err = until(
            &Cancel::new(),
            Duration::from_secs(5),
            Poll::every(MS),
            async || Err::<Check<(), ()>, _>(failed("cannot read")),
            |_, _| {},
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Failed);
        assert!(err.to_string().contains("cannot read"));
    }

    #[tokio::test]
    async fn a_stop_request_interrupts_a_pending_wait_at_once() {
        let cancel = Cancel::new();
        let stopper = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(20 * MS).await;
            stopper.request(Signal::Terminate);
        });
        let started = Instant::now();
        let err = until(
            &cancel,
            Duration::from_secs(60),
            Poll::every(Duration::from_secs(30)),
            async || Ok(Check::<(), _>::Pending(())),
            |_, _| {},
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Interrupted(Signal::Terminate));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
