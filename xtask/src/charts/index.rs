//! A Helm repository's `index.yaml`: which archive URL serves a chart version.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::Result;
use serde::Deserialize;

use crate::error::bad_input;

/// The parts of `index.yaml` we use; everything else is ignored.
#[derive(Debug, Deserialize)]
pub struct RepoIndex {
    #[serde(default)]
    pub entries: BTreeMap<String, Vec<IndexEntry>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IndexEntry {
    pub version: String,
    #[serde(default)]
    pub urls: Vec<String>,
    /// sha256 hex of the archive, as `helm repo index` writes it (optional upstream).
    #[serde(default)]
    pub digest: Option<String>,
}

/// Where to download one chart version, and the digest the index promises, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub version: String,
    pub url: String,
    pub index_digest: Option<String>,
}

impl RepoIndex {
    pub fn parse(repo_url: &str, text: &str) -> Result<RepoIndex> {
        let source = format!("{}/index.yaml", repo_url.trim_end_matches('/'));
        crate::platform::parse_yaml(Path::new(&source), text)
    }

    /// The entry for `name` at `version` (the newest stable one when `None`), its URL
    /// resolved against the repository URL. Unknown chart or version is bad input.
    pub fn resolve(&self, repo_url: &str, name: &str, version: Option<&str>) -> Result<Resolved> {
        let versions = self.entries.get(name).filter(|v| !v.is_empty()).ok_or_else(|| {
            bad_input(format!("chart `{name}` is not in the repository {repo_url}"))
        })?;
        let entry = match version {
            Some(wanted) => versions.iter().find(|e| e.version == wanted).ok_or_else(|| {
                let mut known: Vec<&str> = versions.iter().map(|e| e.version.as_str()).collect();
                known.truncate(10);
                bad_input(format!(
                    "chart `{name}` has no version `{wanted}` in {repo_url} (it has: {})",
                    known.join(", ")
                ))
            })?,
            None => newest_stable(versions).ok_or_else(|| {
                bad_input(format!(
                    "chart `{name}` in {repo_url} has no stable version; pass --version"
                ))
            })?,
        };
        let first = entry.urls.first().ok_or_else(|| {
            bad_input(format!(
                "chart `{name}` {} in {repo_url} lists no download URL",
                entry.version
            ))
        })?;
        Ok(Resolved {
            version: entry.version.clone(),
            url: resolve_url(repo_url, first)?,
            index_digest: entry.digest.clone().filter(|d| !d.is_empty()),
        })
    }
}

/// The highest version that is not a pre-release (`1.2.3`, not `1.3.0-rc.1`), ordered
/// as SemVer, as Helm orders chart versions. Versions that are not SemVer are skipped.
pub fn newest_stable(entries: &[IndexEntry]) -> Option<&IndexEntry> {
    entries
        .iter()
        .filter_map(|e| chart_version(&e.version).map(|v| (v, e)))
        .filter(|(v, _)| v.pre.is_empty())
        .max_by(|a, b| a.0.cmp_precedence(&b.0))
        .map(|(_, e)| e)
}

/// A chart version as Helm reads it (Masterminds semver): a `v` prefix is allowed and
/// missing minor or patch numbers are zero (`v1.2` is 1.2.0).
pub fn chart_version(text: &str) -> Option<semver::Version> {
    let text = text.strip_prefix('v').unwrap_or(text);
    if let Ok(version) = semver::Version::parse(text) {
        return Some(version);
    }
    let split = text.find(['-', '+']).unwrap_or(text.len());
    let (core, rest) = text.split_at(split);
    let parts = core.split('.').count();
    if parts >= 3 || core.is_empty() {
        return None;
    }
    semver::Version::parse(&format!("{core}{}{rest}", ".0".repeat(3 - parts))).ok()
}

/// Resolve a URL from `index.yaml` the way Helm does: absolute URLs stand; others are
/// relative to the repository URL taken as a folder (a trailing `/` is implied). A
/// repository URL that is not a URL is bad input.
pub fn resolve_url(repo_url: &str, reference: &str) -> Result<String> {
    let mut base = reqwest::Url::parse(repo_url)
        .map_err(|e| bad_input(format!("repository `{repo_url}` is not a valid URL: {e}")))?;
    if !base.path().ends_with('/') {
        let folder = format!("{}/", base.path());
        base.set_path(&folder);
    }
    let url = base.join(reference).map_err(|e| {
        bad_input(format!("`{reference}` (in {repo_url}/index.yaml) is not a valid URL: {e}"))
    })?;
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    const INDEX: &str = r#"apiVersion: v1
entries:
  demo:
    - apiVersion: v2
      name: demo
      version: 0.2.0-rc.1
      urls: [demo-0.2.0-rc.1.tgz]
    - apiVersion: v2
      name: demo
      version: 0.10.0
      digest: 7f3c
      urls: [charts/demo-0.10.0.tgz]
      created: "2026-01-01T00:00:00Z"
    - name: demo
      version: 0.9.1
      urls: ["https://cdn.example.com/demo-0.9.1.tgz"]
generated: "2026-01-01T00:00:00Z"
"#;

    #[test]
    fn resolves_a_version_relative_to_the_repository() {
        let index = RepoIndex::parse("http://127.0.0.1:1/repo", INDEX).unwrap();
        let found = index.resolve("http://127.0.0.1:1/repo", "demo", Some("0.10.0")).unwrap();
        assert_eq!(found.url, "http://127.0.0.1:1/repo/charts/demo-0.10.0.tgz");
        assert_eq!(found.index_digest.as_deref(), Some("7f3c"));
        let absolute = index.resolve("http://127.0.0.1:1/repo/", "demo", Some("0.9.1")).unwrap();
        assert_eq!(absolute.url, "https://cdn.example.com/demo-0.9.1.tgz");
    }

    #[test]
    fn newest_stable_skips_prereleases_and_compares_numbers() {
        let index = RepoIndex::parse("x", INDEX).unwrap();
        assert_eq!(index.resolve("http://h", "demo", None).unwrap().version, "0.10.0");
    }

    #[test]
    fn chart_versions_are_semver_as_helm_reads_them() {
        let entries = |versions: &[&str]| -> Vec<IndexEntry> {
            versions
                .iter()
                .map(|v| IndexEntry { version: (*v).into(), urls: vec![], digest: None })
                .collect()
        };
        let newest = |versions: &[&str]| {
            newest_stable(&entries(versions)).map(|e| e.version.clone()).unwrap_or_default()
        };
        assert_eq!(newest(&["1.9.0", "1.10.0", "1.2.0"]), "1.10.0");
        assert_eq!(newest(&["2.0.0-rc.1", "1.9.9", "2.0.0-alpha"]), "1.9.9");
        assert_eq!(newest(&["v1.2", "1.1.9", "latest"]), "v1.2");
        assert_eq!(newest(&["1.0.0+build.2", "0.9.0"]), "1.0.0+build.2");
        assert_eq!(newest(&["1.0.0-rc.1", "nightly"]), "", "no stable version");
        assert_eq!(chart_version("v1"), Some(semver::Version::new(1, 0, 0)));
        assert_eq!(chart_version("1.2-rc.1").map(|v| v.pre.to_string()), Some("rc.1".into()));
        assert_eq!(chart_version("1.2.3.4"), None);
    }

    #[test]
    fn a_repository_that_is_no_url_is_bad_input() {
        let err = resolve_url("charts.example.com", "a.tgz").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput, "{err}");
    }

    #[test]
    fn unknown_chart_or_version_is_bad_input_listing_what_exists() {
        let index = RepoIndex::parse("x", INDEX).unwrap();
        let err = index.resolve("http://h", "demo", Some("9.9.9")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput);
        assert!(err.to_string().contains("0.9.1"), "{err}");
        assert_eq!(
            index.resolve("http://h", "nope", None).unwrap_err().kind(),
            ErrorKind::BadInput
        );
    }

    #[test]
    fn relative_urls_follow_helm() {
        let repo = "https://charts.example.com/stable";
        assert_eq!(
            resolve_url(repo, "a-1.tgz").unwrap(),
            "https://charts.example.com/stable/a-1.tgz"
        );
        assert_eq!(
            resolve_url(repo, "./x/a-1.tgz").unwrap(),
            "https://charts.example.com/stable/x/a-1.tgz"
        );
        assert_eq!(
            resolve_url(repo, "../other/a-1.tgz").unwrap(),
            "https://charts.example.com/other/a-1.tgz"
        );
        assert_eq!(
            resolve_url(repo, "/top/a-1.tgz").unwrap(),
            "https://charts.example.com/top/a-1.tgz"
        );
        assert_eq!(
            resolve_url(repo, "//cdn.example.com/a.tgz").unwrap(),
            "https://cdn.example.com/a.tgz"
        );
        assert_eq!(
            resolve_url("http://h:8080", "a.tgz?sig=1").unwrap(),
            "http://h:8080/a.tgz?sig=1"
        );
        assert_eq!(resolve_url(repo, "http://else/a.tgz").unwrap(), "http://else/a.tgz");
    }

    #[test]
    fn malformed_index_is_bad_input_naming_it() {
        let err = RepoIndex::parse("http://h/repo", "entries: [").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput);
        assert!(err.to_string().contains("http://h/repo/index.yaml"), "{err}");
    }
}
