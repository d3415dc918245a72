//! The layers stage: plan each layer (sync, with the reason, or unchanged) from its
//! input digest and the digests recorded in the cluster, then apply in order: sync and
//! gate, the secrets steps that follow the layer, and only when all of that succeeded,
//! record the layer's digest. The first failure stops the stage; later layers are
//! `skipped`.

use std::collections::BTreeMap;
use std::time::Instant;

use super::summary::{LayerAction, LayerStatus, word};
use super::{RunState, Selection};
use crate::error::Result;
use crate::layers::{self, Cycle, LayerPlan};
use crate::outcome::{Finding, Report, Status};
use crate::runner::{Stage, StageFuture};
use crate::secrets;
use crate::spans::{SpanKind, SpanOutcome};

#[derive(Default)]
pub struct Layers {
    /// The layer being applied (an interruption there names it).
    current: Option<String>,
    /// Per layer index, the releases a stopped run left pending and what the sync does
    /// about them first (planned, then carried out by apply).
    recoveries: BTreeMap<usize, Vec<layers::pending::Recover>>,
}

impl Stage<RunState<'_>> for Layers {
    fn name(&self) -> &'static str {
        "layers"
    }

    fn plan<'a>(&'a mut self, state: &'a mut RunState<'_>) -> StageFuture<'a> {
        Box::pin(plan(state, &mut self.recoveries))
    }

    fn apply<'a>(&'a mut self, state: &'a mut RunState<'_>) -> StageFuture<'a> {
        Box::pin(apply(state, &mut self.current, &self.recoveries))
    }

    fn stopped_in(&self) -> Option<String> {
        self.current.clone()
    }
}

/// What the cluster has recorded; with `--plan` on a cluster that is not there yet,
/// nothing (every layer would sync).
async fn recorded(state: &mut RunState<'_>) -> Result<(BTreeMap<String, String>, Option<String>)> {
    let observed = match state.client().await {
        Ok(client) => layers::recorded_digests(&client).await,
        Err(e) => Err(e),
    };
    match observed {
        Ok(recorded) => Ok((recorded, None)),
        Err(e) if state.options.mode == crate::runner::Mode::Plan && !e.kind().is_interrupted() => {
            Ok((BTreeMap::new(), Some(format!("the cluster is not reachable yet ({e})"))))
        }
        Err(e) => Err(e),
    }
}

async fn plan(
    state: &mut RunState<'_>,
    recoveries: &mut BTreeMap<usize, Vec<layers::pending::Recover>>,
) -> Result<Report> {
    let (recorded, unreachable) = recorded(state).await?;
    let settings = state.ctx.settings.secrets.clone();
    let named = matches!(state.options.selection, Selection::Named(_));
    // `--from`/`--only` vouch for the layers before the selection only when the cluster
    // records them as converged with today's inputs.
    let first_selected = state.inputs.layers.iter().position(|l| l.selected).unwrap_or(0);
    let unverified: Vec<String> = state.inputs.layers[..first_selected]
        .iter()
        .filter(|l| !named && recorded.get(&l.layer.name) != Some(&l.digest))
        .map(|l| l.layer.name.clone())
        .collect();
    let (mut sync, mut unchanged) = (0, 0);
    for index in 0..state.inputs.layers.len() {
        let input = state.inputs.layers[index].clone();
        if !input.selected {
            continue;
        }
        let decision = match (&unreachable, named) {
            (Some(why), _) => LayerPlan::Sync { reason: why.clone() },
            (None, true) => LayerPlan::Sync { reason: "requested by `cargo xtask sync`".into() },
            (None, false) => {
                let client = state.client().await?;
                let not_deployed = layers::not_deployed(&client, &input.layer).await?;
                let to_uninstall =
                    layers::off_but_present(&client, &input.layer, &state.ctx.bundles).await?;
                layers::plan(
                    &input.digest,
                    recorded.get(&input.layer.name).map(String::as_str),
                    &not_deployed,
                    &to_uninstall,
                    state.options.force,
                )
            }
        };
        let pending = match (&unreachable, &decision) {
            (None, LayerPlan::Sync { .. }) => {
                let client = state.client().await?;
                layers::pending_releases(&client, &input.layer, &state.ctx.kube_context).await?
            }
            _ => Vec::new(),
        };
        let tag = format!("layers/{}", input.layer.name);
        state.ctx.session.line(&tag, &format!("plan: {decision}"));
        for recover in &pending {
            state.ctx.session.line(&tag, &format!("plan: first {recover}"));
        }
        state.rows[index].first = pending.iter().map(ToString::to_string).collect();
        recoveries.insert(index, pending);
        let mut then: Vec<String> = secrets::steps_after(&settings, &input.layer.name)
            .into_iter()
            .map(|step| step.describe(&settings))
            .collect();
        then.extend(super::steps_stage::plan_after(state, &input.layer.name));
        let row = &mut state.rows[index];
        row.then = then;
        row.action = Some(match decision {
            LayerPlan::Sync { reason } => {
                sync += 1;
                (LayerAction::Sync, reason)
            }
            LayerPlan::Unchanged => {
                unchanged += 1;
                (
                    LayerAction::Unchanged,
                    "inputs match the last green run and every release is deployed".into(),
                )
            }
        });
        if state.options.mode == crate::runner::Mode::Plan {
            row.status = LayerStatus::Planned;
        }
    }
    let planned = Report::planned(format!("{sync} to sync, {unchanged} unchanged"));
    if unverified.is_empty() {
        return Ok(planned);
    }
    let found = format!("not converged: {}", unverified.join(", "));
    let fix = "run `cargo xtask bootstrap` without --from/--only to converge them first";
    if state.options.mode == crate::runner::Mode::Plan {
        return Ok(planned.warn([format!("layers before the selection are {found}: {fix}")]));
    }
    let finding = Finding::new(
        "layers before the selection",
        "recorded as converged with today's inputs",
        found,
        fix,
    );
    let detail = format!("{} earlier layer(s) not converged", unverified.len());
    Ok(Report { layer: unverified.first().cloned(), ..Report::failed(detail, finding) })
}

async fn apply(
    state: &mut RunState<'_>,
    current: &mut Option<String>,
    recoveries: &BTreeMap<usize, Vec<layers::pending::Recover>>,
) -> Result<Report> {
    let client = state.client().await?;
    let ctx = state.ctx;
    let session = &ctx.session;
    for index in 0..state.inputs.layers.len() {
        let Some((action, reason)) = state.rows[index].action.clone() else { continue };
        let input = state.inputs.layers[index].clone();
        let name = input.layer.name.clone();
        *current = Some(name.clone());
        let started = Instant::now();
        let span = session.events.span(SpanKind::Layer, &format!("layers/{name}"), &name);
        let result = match action {
            LayerAction::Unchanged => {
                session.progress(&format!("layers/{name}"), &format!("layer {name}: unchanged"));
                state.rows[index].status = LayerStatus::Unchanged;
                None
            }
            LayerAction::Sync => {
                session.cancel.check()?;
                session
                    .progress(&format!("layers/{name}"), &format!("layer {name}: sync ({reason})"));
                let cycle = Cycle { ctx, client: &client, helmfile: state.inputs.helmfile.clone() };
                let pending = recoveries.get(&index).map_or(&[][..], Vec::as_slice);
                let outcome = match layers::sync_and_gate(&cycle, &input.layer, pending).await {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        state.rows[index].status = LayerStatus::Failed;
                        return Err(e);
                    }
                };
                let row = &mut state.rows[index];
                row.gate = outcome.gate;
                row.warnings.extend(outcome.warnings);
                row.status = match outcome.failure {
                    Some(_) => LayerStatus::Failed,
                    None => LayerStatus::Synced,
                };
                session.progress(
                    &format!("layers/{name}"),
                    &format!("layer {name}: {}, gate {}", word(&row.status), word(&row.gate)),
                );
                outcome.failure
            }
        };
        // The steps that follow the layer; only when all succeeded is it converged.
        let failure = match result {
            Some(failure) => Some(failure),
            None => after_layer(state, &client, index).await?,
        };
        state.rows[index].duration += started.elapsed();
        span.finish(if failure.is_some() { SpanOutcome::Failed } else { SpanOutcome::Ok });
        if let Some(finding) = failure {
            state.rows[index].status = LayerStatus::Failed;
            let detail = summary_detail(state);
            return Ok(Report { layer: Some(name), ..Report::failed(detail, finding) });
        }
        if action == LayerAction::Sync {
            layers::record_digest(&client, &name, &input.digest).await?;
        }
        // Repository steps build on a converged layer; theirs is a record of their own.
        if let Some(finding) = super::steps_stage::run_after(state, &name).await? {
            let detail = summary_detail(state);
            return Ok(Report { layer: Some(name), ..Report::failed(detail, finding) });
        }
    }
    *current = None;
    Ok(Report::with(Status::Ok, summary_detail(state)))
}

/// The secrets steps configured after layer `index`: a failure is the layer's finding.
async fn after_layer(
    state: &mut RunState<'_>,
    client: &kube::Client,
    index: usize,
) -> Result<Option<Finding>> {
    let ctx = state.ctx;
    let layer = state.rows[index].name.clone();
    for step in secrets::steps_after(&ctx.settings.secrets, &layer) {
        ctx.session.cancel.check()?;
        let report = step.run(ctx, client).await?;
        state.rows[index].warnings.extend(report.warnings.iter().cloned());
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
            state.steps_detail.push(format!("after {layer}: {line}"));
        }
        state.steps_done.push(step);
    }
    Ok(None)
}

/// `N synced, M unchanged, K skipped`, counted from the rows.
fn summary_detail(state: &RunState<'_>) -> String {
    let count = |status| state.rows.iter().filter(|r| r.status == status).count();
    let (synced, unchanged) = (count(LayerStatus::Synced), count(LayerStatus::Unchanged));
    let skipped = state.rows.len() - synced - unchanged - count(LayerStatus::Failed);
    format!("{synced} synced, {unchanged} unchanged, {skipped} skipped")
}
