//! Repository steps in the run: after a stage (`cluster`, `layers`, `secrets`) as a
//! stage of their own, after a layer inside the layers stage. A failed step stops the
//! run like a failed gate.

use std::time::Instant;

use super::RunState;
use super::happened::Happened;
use super::run_plan::RunPlan;
use super::summary::StepStatus;
use crate::error::Result;
use crate::outcome::{Finding, Report};
use crate::runner::{Stage, StageFuture};
use crate::steps::{self, StepPlan};

/// One configured step as this run sees it.
#[derive(Debug, Clone)]
pub struct StepInput {
    pub settings: crate::config::StepSettings,
    pub digest: Option<String>,
    pub plan: StepPlan,
    /// Its anchor (stage or selected layer) is part of this run.
    pub in_run: bool,
}

/// Run the steps after `anchor` the plan runs, in order; the first failure is returned.
pub async fn run_after(
    plan: &RunPlan,
    state: &mut RunState<'_>,
    anchor: &str,
) -> Result<Option<Finding>> {
    let ctx = state.ctx;
    for index in 0..state.inputs.steps.len() {
        let input = state.inputs.steps[index].clone();
        let decision = plan.platform.steps.get(index).and_then(|s| s.decision.as_ref());
        let Some(decision) = decision.filter(|_| input.settings.after == anchor) else {
            continue;
        };
        let tag = format!("steps/{}", input.settings.name);
        let name = input.settings.name.clone();
        match decision.action.as_str() {
            "skip" => continue,
            "unchanged" => {
                ctx.session.progress(&tag, &format!("step {name}: unchanged"));
                let duration = std::time::Duration::ZERO;
                state.record.push(Happened::StepRan {
                    name,
                    status: StepStatus::Unchanged,
                    duration,
                });
                continue;
            }
            _ => {}
        }
        ctx.session.cancel.check()?;
        ctx.session.progress(&tag, &format!("step {}: {}", input.settings.name, input.plan));
        let started = Instant::now();
        let result = steps::run(ctx, &input.settings, input.digest.as_deref()).await;
        let status = match &result {
            Ok(None) => StepStatus::Ran,
            _ => StepStatus::Failed,
        };
        let duration = started.elapsed();
        ctx.session.progress(&tag, &format!("step {name}: {}", super::summary::word(&status)));
        state.record.push(Happened::StepRan { name, status, duration });
        if let Some(finding) = result? {
            return Ok(Some(finding));
        }
    }
    Ok(None)
}

/// The steps after a whole stage.
pub struct Steps {
    pub after: &'static str,
}

impl Stage<RunState<'_>, RunPlan> for Steps {
    fn name(&self) -> &'static str {
        "steps"
    }

    fn apply<'a>(&'a mut self, plan: &'a RunPlan, state: &'a mut RunState<'_>) -> StageFuture<'a> {
        Box::pin(async move {
            if let Some(finding) = run_after(plan, state, self.after).await? {
                return Ok(Report::failed(format!("a step after {} failed", self.after), finding));
            }
            let done: Vec<String> = state
                .inputs
                .steps
                .iter()
                .filter(|input| input.settings.after == self.after && input.in_run)
                .map(|input| {
                    let status = state.record.step_status(&input.settings.name);
                    format!("{} {}", input.settings.name, super::summary::word(&status))
                })
                .collect();
            Ok(Report::ok(format!("after {}: {}", self.after, done.join(", "))))
        })
    }
}
