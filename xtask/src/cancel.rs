//! Ctrl-C, one mechanism for the whole process (DESIGN.md: every command exits 130 on
//! Ctrl-C with its child process groups stopped).
//!
//! The CLI calls [`listen`] once. From then on a Ctrl-C only sets a flag: every tool call
//! (`exec::run`) and every wait loop sees it through [`check`], [`sleep`],
//! [`unless_interrupted`] or [`interrupted`], stops what it runs and returns an
//! `Interrupted` (130) error. A second Ctrl-C, or a run still going [`FORCE_AFTER`] the
//! first, kills the tracked tool process groups and exits 130 at once.
//!
//! Without the listener (library tests, the smoke binary) nothing here ever fires and
//! SIGINT keeps its default action.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Result;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::error::{Coded, ExitCode};

/// How long a run may take to wind down after the first Ctrl-C (a tool call's SIGTERM
/// grace, its SIGKILL and output, bootstrap's summary) before we exit without it.
const FORCE_AFTER: Duration = Duration::from_secs(30);

/// How often a waiter looks at the flag. The flag is set from the listener's own thread
/// (it must be, the command's thread may be busy), so waiters poll it; 50 ms is
/// invisible to a user and costs nothing.
const POLL: Duration = Duration::from_millis(50);

/// Whether Ctrl-C arrived, and whether anyone listens for it.
struct Cancel {
    listening: AtomicBool,
    requested: AtomicBool,
}

impl Cancel {
    const fn new() -> Cancel {
        Cancel { listening: AtomicBool::new(false), requested: AtomicBool::new(false) }
    }

    fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
    }

    fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    fn check(&self) -> Result<()> {
        match self.requested() {
            true => Err(error("interrupted before the next step; nothing else was started")),
            false => Ok(()),
        }
    }

    /// Resolves once Ctrl-C arrived; never when nobody listens.
    async fn interrupted(&self) {
        if !self.listening.load(Ordering::SeqCst) {
            return std::future::pending().await;
        }
        while !self.requested() {
            tokio::time::sleep(POLL).await;
        }
    }

    async fn unless_interrupted<T>(&self, work: impl Future<Output = T>) -> Result<T> {
        self.check()?;
        tokio::select! {
            biased;
            () = self.interrupted() => Err(error("interrupted while waiting; nothing else was started")),
            value = work => Ok(value),
        }
    }
}

static CANCEL: Cancel = Cancel::new();

/// Process groups of the tool calls running now (stopped if we must exit at once).
static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Install the Ctrl-C listener (the CLI, once; later calls do nothing). It runs on its
/// own thread so a Ctrl-C is noticed even while the command's thread is busy.
pub fn listen() {
    if CANCEL.listening.swap(true, Ordering::SeqCst) {
        return;
    }
    let listener = std::thread::Builder::new().name("ctrl-c".into()).spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
        let Ok(runtime) = runtime else { return };
        runtime.block_on(async {
            if tokio::signal::ctrl_c().await.is_err() {
                return;
            }
            CANCEL.request();
            eprintln!("interrupted: stopping the running step (Ctrl-C again to stop at once)");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = tokio::time::sleep(FORCE_AFTER) => {
                    eprintln!("still stopping after {}s", FORCE_AFTER.as_secs());
                }
            }
            exit_now();
        });
    });
    if listener.is_err() {
        // No listener: leave SIGINT's default action (the process ends) in place.
        CANCEL.listening.store(false, Ordering::SeqCst);
    }
}

/// Kill the running tool calls' process groups and exit 130.
fn exit_now() -> ! {
    for &group in GROUPS.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
    }
    eprintln!("interrupted: stopped the running tools and exited without a summary");
    std::process::exit(ExitCode::Interrupted as i32)
}

/// Whether Ctrl-C arrived.
pub fn requested() -> bool {
    CANCEL.requested()
}

/// An `Interrupted` (130) error once Ctrl-C arrived: call before starting anything.
pub fn check() -> Result<()> {
    CANCEL.check()
}

/// Resolves once Ctrl-C arrived (never without the listener): for `select!`.
pub async fn interrupted() {
    CANCEL.interrupted().await
}

/// Sleep `duration`, or return `Interrupted` as soon as Ctrl-C arrives.
pub async fn sleep(duration: Duration) -> Result<()> {
    CANCEL.unless_interrupted(tokio::time::sleep(duration)).await
}

/// Run `work` unless Ctrl-C arrives first (then `work` is dropped: only for work that
/// may stop anywhere, e.g. API reads).
pub async fn unless_interrupted<T>(work: impl Future<Output = T>) -> Result<T> {
    CANCEL.unless_interrupted(work).await
}

/// An `Interrupted` (130) error.
pub fn error(message: &str) -> anyhow::Error {
    Coded { code: ExitCode::Interrupted, message: message.to_owned() }.into()
}

/// Tracks a running tool's process group while alive, so exiting at once stops it too.
pub struct TrackedGroup(i32);

pub fn track_group(pgid: i32) -> TrackedGroup {
    GROUPS.lock().unwrap_or_else(|p| p.into_inner()).push(pgid);
    TrackedGroup(pgid)
}

impl Drop for TrackedGroup {
    fn drop(&mut self) {
        let mut groups = GROUPS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = groups.iter().position(|&g| g == self.0) {
            groups.swap_remove(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit_code;

    // Each test has its own `Cancel`: the process-wide one must stay unset for the
    // other tests of this binary.

    #[tokio::test]
    async fn nothing_fires_without_the_listener() {
        let cancel = Cancel::new();
        cancel.request();
        let waited = tokio::time::timeout(Duration::from_millis(200), cancel.interrupted()).await;
        assert!(waited.is_err(), "interrupted() resolved with nobody listening");
        let work = cancel.unless_interrupted(async { 7 });
        // The flag alone (set by a listener) still refuses new work.
        assert_eq!(exit_code(&work.await.unwrap_err()), 130);
    }

    #[tokio::test]
    async fn unset_flag_lets_work_run() {
        let cancel = Cancel::new();
        cancel.listening.store(true, Ordering::SeqCst);
        assert!(cancel.check().is_ok());
        assert_eq!(cancel.unless_interrupted(async { 7 }).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn ctrl_c_cuts_a_wait_short_with_130() {
        static LISTENED: Cancel = Cancel::new();
        LISTENED.listening.store(true, Ordering::SeqCst);
        let waiting = tokio::spawn(LISTENED.unless_interrupted(std::future::pending::<()>()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished());
        LISTENED.request();
        let err = waiting.await.unwrap().unwrap_err();
        assert_eq!(exit_code(&err), 130);
        assert_eq!(exit_code(&LISTENED.check().unwrap_err()), 130);
    }

    #[test]
    fn tracked_groups_are_forgotten_when_dropped() {
        let count = |g| GROUPS.lock().unwrap().iter().filter(|&&x| x == g).count();
        let tracked = track_group(-4242);
        assert_eq!(count(-4242), 1);
        drop(tracked);
        assert_eq!(count(-4242), 0);
    }
}
