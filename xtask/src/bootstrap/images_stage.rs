//! The layers stage with the images fetched ahead (`crate::images`): once the layers
//! stage has planned which layers sync, their images are fetched while the layers
//! apply (both run concurrently in this task), so a layer's Pods find their images on
//! the nodes. The fetch's warnings are the layers row's; a layer that fails while one
//! of its images could not be fetched names that image in its finding. Only for the
//! k3d cluster's own context, and only when `images.fetch_ahead` is on.

use super::RunState;
use super::summary::LayerAction;
use crate::images::{self, FetchReport};
use crate::outcome::Report;
use crate::platform::helmfile::Layer;
use crate::runner::{Mode, Stage, StageFuture};

pub struct FetchAhead<S> {
    inner: S,
    /// The layers to sync, once planned.
    layers: Vec<Layer>,
}

impl<S> FetchAhead<S> {
    pub fn new(inner: S) -> FetchAhead<S> {
        FetchAhead { inner, layers: Vec::new() }
    }
}

impl<'c, S: Stage<RunState<'c>>> Stage<RunState<'c>> for FetchAhead<S> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn plan<'a>(&'a mut self, state: &'a mut RunState<'c>) -> StageFuture<'a> {
        Box::pin(async move {
            let report = self.inner.plan(state).await?;
            let ctx = state.ctx;
            let on = ctx.settings.images.fetch_ahead && ctx.targets_own_cluster();
            self.layers = state
                .inputs
                .layers
                .iter()
                .zip(&state.rows)
                .filter(|(_, row)| on && matches!(row.action, Some((LayerAction::Sync, _))))
                .map(|(input, _)| input.layer.clone())
                .collect();
            if state.options.mode == Mode::Plan && !self.layers.is_empty() {
                let detail = format!(
                    "{}; would fetch the images of {} layer(s) ahead",
                    report.detail,
                    self.layers.len()
                );
                return Ok(Report { detail, ..report });
            }
            Ok(report)
        })
    }

    fn apply<'a>(&'a mut self, state: &'a mut RunState<'c>) -> StageFuture<'a> {
        Box::pin(async move {
            if self.layers.is_empty() {
                return self.inner.apply(state).await;
            }
            let ctx = state.ctx;
            let layers = std::mem::take(&mut self.layers);
            let (applied, fetched) =
                tokio::join!(self.inner.apply(state), images::fetch_ahead(ctx, &layers));
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
            state.images = Some(fetched);
            result
        })
    }

    fn stopped_in(&self) -> Option<String> {
        self.inner.stopped_in()
    }
}

/// The layers' report with the fetch's warnings, and a failed layer's finding naming
/// the image(s) of that layer that could not be fetched.
fn explain(mut report: Report, fetched: &FetchReport) -> Report {
    if let (Some(layer), Some(finding)) = (&report.layer, report.finding.take()) {
        report.finding = Some(fetched.explain(layer, finding));
    }
    report.warn(fetched.warnings())
}
