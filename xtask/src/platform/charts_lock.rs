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

use crate::error::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::error::bad_input;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChartsLock {
    #[serde(default)]
    pub charts: Vec<LockedChart>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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

    pub fn get(&self, name: &str) -> Option<&LockedChart> {
        self.charts.iter().find(|chart| chart.name == name)
    }

    /// Insert or replace the entry with the same name, keeping entries sorted by name.
    pub fn upsert(&mut self, chart: LockedChart) {
        self.charts.retain(|c| c.name != chart.name);
        self.charts.push(chart);
        self.charts.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// The lock as YAML: entries sorted by name, fields in a fixed order, values quoted
    /// only where YAML would read them as something other than a string. `header` is
    /// kept verbatim on top (the comment block of the existing file).
    pub fn to_yaml(&self, header: &str) -> String {
        let mut charts = self.charts.clone();
        charts.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out = String::from(header);
        if charts.is_empty() {
            out.push_str("charts: []\n");
            return out;
        }
        out.push_str("charts:\n");
        for c in &charts {
            out.push_str(&format!("  - name: {}\n", yaml_scalar(&c.name)));
            out.push_str(&format!("    repository: {}\n", yaml_scalar(&c.repository)));
            out.push_str(&format!("    version: {}\n", yaml_scalar(&c.version)));
            out.push_str(&format!("    digest: {}\n", yaml_scalar(&c.digest)));
            out.push_str(&format!("    archive: {}\n", yaml_scalar(&c.archive)));
        }
        out
    }

    /// Write the lock atomically (temp file in the same folder, then rename), keeping
    /// the leading comment block of the file it replaces.
    pub fn write(&self, path: &Path) -> Result<()> {
        let header =
            std::fs::read_to_string(path).map(|text| leading_comments(&text)).unwrap_or_default();
        crate::fsutil::write_atomically(path, self.to_yaml(&header).as_bytes(), 0o644)
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// The comment and blank lines before the first YAML content line.
fn leading_comments(text: &str) -> String {
    text.lines()
        .take_while(|line| line.trim().is_empty() || line.trim_start().starts_with('#'))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// A plain scalar when it is unambiguously a string, else a double-quoted one
/// (a JSON string is a valid YAML double-quoted scalar).
fn yaml_scalar(value: &str) -> String {
    let plain_chars = value.bytes().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(b, b'.' | b'_' | b'/' | b':' | b'+' | b'-' | b'@' | b'~')
    });
    let starts_well = value.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    let reads_as_other = value.parse::<f64>().is_ok()
        || matches!(
            value.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        );
    if plain_chars && starts_well && !reads_as_other {
        value.to_string()
    } else {
        serde_json::to_string(value).unwrap_or_default()
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
    use crate::error::ErrorKind;

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
        assert_eq!(err.kind(), ErrorKind::BadInput);
        let msg = err.to_string();
        assert!(msg.contains("infra/charts.lock.yaml") && msg.contains("`redis`"), "{msg}");
    }

    fn entry(name: &str, version: &str) -> LockedChart {
        LockedChart {
            name: name.into(),
            repository: "https://charts.example.com/stable".into(),
            version: version.into(),
            digest: format!("sha256:{}", "ab".repeat(32)),
            archive: format!("{name}-{version}.tgz"),
        }
    }

    #[test]
    fn written_lock_is_sorted_stable_and_reads_back() {
        let mut lock = ChartsLock::default();
        lock.upsert(entry("redis", "1.10"));
        lock.upsert(entry("postgresql", "12.1.0"));
        lock.upsert(entry("redis", "1.11"));
        let text = lock.to_yaml("# vendored charts\n");
        assert!(text.starts_with("# vendored charts\ncharts:\n  - name: postgresql\n"), "{text}");
        // `1.11` alone would read as a number: it is quoted.
        assert!(text.contains("version: \"1.11\"") && text.contains("version: 12.1.0"), "{text}");
        let back = parse(&text).unwrap();
        assert_eq!(
            back.charts.iter().map(|c| c.version.as_str()).collect::<Vec<_>>(),
            ["12.1.0", "1.11"]
        );
        assert_eq!(back.to_yaml("# vendored charts\n"), text);
        assert_eq!(ChartsLock::default().to_yaml(""), "charts: []\n");
    }

    #[test]
    fn write_keeps_the_header_comment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("charts.lock.yaml");
        std::fs::write(&path, "# Filled by `cargo xtask vendor add`.\n\ncharts: []\n").unwrap();
        let mut lock = ChartsLock::read(&path).unwrap();
        lock.upsert(entry("redis", "1.0.0"));
        lock.write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# Filled by `cargo xtask vendor add`.\n\ncharts:\n"), "{text}");
        assert_eq!(ChartsLock::read(&path).unwrap(), lock);
    }

    #[test]
    fn rejects_unknown_key_and_escaping_archive() {
        assert!(parse(&GOOD.replace("archive:", "archiv:")).is_err());
        let err = parse(&GOOD.replace("redis-1.0.0.tgz", "../x.tgz")).unwrap_err();
        assert!(err.to_string().contains("inside the lock's folder"));
    }
}
