//! Helm release state, read from the records Helm writes (never by parsing `helm status`
//! text), in the storage `HELM_DRIVER` names as helm itself reads it
//! (`pkg/action/action.go` `Init`, `pkg/storage/driver/{secrets,cfgmaps,util}.go`):
//!
//! - `secret` (default; also `secrets` or unset): Secret `sh.helm.release.v1.<name>.v<rev>`
//!   of type `helm.sh/release.v1`, labels `owner=helm,name,status,version`,
//!   `data.release` = Helm's base64 of gzip (plain JSON for old releases) of the release
//!   JSON; the API's own base64 of `data` is undone by the client.
//! - `configmap` (or `configmaps`): a ConfigMap of the same name and labels whose
//!   `data.release` is that same base64 text (no second encoding).
//!
//! `memory` keeps releases inside one helm process and `sql` in a database this engine
//! cannot read: both are refused ([`Driver::from_env`], exit 3).

use std::io::Read;

use crate::error::{Context, Result, missing};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams};
use serde::Deserialize;

/// Where helm keeps its release records: `HELM_DRIVER`, as helm reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Secret,
    ConfigMap,
}

impl Driver {
    /// The driver a `HELM_DRIVER` value names (helm's own spellings); one whose records
    /// this engine cannot read is a missing prerequisite (exit 3) saying what to set.
    pub fn parse(value: Option<&str>) -> Result<Driver> {
        let why = match value.unwrap_or("") {
            "" | "secret" | "secrets" => return Ok(Driver::Secret),
            "configmap" | "configmaps" => return Ok(Driver::ConfigMap),
            "sql" => "keeps releases in a SQL database, which the engine cannot read",
            "memory" => "keeps releases inside one helm process: nothing is left to read after it",
            _ => "is not a Helm storage driver",
        };
        Err(missing(format!(
            "HELM_DRIVER={} {why}; the bootstrap reads release state (status, gates, digests) from the cluster: set HELM_DRIVER to `secret` (helm's default) or `configmap`, or unset it; nothing was changed",
            value.unwrap_or_default()
        )))
    }

    /// The driver of this process's `HELM_DRIVER` (helm, run by the engine, inherits it).
    pub fn from_env() -> Result<Driver> {
        Driver::parse(std::env::var("HELM_DRIVER").ok().as_deref())
    }

    /// The kind of object holding one revision.
    pub fn kind(self) -> &'static str {
        match self {
            Driver::Secret => "Secret",
            Driver::ConfigMap => "ConfigMap",
        }
    }
}

/// The parts of a Helm release the engine judges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct HelmRelease {
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    pub version: u32,
    pub info: Info,
    #[serde(default)]
    pub hooks: Vec<Hook>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Info {
    #[serde(default)]
    pub status: ReleaseStatus,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Hook {
    pub name: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub last_run: LastRun,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct LastRun {
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub completed_at: String,
    /// Empty (`NotRun`) before any test run.
    #[serde(default)]
    pub phase: HookPhase,
}

/// A release revision's status as Helm writes it (`info.status`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ReleaseStatus {
    Deployed,
    Failed,
    PendingInstall,
    PendingUpgrade,
    PendingRollback,
    Superseded,
    Uninstalling,
    Uninstalled,
    #[default]
    Unknown,
    /// A word this engine does not know (a newer Helm).
    Other(String),
}

impl ReleaseStatus {
    pub fn parse(word: &str) -> ReleaseStatus {
        match word {
            "deployed" => ReleaseStatus::Deployed,
            "failed" => ReleaseStatus::Failed,
            "pending-install" => ReleaseStatus::PendingInstall,
            "pending-upgrade" => ReleaseStatus::PendingUpgrade,
            "pending-rollback" => ReleaseStatus::PendingRollback,
            "superseded" => ReleaseStatus::Superseded,
            "uninstalling" => ReleaseStatus::Uninstalling,
            "uninstalled" => ReleaseStatus::Uninstalled,
            "unknown" | "" => ReleaseStatus::Unknown,
            other => ReleaseStatus::Other(other.to_owned()),
        }
    }

    /// Helm's own word for it.
    pub fn word(&self) -> &str {
        match self {
            ReleaseStatus::Deployed => "deployed",
            ReleaseStatus::Failed => "failed",
            ReleaseStatus::PendingInstall => "pending-install",
            ReleaseStatus::PendingUpgrade => "pending-upgrade",
            ReleaseStatus::PendingRollback => "pending-rollback",
            ReleaseStatus::Superseded => "superseded",
            ReleaseStatus::Uninstalling => "uninstalling",
            ReleaseStatus::Uninstalled => "uninstalled",
            ReleaseStatus::Unknown => "unknown",
            ReleaseStatus::Other(word) => word,
        }
    }
}

impl std::fmt::Display for ReleaseStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

impl<'de> Deserialize<'de> for ReleaseStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(ReleaseStatus::parse(&String::deserialize(d)?))
    }
}

/// A test hook's `last_run.phase`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HookPhase {
    Succeeded,
    Failed,
    Running,
    Unknown,
    /// Empty: the hook never ran.
    #[default]
    NotRun,
    Other(String),
}

impl HookPhase {
    pub fn parse(word: &str) -> HookPhase {
        match word {
            "Succeeded" => HookPhase::Succeeded,
            "Failed" => HookPhase::Failed,
            "Running" => HookPhase::Running,
            "Unknown" => HookPhase::Unknown,
            "" => HookPhase::NotRun,
            other => HookPhase::Other(other.to_owned()),
        }
    }

    pub fn word(&self) -> &str {
        match self {
            HookPhase::Succeeded => "Succeeded",
            HookPhase::Failed => "Failed",
            HookPhase::Running => "Running",
            HookPhase::Unknown => "Unknown",
            HookPhase::NotRun => "not run",
            HookPhase::Other(word) => word,
        }
    }
}

impl std::fmt::Display for HookPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

impl<'de> Deserialize<'de> for HookPhase {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(HookPhase::parse(&String::deserialize(d)?))
    }
}

impl HelmRelease {
    /// Hooks that `helm test` runs.
    pub fn test_hooks(&self) -> impl Iterator<Item = &Hook> {
        self.hooks.iter().filter(|h| h.events.iter().any(|e| e == "test"))
    }
}

const GZIP_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];

/// Decode `data.release` as the client hands it over (Helm's base64 text).
pub fn decode(helm_text: &[u8]) -> Result<HelmRelease> {
    let trimmed = helm_text.trim_ascii();
    let bytes = B64.decode(trimmed).context("data.release is not base64")?;
    let json = if bytes.starts_with(&GZIP_MAGIC) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .context("data.release is not valid gzip")?;
        out
    } else {
        bytes
    };
    serde_json::from_slice(&json).context("data.release is not a Helm release JSON")
}

/// The newest revision among decoded releases.
pub fn latest(releases: impl IntoIterator<Item = HelmRelease>) -> Option<HelmRelease> {
    releases.into_iter().max_by_key(|r| r.version)
}

/// The latest revision of release `name` in `namespace`, or `None` when Helm has no
/// record of it.
pub async fn read(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Option<HelmRelease>> {
    Ok(latest(history(client, namespace, name).await?))
}

/// Every revision Helm keeps of release `name` in `namespace` (any order), from the
/// storage `HELM_DRIVER` names.
pub async fn history(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Vec<HelmRelease>> {
    let driver = Driver::from_env()?;
    let params = ListParams::default().labels(&format!("owner=helm,name={name}"));
    let listing = || {
        format!("listing Helm release {}s of `{name}` in namespace `{namespace}`", driver.kind())
    };
    // (object name, Helm's base64 text) of each revision.
    let records: Vec<(String, Vec<u8>)> = match driver {
        Driver::Secret => {
            let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
            let list = api.list(&params).await.with_context(listing)?;
            list.items
                .into_iter()
                .filter_map(|s| {
                    let data = s.data?.remove("release")?;
                    Some((s.metadata.name.unwrap_or_default(), data.0))
                })
                .collect()
        }
        Driver::ConfigMap => {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
            let list = api.list(&params).await.with_context(listing)?;
            list.items
                .into_iter()
                .filter_map(|c| {
                    let data = c.data?.remove("release")?;
                    Some((c.metadata.name.unwrap_or_default(), data.into_bytes()))
                })
                .collect()
        }
    };
    records
        .into_iter()
        .map(|(object, text)| {
            decode(&text).with_context(|| format!("{} {namespace}/{object}", driver.kind()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const JSON: &str = r#"{"name":"auth-smoke","namespace":"ameide","version":3,
        "info":{"status":"deployed","description":"Upgrade complete","first_deployed":"x"},
        "chart":{"metadata":{"name":"helm-test-jobs"}},"manifest":"",
        "hooks":[{"name":"auth-smoke-login","kind":"Pod","path":"p","events":["test"],
                  "last_run":{"started_at":"a","completed_at":"b","phase":"Failed"}},
                 {"name":"pre","kind":"Job","events":["pre-install"],"last_run":{"phase":""}}]}"#;

    /// What Helm writes into `data.release`: base64 of gzip of the JSON.
    fn helm_encoded(json: &str) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(json.as_bytes()).unwrap();
        B64.encode(gz.finish().unwrap()).into_bytes()
    }

    #[test]
    fn decodes_gzipped_release_with_its_test_hooks() {
        let encoded = helm_encoded(JSON);
        assert_eq!(&B64.decode(&encoded).unwrap()[..3], &GZIP_MAGIC);
        let release = decode(&encoded).unwrap();
        assert_eq!((release.name.as_str(), release.version), ("auth-smoke", 3));
        assert_eq!(release.info.status, ReleaseStatus::Deployed);
        let tests: Vec<_> = release.test_hooks().collect();
        assert_eq!(tests.len(), 1);
        assert_eq!(
            (tests[0].name.as_str(), tests[0].last_run.phase.word()),
            ("auth-smoke-login", "Failed")
        );
    }

    #[test]
    fn decodes_plain_json_of_old_releases() {
        let encoded = B64.encode(JSON);
        assert_eq!(decode(encoded.as_bytes()).unwrap().version, 3);
        assert!(decode(b"not base64!").unwrap_err().to_string().contains("not base64"));
    }

    #[test]
    fn helm_driver_is_read_as_helm_reads_it() {
        for secret in [None, Some(""), Some("secret"), Some("secrets")] {
            assert_eq!(Driver::parse(secret).unwrap(), Driver::Secret, "{secret:?}");
        }
        for cm in [Some("configmap"), Some("configmaps")] {
            assert_eq!(Driver::parse(cm).unwrap(), Driver::ConfigMap);
        }
        for other in ["sql", "memory", "etcd"] {
            let err = Driver::parse(Some(other)).unwrap_err();
            assert_eq!(err.kind(), crate::error::ErrorKind::Missing, "{other}");
            let text = err.to_string();
            assert!(text.starts_with(&format!("HELM_DRIVER={other} ")), "{text}");
            assert!(text.contains("set HELM_DRIVER to `secret` (helm's default) or `configmap`"));
        }
    }

    #[test]
    fn latest_revision_wins() {
        let r = |version, status: &str| HelmRelease {
            version,
            info: Info { status: ReleaseStatus::parse(status), ..Info::default() },
            ..HelmRelease::default()
        };
        let newest = latest([r(1, "superseded"), r(3, "failed"), r(2, "superseded")]).unwrap();
        assert_eq!((newest.version, newest.info.status.word()), (3, "failed"));
        assert_eq!(ReleaseStatus::parse("frozen"), ReleaseStatus::Other("frozen".into()));
        assert!(latest(Vec::new()).is_none());
    }
}
