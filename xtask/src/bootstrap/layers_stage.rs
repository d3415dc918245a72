//! The layers stage: carry out each selected layer's decision of the run plan (sync,
//! with the reason, or unchanged) in order: sync and gate, the secrets steps that
//! follow the layer, and only when all of that succeeded, record the layer's digest.
//! The first failure stops the stage; later layers are `skipped`.

use std::time::Instant;

use super::RunState;
use super::happened::Happened;
use super::run_plan::{LayerAction as Planned, RunPlan};
use super::summary::{LayerAction, LayerStatus, word};
use crate::error::Result;
use crate::layers::{self, Cycle, GateStatus, LayerPlan};
use crate::outcome::{Finding, Report, Status};
use crate::runner::{Stage, StageFuture};
use crate::secrets;
use crate::spans::{SpanKind, SpanOutcome};

#[derive(Default)]
pub struct Layers {
    /// The layer being applied (an interruption there names it).
    current: Option<String>,
}

impl Stage<RunState<'_>, RunPlan> for Layers {
    fn name(&self) -> &'static str {
        "layers"
    }

    fn apply<'a>(&'a mut self, plan: &'a RunPlan, state: &'a mut RunState<'_>) -> StageFuture<'a> {
        Box::pin(apply(plan, state, &mut self.current))
    }

    fn stopped_in(&self) -> Option<String> {
        self.current.clone()
    }
}

/// A layer the plan could not decide before the cluster stage ran (its API was not
/// there): decided now by the same rule, from what the cluster records.
async fn recheck(
    state: &mut RunState<'_>,
    index: usize,
) -> Result<(LayerAction, String, Vec<layers::pending::Recover>)> {
    let client = state.client().await?;
    let input = &state.inputs.layers[index];
    let recorded = layers::recorded_digests(&client).await?;
    let not_deployed = layers::not_deployed(&client, &state.ctx.kube_context, &input.layer).await?;
    let to_uninstall = layers::off_but_present(&client, &input.layer, &state.ctx.bundles).await?;
    let decision = layers::plan(
        &input.digest,
        recorded.get(&input.layer.name).map(String::as_str),
        &not_deployed,
        &to_uninstall,
        state.options.force,
    );
    Ok(match decision {
        LayerPlan::Sync { reason } => {
            let pending =
                layers::pending::releases(&client, &input.layer, &state.ctx.kube_context).await?;
            (LayerAction::Sync, reason, pending)
        }
        LayerPlan::Unchanged => (
            LayerAction::Unchanged,
            "inputs match the last green run and every release is deployed".into(),
            Vec::new(),
        ),
    })
}

/// The plan left layers to recheck: the cluster's API was not there when it was made.
fn rechecks(plan: &RunPlan) -> bool {
    let decisions = plan.platform.layers.iter().filter_map(|l| l.decision.as_ref());
    decisions.into_iter().any(|d| d.action == Some(Planned::Recheck))
}

/// The layers before a `--from`/`--only` selection the cluster does not record as
/// converged with today's inputs, read now (the same rule as the plan's).
async fn unconverged_now(state: &mut RunState<'_>) -> Result<Vec<String>> {
    if matches!(state.options.selection, super::Selection::Named(_)) {
        return Ok(Vec::new());
    }
    let client = state.client().await?;
    let recorded = layers::recorded_digests(&client).await?;
    let first_selected = state.inputs.layers.iter().position(|l| l.selected).unwrap_or(0);
    Ok(state.inputs.layers[..first_selected]
        .iter()
        .filter(|l| recorded.get(&l.layer.name) != Some(&l.digest))
        .map(|l| l.layer.name.clone())
        .collect())
}

/// The plan's decision for layer `index`, if it is selected (rechecked now if needed).
async fn decided(
    plan: &RunPlan,
    state: &mut RunState<'_>,
    index: usize,
) -> Result<Option<(LayerAction, String, Vec<layers::pending::Recover>)>> {
    let view = &plan.platform.layers[index];
    let Some(decision) = view.decision.as_ref().filter(|d| d.selected) else { return Ok(None) };
    let reason = decision.reason.clone().unwrap_or_default();
    let pending = plan.recoveries.get(&view.name).cloned().unwrap_or_default();
    Ok(Some(match decision.action {
        None => return Ok(None),
        Some(Planned::Sync) => (LayerAction::Sync, reason, pending),
        Some(Planned::Unchanged) => (LayerAction::Unchanged, reason, pending),
        Some(Planned::Recheck) => recheck(state, index).await?,
    }))
}

async fn apply(
    plan: &RunPlan,
    state: &mut RunState<'_>,
    current: &mut Option<String>,
) -> Result<Report> {
    let unconverged = match rechecks(plan) {
        true => unconverged_now(state).await?,
        false => plan.unconverged.clone(),
    };
    if !unconverged.is_empty() {
        let finding = Finding::new(
            "layers before the selection",
            "recorded as converged with today's inputs",
            format!("not converged: {}", unconverged.join(", ")),
            "run `cargo xtask bootstrap` without --from/--only to converge them first",
        );
        let detail = format!("{} earlier layer(s) not converged", unconverged.len());
        let layer = unconverged.first().cloned();
        return Ok(Report { layer, ..Report::failed(detail, finding) });
    }
    let client = state.client().await?;
    let ctx = state.ctx;
    let session = &ctx.session;
    for index in 0..state.inputs.layers.len() {
        let Some((action, reason, pending)) = decided(plan, state, index).await? else {
            continue;
        };
        let input = state.inputs.layers[index].clone();
        let name = input.layer.name.clone();
        *current = Some(name.clone());
        let started = Instant::now();
        let span = session.events.span(SpanKind::Layer, &format!("layers/{name}"), &name);
        let mut gate = GateStatus::None;
        let result = match action {
            LayerAction::Unchanged => {
                session.progress(&format!("layers/{name}"), &format!("layer {name}: unchanged"));
                None
            }
            LayerAction::Sync => {
                session.cancel.check()?;
                wait_for_warming(state, &name).await?;
                session
                    .progress(&format!("layers/{name}"), &format!("layer {name}: sync ({reason})"));
                let cycle = Cycle { ctx, client: &client, helmfile: state.inputs.helmfile.clone() };
                let outcome = match layers::sync_and_gate(&cycle, &input.layer, &pending).await {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        let duration = started.elapsed();
                        let failed =
                            Happened::LayerSynced { layer: name, gate, failed: true, duration };
                        state.record.push(failed);
                        return Err(e);
                    }
                };
                gate = outcome.gate;
                for warning in outcome.warnings {
                    state.record.push(Happened::LayerWarning { layer: name.clone(), warning });
                }
                let status = match outcome.failure {
                    Some(_) => LayerStatus::Failed,
                    None => LayerStatus::Synced,
                };
                session.progress(
                    &format!("layers/{name}"),
                    &format!("layer {name}: {}, gate {}", word(&status), word(&gate)),
                );
                outcome.failure
            }
        };
        // The steps that follow the layer; only when all succeeded is it converged.
        let failure = match result {
            Some(failure) => Some(failure),
            None => after_layer(state, &client, index).await?,
        };
        let duration = started.elapsed();
        let failed = failure.is_some();
        state.record.push(match (action, failed) {
            (LayerAction::Unchanged, false) => {
                Happened::LayerUnchanged { layer: name.clone(), duration }
            }
            _ => Happened::LayerSynced { layer: name.clone(), gate, failed, duration },
        });
        span.finish(if failed { SpanOutcome::Failed } else { SpanOutcome::Ok });
        if let Some(finding) = failure {
            let detail = summary_detail(state);
            return Ok(Report { layer: Some(name), ..Report::failed(detail, finding) });
        }
        if action == LayerAction::Sync {
            layers::record_digest(&client, &name, &input.digest).await?;
        }
        // Repository steps build on a converged layer; theirs is a record of their own.
        if let Some(finding) = super::steps_stage::run_after(plan, state, &name).await? {
            let detail = summary_detail(state);
            return Ok(Report { layer: Some(name), ..Report::failed(detail, finding) });
        }
    }
    *current = None;
    Ok(Report::with(Status::Ok, summary_detail(state)))
}

/// Before a layer syncs on a new cluster, the images of it still being warmed in the
/// image cache (`images::warm`) reach the cache: a Pod asking the cache for an image it
/// is still downloading makes the cache download that image once more from upstream
/// (distribution's proxy streams a blob in flight again), on the same link, so the
/// Pod would wait longer than the warming has left. Bounded: each warming pull has the
/// fetch timeout, and a failed one ends the wait.
async fn wait_for_warming(state: &RunState<'_>, layer: &str) -> Result<()> {
    let Some(mut warming) = state.warming.clone() else { return Ok(()) };
    let pending = warming.pending(layer);
    if pending.is_empty() {
        return Ok(());
    }
    let session = &state.ctx.session;
    session.progress(
        &format!("layers/{layer}"),
        &format!("layer {layer}: waiting for {} to reach the image cache", pending.join(", ")),
    );
    session.cancel.unless_interrupted(warming.layer_warmed(layer)).await
}

/// The secrets steps configured after layer `index`: a failure is the layer's finding.
async fn after_layer(
    state: &mut RunState<'_>,
    client: &kube::Client,
    index: usize,
) -> Result<Option<Finding>> {
    let ctx = state.ctx;
    let layer = state.inputs.layers[index].layer.name.clone();
    for step in secrets::steps_after(&ctx.settings.secrets, &layer) {
        ctx.session.cancel.check()?;
        let report = step.run(ctx, client).await?;
        for warning in &report.warnings {
            let warning = warning.clone();
            state.record.push(Happened::LayerWarning { layer: layer.clone(), warning });
        }
        if report.status == Status::Failed {
            return Ok(Some(report.finding.unwrap_or_else(|| {
                Finding::new(
                    step.describe(&ctx.settings.secrets),
                    "to succeed",
                    report.detail,
                    "read the log",
                )
            })));
        }
        for line in report.detail.split("; ").filter(|l| !l.is_empty()) {
            ctx.session.progress(&format!("layers/{layer}"), &format!("layer {layer}: {line}"));
        }
        let detail = report.detail;
        state.record.push(Happened::SecretsStepRan { layer: layer.clone(), step, detail });
    }
    Ok(None)
}

/// `N synced, M unchanged, K skipped`, from what happened.
fn summary_detail(state: &RunState<'_>) -> String {
    state.record.layers_line(state.inputs.layers.len())
}
