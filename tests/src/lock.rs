//! The machine lock: one testbed world at a time per machine (cluster and registry names
//! and the registry's host port come from the platform config, so two would collide).
//! A test's `World` holds it in-process until dropped; `testbed up` (a command that
//! exits) leaves a small `testbed lock-holder` process holding it, in its own session,
//! until `testbed down` stops it (or its dir disappears).

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::procs;

pub const LOCK_FILE: &str = "/tmp/testbed-world.lock";
const HELD_FILE: &str = "lock.held";
const PID_FILE: &str = "lock.pid";

/// Take the lock (blocking until the holder of another world lets go).
pub fn acquire() -> Result<File> {
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_FILE)
        .with_context(|| format!("opening {LOCK_FILE}"))?;
    #[allow(clippy::incompatible_msrv)]
    match lock.try_lock() {
        Ok(()) => return Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => {
            eprintln!("testbed: another testbed world is up; waiting for {LOCK_FILE}");
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {LOCK_FILE}"));
        }
    }
    #[allow(clippy::incompatible_msrv)]
    lock.lock().with_context(|| format!("locking {LOCK_FILE}"))?;
    Ok(lock)
}

/// `testbed lock-holder --dir D --owner PID`: take the lock, say so in `D/lock.held`,
/// hold it while `D` exists. Gives up (releasing the lock) if the `testbed up` that
/// started it (`owner`) dies before `D` is a testbed dir (no `scenario.json` yet), so a
/// killed or failed `up` never leaves the machine locked.
pub fn hold(dir: &Path, owner: Option<u32>) -> Result<()> {
    let _ = nix::unistd::setsid();
    let owner_gone = || {
        owner.is_some_and(|pid| !procs::is_ours(pid, "testbed"))
            && !dir.join(crate::scenario::FILE).exists()
    };
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_FILE)
        .with_context(|| format!("opening {LOCK_FILE}"))?;
    loop {
        #[allow(clippy::incompatible_msrv)]
        match lock.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {LOCK_FILE}"));
            }
        }
        if owner_gone() || !dir.exists() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::fs::write(dir.join(HELD_FILE), std::process::id().to_string())?;
    while dir.join(HELD_FILE).exists() && !owner_gone() {
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Start a lock holder for `dir` and wait until it holds the lock.
pub fn spawn_holder(dir: &Path, testbed_bin: &Path) -> Result<()> {
    // `up` again on the same dir: its holder already has the lock.
    if dir.join(HELD_FILE).exists()
        && procs::read_pid(&dir.join(PID_FILE)).is_some_and(|p| procs::is_ours(p, "lock-holder"))
    {
        return Ok(());
    }
    let _ = std::fs::remove_file(dir.join(HELD_FILE));
    let args = vec![
        "lock-holder".to_owned(),
        "--dir".to_owned(),
        dir.to_string_lossy().into_owned(),
        "--owner".to_owned(),
        std::process::id().to_string(),
    ];
    let mut child =
        procs::spawn_detached(testbed_bin, &args, &dir.join("lock.log"), &dir.join(PID_FILE))?;
    let start = Instant::now();
    while !dir.join(HELD_FILE).exists() {
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "the testbed lock holder exited ({status}); see {}",
                dir.join("lock.log").display()
            );
        }
        if start.elapsed() > Duration::from_secs(2) && start.elapsed() < Duration::from_millis(2100)
        {
            eprintln!("testbed: waiting for {LOCK_FILE} (another testbed world is up)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Stop `dir`'s lock holder (if any).
pub fn release_holder(dir: &Path) -> Result<()> {
    let _ = std::fs::remove_file(dir.join(HELD_FILE));
    procs::stop_pid_file(&dir.join(PID_FILE), "lock-holder")?;
    Ok(())
}
