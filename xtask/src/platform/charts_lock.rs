//! `charts.lock.yaml`: the vendored Helm charts, pinned by version and archive digest.
//!
//! ```yaml
//! charts:
//!   - name: postgresql
//!     repository: https://charts.example.com/stable   # or oci://registry/path
//!     version: 1.2.3
//!     digest: sha256:<64 hex>
//!     archive: postgresql-1.2.3.tgz                     # relative to this file
//! ```

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::error::bad_input;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChartsLock {
    #[serde(default)]
    pub charts: Vec<LockedChart>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedChart {
    pub name: String,
    pub repository: String,
    pub version: String,
    /// `sha256:<64 lowercase hex>` of the archive bytes.
    pub digest: String,
    /// Archive path relative to the lock file's directory.
    pub archive: String,
}

impl ChartsLock {
    /// Read and validate a lock file. A missing file is an empty lock: a platform
    /// may vendor nothing.
    pub fn read(path: &Path) -> Result<ChartsLock> {
        if !path.exists() {
            return Ok(ChartsLock::default());
        }
        let lock: ChartsLock = super::read_yaml(path)?;
        lock.validate(path)?;
        Ok(lock)
    }

    /// Every problem is bad input naming the file, the chart and what was expected.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let file = path.display();
        let mut seen = std::collections::BTreeSet::new();
        for chart in &self.charts {
            let name = &chart.name;
            if name.is_empty() {
                return Err(bad_input(format!("{file}: a chart has an empty `name`")));
            }
            if !seen.insert(name.as_str()) {
                return Err(bad_input(format!("{file}: chart `{name}` is listed twice")));
            }
            if !(chart.repository.starts_with("https://")
                || chart.repository.starts_with("http://")
                || chart.repository.starts_with("oci://"))
            {
                return Err(bad_input(format!(
                    "{file}: chart `{name}`: `repository` must start with https://, http:// or oci://, found `{}`",
                    chart.repository
                )));
            }
            if chart.version.is_empty() {
                return Err(bad_input(format!("{file}: chart `{name}`: `version` is empty")));
            }
            if parse_digest(&chart.digest).is_none() {
                return Err(bad_input(format!(
                    "{file}: chart `{name}`: `digest` must be `sha256:` followed by 64 lowercase hex digits, found `{}`",
                    chart.digest
                )));
            }
            let archive = Path::new(&chart.archive);
            if chart.archive.is_empty()
                || archive.is_absolute()
                || archive.components().any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(bad_input(format!(
                    "{file}: chart `{name}`: `archive` must be a path inside the lock's folder, found `{}`",
                    chart.archive
                )));
            }
        }
        Ok(())
    }

    /// Absolute path of a chart's archive, given the lock file's path.
    pub fn archive_path(lock_path: &Path, chart: &LockedChart) -> PathBuf {
        lock_path.parent().unwrap_or(Path::new(".")).join(&chart.archive)
    }
}

/// The hex part of `sha256:<64 lowercase hex>`, or `None` when malformed.
pub fn parse_digest(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit_code;

    const GOOD: &str = "charts:\n  - name: redis\n    repository: oci://localhost:5000/charts\n    version: 1.0.0\n    digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n    archive: redis-1.0.0.tgz\n";

    fn parse(text: &str) -> Result<ChartsLock> {
        let path = Path::new("infra/charts.lock.yaml");
        let lock: ChartsLock = super::super::parse_yaml(path, text)?;
        lock.validate(path)?;
        Ok(lock)
    }

    #[test]
    fn reads_a_valid_lock() {
        let lock = parse(GOOD).unwrap();
        assert_eq!(lock.charts[0].name, "redis");
        assert_eq!(
            ChartsLock::archive_path(Path::new("a/b/charts.lock.yaml"), &lock.charts[0]),
            Path::new("a/b/redis-1.0.0.tgz")
        );
    }

    #[test]
    fn rejects_bad_digest_naming_file_and_chart() {
        let err = parse(&GOOD.replace("sha256:0123", "md5:0123")).unwrap_err();
        assert_eq!(exit_code(&err), 2);
        let msg = err.to_string();
        assert!(msg.contains("infra/charts.lock.yaml") && msg.contains("`redis`"), "{msg}");
    }

    #[test]
    fn rejects_unknown_key_and_escaping_archive() {
        assert!(parse(&GOOD.replace("archive:", "archiv:")).is_err());
        let err = parse(&GOOD.replace("redis-1.0.0.tgz", "../x.tgz")).unwrap_err();
        assert!(err.to_string().contains("inside the lock's folder"));
    }
}
