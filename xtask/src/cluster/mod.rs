//! The cluster stage and `cargo xtask cluster`: reconcile the local k3d cluster with
//! its config file, then prove its API answers.
//!
//! desired (k3d.yaml) -> observe (Docker, via bollard) -> [`decide`] (pure) -> [`apply`]
//! (the k3d CLI; bollard for the registry and legacy containers; `docker network
//! connect` for an image cache off the kept cluster's network) -> `/readyz` through
//! the run's kube context, converged or not. The config hash lives on the cluster itself
//! as a runtime label, so there is no local state to go stale.

//!
//! This file holds the model (desired, observed, the pure decision) and the Docker
//! reads; [`stage`] the stage (plan, apply, readiness) and the command.

pub mod image_cache;
pub mod registry;
mod stage;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use bollard::Docker;
use bollard::query_parameters::ListContainersOptions;
use serde::Serialize;

use crate::config::Context;
use crate::error::{Context as _, Result, bad_input, missing};
use crate::platform::k3d::K3dConfig;

pub use stage::{Outcome, Planned, apply, apply_decided, merge_command, plan, run, wait_ready};

/// Runtime label stamped on server nodes at creation: the canonical config hash.
pub const HASH_LABEL: &str = "dev.ameide.bootstrap/k3d-config-hash";

const TAG: &str = "cluster";

/// How `cargo xtask cluster` was asked to run (the CLI's flags, `xtask/src/flags.rs`).
#[derive(Debug, Default)]
pub struct Args {
    /// Print what would be done and change nothing.
    pub plan: bool,
    /// `cluster stop` / `cluster start` instead of the reconcile.
    pub lifecycle: Option<Lifecycle>,
}

/// Pause and resume the cluster, keeping everything in it (`cargo xtask down` deletes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// Stop the cluster's containers, and first the Tilt that `cargo xtask` started.
    Stop,
    /// Start a stopped cluster and wait for its API; never creates or recreates one.
    Start,
}

/// What the config asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub name: String,
    pub config_hash: String,
    /// Registry container the config makes k3d create: exactly `registries.create.name`
    /// (default `k3d-<cluster>-registry`).
    pub registry: Option<String>,
    pub legacy_registries: Vec<String>,
    /// The network k3d makes for the cluster: the config's `network`, else `k3d-<name>`.
    pub network: String,
    /// Image cache containers the config uses (`image_cache::caches`).
    pub caches: Vec<String>,
}

/// One container, as far as the plan cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub name: String,
    pub id: String,
    pub running: bool,
    pub labels: HashMap<String, String>,
}

/// What Docker shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Containers labelled `app=k3d`, `k3d.cluster=<name>` (registries excluded).
    pub nodes: Vec<Container>,
    pub registry: Option<Container>,
    /// Legacy registry containers that exist.
    pub legacy: Vec<Container>,
    /// Image caches that exist, with the networks each is on.
    pub caches: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Action {
    Create,
    Recreate { reason: String },
    Start { reason: String },
    Noop,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Plan {
    #[serde(flatten)]
    pub action: Action,
    /// Legacy registry containers to remove.
    pub remove_legacy: Vec<String>,
    /// Image caches to connect to the running cluster's network (k3d does it only at
    /// create).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connect_caches: Vec<image_cache::Connect>,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Create => f.write_str("create: no cluster exists"),
            Action::Recreate { reason } => write!(f, "recreate: {reason}"),
            Action::Start { reason } => write!(f, "start: {reason}"),
            Action::Noop => f.write_str("nothing to do: cluster running and matches its config"),
        }
    }
}

/// Desired + observed -> what to do. Pure, so every branch is unit-tested.
pub fn decide(desired: &Desired, observed: &Observed) -> Plan {
    let remove_legacy = observed
        .legacy
        .iter()
        .map(|c| c.name.clone())
        .filter(|name| Some(name) != desired.registry.as_ref())
        .collect();
    let action = if observed.nodes.is_empty() {
        Action::Create
    } else if let Some(reason) = drift(desired, observed) {
        Action::Recreate { reason }
    } else if let Some(reason) = stopped(observed) {
        Action::Start { reason }
    } else {
        Action::Noop
    };
    let connect_caches = match action {
        Action::Noop | Action::Start { .. } => {
            image_cache::to_connect(&desired.caches, &network(desired, observed), &observed.caches)
        }
        // `k3d cluster create` connects every registry in `registries.use`.
        Action::Create | Action::Recreate { .. } => Vec::new(),
    };
    Plan { action, remove_legacy, connect_caches }
}

/// The cluster's network as its nodes carry it (k3d's `k3d.cluster.network` label),
/// else the one k3d would make.
fn network(desired: &Desired, observed: &Observed) -> String {
    observed
        .nodes
        .iter()
        .find_map(|c| c.labels.get("k3d.cluster.network"))
        .cloned()
        .unwrap_or_else(|| desired.network.clone())
}

fn drift(desired: &Desired, observed: &Observed) -> Option<String> {
    let servers: Vec<&Container> =
        observed.nodes.iter().filter(|c| role(c) == Some("server")).collect();
    let stamped: Vec<Option<&String>> = servers.iter().map(|c| c.labels.get(HASH_LABEL)).collect();
    if stamped.is_empty() || stamped.iter().any(Option::is_none) {
        return Some(format!(
            "config drift: the cluster's server nodes carry no `{HASH_LABEL}` label (created outside `cargo xtask`)"
        ));
    }
    if let Some(live) = stamped.iter().flatten().find(|h| **h != &desired.config_hash) {
        return Some(format!(
            "config drift: the config hash is {} but the cluster was created from {}",
            short(&desired.config_hash),
            short(live)
        ));
    }
    if let Some(registry) = &desired.registry
        && observed.registry.is_none()
    {
        return Some(format!("registry container `{registry}` is missing"));
    }
    None
}

fn stopped(observed: &Observed) -> Option<String> {
    let mut down: Vec<&str> =
        observed.nodes.iter().filter(|c| !c.running).map(|c| c.name.as_str()).collect();
    if let Some(registry) = observed.registry.as_ref().filter(|c| !c.running) {
        down.push(&registry.name);
    }
    (!down.is_empty()).then(|| format!("stopped containers: {}", down.join(", ")))
}

fn role(container: &Container) -> Option<&str> {
    container.labels.get("k3d.role").map(String::as_str)
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// Read and validate the config; bad input before anything is touched.
pub fn desired(ctx: &Context) -> Result<(K3dConfig, Desired)> {
    let settings = &ctx.settings;
    let config = K3dConfig::read(&settings.k3d_config)?;
    let name = settings.cluster.clone();
    if let Some(named) = config.spec.metadata.name.as_ref().filter(|n| **n != name) {
        return Err(bad_input(format!(
            "{}: `metadata.name` is `{named}` but the `cluster` setting is `{name}`; make them equal",
            ctx.display_path(&settings.k3d_config),
        )));
    }
    let caches = image_cache::caches(&config)?.into_iter().map(|c| c.container).collect();
    let network = config.spec.network.clone().unwrap_or_else(|| format!("k3d-{name}"));
    let desired = Desired {
        registry: config.created_registry(&name),
        network,
        caches,
        name,
        config_hash: config.canonical_hash(),
        legacy_registries: settings.legacy_registries.clone(),
    };
    Ok((config, desired))
}

/// Connect to Docker, or exit 3 saying where we looked.
pub async fn docker() -> Result<Docker> {
    let socket = std::env::var("DOCKER_HOST")
        .map(|h| format!("DOCKER_HOST={h}"))
        .unwrap_or_else(|_| "the socket /var/run/docker.sock (DOCKER_HOST is not set)".into());
    let unreachable = |e: bollard::errors::Error| {
        missing(format!(
            "the Docker daemon is unreachable via {socket}: {e}. Start Docker, or set DOCKER_HOST"
        ))
    };
    Docker::connect_with_local_defaults()
        .map_err(unreachable)?
        .negotiate_version()
        .await
        .map_err(unreachable)
}

/// Read the cluster's containers, its registry and legacy registries in one listing.
pub async fn observe(docker: &Docker, desired: &Desired) -> Result<Observed> {
    let all = docker
        .list_containers(Some(ListContainersOptions { all: true, ..Default::default() }))
        .await
        .context("listing Docker containers")?;
    let mut observed = Observed::default();
    for summary in all {
        let container = Container {
            name: summary
                .names
                .unwrap_or_default()
                .first()
                .map(|n| n.trim_start_matches('/').to_owned())
                .unwrap_or_default(),
            id: summary.id.unwrap_or_default(),
            running: summary.state.is_some_and(|s| s.to_string() == "running"),
            labels: summary.labels.unwrap_or_default(),
        };
        if desired.caches.contains(&container.name) {
            let mut networks: Vec<String> = summary
                .network_settings
                .and_then(|n| n.networks)
                .map(|n| n.into_keys().collect())
                .unwrap_or_default();
            networks.sort();
            observed.caches.insert(container.name.clone(), networks);
        }
        let label = |k: &str| container.labels.get(k).map(String::as_str);
        if Some(&container.name) == desired.registry.as_ref() {
            observed.registry = Some(container);
        } else if desired.legacy_registries.contains(&container.name) {
            observed.legacy.push(container);
        } else if label("app") == Some("k3d")
            && label("k3d.cluster") == Some(desired.name.as_str())
            && label("k3d.role") != Some("registry")
        {
            observed.nodes.push(container);
        }
    }
    observed.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(observed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn desired() -> Desired {
        Desired {
            name: "ameide".into(),
            config_hash: HASH.into(),
            registry: Some("k3d-dev-reg".into()),
            legacy_registries: vec!["dev-reg".into(), "k3d-docker.io".into()],
            network: "k3d-ameide".into(),
            caches: vec!["k3d-cache".into()],
        }
    }

    fn container(name: &str, running: bool, labels: &[(&str, &str)]) -> Container {
        Container {
            name: name.into(),
            id: format!("id-{name}"),
            running,
            labels: labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
        }
    }

    fn healthy() -> Observed {
        Observed {
            nodes: vec![
                container(
                    "k3d-ameide-server-0",
                    true,
                    &[("k3d.role", "server"), (HASH_LABEL, HASH)],
                ),
                container("k3d-ameide-serverlb", true, &[("k3d.role", "loadbalancer")]),
            ],
            registry: Some(container("k3d-dev-reg", true, &[("k3d.role", "registry")])),
            legacy: vec![],
            caches: BTreeMap::from([(
                "k3d-cache".into(),
                vec!["bridge".into(), "k3d-ameide".into()],
            )]),
        }
    }

    #[test]
    fn absent_cluster_is_created() {
        assert_eq!(decide(&desired(), &Observed::default()).action, Action::Create);
    }

    #[test]
    fn matching_running_cluster_is_left_alone() {
        assert_eq!(
            decide(&desired(), &healthy()),
            Plan { action: Action::Noop, remove_legacy: vec![], connect_caches: vec![] }
        );
    }

    #[test]
    fn a_cache_made_or_moved_while_the_cluster_lives_is_connected_unless_k3d_does_it() {
        let mut observed = healthy();
        observed.caches.clear();
        let plan = decide(&desired(), &observed);
        assert_eq!(plan.action, Action::Noop);
        let [connect] = plan.connect_caches.as_slice() else { panic!("{plan:?}") };
        assert_eq!((connect.cache.as_str(), connect.network.as_str()), ("k3d-cache", "k3d-ameide"));
        // On the network the nodes carry, not the one k3d would name.
        observed.caches.insert("k3d-cache".into(), vec!["bridge".into(), "k3d-ameide".into()]);
        for node in &mut observed.nodes {
            node.labels.insert("k3d.cluster.network".into(), "shared".into());
        }
        let [connect] = decide(&desired(), &observed).connect_caches.try_into().unwrap();
        assert_eq!(connect.network, "shared");
        assert_eq!(connect.reason, "on bridge, k3d-ameide, not the cluster's network");
        // A stopped cluster is started, not recreated: k3d does not connect it then.
        for node in &mut observed.nodes {
            node.running = false;
        }
        assert_eq!(decide(&desired(), &observed).connect_caches.len(), 1);
        // A new cluster: `k3d cluster create` connects it.
        assert!(decide(&desired(), &Observed::default()).connect_caches.is_empty());
        let mut drifted = desired();
        drifted.config_hash = "b".repeat(64);
        assert!(decide(&drifted, &observed).connect_caches.is_empty());
    }

    #[test]
    fn hash_drift_recreates_naming_both_hashes() {
        let mut wanted = desired();
        wanted.config_hash = "b".repeat(64);
        let Action::Recreate { reason } = decide(&wanted, &healthy()).action else { panic!() };
        assert!(
            reason.contains("config drift")
                && reason.contains("bbbbbbbbbbbb")
                && reason.contains("aaaaaaaaaaaa")
        );
    }

    #[test]
    fn unstamped_cluster_is_drift() {
        let mut observed = healthy();
        observed.nodes[0].labels.remove(HASH_LABEL);
        assert!(
            matches!(decide(&desired(), &observed).action, Action::Recreate { reason } if reason.contains("no `"))
        );
    }

    #[test]
    fn missing_registry_recreates_naming_it() {
        let mut observed = healthy();
        observed.registry = None;
        let Action::Recreate { reason } = decide(&desired(), &observed).action else { panic!() };
        assert!(reason.contains("registry container `k3d-dev-reg` is missing"), "{reason}");
    }

    #[test]
    fn stopped_cluster_is_started_not_recreated() {
        let mut observed = healthy();
        for node in &mut observed.nodes {
            node.running = false;
        }
        let Action::Start { reason } = decide(&desired(), &observed).action else { panic!() };
        assert!(reason.contains("k3d-ameide-server-0"), "{reason}");
    }

    #[test]
    fn legacy_registries_are_removed_whatever_the_action() {
        let mut observed = healthy();
        observed.legacy = vec![container("dev-reg", true, &[])];
        assert_eq!(decide(&desired(), &observed).remove_legacy, ["dev-reg"]);
        observed.nodes.clear();
        assert_eq!(decide(&desired(), &observed).remove_legacy, ["dev-reg"]);
    }

    #[test]
    fn a_registry_named_like_a_legacy_one_is_kept() {
        let mut wanted = desired();
        wanted.registry = Some("dev-reg".into());
        let mut observed = healthy();
        observed.legacy = vec![container("dev-reg", true, &[])];
        assert!(decide(&wanted, &observed).remove_legacy.is_empty());
    }

    /// A context over a temp workspace whose k3d.yaml is `k3d_yaml`.
    pub(super) fn context(dir: &std::path::Path, k3d_yaml: &str) -> Context {
        let config = dir.join("k3d.yaml");
        std::fs::write(&config, k3d_yaml).unwrap();
        let settings = crate::config::Settings {
            cluster: "ameide".into(),
            k3d_config: config,
            ..Default::default()
        };
        Context {
            root: dir.to_path_buf(),
            log_path: dir.join("setup.log"),
            ..Context::for_tests(settings)
        }
    }

    const K3D_YAML: &str = "apiVersion: k3d.io/v1alpha5\nkind: Simple\nmetadata:\n  name: ameide\nregistries:\n  create:\n    name: dev-reg\n";

    #[test]
    fn the_registry_name_comes_from_k3d_yaml_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let (_, wanted) = super::desired(&context(dir.path(), K3D_YAML)).unwrap();
        assert_eq!(wanted.registry.as_deref(), Some("dev-reg"), "no k3d- prefix added");
        let unnamed = K3D_YAML.replace("    name: dev-reg\n", "    hostPort: \"5000\"\n");
        let (_, wanted) = super::desired(&context(dir.path(), &unnamed)).unwrap();
        assert_eq!(wanted.registry.as_deref(), Some("k3d-ameide-registry"));
    }

    #[test]
    fn a_config_for_another_cluster_is_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let other = K3D_YAML.replace("name: ameide", "name: other");
        let err = super::desired(&context(dir.path(), &other)).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::BadInput);
        assert!(err.to_string().contains("`metadata.name` is `other`"), "{err}");
    }
}
