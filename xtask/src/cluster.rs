//! `cargo xtask cluster`: reconcile the local k3d cluster with its config file.
//!
//! Observe (Docker, via bollard) -> plan (pure) -> apply (the k3d CLI, bollard for
//! legacy containers) -> wait until the API answers `/readyz`. The config hash lives on
//! the cluster itself as a runtime label, so there is no local state to go stale.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use bollard::Docker;
use bollard::query_parameters::{ListContainersOptions, RemoveContainerOptions};
use serde::Serialize;

use crate::cancel;
use crate::config::Context;
use crate::error::{bad_input, failed, missing};
use crate::exec::{self, Cmd};
use crate::platform::k3d::K3dConfig;
use crate::report::Log;

/// Runtime label stamped on server nodes at creation: the canonical config hash.
pub const HASH_LABEL: &str = "dev.ameide.bootstrap/k3d-config-hash";

const TAG: &str = "cluster";

#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Print what would be done and change nothing.
    #[arg(long)]
    pub plan: bool,
}

/// What the config asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub name: String,
    pub config_hash: String,
    /// Registry container the config makes k3d create (k3d's `k3d-` prefix applied).
    pub registry: Option<String>,
    pub legacy_registries: Vec<String>,
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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Action {
    Create,
    Recreate { reason: String },
    Start { reason: String },
    Noop,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    #[serde(flatten)]
    pub action: Action,
    /// Legacy registry containers to remove.
    pub remove_legacy: Vec<String>,
}

/// The stage's result, for the summary.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub cluster: String,
    #[serde(flatten)]
    pub plan: Plan,
    pub duration_secs: f64,
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
pub fn plan(desired: &Desired, observed: &Observed) -> Plan {
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
    Plan { action, remove_legacy }
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

/// k3d names registries `k3d-<name>` unless the name already has the prefix.
pub fn registry_container_name(name: &str) -> String {
    if name.starts_with("k3d-") { name.to_owned() } else { format!("k3d-{name}") }
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
    let desired = Desired {
        name,
        config_hash: config.canonical_hash(),
        registry: config.created_registry().map(registry_container_name),
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

/// `cargo xtask cluster`: reconcile (or only plan) and say what happened.
pub async fn run(ctx: &Context, args: &Args) -> Result<()> {
    let log = Log::open(&ctx.log_path)?;
    let outcome = reconcile(ctx, &log, args.plan).await?;
    let verb = if args.plan { "plan" } else { "done" };
    println!("cluster `{}`: {verb}: {}", outcome.cluster, outcome.plan.action);
    for name in &outcome.plan.remove_legacy {
        let did = if args.plan { "would remove" } else { "removed" };
        println!("cluster `{}`: {did} legacy registry container `{name}`", outcome.cluster);
    }
    if !args.plan {
        println!(
            "cluster `{}`: took {:.1}s; log: {}",
            outcome.cluster,
            outcome.duration_secs,
            log.path().display()
        );
    }
    Ok(())
}

/// The cluster stage: also called by `bootstrap`.
pub async fn reconcile(ctx: &Context, log: &Log, dry_run: bool) -> Result<Outcome> {
    let started = Instant::now();
    let (config, desired) = desired(ctx)?;
    let docker = docker().await?;
    let observed = observe(&docker, &desired).await?;
    let plan = plan(&desired, &observed);
    log.line(TAG, &format!("plan for `{}`: {}", desired.name, plan.action));
    if !plan.remove_legacy.is_empty() {
        log.line(TAG, &format!("legacy registries to remove: {}", plan.remove_legacy.join(", ")));
    }
    if !dry_run {
        apply(ctx, log, &docker, &config, &desired, &plan).await?;
    }
    Ok(Outcome { cluster: desired.name, plan, duration_secs: started.elapsed().as_secs_f64() })
}

async fn apply(
    ctx: &Context,
    log: &Log,
    docker: &Docker,
    config: &K3dConfig,
    desired: &Desired,
    plan: &Plan,
) -> Result<()> {
    // Creating a cluster pulls images and boots k3s: the cluster budget, not a short call's.
    let timeout = ctx.settings.timeouts.cluster_ready();
    let k3d = |args: &[&str]| Cmd::new(TAG, "k3d", timeout).args(args.iter().copied());
    let create = || {
        // The positional name wins over a config without `metadata.name`.
        k3d(&["cluster", "create", &desired.name, "--config"])
            .arg(config.file.display().to_string())
            .arg("--runtime-label")
            .arg(format!("{HASH_LABEL}={}@server:*", desired.config_hash))
    };
    match &plan.action {
        Action::Noop => {}
        Action::Create => create_cluster(log, &create()).await?,
        Action::Recreate { .. } => {
            exec::run_ok(log, &k3d(&["cluster", "delete", &desired.name])).await?;
            create_cluster(log, &create()).await?;
        }
        Action::Start { .. } => {
            exec::run_ok(log, &k3d(&["cluster", "start", &desired.name])).await?;
            // `k3d cluster start` starts the nodes; a registry stopped by hand is ours to start.
            if let Some(registry) = &desired.registry {
                let state = docker.inspect_container(registry, None).await?.state;
                if !state.and_then(|s| s.running).unwrap_or(false) {
                    log.line(TAG, &format!("starting registry container {registry}"));
                    docker.start_container(registry, None).await?;
                }
            }
        }
    }
    for name in &plan.remove_legacy {
        log.line(TAG, &format!("removing legacy registry container {name}"));
        eprintln!("removing legacy registry container {name}");
        let options = RemoveContainerOptions { force: true, ..Default::default() };
        docker
            .remove_container(name, Some(options))
            .await
            .with_context(|| format!("removing legacy registry container {name}"))?;
    }
    if plan.action != Action::Noop {
        wait_ready(log, &desired.name, ctx.settings.timeouts.cluster_ready()).await?;
    }
    Ok(())
}

async fn create_cluster(log: &Log, cmd: &Cmd) -> Result<()> {
    exec::run_ok(log, cmd).await.map(drop).context(
        "creating the k3d cluster failed; k3d's exact output is in the log. \
         Fix the cause, then run `cargo xtask cluster` again",
    )
}

/// Poll the cluster API's `/readyz` through the `k3d-<name>` context.
pub async fn wait_ready(log: &Log, name: &str, timeout: Duration) -> Result<()> {
    let context = format!("k3d-{name}");
    let spinner = crate::report::spinner(&format!("waiting for the {context} API to be ready"));
    let result = poll_ready(log, &context, timeout).await;
    spinner.finish_and_clear();
    if let Err(e) = &result
        && crate::error::exit_code(e) == 130
    {
        log.line(TAG, &format!("{context}: interrupted while waiting for /readyz"));
    }
    result
}

/// Until `/readyz` answers, `timeout` passes (exit 1) or Ctrl-C arrives (exit 130).
async fn poll_ready(log: &Log, context: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let last_error = match cancel::unless_interrupted(crate::k8s::readyz(context)).await? {
            Ok(()) => {
                log.line(TAG, &format!("{context}: /readyz ok"));
                return Ok(());
            }
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            log.line(
                TAG,
                &format!("{context}: not ready after {}s: {last_error}", timeout.as_secs()),
            );
            return Err(failed(format!(
                "the cluster API (context {context}) did not become ready within {}s: {last_error}",
                timeout.as_secs()
            )));
        }
        cancel::sleep(Duration::from_millis(500)).await?;
    }
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
        }
    }

    #[test]
    fn absent_cluster_is_created() {
        assert_eq!(plan(&desired(), &Observed::default()).action, Action::Create);
    }

    #[test]
    fn matching_running_cluster_is_left_alone() {
        assert_eq!(
            plan(&desired(), &healthy()),
            Plan { action: Action::Noop, remove_legacy: vec![] }
        );
    }

    #[test]
    fn hash_drift_recreates_naming_both_hashes() {
        let mut wanted = desired();
        wanted.config_hash = "b".repeat(64);
        let Action::Recreate { reason } = plan(&wanted, &healthy()).action else { panic!() };
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
            matches!(plan(&desired(), &observed).action, Action::Recreate { reason } if reason.contains("no `"))
        );
    }

    #[test]
    fn missing_registry_recreates_naming_it() {
        let mut observed = healthy();
        observed.registry = None;
        let Action::Recreate { reason } = plan(&desired(), &observed).action else { panic!() };
        assert!(reason.contains("registry container `k3d-dev-reg` is missing"), "{reason}");
    }

    #[test]
    fn stopped_cluster_is_started_not_recreated() {
        let mut observed = healthy();
        for node in &mut observed.nodes {
            node.running = false;
        }
        let Action::Start { reason } = plan(&desired(), &observed).action else { panic!() };
        assert!(reason.contains("k3d-ameide-server-0"), "{reason}");
    }

    #[test]
    fn legacy_registries_are_removed_whatever_the_action() {
        let mut observed = healthy();
        observed.legacy = vec![container("dev-reg", true, &[])];
        assert_eq!(plan(&desired(), &observed).remove_legacy, ["dev-reg"]);
        observed.nodes.clear();
        assert_eq!(plan(&desired(), &observed).remove_legacy, ["dev-reg"]);
    }

    #[test]
    fn registry_names_follow_k3d() {
        assert_eq!(registry_container_name("dev-reg"), "k3d-dev-reg");
        assert_eq!(registry_container_name("k3d-dev-reg"), "k3d-dev-reg");
    }
}
