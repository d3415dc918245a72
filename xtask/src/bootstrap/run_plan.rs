//! The run's one plan ([`RunPlan`]), in the spirit of cargo-dist's `gather_work`: what
//! preflight read plus one observe pass ([`Observation`]) become, by the pure [`decide`],
//! every decision of the run before anything changes: the tools to install, the
//! cluster's action, each layer's action with its reason and the steps that follow it,
//! the repository steps, the layers whose images are fetched ahead. `bootstrap --plan`
//! and `cargo xtask plan` print it; each stage's apply carries out its part.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::describe::PlanView;
use super::{Inputs, Selection};
use crate::cluster;
use crate::layers::{self, LayerPlan, pending::Recover};
use crate::steps::StepPlan;
use crate::tools::ToolInstall;

/// Bumped when a field is renamed or removed (additions keep it).
pub const SCHEMA_VERSION: u32 = 1;

/// Every decision of one run. `--format json` prints exactly this.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunPlan {
    pub schema_version: u32,
    /// The kube context the run targets.
    pub context: String,
    /// What `infra/` describes, each part with its decision.
    #[serde(flatten)]
    pub platform: PlanView,
    /// Pinned tools missing from `.tools/bin` (or at another version) that the run installs.
    pub tools: Vec<ToolInstall>,
    /// Layers whose container images are fetched onto the nodes while the layers sync.
    pub fetch_ahead: Vec<String>,
    /// Layers before a `--from`/`--only` selection the cluster does not record as
    /// converged with today's inputs: the run stops before syncing anything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unconverged: Vec<String>,
    pub warnings: Vec<String>,
    /// The log file the run writes (every tool's output).
    pub log: String,
    /// For the layers stage: what each selected layer's sync brings back first.
    #[serde(skip)]
    pub recoveries: BTreeMap<String, Vec<Recover>>,
    /// For the cluster stage: the decision as the cluster module made it.
    #[serde(skip)]
    pub cluster_plan: Option<cluster::Plan>,
}

/// The cluster stage's part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClusterDecision {
    /// `create`, `recreate`, `start`, `noop`, or `skip` (not part of this run).
    pub action: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_legacy: Vec<String>,
    /// Image caches connected to the running cluster's network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connect_caches: Vec<cluster::image_cache::Connect>,
}

/// One layer's part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LayerDecision {
    /// Whether this run touches the layer (`--from`, `--only`, `sync <layer>`).
    pub selected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<LayerAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Releases a stopped run left pending, brought back before the sync.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first: Vec<String>,
    /// Secrets steps and repository steps that run after the layer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub then: Vec<String>,
}

/// What the plan decided for a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LayerAction {
    Sync,
    Unchanged,
    /// The cluster's API could not be read before the cluster stage (a stopped
    /// cluster): the layer is decided, by the same rule, once the cluster stage ran.
    Recheck,
}

/// One repository step's part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StepDecision {
    /// `run`, `unchanged`, or `skip` (its anchor is not part of this run).
    pub action: String,
    pub reason: String,
}

/// What the one observe pass read (Docker, the cluster's API, `.tools`).
#[derive(Debug, Clone, Default)]
pub struct Observation {
    pub tools: Vec<ToolInstall>,
    pub cluster: ClusterSeen,
    pub api: ApiSeen,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum ClusterSeen {
    /// The cluster stage is not part of this run, and why.
    NotInRun(String),
    Seen {
        desired: Box<cluster::Desired>,
        observed: Box<cluster::Observed>,
    },
}

impl Default for ClusterSeen {
    fn default() -> Self {
        ClusterSeen::NotInRun("not observed".into())
    }
}

/// The platform's state as the cluster records it.
#[derive(Debug, Clone)]
pub enum ApiSeen {
    Reachable {
        recorded: BTreeMap<String, String>,
        layers: BTreeMap<String, LayerSeen>,
    },
    /// Not reachable now (no cluster yet, or a stopped one), and why.
    Unreachable(String),
}

impl Default for ApiSeen {
    fn default() -> Self {
        ApiSeen::Unreachable("not observed".into())
    }
}

/// One selected layer's releases as the cluster has them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerSeen {
    pub not_deployed: Vec<String>,
    pub off_but_present: Vec<String>,
    pub pending: Vec<Recover>,
}

/// How the run was asked to go, as far as deciding goes.
#[derive(Debug, Clone)]
pub struct Asked {
    pub context: String,
    pub log: String,
    pub selection: Selection,
    pub force: bool,
    /// Images are fetched ahead (setting on, and the k3d cluster's own context).
    pub fetch_ahead: bool,
    /// Secrets steps per layer, as they are described.
    pub secrets_after: BTreeMap<String, Vec<String>>,
}

/// Desired (the description and what preflight read) plus observed, to every decision
/// of the run. Pure: every branch is unit-tested without Docker.
pub fn decide(
    mut platform: PlanView,
    inputs: &Inputs,
    asked: &Asked,
    seen: &Observation,
) -> RunPlan {
    let cluster_plan = match &seen.cluster {
        ClusterSeen::Seen { desired, observed } => Some(cluster::decide(desired, observed)),
        ClusterSeen::NotInRun(_) => None,
    };
    platform.cluster.decision = Some(cluster_decision(&seen.cluster, cluster_plan.as_ref()));
    let fresh = cluster_plan.as_ref().and_then(|p| match &p.action {
        cluster::Action::Create => Some("the cluster is created by this run".to_string()),
        cluster::Action::Recreate { reason } => {
            Some(format!("the cluster is recreated ({reason})"))
        }
        _ => None,
    });
    let named = matches!(asked.selection, Selection::Named(_));
    let mut recoveries = BTreeMap::new();
    let mut unconverged = Vec::new();
    let first_selected = inputs.layers.iter().position(|l| l.selected).unwrap_or(0);
    for (index, (view, input)) in platform.layers.iter_mut().zip(&inputs.layers).enumerate() {
        let name = &input.layer.name;
        let mut decision = LayerDecision {
            selected: input.selected,
            action: None,
            reason: None,
            first: Vec::new(),
            then: Vec::new(),
        };
        // Layers before a `--from`/`--only` selection must be converged; a new cluster
        // has none, and one not reachable yet is checked when its layers are rechecked.
        if index < first_selected && !named {
            let converged = match (&seen.api, &fresh) {
                (_, Some(_)) => Some(false),
                (ApiSeen::Reachable { recorded, .. }, None) => {
                    Some(recorded.get(name) == Some(&input.digest))
                }
                (ApiSeen::Unreachable(_), None) => None,
            };
            if converged == Some(false) {
                unconverged.push(name.clone());
            }
        }
        if input.selected {
            let (action, reason) = layer_action(input, asked, &seen.api, fresh.as_deref(), named);
            if let (ApiSeen::Reachable { layers, .. }, LayerAction::Sync) = (&seen.api, action) {
                let pending = layers.get(name).map(|l| l.pending.clone()).unwrap_or_default();
                decision.first = pending.iter().map(ToString::to_string).collect();
                recoveries.insert(name.clone(), pending);
            }
            decision.action = Some(action);
            decision.reason = Some(reason);
            decision.then = asked.secrets_after.get(name).cloned().unwrap_or_default();
            decision.then.extend(
                inputs
                    .steps
                    .iter()
                    .filter(|s| s.in_run && s.settings.after == *name)
                    .map(|s| format!("step {} ({})", s.settings.name, s.plan)),
            );
        }
        view.decision = Some(decision);
    }
    for (view, step) in platform.steps.iter_mut().zip(&inputs.steps) {
        view.decision = Some(match (&step.plan, step.in_run) {
            (_, false) => StepDecision {
                action: "skip".into(),
                reason: format!("{} is not part of this run", step.settings.after),
            },
            (StepPlan::Run { reason }, true) => {
                StepDecision { action: "run".into(), reason: reason.clone() }
            }
            (StepPlan::Unchanged, true) => StepDecision {
                action: "unchanged".into(),
                reason: "inputs match its last success".into(),
            },
        });
    }
    let fetch_ahead = match asked.fetch_ahead {
        true => platform
            .layers
            .iter()
            .filter(|l| l.decision.as_ref().is_some_and(|d| d.action == Some(LayerAction::Sync)))
            .map(|l| l.name.clone())
            .collect(),
        false => Vec::new(),
    };
    let mut warnings = seen.warnings.clone();
    if !unconverged.is_empty() {
        warnings.push(format!(
            "layers before the selection are not converged: {}: run `cargo xtask bootstrap` without --from/--only to converge them first",
            unconverged.join(", ")
        ));
    }
    RunPlan {
        schema_version: SCHEMA_VERSION,
        context: asked.context.clone(),
        platform,
        tools: seen.tools.clone(),
        fetch_ahead,
        unconverged,
        warnings,
        log: asked.log.clone(),
        recoveries,
        cluster_plan,
    }
}

fn cluster_decision(seen: &ClusterSeen, plan: Option<&cluster::Plan>) -> ClusterDecision {
    let (action, reason) = match plan.map(|p| &p.action) {
        None => ("skip", why_of(seen).to_owned()),
        Some(cluster::Action::Create) => ("create", "no cluster exists".to_string()),
        Some(cluster::Action::Recreate { reason }) => ("recreate", reason.clone()),
        Some(cluster::Action::Start { reason }) => ("start", reason.clone()),
        Some(cluster::Action::Noop) => {
            ("noop", "cluster running and matches its config".to_string())
        }
    };
    ClusterDecision {
        action: action.into(),
        reason,
        remove_legacy: plan.map(|p| p.remove_legacy.clone()).unwrap_or_default(),
        connect_caches: plan.map(|p| p.connect_caches.clone()).unwrap_or_default(),
    }
}

fn why_of(seen: &ClusterSeen) -> &str {
    match seen {
        ClusterSeen::NotInRun(why) => why,
        ClusterSeen::Seen { .. } => "",
    }
}

/// One selected layer: synced for `sync <layer>`, `--force` or a new cluster; else
/// by its digest and releases ([`layers::plan`]); rechecked when the API is not there.
fn layer_action(
    input: &super::LayerInput,
    asked: &Asked,
    api: &ApiSeen,
    fresh: Option<&str>,
    named: bool,
) -> (LayerAction, String) {
    if named {
        return (LayerAction::Sync, "requested by `cargo xtask sync`".into());
    }
    if let Some(fresh) = fresh {
        return (LayerAction::Sync, format!("{fresh}: it records no digest"));
    }
    match api {
        ApiSeen::Unreachable(why) => (
            LayerAction::Recheck,
            format!("the cluster is not reachable yet ({why}); decided once the cluster stage ran"),
        ),
        ApiSeen::Reachable { recorded, layers } => {
            let seen = layers.get(&input.layer.name).cloned().unwrap_or_default();
            let plan = layers::plan(
                &input.digest,
                recorded.get(&input.layer.name).map(String::as_str),
                &seen.not_deployed,
                &seen.off_but_present,
                asked.force,
            );
            match plan {
                LayerPlan::Sync { reason } => (LayerAction::Sync, reason),
                LayerPlan::Unchanged => (
                    LayerAction::Unchanged,
                    "inputs match the last green run and every release is deployed".into(),
                ),
            }
        }
    }
}

#[cfg(test)]
#[path = "run_plan_tests.rs"]
mod tests;
