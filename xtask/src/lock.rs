//! One mutating command at a time per checkout: an OS lock on
//! `target/xtask-bootstrap.lock` (released by the OS when the process dies), holding
//! the holder's pid and command line for the message the next one gets. Live smoke
//! gates share the lock among themselves ([`RunLock::shared`]): they run in parallel,
//! never beside a bootstrap.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

use crate::error::{Result, failed};

#[derive(Debug)]
pub struct RunLock {
    file: File,
}

/// Who holds the lock, as its file says (empty while only shared holders hold it).
fn holder(file: &mut File) -> String {
    let mut holder = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut holder);
    match holder.trim() {
        "" => "a live smoke run (`cargo nextest run -p smoke`)".into(),
        text => text.to_owned(),
    }
}

fn open(root: &Path) -> Result<(File, std::path::PathBuf)> {
    let path = root.join("target").join("xtask-bootstrap.lock");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
    }
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| failed(format!("cannot open the lock file {}: {e}", path.display())))?;
    Ok((file, path))
}

/// What a shared taker met.
#[derive(Debug)]
pub enum Shared {
    Taken(RunLock),
    /// Held by a command that changes the platform: its pid and command line.
    Busy(String),
}

impl RunLock {
    /// Take the lock shared (beside other shared holders), or say who holds it.
    pub fn shared(root: &Path) -> Result<Shared> {
        let (mut file, path) = open(root)?;
        #[allow(clippy::incompatible_msrv)]
        match file.try_lock_shared() {
            Ok(()) => Ok(Shared::Taken(RunLock { file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(Shared::Busy(holder(&mut file))),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(failed(format!("cannot lock {}: {e}", path.display())))
            }
        }
    }

    /// Take the lock for `command` (e.g. `bootstrap`), or fail naming who holds it.
    pub fn acquire(root: &Path, command: &str) -> Result<RunLock> {
        let (mut file, path) = open(root)?;
        #[allow(clippy::incompatible_msrv)]
        match file.try_lock() {
            Ok(()) => {
                let stamp = jiff::Timestamp::now().round(jiff::Unit::Second).unwrap_or_default();
                let _ = file.set_len(0);
                let _ = file.rewind();
                let _ = write!(
                    file,
                    "pid {} (`cargo xtask {command}`) since {stamp}",
                    std::process::id()
                );
                let _ = file.flush();
                Ok(RunLock { file })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                Err(failed(format!(
                    "another command that changes or tests the platform is running: {}; wait for it to finish (lock: {})",
                    holder(&mut file),
                    path.display()
                ))
                .with_remediation("wait for the other run to finish, then run again"))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                Err(failed(format!("cannot lock {}: {e}", path.display())))
            }
        }
    }
}

impl Drop for RunLock {
    /// Leave no holder text behind: the next refusal names whoever holds it then.
    fn drop(&mut self) {
        if let Ok(meta) = self.file.metadata()
            && meta.len() > 0
        {
            // Only the exclusive holder wrote; shared holders leave the file alone.
            let _ = self.file.set_len(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_and_command() {
        let root = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(root.path(), "bootstrap").unwrap();
        let err = RunLock::acquire(root.path(), "sync 24-auth").err().unwrap();
        let text = err.to_string();
        assert!(text.contains(&format!("pid {}", std::process::id())), "{text}");
        assert!(text.contains("`cargo xtask bootstrap`"), "{text}");
        assert!(
            matches!(RunLock::shared(root.path()).unwrap(), Shared::Busy(h) if h.contains("`cargo xtask bootstrap`"))
        );
        drop(first);
        let second = RunLock::acquire(root.path(), "sync 24-auth").unwrap();
        drop(second);
        let (a, b) = (RunLock::shared(root.path()).unwrap(), RunLock::shared(root.path()).unwrap());
        assert!(matches!((&a, &b), (Shared::Taken(_), Shared::Taken(_))), "shared holders share");
        let err = RunLock::acquire(root.path(), "bootstrap").err().unwrap();
        assert!(err.to_string().contains("a live smoke run"), "{err}");
    }
}
