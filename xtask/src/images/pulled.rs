//! The images the bootstrap downloaded itself (`docker pull` of an image the host's
//! store did not have), recorded in `.tools/pulled-images.json`, so `cargo xtask down
//! --purge` removes exactly those and never an image that was there before.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::{Result, bad_input, failed};

/// `<root>/.tools/pulled-images.json`: a JSON list of image references.
pub fn record_file(root: &Path) -> PathBuf {
    root.join(crate::pins::TOOLS_DIR).join("pulled-images.json")
}

/// The images recorded as downloaded by the bootstrap (none: empty).
pub fn recorded(root: &Path) -> Result<BTreeSet<String>> {
    let file = record_file(root);
    match std::fs::read_to_string(&file) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| {
            bad_input(format!(
                "{}: {e}: expected a JSON list of image references (delete the file to forget them)",
                file.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(failed(format!("{}: {e}", file.display()))),
    }
}

/// Add `image` to the record.
pub fn remember(root: &Path, image: &str) -> Result<()> {
    let mut all = recorded(root)?;
    if !all.insert(image.to_owned()) {
        return Ok(());
    }
    write(root, &all)
}

/// Replace the record with `images` (removing the file when there are none).
pub fn write(root: &Path, images: &BTreeSet<String>) -> Result<()> {
    let file = record_file(root);
    if images.is_empty() {
        return match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(failed(format!("{}: {e}", file.display())))
            }
            _ => Ok(()),
        };
    }
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| failed(format!("{}: {e}", dir.display())))?;
    }
    let text = serde_json::to_string_pretty(images).unwrap_or_default();
    crate::fsutil::write_atomically(&file, text.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downloads_are_remembered_once_and_forgotten_together() {
        let root = tempfile::tempdir().unwrap();
        assert!(recorded(root.path()).unwrap().is_empty());
        remember(root.path(), "busybox:1.37.0").unwrap();
        remember(root.path(), "hashicorp/vault:1.17.6").unwrap();
        remember(root.path(), "busybox:1.37.0").unwrap();
        let all = recorded(root.path()).unwrap();
        assert_eq!(
            all.into_iter().collect::<Vec<_>>(),
            ["busybox:1.37.0", "hashicorp/vault:1.17.6"]
        );
        write(root.path(), &BTreeSet::new()).unwrap();
        assert!(!record_file(root.path()).exists());
        std::fs::write(record_file(root.path()).parent().unwrap().join("pulled-images.json"), "{")
            .unwrap();
        assert_eq!(recorded(root.path()).unwrap_err().kind(), crate::error::ErrorKind::BadInput);
    }
}
