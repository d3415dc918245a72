//! Helm release state, stored exactly as Helm's storage drivers store it, the one
//! `HELM_DRIVER` names (helm `pkg/action/action.go` `Init`; `pkg/storage/driver/
//! secrets.go`, `cfgmaps.go`, `util.go`):
//! - `secret` (default): Secret `sh.helm.release.v1.<name>.v<rev>`, type
//!   `helm.sh/release.v1`, labels `owner=helm,name,status,version`, and `data.release` =
//!   Helm's base64 of gzip of the release JSON. The API base64-encodes `data` once more,
//!   so the JSON on the wire carries base64(base64(gzip(json)));
//! - `configmap`: a ConfigMap of that name and labels (plus `createdAt`), no type, and
//!   `data.release` = Helm's base64 of gzip, with no second encoding. Field names follow `/work/shared/formats/helm4-release-dry-run.json`.

use std::io::{Read, Write};

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub const SECRET_TYPE: &str = "helm.sh/release.v1";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Release {
    pub name: String,
    pub info: Info,
    #[serde(default)]
    pub chart: Value,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub config: Value,
    #[serde(default)]
    pub manifest: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<Hook>,
    pub version: u32,
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<serde_json::Map<String, Value>>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub apply_method: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Info {
    #[serde(default)]
    pub first_deployed: String,
    #[serde(default)]
    pub last_deployed: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub deleted: String,
    #[serde(default)]
    pub description: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub notes: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Hook {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub manifest: String,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub last_run: LastRun,
    #[serde(default)]
    pub weight: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete_policies: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LastRun {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub started_at: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub completed_at: String,
    #[serde(default)]
    pub phase: String,
}

/// Where helm keeps releases: `HELM_DRIVER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Secret,
    ConfigMap,
}

impl Driver {
    /// `HELM_DRIVER` as helm reads it; the drivers the testbed does not simulate
    /// (`memory`, `sql`) and unknown ones are errors.
    pub fn from_env() -> Result<Driver> {
        match std::env::var("HELM_DRIVER").unwrap_or_default().as_str() {
            "" | "secret" | "secrets" => Ok(Driver::Secret),
            "configmap" | "configmaps" => Ok(Driver::ConfigMap),
            "memory" | "sql" => bail!(
                "testbed: HELM_DRIVER {:?} is not simulated",
                std::env::var("HELM_DRIVER").unwrap_or_default()
            ),
            other => bail!("unknown driver {other:?}"),
        }
    }

    /// The API collection of a namespace's release records.
    pub fn collection(self, namespace: &str) -> String {
        match self {
            Driver::Secret => format!("/api/v1/namespaces/{namespace}/secrets"),
            Driver::ConfigMap => format!("/api/v1/namespaces/{namespace}/configmaps"),
        }
    }
}

impl Release {
    /// The object (Secret or ConfigMap, API JSON) `driver` stores this release in.
    pub fn to_record(&self, driver: Driver) -> Result<Value> {
        let mut record = self.to_secret()?;
        if driver == Driver::ConfigMap {
            record["kind"] = json!("ConfigMap");
            record.as_object_mut().map(|o| o.remove("type"));
            record["metadata"]["labels"]["createdAt"] =
                json!(jiff::Timestamp::now().as_second().to_string());
            record["data"]["release"] = json!(encode(self)?);
        }
        Ok(record)
    }

    /// Decode a release record (a Secret or a ConfigMap, API JSON).
    pub fn from_record(record: &Value) -> Result<Release> {
        if record["kind"] != "ConfigMap" {
            return Release::from_secret(record);
        }
        let name = record["metadata"]["name"].as_str().unwrap_or("?");
        let data = record["data"]["release"]
            .as_str()
            .with_context(|| format!("configmap {name}: no data.release"))?;
        decode(data.as_bytes()).with_context(|| format!("configmap {name}"))
    }

    pub fn secret_name(&self) -> String {
        secret_name(&self.name, self.version)
    }

    pub fn chart_name(&self) -> &str {
        self.chart["metadata"]["name"].as_str().unwrap_or("")
    }

    pub fn chart_version(&self) -> &str {
        self.chart["metadata"]["version"].as_str().unwrap_or("")
    }

    pub fn test_hooks_mut(&mut self) -> impl Iterator<Item = &mut Hook> {
        self.hooks.iter_mut().filter(|h| h.events.iter().any(|e| e == "test"))
    }

    /// The Secret object (API JSON) that stores this release.
    pub fn to_secret(&self) -> Result<Value> {
        let labels = json!({
            "owner": "helm",
            "name": self.name,
            "status": self.info.status,
            "version": self.version.to_string(),
        });
        Ok(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": { "name": self.secret_name(), "namespace": self.namespace, "labels": labels },
            "type": SECRET_TYPE,
            "data": { "release": B64.encode(encode(self)?) },
        }))
    }

    /// Decode a release Secret as the API returns it (JSON, `data.release` base64).
    pub fn from_secret(secret: &Value) -> Result<Release> {
        let name = secret["metadata"]["name"].as_str().unwrap_or("?");
        let data = secret["data"]["release"]
            .as_str()
            .with_context(|| format!("secret {name}: no data.release"))?;
        let helm_text = B64
            .decode(data)
            .with_context(|| format!("secret {name}: data.release is not base64"))?;
        decode(&helm_text).with_context(|| format!("secret {name}"))
    }
}

pub fn secret_name(release: &str, version: u32) -> String {
    format!("sh.helm.release.v1.{release}.v{version}")
}

/// Helm's `encodeRelease`: JSON, gzip, base64 (the text Helm puts into `data.release`).
pub fn encode(release: &Release) -> Result<String> {
    let json = serde_json::to_vec(release)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&json)?;
    Ok(B64.encode(gz.finish()?))
}

/// Helm's `decodeRelease`: base64, then gunzip when the gzip magic is present.
pub fn decode(text: &[u8]) -> Result<Release> {
    let bytes = B64.decode(text).context("release is not base64")?;
    let json = if bytes.starts_with(&[0x1f, 0x8b, 0x08]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut out).context("release gzip")?;
        out
    } else {
        bytes
    };
    serde_json::from_slice(&json).context("release JSON")
}

/// The latest revision among release records (Secrets or ConfigMaps, API JSON) of one
/// release.
pub fn latest(secrets: &[Value]) -> Result<Option<Release>> {
    let mut best: Option<Release> = None;
    for s in secrets {
        let r = Release::from_record(s)?;
        if best.as_ref().is_none_or(|b| r.version > b.version) {
            best = Some(r);
        }
    }
    Ok(best)
}

/// RFC 3339 with up to nanoseconds (trailing zeros trimmed), as Go's `time.Time`
/// marshals (`RFC3339Nano`, Helm's timestamps).
pub fn timestamp_now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.%fZ").to_string()
}

/// RFC 3339 in whole seconds, as Kubernetes writes `creationTimestamp`.
pub fn k8s_timestamp_now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Go's `time.ANSIC` layout (`Mon Jan  2 15:04:05 2006`) of an RFC 3339 timestamp, in
/// UTC, which is how `helm status`/`helm test` print times. Unparseable input comes back
/// as is.
pub fn ansic(rfc3339: &str) -> String {
    match rfc3339.parse::<jiff::Timestamp>() {
        Ok(t) => t.strftime("%a %b %e %H:%M:%S %Y").to_string(),
        Err(_) => rfc3339.to_owned(),
    }
}

/// Check a status word against Helm's release statuses.
pub fn check_status(status: &str) -> Result<()> {
    const STATUSES: [&str; 9] = [
        "unknown",
        "deployed",
        "uninstalled",
        "superseded",
        "failed",
        "uninstalling",
        "pending-install",
        "pending-upgrade",
        "pending-rollback",
    ];
    if !STATUSES.contains(&status) {
        bail!("unknown release status `{status}`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Release {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/formats/helm4-release-dry-run.json"
        ));
        match text {
            Ok(t) => serde_json::from_str(&t).unwrap(),
            // The captured format lives outside the repository; a minimal release instead.
            Err(_) => Release {
                name: "demo".into(),
                namespace: "ameide".into(),
                version: 1,
                info: Info { status: "deployed".into(), ..Info::default() },
                hooks: vec![Hook {
                    name: "demo-test-connection".into(),
                    kind: "Pod".into(),
                    events: vec!["test".into()],
                    ..Hook::default()
                }],
                ..Release::default()
            },
        }
    }

    #[test]
    fn secret_roundtrip_keeps_the_release_and_helms_layout() {
        let release = sample();
        let secret = release.to_secret().unwrap();
        assert_eq!(secret["type"], SECRET_TYPE);
        assert_eq!(secret["metadata"]["name"], "sh.helm.release.v1.demo.v1");
        assert_eq!(secret["metadata"]["labels"]["owner"], "helm");
        assert_eq!(secret["metadata"]["labels"]["version"], "1");
        // Two layers of base64 over gzip.
        let once = B64.decode(secret["data"]["release"].as_str().unwrap()).unwrap();
        let gz = B64.decode(&once).unwrap();
        assert_eq!(&gz[..3], &[0x1f, 0x8b, 0x08]);
        assert_eq!(Release::from_secret(&secret).unwrap(), release);
    }

    #[test]
    fn configmap_records_carry_helms_text_once_encoded() {
        let release = sample();
        let record = release.to_record(Driver::ConfigMap).unwrap();
        assert_eq!(record["kind"], "ConfigMap");
        assert!(record.get("type").is_none());
        assert_eq!(record["metadata"]["labels"]["owner"], "helm");
        let text = record["data"]["release"].as_str().unwrap();
        assert_eq!(&B64.decode(text).unwrap()[..3], &[0x1f, 0x8b, 0x08], "no second base64");
        assert_eq!(Release::from_record(&record).unwrap(), release);
        let secret = release.to_record(Driver::Secret).unwrap();
        assert_eq!(Release::from_record(&secret).unwrap(), release);
    }

    #[test]
    fn decode_accepts_plain_json_releases() {
        let plain =
            B64.encode(br#"{"name":"x","info":{"status":"failed"},"version":2,"namespace":"n"}"#);
        let r = decode(plain.as_bytes()).unwrap();
        assert_eq!((r.name.as_str(), r.version, r.info.status.as_str()), ("x", 2, "failed"));
    }

    #[test]
    fn times_format_like_go() {
        assert_eq!(ansic("2026-11-26T12:40:13.280782421Z"), "Thu Nov 26 12:40:13 2026");
        assert_eq!(ansic("2006-01-02T15:04:05Z"), "Mon Jan  2 15:04:05 2006");
        assert!(
            timestamp_now().ends_with('Z') && timestamp_now().parse::<jiff::Timestamp>().is_ok()
        );
    }
}
