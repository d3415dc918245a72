//! Small file-system helpers shared by `vendor`, `tools` and the layer digests.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use crate::error::{Context, Result};

/// Replace `path` with `bytes` so readers see the old or the new file, never a part: a
/// temp file in the same folder (same file system) gets `mode` and is renamed over it.
/// Missing folders are created.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Hidden and not `*.tgz`, so a leftover is never taken for a vendored archive.
    let mut temp = tempfile::Builder::new()
        .prefix(".xtask-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    temp.write_all(bytes).with_context(|| format!("writing {}", path.display()))?;
    temp.as_file().sync_all().with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    temp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// Every file under `dir` (recursively), sorted.
pub fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            crate::error::bad_input(format!("{}: cannot read folder: {e}", dir.display()))
        })?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Lexical normalisation (`a/./b/../c` -> `a/c`) so two spellings of one path compare
/// and hash alike without touching the disk. A `..` that cannot go up is kept when the
/// path is relative (`../x`), dropped at the root (`/..` is `/`).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                Some(Component::ParentDir | Component::CurDir) | None => out.push(".."),
            },
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalize_lexically() {
        let cases = [
            ("k/helmfiles/../charts/c", "k/charts/c"),
            ("./a/./b/", "a/b"),
            ("a/..", ""),
            ("../x", "../x"),
            ("../../x", "../../x"),
            ("a/../../x", "../x"),
            ("/..", "/"),
            ("/r/k/../../c.tgz", "/c.tgz"),
        ];
        for (given, expected) in cases {
            assert_eq!(normalize(Path::new(given)), Path::new(expected), "{given}");
        }
    }

    #[test]
    fn writes_replace_the_file_with_the_given_mode_and_leave_no_temp_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/folder/tool");
        write_atomically(&path, b"one", 0o755).unwrap();
        write_atomically(&path, b"two", 0o644).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(path.metadata().unwrap().permissions().mode() & 0o777, 0o644);
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["tool"]);
    }
}
