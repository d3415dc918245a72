//! One mutating command at a time per checkout: an OS lock on
//! `target/xtask-bootstrap.lock` (released by the OS when the process dies), holding
//! the holder's pid and command line for the message the next one gets.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

use crate::error::{Result, failed};

pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Take the lock for `command` (e.g. `bootstrap`), or fail naming who holds it.
    pub fn acquire(root: &Path, command: &str) -> Result<RunLock> {
        let path = root.join("target").join("xtask-bootstrap.lock");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| failed(format!("cannot open the lock file {}: {e}", path.display())))?;
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
                Ok(RunLock { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = if holder.trim().is_empty() { "unknown pid".into() } else { holder };
                Err(failed(format!(
                    "another `cargo xtask` command that changes the platform is running: {}; wait for it to finish (lock: {})",
                    holder.trim(),
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
        drop(first);
        assert!(RunLock::acquire(root.path(), "sync 24-auth").is_ok());
    }
}
