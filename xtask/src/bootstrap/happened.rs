//! What the stages did, as typed events ([`Happened`]) appended to the run's record
//! ([`Record`]), never rows edited in place: a layer synced or left unchanged (with its
//! gate's verdict), a secrets step or repository step ran, images fetched, the
//! registry and secret stores read, tools installed. Later stages read the record
//! (which layers converged, which secrets steps already ran) and the summary's layer
//! and step tables are folded from it ([`Record::layer_rows`], [`Record::step_rows`]).

use std::time::Duration;

use super::run_plan::RunPlan;
use super::summary::{LayerAction, LayerRow, LayerStatus, StepRow, StepStatus};
use crate::cluster::registry::Catalog;
use crate::images::FetchReport;
use crate::layers::GateStatus;
use crate::secrets::{Step, StoreUse};
use crate::tools::ToolInstall;

/// One thing a stage did.
#[derive(Debug, Clone, PartialEq)]
pub enum Happened {
    /// Planned tools were downloaded, verified and put in `.tools/bin`.
    ToolsInstalled { tools: Vec<ToolInstall> },
    /// A layer's inputs and releases matched the last green run: nothing was run.
    LayerUnchanged { layer: String, duration: Duration },
    /// A layer was synced and its gate run; `failed` when the sync, the gate or a step
    /// after it failed.
    LayerSynced { layer: String, gate: GateStatus, failed: bool, duration: Duration },
    /// Something about a layer the user should know (a recovered release, a step's note).
    LayerWarning { layer: String, warning: String },
    /// A secrets step ran right after its layer, and what it did.
    SecretsStepRan { layer: String, step: Step, detail: String },
    /// A repository step ran (or was found unchanged), after its anchor.
    StepRan { name: String, status: StepStatus, duration: Duration },
    /// The images fetched ahead while the layers synced.
    ImagesFetched { report: FetchReport },
    /// The local registry and what it holds.
    RegistryRead { catalog: Catalog },
    /// The secret stores the ExternalSecrets use.
    SecretStoresRead { stores: Vec<StoreUse> },
}

/// The run's typed events, in order.
#[derive(Debug, Default)]
pub struct Record {
    events: Vec<Happened>,
}

impl Record {
    pub fn push(&mut self, happened: Happened) {
        self.events.push(happened);
    }

    pub fn events(&self) -> &[Happened] {
        &self.events
    }

    /// Layers that converged in this run (synced and green, or unchanged).
    pub fn converged(&self, layer: &str) -> bool {
        self.events.iter().any(|h| match h {
            Happened::LayerUnchanged { layer: l, .. } => l == layer,
            Happened::LayerSynced { layer: l, failed, .. } => l == layer && !failed,
            _ => false,
        })
    }

    /// The secrets steps that already ran after their layers.
    pub fn secrets_steps_done(&self) -> Vec<Step> {
        self.events
            .iter()
            .filter_map(|h| match h {
                Happened::SecretsStepRan { step, .. } => Some(*step),
                _ => None,
            })
            .collect()
    }

    /// `after <layer>: <what it did>` for each secrets step that ran after its layer.
    pub fn secrets_steps_detail(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|h| match h {
                Happened::SecretsStepRan { layer, detail, .. } => Some(
                    detail
                        .split("; ")
                        .filter(|l| !l.is_empty())
                        .map(|l| format!("after {layer}: {l}"))
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// `N synced, M unchanged, K skipped` out of `layers` layers.
    pub fn layers_line(&self, layers: usize) -> String {
        let (mut synced, mut unchanged, mut failed) = (0, 0, 0);
        for h in &self.events {
            match h {
                Happened::LayerUnchanged { .. } => unchanged += 1,
                Happened::LayerSynced { failed: true, .. } => failed += 1,
                Happened::LayerSynced { .. } => synced += 1,
                _ => {}
            }
        }
        let skipped = layers.saturating_sub(synced + unchanged + failed);
        format!("{synced} synced, {unchanged} unchanged, {skipped} skipped")
    }

    /// A step's status in this run (`skipped` when it did not run).
    pub fn step_status(&self, name: &str) -> StepStatus {
        self.events
            .iter()
            .rev()
            .find_map(|h| match h {
                Happened::StepRan { name: n, status, .. } if n == name => Some(*status),
                _ => None,
            })
            .unwrap_or(StepStatus::Skipped)
    }

    /// The summary's layer table: one row per layer (`names`), each with the plan's
    /// decision when there is one, folded from the events.
    pub fn layer_rows(&self, names: &[String], plan: Option<&RunPlan>) -> Vec<LayerRow> {
        let mut rows: Vec<LayerRow> = names.iter().map(|n| LayerRow::new(n)).collect();
        for row in &mut rows {
            let decided = plan
                .and_then(|p| p.platform.layers.iter().find(|l| l.name == row.name))
                .and_then(|l| l.decision.as_ref());
            if let Some(d) = decided {
                row.then = d.then.clone();
                if let Some(action) = d.action {
                    let action = match action {
                        super::run_plan::LayerAction::Unchanged => LayerAction::Unchanged,
                        _ => LayerAction::Sync,
                    };
                    row.action = Some((action, d.reason.clone().unwrap_or_default()));
                    row.first = d.first.clone();
                }
            }
        }
        for h in &self.events {
            let row =
                |layer: &str, rows: &mut Vec<LayerRow>| rows.iter().position(|r| r.name == layer);
            match h {
                Happened::LayerUnchanged { layer, duration } => {
                    if let Some(i) = row(layer, &mut rows) {
                        rows[i].status = LayerStatus::Unchanged;
                        rows[i].duration += *duration;
                    }
                }
                Happened::LayerSynced { layer, gate, failed, duration } => {
                    if let Some(i) = row(layer, &mut rows) {
                        rows[i].status =
                            if *failed { LayerStatus::Failed } else { LayerStatus::Synced };
                        rows[i].gate = *gate;
                        rows[i].duration += *duration;
                    }
                }
                Happened::LayerWarning { layer, warning } => {
                    if let Some(i) = row(layer, &mut rows) {
                        rows[i].warnings.push(warning.clone());
                    }
                }
                _ => {}
            }
        }
        rows
    }

    /// The summary's step table: one row per configured step, folded from the events.
    pub fn step_rows(
        &self,
        steps: &[crate::config::StepSettings],
        plan: Option<&RunPlan>,
    ) -> Vec<StepRow> {
        steps
            .iter()
            .enumerate()
            .map(|(index, settings)| {
                let mut row = StepRow::new(&settings.name, &settings.after);
                let decided = plan
                    .and_then(|p| p.platform.steps.get(index))
                    .and_then(|s| s.decision.as_ref());
                row.plan = decided
                    .filter(|d| d.action != "skip")
                    .map(|d| format!("{}: {}", d.action, d.reason));
                for h in &self.events {
                    if let Happened::StepRan { name, status, duration } = h
                        && *name == settings.name
                    {
                        row.status = *status;
                        row.duration = *duration;
                    }
                }
                row
            })
            .collect()
    }

    pub fn images(&self) -> Option<FetchReport> {
        self.events.iter().rev().find_map(|h| match h {
            Happened::ImagesFetched { report } => Some(report.clone()),
            _ => None,
        })
    }

    pub fn registry(&self) -> Option<Catalog> {
        self.events.iter().rev().find_map(|h| match h {
            Happened::RegistryRead { catalog } => Some(catalog.clone()),
            _ => None,
        })
    }

    pub fn secret_stores(&self) -> Vec<StoreUse> {
        self.events
            .iter()
            .rev()
            .find_map(|h| match h {
                Happened::SecretStoresRead { stores } => Some(stores.clone()),
                _ => None,
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["10-a", "20-b", "30-c"].map(String::from).to_vec()
    }

    #[test]
    fn the_layer_table_is_folded_from_what_happened() {
        let mut record = Record::default();
        record.push(Happened::LayerUnchanged { layer: "10-a".into(), duration: Duration::ZERO });
        record.push(Happened::LayerWarning {
            layer: "20-b".into(),
            warning: "pod log missing".into(),
        });
        record.push(Happened::LayerSynced {
            layer: "20-b".into(),
            gate: GateStatus::Failed,
            failed: true,
            duration: Duration::from_secs(2),
        });
        let rows = record.layer_rows(&names(), None);
        let seen: Vec<(&str, LayerStatus, GateStatus)> =
            rows.iter().map(|r| (r.name.as_str(), r.status, r.gate)).collect();
        assert_eq!(
            seen,
            [
                ("10-a", LayerStatus::Unchanged, GateStatus::None),
                ("20-b", LayerStatus::Failed, GateStatus::Failed),
                ("30-c", LayerStatus::Skipped, GateStatus::None),
            ]
        );
        assert_eq!(rows[1].warnings, ["pod log missing"]);
        assert_eq!(rows[1].duration, Duration::from_secs(2));
        assert_eq!(record.layers_line(3), "0 synced, 1 unchanged, 1 skipped");
        assert!(record.converged("10-a") && !record.converged("20-b"));
    }

    #[test]
    fn secrets_steps_and_repository_steps_are_read_back_from_the_record() {
        let mut record = Record::default();
        record.push(Happened::SecretsStepRan {
            layer: "15-secrets".into(),
            step: Step::VaultBootstrap,
            detail: "Vault bootstrap Job succeeded".into(),
        });
        record.push(Happened::StepRan {
            name: "sdk".into(),
            status: StepStatus::Ran,
            duration: Duration::from_millis(10),
        });
        assert_eq!(record.secrets_steps_done(), [Step::VaultBootstrap]);
        assert_eq!(
            record.secrets_steps_detail(),
            ["after 15-secrets: Vault bootstrap Job succeeded"]
        );
        assert_eq!(record.step_status("sdk"), StepStatus::Ran);
        assert_eq!(record.step_status("other"), StepStatus::Skipped);
    }
}
