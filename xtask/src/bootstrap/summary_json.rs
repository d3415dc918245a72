//! The summary's JSON (`bootstrap` and `sync` with `--format json`) as typed structs:
//! the shape is a contract, published as `schemas/bootstrap.schema.json`. They also
//! deserialize, so tests (and scripts) read a run's JSON back into the same types.

use serde::{Deserialize, Serialize};

use super::summary::{LayerAction, LayerStatus, StepStatus, Summary};
use crate::cluster::registry::Catalog;
use crate::layers::GateStatus;
use crate::outcome::Status;
use crate::secrets::StoreUse;

/// Bumped when a field is renamed or removed (additions keep it).
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SummaryDoc {
    pub schema_version: u32,
    pub status: Status,
    pub stages: Vec<StageDoc>,
    pub layers: Vec<LayerDoc>,
    pub steps: Vec<StepDoc>,
    /// The local registry and the repositories it holds, when it was read.
    pub registry: Option<Catalog>,
    /// Each secret store the ExternalSecrets use, with its provider.
    pub secret_stores: Vec<StoreUse>,
    /// The images fetched ahead (counts, each image's outcome), when any were.
    pub images: Option<serde_json::Value>,
    /// The first failure and what to do about it.
    pub failure: Option<FailureDoc>,
    /// The log file holding everything every tool printed.
    pub log: String,
    /// `--timings`: the report's path and the run's spans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<serde_json::Value>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StageDoc {
    pub name: String,
    pub status: Status,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LayerDoc {
    pub name: String,
    pub status: LayerStatus,
    pub gate: GateStatus,
    pub warnings: Vec<String>,
    /// What the run plan decided, for a layer it decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<LayerAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Releases a stopped run left pending, brought back before the sync.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first: Vec<String>,
    /// The steps that follow the layer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub then: Vec<String>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StepDoc {
    pub name: String,
    pub status: StepStatus,
    pub duration_ms: u64,
    /// Where it runs: a layer, or `cluster` / `layers` / `secrets`.
    pub after: String,
    /// The plan's decision (`run: <reason>`, `unchanged: ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FailureDoc {
    pub stage: String,
    pub layer: Option<String>,
    pub message: String,
    pub remediation: String,
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Summary {
    /// The document `--format json` prints.
    pub fn doc(&self) -> SummaryDoc {
        SummaryDoc {
            schema_version: SCHEMA_VERSION,
            status: self.status,
            stages: self
                .stages
                .iter()
                .map(|s| StageDoc {
                    name: s.name.clone(),
                    status: s.status,
                    duration_ms: millis(s.duration),
                    warnings: s.warnings.clone(),
                })
                .collect(),
            layers: self
                .layers
                .iter()
                .map(|l| LayerDoc {
                    name: l.name.clone(),
                    status: l.status,
                    gate: l.gate,
                    warnings: l.warnings.clone(),
                    action: l.action.as_ref().map(|(action, _)| *action),
                    reason: l.action.as_ref().map(|(_, reason)| reason.clone()),
                    first: l.first.clone(),
                    then: l.then.clone(),
                })
                .collect(),
            steps: self
                .steps
                .iter()
                .map(|s| StepDoc {
                    name: s.name.clone(),
                    status: s.status,
                    duration_ms: millis(s.duration),
                    after: s.after.clone(),
                    plan: s.plan.clone(),
                })
                .collect(),
            registry: self.registry.clone(),
            secret_stores: self.secret_stores.clone(),
            images: self.images.as_ref().map(crate::images::FetchReport::json),
            failure: self.failure.as_ref().map(|f| FailureDoc {
                stage: f.stage.clone(),
                layer: f.layer.clone(),
                message: f.finding.to_string(),
                remediation: f.finding.remediation.clone(),
            }),
            log: self.log.clone(),
            timings: self.timings.as_ref().map(crate::timings::Attached::json),
        }
    }
}
