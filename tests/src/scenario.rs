//! Scenarios: the knobs that make the simulated platform misbehave on purpose.
//!
//! Stored as `$TESTBED_DIR/scenario.json`, written by `testbed up --scenario ...` and
//! `testbed set ...`, read by every fake tool on each call (so a change applies to the
//! next call, as a change in a real world would).

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Scenario {
    /// Layers (file stems, e.g. `24-auth`) whose test hooks fail.
    pub gate_fail: Vec<String>,
    /// Layers whose tests pass but `helm test --logs` fails with "unable to get pod logs".
    pub log_race: Vec<String>,
    /// Layers whose `helmfile sync` fails.
    pub sync_fail: Vec<String>,
    /// The Vault bootstrap Job fails.
    pub vault_fail: bool,
    /// An ExternalSecret is not Ready: `SecretSyncedError` naming a missing remote key.
    pub secret_missing_key: bool,
    /// Tilt serves its API but the `(Tiltfile)` resource never becomes Ready.
    pub tilt_not_ready: bool,
    /// Added to every fake tool call, in milliseconds.
    pub latency_ms: u64,
}

pub const FILE: &str = "scenario.json";

impl Scenario {
    /// Apply one `--scenario` word: `gate-fail=<layer>`, `log-race=<layer>`,
    /// `sync-fail=<layer>`, `vault-fail`, `secret-missing-key`, `tilt-not-ready`,
    /// `healthy` (no change).
    pub fn apply(&mut self, word: &str) -> Result<()> {
        match word.split_once('=') {
            Some(("gate-fail", layer)) => self.gate_fail.push(layer.to_owned()),
            Some(("log-race", layer)) => self.log_race.push(layer.to_owned()),
            Some(("sync-fail", layer)) => self.sync_fail.push(layer.to_owned()),
            Some(("latency-ms", ms)) => {
                self.latency_ms =
                    ms.parse().with_context(|| format!("latency-ms={ms}: expected milliseconds"))?
            }
            None if word == "vault-fail" => self.vault_fail = true,
            None if word == "secret-missing-key" => self.secret_missing_key = true,
            None if word == "tilt-not-ready" => self.tilt_not_ready = true,
            None if word == "healthy" => {}
            _ => bail!(
                "unknown scenario `{word}`: expected healthy, gate-fail=<layer>, log-race=<layer>, \
                 sync-fail=<layer>, vault-fail, secret-missing-key, tilt-not-ready or latency-ms=<n>"
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_set_knobs() {
        let mut s = Scenario::default();
        for w in ["gate-fail=24-auth", "log-race=40-data-plane", "vault-fail", "latency-ms=5"] {
            s.apply(w).unwrap();
        }
        assert_eq!(s.gate_fail, ["24-auth"]);
        assert_eq!(s.log_race, ["40-data-plane"]);
        assert!(s.vault_fail && !s.tilt_not_ready);
        assert_eq!(s.latency_ms, 5);
        assert!(s.apply("gate-fial=x").unwrap_err().to_string().contains("unknown scenario"));
    }
}
