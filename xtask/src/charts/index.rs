//! A Helm repository's `index.yaml`: which archive URL serves a chart version.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
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
            url: resolve_url(repo_url, first),
            index_digest: entry.digest.clone().filter(|d| !d.is_empty()),
        })
    }
}

/// The highest version without a pre-release part (`1.2.3`, not `1.3.0-rc.1`).
pub fn newest_stable(entries: &[IndexEntry]) -> Option<&IndexEntry> {
    entries
        .iter()
        .filter_map(|e| version_key(&e.version).map(|key| (key, e)))
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, e)| e)
}

/// Numeric parts of a stable version (`v` prefix and `+build` allowed), else `None`.
fn version_key(version: &str) -> Option<Vec<u64>> {
    let core = version.strip_prefix('v').unwrap_or(version);
    let core = core.split('+').next().unwrap_or(core);
    if core.contains('-') {
        return None;
    }
    core.split('.').map(|part| part.parse().ok()).collect()
}

/// Resolve a URL from `index.yaml` the way Helm does: absolute URLs stand; others are
/// relative to the repository URL taken as a folder (a trailing `/` is implied).
pub fn resolve_url(repo_url: &str, reference: &str) -> String {
    if reference.contains("://") {
        return reference.to_owned();
    }
    let (scheme, rest) = repo_url.split_once("://").unwrap_or(("https", repo_url));
    let (authority, base_path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if let Some(other_host) = reference.strip_prefix("//") {
        return format!("{scheme}://{other_host}");
    }
    let (reference, query) = match reference.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (reference, None),
    };
    let path = if reference.starts_with('/') {
        reference.to_owned()
    } else {
        format!("{}/{reference}", base_path.trim_end_matches('/'))
    };
    let mut url = format!("{scheme}://{authority}{}", remove_dot_segments(&path));
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for segment in path.split('/').skip(1) {
        match segment {
            "." => {}
            ".." => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit_code;

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
    fn unknown_chart_or_version_is_bad_input_listing_what_exists() {
        let index = RepoIndex::parse("x", INDEX).unwrap();
        let err = index.resolve("http://h", "demo", Some("9.9.9")).unwrap_err();
        assert_eq!(exit_code(&err), 2);
        assert!(err.to_string().contains("0.9.1"), "{err}");
        assert_eq!(exit_code(&index.resolve("http://h", "nope", None).unwrap_err()), 2);
    }

    #[test]
    fn relative_urls_follow_helm() {
        let repo = "https://charts.example.com/stable";
        assert_eq!(resolve_url(repo, "a-1.tgz"), "https://charts.example.com/stable/a-1.tgz");
        assert_eq!(resolve_url(repo, "./x/a-1.tgz"), "https://charts.example.com/stable/x/a-1.tgz");
        assert_eq!(
            resolve_url(repo, "../other/a-1.tgz"),
            "https://charts.example.com/other/a-1.tgz"
        );
        assert_eq!(resolve_url(repo, "/top/a-1.tgz"), "https://charts.example.com/top/a-1.tgz");
        assert_eq!(resolve_url(repo, "//cdn.example.com/a.tgz"), "https://cdn.example.com/a.tgz");
        assert_eq!(resolve_url("http://h:8080", "a.tgz?sig=1"), "http://h:8080/a.tgz?sig=1");
        assert_eq!(resolve_url(repo, "http://else/a.tgz"), "http://else/a.tgz");
    }

    #[test]
    fn malformed_index_is_bad_input_naming_it() {
        let err = RepoIndex::parse("http://h/repo", "entries: [").unwrap_err();
        assert_eq!(exit_code(&err), 2);
        assert!(err.to_string().contains("http://h/repo/index.yaml"), "{err}");
    }
}
