//! Unit tests of the pure run-plan decision ([`super::decide`]), no Docker.

use std::collections::HashMap;

use super::*;
use crate::bootstrap::LayerInput;
use crate::bootstrap::describe::{BundlesView, ClusterView, LayerView, PlanView, StepView};
use crate::bootstrap::steps_stage::StepInput;
use crate::cluster::{Container, Desired, Observed};
use crate::platform::helmfile::{Layer, LayerReleases, Platform};

const HASH: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const LAYERS: [&str; 3] = ["10-bootstrap", "15-secrets", "24-auth"];

fn layer(name: &str) -> Layer {
    Layer {
        name: name.into(),
        file: format!("infra/{name}.yaml").into(),
        template: false,
        releases: LayerReleases::Parsed { releases: Vec::new() },
    }
}

fn inputs(selected: &[&str]) -> Inputs {
    let layers: Vec<LayerInput> = LAYERS
        .iter()
        .map(|n| LayerInput {
            layer: layer(n),
            digest: format!("digest-{n}"),
            selected: selected.contains(n),
        })
        .collect();
    let settings = crate::config::StepSettings {
        name: "sdk".into(),
        after: "24-auth".into(),
        run: vec!["make".into()],
        inputs: Vec::new(),
        requires_env: Vec::new(),
        timeout: 600,
        line: 0,
    };
    Inputs {
        platform: Platform {
            file: "infra/helmfile.yaml".into(),
            environments: BTreeMap::new(),
            layers: layers.iter().map(|l| l.layer.clone()).collect(),
        },
        steps: vec![StepInput {
            settings,
            digest: None,
            plan: StepPlan::Run { reason: "it has no inputs".into() },
            in_run: selected.contains(&"24-auth"),
        }],
        layers,
        helmfile: Default::default(),
    }
}

fn description() -> PlanView {
    PlanView {
        root: "/repo".into(),
        environment: "local".into(),
        cluster: ClusterView {
            name: "ameide".into(),
            config: "k3d.yaml".into(),
            config_hash: HASH.into(),
            servers: Some(1),
            agents: None,
            image: None,
            registry: None,
            decision: None,
        },
        layers: LAYERS
            .iter()
            .map(|n| LayerView {
                name: (*n).into(),
                file: format!("infra/{n}.yaml"),
                state: "parsed".into(),
                note: None,
                releases: Vec::new(),
                gates: Vec::new(),
                images: Vec::new(),
                images_note: None,
                decision: None,
            })
            .collect(),
        charts_lock: "charts.lock.yaml".into(),
        charts: Vec::new(),
        bundles: BundlesView::default(),
        steps: vec![StepView {
            name: "sdk".into(),
            after: "24-auth".into(),
            run: vec!["make".into()],
            inputs: Vec::new(),
            requires_env: Vec::new(),
            decision: None,
        }],
    }
}

fn asked(selection: Selection) -> Asked {
    Asked {
        context: "k3d-ameide".into(),
        log: "/tmp/setup.log".into(),
        selection,
        force: false,
        fetch_ahead: true,
        secrets_after: BTreeMap::from([(
            "15-secrets".to_string(),
            vec!["await the Vault bootstrap Job".to_string()],
        )]),
    }
}

fn desired() -> Desired {
    Desired {
        name: "ameide".into(),
        config_hash: HASH.into(),
        registry: None,
        legacy_registries: Vec::new(),
        network: "k3d-ameide".into(),
        caches: Vec::new(),
    }
}

fn server(running: bool) -> Container {
    let labels = HashMap::from([
        ("k3d.role".to_string(), "server".to_string()),
        (cluster::HASH_LABEL.to_string(), HASH.to_string()),
    ]);
    Container { name: "k3d-ameide-server-0".into(), id: "1".into(), running, labels }
}

fn cluster_seen(nodes: Vec<Container>) -> ClusterSeen {
    let observed = Observed { nodes, ..Default::default() };
    ClusterSeen::Seen { desired: Box::new(desired()), observed: Box::new(observed) }
}

/// Every layer recorded with today's digest, except `changed`.
fn converged(changed: &[&str]) -> ApiSeen {
    let recorded = LAYERS
        .iter()
        .filter(|n| !changed.contains(n))
        .map(|n| (n.to_string(), format!("digest-{n}")))
        .collect();
    ApiSeen::Reachable { recorded, layers: BTreeMap::new() }
}

fn actions(plan: &RunPlan) -> Vec<(String, Option<LayerAction>)> {
    plan.platform
        .layers
        .iter()
        .map(|l| (l.name.clone(), l.decision.as_ref().and_then(|d| d.action)))
        .collect()
}

fn action_of(plan: &RunPlan, name: &str) -> Option<LayerAction> {
    actions(plan).into_iter().find(|(n, _)| n == name).and_then(|(_, a)| a)
}

#[test]
fn a_fresh_world_creates_the_cluster_and_syncs_every_layer_fetching_their_images() {
    let seen = Observation {
        cluster: cluster_seen(Vec::new()),
        api: ApiSeen::Unreachable("no kubeconfig".into()),
        tools: vec![ToolInstall {
            name: "helmfile".into(),
            version: "1.2.3".into(),
            reason: "pinned 1.2.3 is not in .tools/bin".into(),
        }],
        warnings: Vec::new(),
    };
    let plan = decide(description(), &inputs(&LAYERS), &asked(Selection::All), &seen);
    let decision = plan.platform.cluster.decision.as_ref().unwrap();
    assert_eq!(
        (decision.action.as_str(), decision.reason.as_str()),
        ("create", "no cluster exists")
    );
    assert!(actions(&plan).iter().all(|(_, a)| *a == Some(LayerAction::Sync)), "{plan:?}");
    assert_eq!(plan.fetch_ahead, LAYERS);
    assert_eq!(plan.tools[0].name, "helmfile");
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(json["schema_version"], SCHEMA_VERSION);
    assert_eq!(json["cluster"]["action"], "create");
    assert_eq!(json["cluster"]["name"], "ameide", "the description stays beside the decision");
    assert_eq!(json["layers"][1]["then"], serde_json::json!(["await the Vault bootstrap Job"]));
    assert_eq!(json["layers"][2]["then"][0], "step sdk (run: it has no inputs)");
    assert_eq!(json["layers"][0]["action"], "sync");
    assert!(json["layers"][0]["reason"].as_str().unwrap().contains("created by this run"));
    assert_eq!(json["steps"][0]["action"], "run");
    assert_eq!(json["tools"][0]["version"], "1.2.3");
}

#[test]
fn a_converged_cluster_leaves_unchanged_layers_alone_and_syncs_the_changed_one() {
    let seen = Observation {
        cluster: cluster_seen(vec![server(true)]),
        api: converged(&["24-auth"]),
        ..Observation::default()
    };
    let plan = decide(description(), &inputs(&LAYERS), &asked(Selection::All), &seen);
    assert_eq!(plan.platform.cluster.decision.as_ref().unwrap().action, "noop");
    assert_eq!(action_of(&plan, "10-bootstrap"), Some(LayerAction::Unchanged));
    assert_eq!(action_of(&plan, "24-auth"), Some(LayerAction::Sync));
    assert_eq!(plan.fetch_ahead, ["24-auth"]);
}

#[test]
fn a_stopped_cluster_is_started_and_its_layers_rechecked_then() {
    let seen = Observation {
        cluster: cluster_seen(vec![server(false)]),
        api: ApiSeen::Unreachable("connection refused".into()),
        ..Observation::default()
    };
    let plan = decide(description(), &inputs(&LAYERS), &asked(Selection::All), &seen);
    assert_eq!(plan.platform.cluster.decision.as_ref().unwrap().action, "start");
    assert!(actions(&plan).iter().all(|(_, a)| *a == Some(LayerAction::Recheck)));
    assert!(plan.fetch_ahead.is_empty());
}

#[test]
fn a_drifted_cluster_is_recreated_so_every_layer_syncs_whatever_it_recorded() {
    let mut drifted = server(true);
    drifted.labels.insert(cluster::HASH_LABEL.into(), "b".repeat(64));
    let seen = Observation {
        cluster: cluster_seen(vec![drifted]),
        api: converged(&[]),
        ..Observation::default()
    };
    let plan = decide(description(), &inputs(&LAYERS), &asked(Selection::All), &seen);
    assert_eq!(plan.platform.cluster.decision.as_ref().unwrap().action, "recreate");
    assert!(actions(&plan).iter().all(|(_, a)| *a == Some(LayerAction::Sync)));
}

#[test]
fn from_a_layer_whose_predecessors_are_not_converged_is_refused_with_a_warning() {
    let seen = Observation {
        cluster: cluster_seen(vec![server(true)]),
        api: converged(&["10-bootstrap"]),
        ..Observation::default()
    };
    let selection = Selection::From("24-auth".into());
    let plan = decide(description(), &inputs(&["24-auth"]), &asked(selection), &seen);
    assert_eq!(plan.unconverged, ["10-bootstrap"]);
    assert!(plan.warnings[0].contains("not converged: 10-bootstrap"), "{:?}", plan.warnings);
    assert_eq!(action_of(&plan, "10-bootstrap"), None, "not selected, not decided");
    assert!(!plan.platform.layers[0].decision.as_ref().unwrap().selected);
    assert_eq!(plan.platform.steps[0].decision.as_ref().unwrap().action, "run");
}

#[test]
fn sync_names_layers_and_skips_the_cluster_and_steps_outside_the_run() {
    let seen = Observation {
        cluster: ClusterSeen::NotInRun("the cluster stage is not part of this run".into()),
        api: converged(&[]),
        ..Observation::default()
    };
    let selection = Selection::Named(vec!["10-bootstrap".into()]);
    let plan = decide(description(), &inputs(&["10-bootstrap"]), &asked(selection), &seen);
    let cluster = plan.platform.cluster.decision.as_ref().unwrap();
    assert_eq!((cluster.action.as_str(), plan.cluster_plan.is_none()), ("skip", true));
    assert_eq!(action_of(&plan, "10-bootstrap"), Some(LayerAction::Sync));
    assert_eq!(
        plan.platform.layers[0].decision.as_ref().unwrap().reason.as_deref(),
        Some("requested by `cargo xtask sync`")
    );
    assert_eq!(plan.platform.steps[0].decision.as_ref().unwrap().action, "skip");
}

#[test]
fn a_pending_release_is_brought_back_first_by_the_layer_that_syncs() {
    use crate::layers::pending::{Recover, Recovery};
    let recover = Recover {
        release: "keycloak".into(),
        namespace: "ameide".into(),
        revision: 3,
        status: crate::release::ReleaseStatus::PendingUpgrade,
        action: Recovery::Uninstall,
    };
    let mut api = converged(&["24-auth"]);
    if let ApiSeen::Reachable { layers, .. } = &mut api {
        let seen = LayerSeen { pending: vec![recover.clone()], ..LayerSeen::default() };
        layers.insert("24-auth".into(), seen);
    }
    let seen =
        Observation { cluster: cluster_seen(vec![server(true)]), api, ..Observation::default() };
    let plan = decide(description(), &inputs(&LAYERS), &asked(Selection::All), &seen);
    assert_eq!(plan.recoveries["24-auth"], std::slice::from_ref(&recover));
    assert_eq!(plan.platform.layers[2].decision.as_ref().unwrap().first, [recover.to_string()]);
}

#[test]
fn from_a_layer_on_a_new_cluster_is_refused_and_on_a_stopped_one_is_checked_once_started() {
    let selection = || Selection::From("24-auth".into());
    let fresh = Observation {
        cluster: cluster_seen(Vec::new()),
        api: ApiSeen::Unreachable("no kubeconfig".into()),
        ..Observation::default()
    };
    let plan = decide(description(), &inputs(&["24-auth"]), &asked(selection()), &fresh);
    assert_eq!(plan.unconverged, ["10-bootstrap", "15-secrets"]);
    let stopped = Observation {
        cluster: cluster_seen(vec![server(false)]),
        api: ApiSeen::Unreachable("connection refused".into()),
        ..Observation::default()
    };
    let plan = decide(description(), &inputs(&["24-auth"]), &asked(selection()), &stopped);
    assert!(plan.unconverged.is_empty(), "decided when the layers are rechecked");
    assert_eq!(action_of(&plan, "24-auth"), Some(LayerAction::Recheck));
}
