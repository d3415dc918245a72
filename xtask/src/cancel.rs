//! Cancellation, one mechanism for the whole command (interrupted commands
//! stop their child process groups and exit 128 + the signal).
//!
//! A [`Cancel`] travels in the command's session. The CLI's signal listener calls
//! [`Cancel::request`] on SIGINT, SIGTERM or SIGHUP; every tool call and every wait
//! sees it at once (a `CancellationToken`, no polling), stops what it runs and returns
//! an `Interrupted` error. Without a listener (library tests, smoke) nothing fires.

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use nix::sys::signal::{self, killpg};
use nix::unistd::Pid;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result, Signal, interrupted};

#[derive(Clone, Default)]
pub struct Cancel {
    token: CancellationToken,
    /// The first signal that arrived: it decides the exit code.
    signal: Arc<OnceLock<Signal>>,
    /// Process groups of the tool calls running now (stopped if we must exit at once).
    groups: Arc<Mutex<Vec<i32>>>,
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cancel({:?})", self.signal())
    }
}

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Ask everything to stop (the first signal is the one reported).
    pub fn request(&self, signal: Signal) {
        let _ = self.signal.set(signal);
        self.token.cancel();
    }

    /// The signal that stopped the command, if one did.
    pub fn signal(&self) -> Option<Signal> {
        self.signal.get().copied()
    }

    pub fn requested(&self) -> bool {
        self.token.is_cancelled()
    }

    /// An `Interrupted` error once a stop was requested: call before starting anything.
    pub fn check(&self) -> Result<()> {
        match self.requested() {
            true => Err(self.error("interrupted before the next step; nothing else was started")),
            false => Ok(()),
        }
    }

    /// Resolves once a stop was requested (never without one): for `select!`.
    pub async fn cancelled(&self) {
        self.token.cancelled().await
    }

    /// Sleep `duration`, or return `Interrupted` as soon as a stop is requested.
    pub async fn sleep(&self, duration: Duration) -> Result<()> {
        self.unless_interrupted(tokio::time::sleep(duration)).await
    }

    /// Run `work` unless a stop is requested first (then `work` is dropped: only for
    /// work that may stop anywhere, e.g. API reads).
    pub async fn unless_interrupted<T>(&self, work: impl Future<Output = T>) -> Result<T> {
        self.check()?;
        tokio::select! {
            biased;
            () = self.token.cancelled() => Err(self.error("interrupted while waiting; nothing else was started")),
            value = work => Ok(value),
        }
    }

    /// An `Interrupted` error for the signal that arrived (SIGINT if none did).
    pub fn error(&self, message: &str) -> Error {
        interrupted(self.signal().unwrap_or(Signal::Interrupt), message)
    }

    /// Track a running tool's process group while the guard lives.
    pub fn track_group(&self, pgid: i32) -> TrackedGroup {
        self.groups.lock().unwrap_or_else(|p| p.into_inner()).push(pgid);
        TrackedGroup { groups: self.groups.clone(), pgid }
    }

    /// SIGKILL every tracked process group (exiting at once, without the summary).
    pub fn kill_groups(&self) {
        for &group in self.groups.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = killpg(Pid::from_raw(group), signal::Signal::SIGKILL);
        }
    }
}

/// Forgets its process group when dropped.
pub struct TrackedGroup {
    groups: Arc<Mutex<Vec<i32>>>,
    pgid: i32,
}

impl Drop for TrackedGroup {
    fn drop(&mut self) {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = groups.iter().position(|&g| g == self.pgid) {
            groups.swap_remove(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[tokio::test]
    async fn nothing_fires_until_requested() {
        let cancel = Cancel::new();
        let waited = tokio::time::timeout(Duration::from_millis(100), cancel.cancelled()).await;
        assert!(waited.is_err(), "cancelled() resolved with no request");
        assert_eq!(cancel.unless_interrupted(async { 7 }).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn a_request_cuts_a_wait_short_with_its_signal() {
        let cancel = Cancel::new();
        let waiting = tokio::spawn({
            let cancel = cancel.clone();
            async move { cancel.unless_interrupted(std::future::pending::<()>()).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        cancel.request(Signal::Terminate);
        cancel.request(Signal::Interrupt);
        let err = waiting.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Interrupted(Signal::Terminate));
        assert_eq!(cancel.check().unwrap_err().kind(), ErrorKind::Interrupted(Signal::Terminate));
    }

    #[test]
    fn tracked_groups_are_forgotten_when_dropped() {
        let cancel = Cancel::new();
        let count = || cancel.groups.lock().unwrap().len();
        let tracked = cancel.track_group(-4242);
        assert_eq!(count(), 1);
        drop(tracked);
        assert_eq!(count(), 0);
    }
}
