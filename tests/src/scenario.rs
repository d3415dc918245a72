//! Scenarios: the knobs that make the simulated platform misbehave on purpose.
//!
//! Stored as `$TESTBED_DIR/scenario.json`, written by `testbed up --scenario ...` and
//! `testbed set ...`, read by every fake tool on each call (so a change applies to the
//! next call, as a change in a real world would).

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Scenario {
    /// Layers (file stems, e.g. `24-auth`) whose test hooks fail.
    pub gate_fail: Vec<String>,
    /// Layers whose test Pods are given the Postgres credentials as environment and
    /// print them, and a PEM private key, before failing (`crate::leaks`).
    pub gate_leak: Vec<String>,
    /// Layers whose tests pass but `helm test --logs` fails with "unable to get pod logs".
    pub log_race: Vec<String>,
    /// Layers whose `helmfile sync` fails.
    pub sync_fail: Vec<String>,
    /// Every Job of the Vault bootstrap CronJob fails (each Pod, up to `backoffLimit`).
    pub vault_fail: bool,
    /// The first Job of the Vault bootstrap CronJob fails; the next tick's Job succeeds.
    pub vault_flaky: bool,
    /// Jobs whose name starts with one of these fail (every attempt).
    pub job_fail: Vec<String>,
    /// How long a Pod takes to start and turn Ready (image pull, probes), in ms; also
    /// how long a Job's Pod runs. Deployments, StatefulSets, DaemonSets and Pods are
    /// not Ready before it has passed since their (new) generation was written.
    pub startup_ms: u64,
    /// The length of a CronJob schedule minute, in ms (60000 in reality; tests scale it).
    pub cron_minute_ms: u64,
    /// The helm version the fake helm claims (and whose `helm test` ordering and error
    /// text it follows).
    pub helm_version: String,
    /// The helmfile version the fake helmfile claims (and whose flags and rendering it
    /// follows: `crate::helmfile::version`).
    pub helmfile_version: String,
    /// An ExternalSecret is not Ready: `SecretSyncedError` naming a missing remote key.
    pub secret_missing_key: bool,
    /// Tilt serves its API but the `(Tiltfile)` resource never becomes Ready.
    pub tilt_not_ready: bool,
    /// Added to every fake tool call, in milliseconds.
    pub latency_ms: u64,
    /// How long one image download from the upstream registry takes, in ms (a
    /// kubelet's on-demand pull, or `docker pull` on the host).
    pub pull_ms: u64,
    /// Image references the upstream registry does not have (pulls fail).
    pub image_unfetchable: Vec<String>,
    /// The machine's link to the upstream registries, in Mbit/s: a download takes its
    /// image's compressed size (`node_images::image_size`) over it, one download's bytes
    /// at a time; 0: size does not count (only `pull-ms`).
    pub pull_mbps: u64,
    /// The host's Docker keeps images in the containerd image store (Docker Engine 29+,
    /// Docker Desktop 4.34+): `docker save | ctr image import --all-platforms` of a
    /// multi-platform image fails (k3d issue 1538).
    pub docker_containerd_store: bool,
    /// How long `k3d cluster create` takes, in ms, from its start until it reports the
    /// cluster created (k3d waits for the server's `k3s is up and running`, the load
    /// balancer's `start worker processes` and CoreDNS's config map; FIDELITY.md).
    pub k3d_create_ms: u64,
    /// SecretStores / ClusterSecretStores (by name) whose `Ready` condition stays False.
    pub store_not_ready: Vec<String>,
    /// Where the Helmfile layers are that `<layer>` words name (a root helmfile, a
    /// layer file or a directory of them); empty: the sample platform's root helmfile.
    /// The cluster maps a test hook to its layer through them (`controllers/layers.rs`).
    pub helmfiles: String,
}

pub const FILE: &str = "scenario.json";
/// Default Pod startup delay: above zero, so nothing is Ready the instant it is written.
pub const DEFAULT_STARTUP_MS: u64 = 2000;
/// Default `k3d cluster create` duration: the fastest one-server creation with every
/// image present found in published k3d output (12 s; FIDELITY.md).
pub const DEFAULT_K3D_CREATE_MS: u64 = 12_000;

impl Default for Scenario {
    fn default() -> Scenario {
        Scenario {
            gate_fail: Vec::new(),
            gate_leak: Vec::new(),
            log_race: Vec::new(),
            sync_fail: Vec::new(),
            vault_fail: false,
            vault_flaky: false,
            job_fail: Vec::new(),
            secret_missing_key: false,
            tilt_not_ready: false,
            latency_ms: 0,
            pull_ms: 0,
            image_unfetchable: Vec::new(),
            pull_mbps: 0,
            docker_containerd_store: false,
            k3d_create_ms: DEFAULT_K3D_CREATE_MS,
            store_not_ready: Vec::new(),
            helmfiles: String::new(),
            startup_ms: DEFAULT_STARTUP_MS,
            cron_minute_ms: 60_000,
            helm_version: pinned_helm_version(),
            helmfile_version: pinned_version("helmfile").unwrap_or_else(|| "1.6.0".into()),
        }
    }
}

/// `[workspace.metadata.bootstrap.tools.helm] version` of the root Cargo.toml.
pub fn pinned_helm_version() -> String {
    pinned_version("helm").unwrap_or_else(|| "3.18.4".into())
}

/// `[workspace.metadata.bootstrap.tools.<tool>] version` of the root Cargo.toml.
pub fn pinned_version(tool: &str) -> Option<String> {
    let manifest = include_str!("../../Cargo.toml");
    let table = format!("[workspace.metadata.bootstrap.tools.{tool}]");
    let mut inside = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == table;
        } else if inside
            && let Some(v) = line.strip_prefix("version")
            && let Some(v) = v.trim_start().strip_prefix('=')
        {
            return Some(v.trim().trim_matches('"').to_owned());
        }
    }
    None
}

impl Scenario {
    /// Apply one `--scenario` word: `gate-fail=<layer>`, `gate-leak=<layer>`, `log-race=<layer>`,
    /// `sync-fail=<layer>`, `vault-fail`, `vault-flaky`, `job-fail=<prefix>`,
    /// `secret-missing-key`, `tilt-not-ready`, `startup-ms=<n>`, `cron-minute-ms=<n>`,
    /// `pull-ms=<n>`, `pull-mbps=<n>`, `image-unfetchable=<ref>`, `docker-containerd-store`,
    /// `k3d-create-ms=<n>`,
    /// `store-not-ready=<store>`, `helm-version=<x.y.z>`,
    /// `helmfile-version=<x.y.z>`, `helmfiles=<path>`, `healthy` (no change).
    pub fn apply(&mut self, word: &str) -> Result<()> {
        match word.split_once('=') {
            Some(("gate-fail", layer)) => self.gate_fail.push(layer.to_owned()),
            Some(("gate-leak", layer)) => self.gate_leak.push(layer.to_owned()),
            Some(("log-race", layer)) => self.log_race.push(layer.to_owned()),
            Some(("sync-fail", layer)) => self.sync_fail.push(layer.to_owned()),
            Some(("latency-ms", ms)) => self.latency_ms = millis(word, ms)?,
            Some(("startup-ms", ms)) => self.startup_ms = millis(word, ms)?,
            Some(("pull-ms", ms)) => self.pull_ms = millis(word, ms)?,
            Some(("k3d-create-ms", ms)) => self.k3d_create_ms = millis(word, ms)?,
            Some(("image-unfetchable", image)) => self.image_unfetchable.push(image.to_owned()),
            Some(("pull-mbps", n)) => {
                self.pull_mbps = n.parse().with_context(|| format!("{word}: expected Mbit/s"))?
            }
            Some(("store-not-ready", name)) => self.store_not_ready.push(name.to_owned()),
            Some(("cron-minute-ms", ms)) => self.cron_minute_ms = millis(word, ms)?.max(1),
            Some(("job-fail", prefix)) => self.job_fail.push(prefix.to_owned()),
            Some(("helmfiles", path)) => self.helmfiles = path.to_owned(),
            Some(("helm-version", v)) => {
                let v = v.trim_start_matches('v');
                if parse_version(v).is_none() {
                    bail!("helm-version={v}: expected MAJOR.MINOR.PATCH");
                }
                self.helm_version = v.to_owned();
            }
            Some(("helmfile-version", v)) => {
                let v = v.trim_start_matches('v');
                if parse_version(v).is_none() {
                    bail!("helmfile-version={v}: expected MAJOR.MINOR.PATCH");
                }
                self.helmfile_version = v.to_owned();
            }
            None if word == "vault-fail" => self.vault_fail = true,
            None if word == "vault-flaky" => self.vault_flaky = true,
            None if word == "secret-missing-key" => self.secret_missing_key = true,
            None if word == "tilt-not-ready" => self.tilt_not_ready = true,
            None if word == "docker-containerd-store" => self.docker_containerd_store = true,
            None if word == "healthy" => {}
            _ => bail!(
                "unknown scenario `{word}`: expected healthy, gate-fail=<layer>, gate-leak=<layer>, log-race=<layer>, \
                 sync-fail=<layer>, vault-fail, vault-flaky, job-fail=<prefix>, secret-missing-key, \
                 tilt-not-ready, image-unfetchable=<ref>, latency-ms=<n>, startup-ms=<n>, pull-ms=<n>, \
                 pull-mbps=<n>, docker-containerd-store, k3d-create-ms=<n>, store-not-ready=<store>, \
                 cron-minute-ms=<n>, helm-version=<x.y.z>, helmfile-version=<x.y.z> or helmfiles=<path>"
            ),
        }
        Ok(())
    }

    pub fn load(testbed_dir: &Path) -> Result<Scenario> {
        let path = testbed_dir.join(FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("{}: invalid scenario", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Scenario::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn save(&self, testbed_dir: &Path) -> Result<()> {
        let path = testbed_dir.join(FILE);
        std::fs::write(&path, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// `MAJOR.MINOR.PATCH` (a leading `v`, and a `-pre` or `+build` suffix, allowed): how a
/// scenario claims helm's and helmfile's versions (`helm::version` compares them).
pub fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.trim().trim_start_matches('v').split(['.', '+', '-']);
    let mut next = || parts.next()?.parse().ok();
    Some((next()?, next()?, next()?))
}

fn millis(word: &str, ms: &str) -> Result<u64> {
    ms.parse().with_context(|| format!("{word}: expected milliseconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_set_knobs() {
        let mut s = Scenario::default();
        for w in [
            "gate-fail=24-auth",
            "gate-leak=40-data-plane",
            "log-race=40-data-plane",
            "vault-fail",
            "latency-ms=5",
        ] {
            s.apply(w).unwrap();
        }
        assert_eq!(s.gate_fail, ["24-auth"]);
        assert_eq!(s.gate_leak, ["40-data-plane"]);
        assert_eq!(s.log_race, ["40-data-plane"]);
        assert!(s.vault_fail && !s.tilt_not_ready);
        assert_eq!(s.latency_ms, 5);
        s.apply("helmfiles=/tmp/layers").unwrap();
        assert_eq!(s.helmfiles, "/tmp/layers");
        assert!(s.apply("gate-fial=x").unwrap_err().to_string().contains("unknown scenario"));
        assert_eq!(Scenario::default().helm_version, "3.18.4");
        assert!(Scenario::default().startup_ms > 0);
        s.apply("helm-version=v4.1.4").unwrap();
        s.apply("cron-minute-ms=2000").unwrap();
        assert_eq!((s.helm_version.as_str(), s.cron_minute_ms), ("4.1.4", 2000));
        assert!(s.apply("helm-version=four").is_err());
        for w in ["pull-mbps=50", "docker-containerd-store", "store-not-ready=vault"] {
            s.apply(w).unwrap();
        }
        assert_eq!(s.pull_mbps, 50);
        assert!(s.docker_containerd_store);
        assert_eq!(s.store_not_ready, ["vault"]);
        assert_eq!(Scenario::default().helmfile_version, "1.6.0");
        s.apply("helmfile-version=0.166.0").unwrap();
        assert_eq!(s.helmfile_version, "0.166.0");
        s.apply("pull-ms=3000").unwrap();
        s.apply("image-unfetchable=busybox:1.37.0").unwrap();
        assert_eq!(
            (s.pull_ms, s.image_unfetchable.as_slice()),
            (3000, ["busybox:1.37.0".to_owned()].as_slice())
        );
    }
}
