//! `[workspace.metadata.bootstrap.timeouts]`: how long each wait of a run may take.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Result, bad_input};

/// Timeouts in seconds (`[workspace.metadata.bootstrap.timeouts]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// Cluster created or started and its API answering.
    pub cluster_ready: u64,
    /// One layer's `helmfile sync`.
    pub layer_sync: u64,
    /// One layer's gate (its Helm tests).
    pub gate: u64,
    /// Tilt's resources Ready after `tilt up`.
    pub tilt_ready: u64,
    /// The Vault bootstrap Job succeeded.
    pub vault_bootstrap: u64,
    /// The secret stores the ExternalSecrets use Ready, then the ExternalSecrets.
    pub external_secrets: u64,
    /// Any short tool call (`<tool> version`, `helmfile build`).
    pub tool_call: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            cluster_ready: 300,
            layer_sync: 900,
            gate: 600,
            tilt_ready: 600,
            vault_bootstrap: 600,
            external_secrets: 300,
            tool_call: 30,
        }
    }
}

impl Timeouts {
    pub fn cluster_ready(&self) -> Duration {
        Duration::from_secs(self.cluster_ready)
    }
    pub fn layer_sync(&self) -> Duration {
        Duration::from_secs(self.layer_sync)
    }
    pub fn gate(&self) -> Duration {
        Duration::from_secs(self.gate)
    }
    pub fn tilt_ready(&self) -> Duration {
        Duration::from_secs(self.tilt_ready)
    }
    pub fn vault_bootstrap(&self) -> Duration {
        Duration::from_secs(self.vault_bootstrap)
    }
    pub fn external_secrets(&self) -> Duration {
        Duration::from_secs(self.external_secrets)
    }
    pub fn tool_call(&self) -> Duration {
        Duration::from_secs(self.tool_call)
    }

    /// Bad input (naming `file`) for a timeout of 0 seconds.
    pub(super) fn validate(&self, file: &str) -> Result<()> {
        let t = self;
        for (key, secs) in [
            ("cluster_ready", t.cluster_ready),
            ("layer_sync", t.layer_sync),
            ("gate", t.gate),
            ("tilt_ready", t.tilt_ready),
            ("vault_bootstrap", t.vault_bootstrap),
            ("external_secrets", t.external_secrets),
            ("tool_call", t.tool_call),
        ] {
            if secs == 0 {
                return Err(bad_input(format!(
                    "{file}: [workspace.metadata.bootstrap.timeouts]: `{key}` must be at least 1 (seconds)"
                )));
            }
        }
        Ok(())
    }
}
