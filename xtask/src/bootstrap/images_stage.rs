//! The layers stage with the images fetched ahead (`crate::images`): the layers the
//! run plan fetches ahead (those it syncs), while the layers
//! apply (both run concurrently in this task), so a layer's Pods find their images on
//! the nodes. The fetch's warnings are the layers row's; a layer that fails while one
//! of its images could not be fetched names that image in its finding. Only for the
//! k3d cluster's own context, and only when `images.fetch_ahead` is on.

use super::RunState;
use super::happened::Happened;
use super::run_plan::RunPlan;
use crate::images::{self, FetchReport};
use crate::outcome::Report;
use crate::platform::helmfile::Layer;
use crate::runner::{Stage, StageFuture};

pub struct FetchAhead<S> {
    inner: S,
}

impl<S> FetchAhead<S> {
    pub fn new(inner: S) -> FetchAhead<S> {
        FetchAhead { inner }
    }
}

impl<'c, S: Stage<RunState<'c>, RunPlan>> Stage<RunState<'c>, RunPlan> for FetchAhead<S> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn apply<'a>(&'a mut self, plan: &'a RunPlan, state: &'a mut RunState<'c>) -> StageFuture<'a> {
        Box::pin(async move {
            let layers = fetched_ahead(plan, state);
            if layers.is_empty() {
                return self.inner.apply(plan, state).await;
            }
            let ctx = state.ctx;
            let warming = state.warming.clone();
            let (applied, fetched) = tokio::join!(
                self.inner.apply(plan, state),
                images::fetch_ahead(ctx, &layers, warming)
            );
            let result = match applied {
                Ok(report) => Ok(explain(report, &fetched)),
                Err(error) => {
                    // The runner keeps no warnings of a stage that errs: emit them here.
                    for warning in fetched.warnings() {
                        ctx.session.events.warning(self.inner.name(), &warning);
                    }
                    Err(match self.inner.stopped_in() {
                        Some(layer) => fetched.explain_error(&layer, error),
                        None => error,
                    })
                }
            };
            state.record.push(Happened::ImagesFetched { report: fetched });
            result
        })
    }

    fn stopped_in(&self) -> Option<String> {
        self.inner.stopped_in()
    }
}

/// The layers whose images the run plan fetches ahead, in layer order.
pub fn fetched_ahead(plan: &RunPlan, state: &RunState<'_>) -> Vec<Layer> {
    let inputs = state.inputs.layers.iter();
    let fetched = inputs.filter(|input| plan.fetch_ahead.contains(&input.layer.name));
    fetched.map(|input| input.layer.clone()).collect()
}

/// The layers' report with the fetch's warnings, and a failed layer's finding naming
/// the image(s) of that layer that could not be fetched.
fn explain(mut report: Report, fetched: &FetchReport) -> Report {
    if let (Some(layer), Some(finding)) = (&report.layer, report.finding.take()) {
        report.finding = Some(fetched.explain(layer, finding));
    }
    report.warn(fetched.warnings())
}
