//! Observe the vendored archives, then decide what to fetch and what is wrong.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::fetch::digest_of;
use crate::fsutil::normalize;
use crate::platform::charts_lock::{ChartsLock, LockedChart};

/// What is on disk for one locked chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveState {
    Matches,
    Missing,
    /// The file exists but its digest is `found`.
    Differs {
        found: String,
    },
}

#[derive(Debug, Clone)]
pub struct Observed {
    pub chart: LockedChart,
    pub path: PathBuf,
    pub state: ArchiveState,
}

/// Read every locked archive and compare it with its digest.
pub fn observe(lock_path: &Path, lock: &ChartsLock) -> Vec<Observed> {
    lock.charts
        .iter()
        .map(|chart| {
            let path = ChartsLock::archive_path(lock_path, chart);
            let state = match std::fs::read(&path) {
                Err(_) => ArchiveState::Missing,
                Ok(bytes) => {
                    let found = digest_of(&bytes);
                    if found == chart.digest {
                        ArchiveState::Matches
                    } else {
                        ArchiveState::Differs { found }
                    }
                }
            };
            Observed { chart: chart.clone(), path, state }
        })
        .collect()
}

/// The charts a refresh must download: every missing or mismatching archive.
pub fn to_fetch(observed: &[Observed]) -> Vec<&Observed> {
    observed.iter().filter(|o| o.state != ArchiveState::Matches).collect()
}

/// One line per archive that is not as locked (for `--check`).
pub fn archive_problems(observed: &[Observed]) -> Vec<String> {
    observed
        .iter()
        .filter_map(|o| {
            let name = &o.chart.name;
            let version = &o.chart.version;
            match &o.state {
                ArchiveState::Matches => None,
                ArchiveState::Missing => Some(format!(
                    "chart `{name}` {version}: archive {} is missing (run `cargo xtask vendor`)",
                    o.path.display()
                )),
                ArchiveState::Differs { found } => Some(format!(
                    "chart `{name}` {version}: archive {} has digest {found}, the lock says {} (run `cargo xtask vendor` to restore it)",
                    o.path.display(),
                    o.chart.digest
                )),
            }
        })
        .collect()
}

/// `.tgz` files beside the lock or beside a locked archive that the lock does not list.
pub fn unlocked_archives(lock_path: &Path, lock: &ChartsLock) -> Vec<PathBuf> {
    let locked: BTreeSet<PathBuf> =
        lock.charts.iter().map(|c| normalize(&ChartsLock::archive_path(lock_path, c))).collect();
    let mut folders: BTreeSet<PathBuf> =
        locked.iter().filter_map(|p| p.parent().map(Path::to_path_buf)).collect();
    folders.insert(normalize(lock_path.parent().unwrap_or(Path::new("."))));
    let mut found = Vec::new();
    for folder in folders {
        let Ok(entries) = std::fs::read_dir(&folder) else { continue };
        for entry in entries.flatten() {
            let path = normalize(&entry.path());
            if path.extension().is_some_and(|ext| ext == "tgz")
                && path.is_file()
                && !locked.contains(&path)
            {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// A Helmfile release's chart reference, as written, with the layer file it is in.
#[derive(Debug, Clone)]
pub struct ReleaseChart {
    pub layer_file: PathBuf,
    pub release: String,
    pub chart: String,
}

/// Every release chart must be a local chart folder or a locked archive: Helmfile then
/// needs no remote repository. One line per offending release.
pub fn release_problems(
    lock_path: &Path,
    lock: &ChartsLock,
    releases: &[ReleaseChart],
) -> Vec<String> {
    let locked: BTreeSet<PathBuf> =
        lock.charts.iter().map(|c| normalize(&ChartsLock::archive_path(lock_path, c))).collect();
    let mut problems = Vec::new();
    for release in releases {
        let chart = release.chart.as_str();
        let at = format!("{}: release `{}`", release.layer_file.display(), release.release);
        if chart.contains("://") {
            problems.push(format!(
                "{at}: chart `{chart}` is a remote reference; vendor it (`cargo xtask vendor add`) and point the release at the archive"
            ));
            continue;
        }
        let path = normalize(&release.layer_file.parent().unwrap_or(Path::new(".")).join(chart));
        if locked.contains(&path) {
            continue; // a locked archive; its presence and digest are checked with the lock
        }
        if path.is_dir() {
            continue;
        }
        if path.is_file() {
            problems.push(format!(
                "{at}: chart archive {} is not in the lock {} (add it with `cargo xtask vendor add`)",
                path.display(),
                lock_path.display()
            ));
        } else if looks_like_repo_reference(chart) {
            problems.push(format!(
                "{at}: chart `{chart}` is a remote repository reference, not a local path or a locked archive; vendor it with `cargo xtask vendor add`"
            ));
        } else {
            problems.push(format!("{at}: chart path {} does not exist", path.display()));
        }
    }
    problems
}

/// `repo/chart` as Helm reads it: two plain words, not a relative or absolute path.
fn looks_like_repo_reference(chart: &str) -> bool {
    let mut parts = chart.split('/');
    matches!((parts.next(), parts.next(), parts.next()), (Some(repo), Some(name), None)
        if !repo.is_empty() && !name.is_empty() && repo != "." && repo != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(name: &str, state: ArchiveState) -> Observed {
        Observed {
            chart: LockedChart {
                name: name.into(),
                repository: "https://h/r".into(),
                version: "1.0.0".into(),
                digest: format!("sha256:{}", "0".repeat(64)),
                archive: format!("{name}-1.0.0.tgz"),
            },
            path: PathBuf::from(format!("/l/{name}-1.0.0.tgz")),
            state,
        }
    }

    #[test]
    fn fetches_only_missing_or_mismatching_archives() {
        let all = [
            observed("a", ArchiveState::Matches),
            observed("b", ArchiveState::Missing),
            observed("c", ArchiveState::Differs { found: "sha256:ff".into() }),
        ];
        let names: Vec<&str> = to_fetch(&all).iter().map(|o| o.chart.name.as_str()).collect();
        assert_eq!(names, ["b", "c"]);
        assert!(to_fetch(&all[..1]).is_empty());
        let problems = archive_problems(&all);
        assert_eq!(problems.len(), 2);
        assert!(problems[1].contains("`c`") && problems[1].contains("sha256:ff"), "{problems:?}");
    }

    #[test]
    fn release_charts_must_be_local_or_locked() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("charts/own")).unwrap();
        std::fs::create_dir_all(root.join("helmfile.d")).unwrap();
        std::fs::write(root.join("charts/stray-1.0.0.tgz"), b"x").unwrap();
        let lock_path = root.join("charts/charts.lock.yaml");
        let mut lock = ChartsLock::default();
        lock.upsert(observed("redis", ArchiveState::Matches).chart);
        let layer = root.join("helmfile.d/10-bootstrap.yaml");
        let release = |name: &str, chart: &str| ReleaseChart {
            layer_file: layer.clone(),
            release: name.into(),
            chart: chart.into(),
        };
        let releases = [
            release("own", "../charts/own"),
            release("redis", "../charts/redis-1.0.0.tgz"),
            release("remote", "bitnami/postgresql"),
            release("oci", "oci://ghcr.io/org/charts/x"),
            release("stray", "../charts/stray-1.0.0.tgz"),
            release("gone", "../charts/gone"),
        ];
        let problems = release_problems(&lock_path, &lock, &releases);
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(
            problems[0].contains("`remote`") && problems[0].contains("remote repository reference")
        );
        assert!(problems[1].contains("`oci`") && problems[1].contains("remote reference"));
        assert!(problems[2].contains("`stray`") && problems[2].contains("not in the lock"));
        assert!(problems[3].contains("`gone`") && problems[3].contains("does not exist"));
        assert!(problems.iter().all(|p| p.contains("10-bootstrap.yaml")));
        assert_eq!(unlocked_archives(&lock_path, &lock), [root.join("charts/stray-1.0.0.tgz")]);
    }
}
