//! Finding tools: the project's pinned `.tools/bin` first, then `PATH`. Running them
//! is the executor's job.

use std::path::{Path, PathBuf};

/// The first executable file called `name` in `$PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// A tool from the project's own `<root>/.tools/bin` (where pinned tools are installed)
/// first, else from `$PATH`.
pub fn find_tool(root: &Path, name: &str) -> Option<PathBuf> {
    let local = crate::pins::bin_dir(root).join(name);
    if is_executable(&local) { Some(local) } else { find_on_path(name) }
}

/// A regular file with an execute bit: what `PATH` lookup would run.
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tool_is_not_found() {
        assert_eq!(find_on_path("surely-no-such-tool-xyz"), None);
    }

    #[test]
    fn project_tools_come_before_path() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let bin = crate::pins::bin_dir(root.path());
        std::fs::create_dir_all(&bin).unwrap();
        let sh = bin.join("sh");
        std::fs::write(&sh, "#!/bin/sh\n").unwrap();
        assert_eq!(find_tool(root.path(), "sh"), find_on_path("sh"), "not executable yet");
        std::fs::set_permissions(&sh, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_tool(root.path(), "sh"), Some(sh));
    }
}
