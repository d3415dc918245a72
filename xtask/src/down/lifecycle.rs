//! `cargo xtask cluster stop` / `cluster start`: pause the platform and resume it,
//! keeping everything in the cluster (where `down` deletes it). Over the cluster
//! stage's own observe and decision: stop stops our Tilt first (it would only fail
//! against a stopped API), then `k3d cluster stop`; start only starts a cluster that is
//! stopped (`k3d cluster start`, a registry stopped by hand, `/readyz`) and never
//! creates or recreates one.

use crate::cluster::{self, Action, Lifecycle, Planned};
use crate::config::Context;
use crate::error::{Result, bad_input, failed};
use crate::events::Event;
use crate::exec::{self, Cmd};
use crate::outcome::{Finding, Report};
use crate::stage_result::StageResult;

const TAG: &str = "cluster";

pub async fn lifecycle(ctx: &Context, which: Lifecycle, plan_only: bool) -> Result<()> {
    if !ctx.targets_own_cluster() {
        return Err(bad_input(format!(
            "`cargo xtask cluster` manages the k3d cluster `{}`; --context `{}` names another: drop --context",
            ctx.settings.cluster, ctx.kube_context
        )));
    }
    let planned = cluster::plan(ctx).await?;
    let report = match which {
        Lifecycle::Stop => stop(ctx, &planned, plan_only).await?,
        Lifecycle::Start => start(ctx, &planned, plan_only).await?,
    };
    let result = StageResult::new(
        TAG,
        std::slice::from_ref(&report),
        ctx.session.where_output_is("; log: ", ""),
    );
    ctx.session.events.emit(Event::Result { result: &result });
    match result.failure {
        Some(finding) => {
            Err(failed(format!("cluster: {finding}")).with_remediation(finding.remediation))
        }
        None => Ok(()),
    }
}

/// Whether any container of the cluster (its registry included) runs.
fn running(planned: &Planned) -> bool {
    let observed = &planned.observed;
    observed.nodes.iter().chain(&observed.registry).any(|c| c.running)
}

async fn stop(ctx: &Context, planned: &Planned, plan_only: bool) -> Result<Report> {
    let name = &planned.desired.name;
    if planned.observed.nodes.is_empty() {
        return Ok(Report::ok(format!("nothing to do: there is no cluster `{name}`")));
    }
    if !running(planned) {
        return Ok(Report::ok(format!("nothing to do: cluster `{name}` is stopped")));
    }
    let tilt = crate::tilt::record::recorded(&ctx.root).filter(crate::tilt::record::is_running);
    let tilt_text =
        tilt.as_ref().map(|t| format!("Tilt (pid {}, started by `cargo xtask`), then ", t.pid));
    let what = format!(
        "{}cluster `{name}` (its containers; everything in it is kept)",
        tilt_text.unwrap_or_default()
    );
    if plan_only {
        return Ok(Report::planned(format!("would stop {what}")));
    }
    if let Some(record) = tilt {
        ctx.session.progress(TAG, &format!("stopping Tilt (pid {})", record.pid));
        crate::tilt::record::stop(&record, std::time::Duration::from_secs(10)).await?;
        crate::tilt::record::forget(&ctx.root)?;
    }
    let timeout = ctx.settings.timeouts.cluster_ready();
    exec::run_ok(&ctx.session, &Cmd::new(TAG, "k3d", timeout).args(["cluster", "stop", name]))
        .await?;
    Ok(Report::ok(format!(
        "stopped {what}; `cargo xtask cluster start` starts it again (then `cargo xtask tilt`), or `cargo xtask bootstrap` does both"
    )))
}

async fn start(ctx: &Context, planned: &Planned, plan_only: bool) -> Result<Report> {
    let name = &planned.desired.name;
    let finding = |found: String, remediation: &str| {
        Report::failed(
            format!("cluster `{name}` not started"),
            Finding::new(format!("cluster {name}"), "stopped, to be started", found, remediation),
        )
    };
    match &planned.plan.action {
        Action::Noop => Ok(Report::ok(format!("nothing to do: cluster `{name}` runs"))),
        Action::Create => Ok(finding(
            "no cluster".into(),
            "`cargo xtask bootstrap` creates it (or `cargo xtask cluster` the cluster alone)",
        )),
        Action::Recreate { reason } => Ok(finding(
            reason.clone(),
            "`cargo xtask cluster` recreates it from its config (everything in it is lost), `cargo xtask bootstrap` then converges it",
        )),
        Action::Start { reason } if plan_only => {
            Ok(Report::planned(format!("would start cluster `{name}` ({reason})")))
        }
        Action::Start { reason } => {
            cluster::apply(ctx, planned).await?;
            Ok(Report::ok(format!(
                "started cluster `{name}` ({reason}); its API is ready. Tilt is not started: `cargo xtask tilt`"
            )))
        }
    }
}
