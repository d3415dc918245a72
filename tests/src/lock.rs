//! Holding a world slot (`crate::slot`) for a `testbed up` world. A test's `World` holds
//! its slot's lock in-process until dropped; `testbed up` (a command that exits) leaves a
//! small `testbed lock-holder` process holding it, in its own session, until `testbed
//! down` stops it (or its dir disappears). The holder writes the slot it took to
//! `D/slot`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::procs;
use crate::slot::Slot;

const HELD_FILE: &str = "lock.held";
const PID_FILE: &str = "lock.pid";
const SLOT_FILE: &str = "slot";

/// `testbed lock-holder --dir D --owner PID`: take the first free slot, say which in
/// `D/slot` and that it holds it in `D/lock.held`, hold it while `D` exists. Gives up
/// (releasing the slot) if the `testbed up` that started it (`owner`) dies before `D`
/// is a testbed dir (no `scenario.json` yet), so a killed or failed `up` never leaves a
/// slot taken.
pub fn hold(dir: &Path, owner: Option<u32>) -> Result<()> {
    let _ = nix::unistd::setsid();
    let owner_gone = || {
        owner.is_some_and(|pid| !procs::is_ours(pid, "testbed"))
            && !dir.join(crate::scenario::FILE).exists()
    };
    let Some((slot, _lock)) = crate::slot::acquire_unless(|| owner_gone() || !dir.exists())? else {
        return Ok(());
    };
    std::fs::write(dir.join(SLOT_FILE), slot.index().to_string())?;
    std::fs::write(dir.join(HELD_FILE), std::process::id().to_string())?;
    while dir.join(HELD_FILE).exists() && !owner_gone() {
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// The slot `dir`'s lock holder took.
pub fn held_slot(dir: &Path) -> Option<Slot> {
    let text = std::fs::read_to_string(dir.join(SLOT_FILE)).ok()?;
    text.trim().parse().ok().map(Slot::new)
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
            eprintln!("testbed: waiting for a free world slot (all are taken)");
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
