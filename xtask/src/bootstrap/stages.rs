//! The stages around the layers: charts (offline check), cluster (k3d reconcile),
//! status (every release deployed), secrets, tilt. Each carries out its part of the
//! run's plan.

use super::RunState;
use super::happened::Happened;
use super::run_plan::RunPlan;
use crate::charts::{self, ReleaseChart};
use crate::outcome::{Finding, Report, Verdict};
use crate::runner::{Stage, StageFuture};
use crate::{checks, cluster, images, layers, secrets, tilt};

/// `cargo xtask vendor --check`, offline: read-only, so its report is final.
pub struct Charts;

impl Stage<RunState<'_>, RunPlan> for Charts {
    fn name(&self) -> &'static str {
        "charts"
    }

    fn apply<'a>(&'a mut self, _: &'a RunPlan, state: &'a mut RunState<'_>) -> StageFuture<'a> {
        Box::pin(async move {
            let mut releases = Vec::new();
            let mut unread = Vec::new();
            for input in &state.inputs.layers {
                let layer = &input.layer;
                if let Some(reason) = layer.releases.not_read_reason() {
                    unread.push(format!(
                        "{}: release charts not checked: {reason}",
                        layer.file.display()
                    ));
                }
                releases.extend(layer.releases.as_slice().iter().map(|r| ReleaseChart {
                    layer_file: layer.file.clone(),
                    release: r.name.clone(),
                    chart: r.chart.clone(),
                }));
            }
            let (archives, checked) =
                charts::check(&state.ctx.settings.charts_lock, &releases, &unread)?;
            Ok(Report::ok(format!(
                "{archives} archive(s) verified, {checked} release chart(s) local or locked"
            )))
        })
    }
}

/// `cargo xtask cluster`, for the k3d cluster's own context only: the plan's cluster
/// decision, carried out through the observe pass's Docker connection.
pub struct Cluster;

impl Stage<RunState<'_>, RunPlan> for Cluster {
    fn name(&self) -> &'static str {
        "cluster"
    }

    fn apply<'a>(&'a mut self, plan: &'a RunPlan, state: &'a mut RunState<'_>) -> StageFuture<'a> {
        Box::pin(async move {
            let (Some(decided), Some(planned)) = (&plan.cluster_plan, &state.cluster) else {
                let why = plan.platform.cluster.decision.as_ref().map(|d| d.reason.clone());
                return Ok(Report::skipped(why.unwrap_or_default()));
            };
            if !plan.fetch_ahead.is_empty()
                && matches!(
                    decided.action,
                    cluster::Action::Create | cluster::Action::Recreate { .. }
                )
            {
                state.warming = Some(warm_caches(state, plan, planned).await?);
            }
            let report = cluster::apply_decided(state.ctx, planned, decided).await?;
            let Some(name) = &planned.desired.registry else { return Ok(report) };
            // What the registry holds is for the summary: not reading it fails nothing.
            match cluster::registry::catalog(planned.docker(), name).await {
                Ok(catalog) => {
                    let detail = format!("{}; {}", report.detail, catalog.describe());
                    state.record.push(Happened::RegistryRead { catalog });
                    Ok(Report { detail, ..report })
                }
                Err(e) => Ok(report.warn([format!("registry {name}: repositories not read: {e}")])),
            }
        })
    }
}

/// The image caches made ready, then warmed with the images of the layers fetched ahead
/// while k3d creates the cluster (`images::warm`): a new cluster's nodes hold no image,
/// and k3d's creation (about 12 s) is time the shared link would otherwise sit idle.
async fn warm_caches(
    state: &RunState<'_>,
    plan: &RunPlan,
    planned: &cluster::Planned,
) -> crate::error::Result<images::warm::Warming> {
    let ctx = state.ctx;
    let caches = cluster::image_cache::caches(&planned.config)?;
    let timeout = ctx.settings.timeouts.cluster_ready();
    // Its warnings come again from the cluster stage's own `ensure`, in its report.
    cluster::image_cache::ensure(&ctx.session, planned.docker(), &caches, timeout).await?;
    let layers = super::images_stage::fetched_ahead(plan, state);
    Ok(images::warm::start(ctx, planned.docker().clone(), layers, caches))
}

/// Every release of every layer this run synced or found unchanged is `deployed`.
pub struct Status;

impl Stage<RunState<'_>, RunPlan> for Status {
    fn name(&self) -> &'static str {
        "status"
    }

    fn apply<'a>(&'a mut self, _: &'a RunPlan, state: &'a mut RunState<'_>) -> StageFuture<'a> {
        Box::pin(async move {
            let client = state.client().await?;
            let mut failures: Vec<(String, Finding)> = Vec::new();
            let mut checked = 0;
            for input in &state.inputs.layers {
                if !state.record.converged(&input.layer.name) {
                    continue;
                }
                for release in input.layer.releases.as_slice().iter().filter(|r| r.installed) {
                    let check = checks::release_deployed(
                        &client,
                        &release.name,
                        layers::namespace_of(release),
                        &state.ctx.kube_context,
                    )
                    .await?;
                    checked += 1;
                    if check.verdict == Verdict::Failed {
                        failures.push((input.layer.name.clone(), check.finding));
                    }
                }
            }
            let Some((layer, first)) = failures.first().cloned() else {
                return Ok(Report::ok(format!("{checked} release(s) deployed")));
            };
            let found: Vec<String> =
                failures.iter().map(|(_, f)| format!("{}: {}", f.subject, f.found)).collect();
            let finding = Finding {
                subject: format!("{} release(s)", failures.len()),
                expected: "every release deployed".into(),
                found: found.join("; "),
                remediation: first.remediation,
            };
            let detail = format!("{} of {checked} release(s) not deployed", failures.len());
            Ok(Report { layer: Some(layer), ..Report::failed(detail, finding) })
        })
    }
}

/// The Vault bootstrap and db-migrations steps whose layers did not run, then every
/// ExternalSecret Ready; the detail also says what the layer steps did.
pub struct Secrets;

impl Stage<RunState<'_>, RunPlan> for Secrets {
    fn name(&self) -> &'static str {
        "secrets"
    }

    fn apply<'a>(&'a mut self, _: &'a RunPlan, state: &'a mut RunState<'_>) -> StageFuture<'a> {
        Box::pin(async move {
            let client = state.client().await?;
            let done = state.record.secrets_steps_done();
            let report = secrets::stage(state.ctx, &client, &done).await?;
            let done = Report::ok(state.record.secrets_steps_detail().join("; "));
            // Which backends supply the secrets is for the summary: not reading it fails nothing.
            let stores = match secrets::stores::used(&client).await {
                Ok(stores) if stores.is_empty() => Report::ok(""),
                Ok(stores) => {
                    let list: Vec<String> = stores.iter().map(|s| s.describe()).collect();
                    state.record.push(Happened::SecretStoresRead { stores });
                    Report::ok(format!("secret stores: {}", list.join(", ")))
                }
                Err(e) => Report::ok("").warn([format!("secret stores not read: {e}")]),
            };
            Ok(done.merge(report).merge(stores))
        })
    }
}

/// Tilt started (unless it already answers Ready) and its Tiltfile Ready.
pub struct Tilt;

impl Stage<RunState<'_>, RunPlan> for Tilt {
    fn name(&self) -> &'static str {
        "tilt"
    }

    fn apply<'a>(&'a mut self, _: &'a RunPlan, state: &'a mut RunState<'_>) -> StageFuture<'a> {
        Box::pin(tilt::ensure(state.ctx))
    }
}
