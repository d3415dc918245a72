//! The run's one observe pass, before anything changes: the cluster's containers
//! (Docker) when the cluster stage runs on the k3d cluster's own context, and what the
//! cluster records (layer digests, each selected layer's releases) when its API answers.
//! An API that does not answer yet is an observation, not an error.

use std::collections::BTreeMap;

use super::Inputs;
use super::Selection;
use super::preflight::Preflight;
use super::run_plan::{ApiSeen, ClusterSeen, LayerSeen, Observation};
use crate::cluster;
use crate::config::Context;
use crate::error::Result;
use crate::layers;

/// Observe once; the cluster's reading is kept for the cluster stage's apply.
pub async fn observe(
    ctx: &Context,
    inputs: &Inputs,
    preflight: &Preflight<'_>,
) -> Result<(Observation, Option<cluster::Planned>)> {
    let (cluster_seen, planned) =
        match (preflight.stages.contains(&"cluster"), ctx.targets_own_cluster()) {
            (false, _) => {
                (ClusterSeen::NotInRun("the cluster stage is not part of this run".into()), None)
            }
            (true, false) => (
                ClusterSeen::NotInRun(format!(
                    "context {} is not the k3d cluster's",
                    ctx.kube_context
                )),
                None,
            ),
            (true, true) => {
                let planned = cluster::plan(ctx).await?;
                let seen = ClusterSeen::Seen {
                    desired: Box::new(planned.desired.clone()),
                    observed: Box::new(planned.observed.clone()),
                };
                (seen, Some(planned))
            }
        };
    // A cluster this run creates records nothing worth reading.
    let fresh = planned.as_ref().is_some_and(|p| {
        matches!(p.plan.action, cluster::Action::Create | cluster::Action::Recreate { .. })
    });
    let api = match fresh {
        true => ApiSeen::Unreachable("the cluster is created by this run".into()),
        false => api(ctx, inputs, &preflight.options.selection).await?,
    };
    let seen = Observation { cluster: cluster_seen, api, ..Observation::default() };
    Ok((seen, planned))
}

/// The digests the cluster records and, per selected layer, its releases' state.
async fn api(ctx: &Context, inputs: &Inputs, selection: &Selection) -> Result<ApiSeen> {
    let reached = match crate::k8s::client(&ctx.kube_context).await {
        Ok(client) => layers::recorded_digests(&client).await.map(|r| (client, r)),
        Err(e) => Err(e),
    };
    let (client, recorded) = match reached {
        Ok(reached) => reached,
        Err(e) if e.kind().is_interrupted() => return Err(e),
        Err(e) => return Ok(ApiSeen::Unreachable(e.to_string())),
    };
    let named = matches!(selection, Selection::Named(_));
    let mut seen = BTreeMap::new();
    for input in inputs.layers.iter().filter(|l| l.selected) {
        let layer = &input.layer;
        let mut state = LayerSeen::default();
        if !named {
            state.not_deployed = layers::not_deployed(&client, &ctx.kube_context, layer).await?;
            state.off_but_present = layers::off_but_present(&client, layer, &ctx.bundles).await?;
        }
        state.pending = layers::pending::releases(&client, layer, &ctx.kube_context).await?;
        seen.insert(layer.name.clone(), state);
    }
    Ok(ApiSeen::Reachable { recorded, layers: seen })
}
