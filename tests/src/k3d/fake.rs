//! Fake `k3d` (v5): the cluster's nodes and registry are REAL Docker containers named
//! and labelled exactly as k3d names and labels them (k3d-io/k3d pkg/types/types.go,
//! pkg/client/{cluster,registry}.go, cmd/cluster/*.go); the Kubernetes API is the
//! testbed's fake API server (`testbed apiserver`), one process per cluster, whose
//! address is written into the kubeconfig as context `k3d-<cluster>`.
//!
//! The cluster's network is a real Docker network (`network`): the nodes join only it,
//! and the registries the cluster uses are connected to it at create, as k3d does. Not
//! simulated: the image volume, published load-balancer ports, k3s itself. Output
//! follows k3d's logrus lines (`INFO[0000] ...` on stdout, `ERRO`/`FATA` on stderr); a
//! fatal error exits 1.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptions, StopContainerOptions};
use serde_json::json;

use crate::docker;
use crate::docker::images;
use crate::k3d::api::*;
use crate::k3d::common::*;
use crate::k3d::config::*;
use crate::k3d::flags::*;
use crate::k3d::list::*;
use crate::k3d::network;
use crate::k3d::registry::*;
use crate::{http, kubeconfig, procs};

const K3S_VERSION: &str = "v1.31.5-k3s1";
const DEFAULT_CLUSTER: &str = "k3s-default";

/// Entry point for `k3d ARGS...` (argv0 stripped).
pub fn main(args: Vec<String>) -> i32 {
    let log = Log::new();
    let dir = match crate::calls::fake_tool_start("k3d", &args) {
        Ok(dir) => dir,
        Err(e) => {
            log.fatal(&format!("{e:#}"));
            return 1;
        }
    };
    let result = docker::runtime().and_then(|rt| rt.block_on(run(&dir, &args, &log)));
    match result {
        Ok(code) => code,
        Err(e) => {
            log.fatal(&format!("{e:#}"));
            1
        }
    }
}

async fn run(dir: &Path, args: &[String], log: &Log) -> Result<i32> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["version", ..] | ["--version", ..] => {
            println!("k3d version {K3D_VERSION}\nk3s version {K3S_VERSION} (default)");
            Ok(0)
        }
        ["cluster", verb, rest @ ..] => {
            let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            let docker = docker::connect().await?;
            match *verb {
                "create" => create(dir, &docker, &Flags::parse(&rest)?, log).await,
                "delete" | "del" | "rm" => delete(dir, &docker, &Flags::parse(&rest)?, log).await,
                "start" => start(dir, &docker, &Flags::parse(&rest)?, log).await,
                "stop" => stop(dir, &docker, &Flags::parse(&rest)?, log).await,
                "list" | "ls" | "get" => list(&docker, &Flags::parse(&rest)?, log).await,
                other => usage_error(&format!("unknown command \"{other}\" for \"k3d cluster\"")),
            }
        }
        ["kubeconfig", verb @ ("merge" | "get"), rest @ ..] => {
            let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            crate::k3d::kubeconfig::run(dir, verb, &rest)
        }
        ["image", "import" | "load", rest @ ..] => {
            let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            let docker = docker::connect().await?;
            crate::k3d::image::import(dir, &docker, &Flags::parse(&rest)?, log).await
        }
        ["registry", "create", rest @ ..] => {
            let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            let docker = docker::connect().await?;
            crate::k3d::registry::create_standalone(dir, &docker, &Flags::parse(&rest)?, log).await
        }
        ["registry", "list" | "ls" | "get", rest @ ..] => {
            let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            let docker = docker::connect().await?;
            registry_list(&docker, &Flags::parse(&rest)?).await
        }
        _ => usage_error(&format!("unknown command {args:?} for \"k3d\" (testbed fake)")),
    }
}

fn cluster_name(flags: &Flags, config: Option<&SimpleConfig>) -> String {
    flags
        .positional
        .first()
        .cloned()
        .or_else(|| config.map(|c| c.metadata.name.clone()).filter(|n| !n.is_empty()))
        .unwrap_or_else(|| DEFAULT_CLUSTER.to_owned())
}

async fn create(dir: &Path, docker: &Docker, flags: &Flags, log: &Log) -> Result<i32> {
    let started = std::time::Instant::now();
    let config = match flags.value(&["config", "c"]) {
        Some(path) => {
            let c = read_config(path)?;
            log.info(&format!(
                "Using config file {path} ({}#{})",
                c.api_version,
                c.kind.to_lowercase()
            ));
            Some(c)
        }
        None => None,
    };
    let name = cluster_name(flags, config.as_ref());
    if !cluster_containers(docker, &name).await?.is_empty() {
        log.fatal(&format!(
            "Failed to create cluster '{name}' because a cluster with that name already exists"
        ));
        return Ok(1);
    }
    images::ensure_images(docker).await?;
    let servers = match flags.value(&["servers", "s"]) {
        Some(s) => s.parse().with_context(|| format!("--servers {s}: expected a number"))?,
        None => config.as_ref().and_then(|c| c.servers).unwrap_or(1),
    };
    let agents = match flags.value(&["agents"]) {
        Some(s) => s.parse().with_context(|| format!("--agents {s}: expected a number"))?,
        None => config.as_ref().and_then(|c| c.agents).unwrap_or(0),
    };
    let mut labels: Vec<(String, String, Vec<String>)> = config
        .iter()
        .flat_map(|c| c.options.runtime.labels.iter())
        .map(|l| {
            let (k, v) = l.label.split_once('=').unwrap_or((&l.label, ""));
            let filters = if l.node_filters.is_empty() {
                vec!["all".to_owned()]
            } else {
                l.node_filters.clone()
            };
            (k.to_owned(), v.to_owned(), filters)
        })
        .collect();
    labels.extend(flags.all_values("runtime-label").into_iter().map(parse_runtime_label));

    let plan = CreatePlan {
        name: name.clone(),
        nodes: node_specs(&name, servers, agents),
        runtime_labels: labels,
        registry: config.as_ref().and_then(|c| c.registries.create.as_ref()).map(|r| {
            RegistryPlan {
                name: registry_name(&name, &r.name),
                host: if r.host.is_empty() { "0.0.0.0".to_owned() } else { r.host.clone() },
                host_port: r.host_port.clone(),
            }
        }),
        network: config.as_ref().map(|c| c.network.clone()).unwrap_or_default(),
        use_registries: config
            .iter()
            .flat_map(|c| &c.registries.use_)
            .map(|u| u.rsplit_once(':').map_or(u.as_str(), |(n, _)| n).to_owned())
            .collect(),
    };
    // `registries.use`: each must exist (k3d `RegistryGet`); `registries.config` is
    // every node's `/etc/rancher/k3s/registries.yaml`.
    if let Some(c) = &config {
        for used in &c.registries.use_ {
            let reg = used.rsplit_once(':').map_or(used.as_str(), |(n, _)| n);
            if docker.inspect_container(reg, None).await.is_err() {
                log.fatal(&format!("Failed to find registry '{reg}': No such container: {reg}"));
                return Ok(1);
            }
        }
        let cdir = cluster_dir(dir, &name);
        std::fs::create_dir_all(&cdir)?;
        std::fs::write(cdir.join("registries.yaml"), &c.registries.config)?;
    }
    if let Err(e) = create_cluster(dir, docker, &plan, started, log).await {
        log.error(&format!("{e:#}"));
        log.error("Failed to create cluster >>> Rolling Back");
        if let Err(e) = delete_cluster(dir, docker, &name, log).await {
            log.error(&format!("{e:#}"));
            log.fatal("Cluster creation FAILED, also FAILED to rollback changes!");
            return Ok(1);
        }
        log.fatal("Cluster creation FAILED, all changes have been rolled back!");
        return Ok(1);
    }
    log.info(&format!("Cluster '{name}' created successfully!"));
    log.info("You can now use it like this:");
    println!("kubectl cluster-info");
    Ok(0)
}

struct CreatePlan {
    name: String,
    nodes: Vec<NodeSpec>,
    runtime_labels: Vec<(String, String, Vec<String>)>,
    registry: Option<RegistryPlan>,
    /// The config's `network` (empty: k3d makes `k3d-<cluster>`).
    network: String,
    /// `registries.use`, by container name.
    use_registries: Vec<String>,
}

async fn create_cluster(
    dir: &Path,
    docker: &Docker,
    plan: &CreatePlan,
    started: std::time::Instant,
    log: &Log,
) -> Result<()> {
    let name = &plan.name;
    let net = network::prep(dir, docker, name, &plan.network, log).await?;
    let mut registries = plan.use_registries.clone();
    if let Some(reg) = &plan.registry {
        create_registry(dir, docker, name, reg, log).await.context("Failed Cluster Preparation")?;
        registries.push(reg.name.clone());
    }
    network::connect_registries(docker, &net, &registries, log).await?;
    for node in &plan.nodes {
        let mut labels = base_labels(dir, name, node.role);
        labels.insert("k3d.cluster.url".into(), format!("https://k3d-{name}-server-0:6443"));
        labels.insert("k3d.server.loadbalancer".into(), format!("k3d-{name}-serverlb"));
        labels.extend(net.labels());
        for (k, v, filters) in &plan.runtime_labels {
            if filters.iter().any(|f| filter_matches(f, node)) {
                labels.insert(k.clone(), v.clone());
            }
        }
        if node.role == "loadbalancer" {
            log.info(&format!("Creating LoadBalancer '{}'", node.name));
        } else {
            log.info(&format!("Creating node '{}'", node.name));
        }
        let body = ContainerCreateBody {
            image: Some(images::NODE_IMAGE.to_owned()),
            cmd: Some(images::node_command()),
            labels: Some(labels),
            hostname: Some(node.name.clone()),
            host_config: Some(HostConfig {
                network_mode: Some(net.name.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(node.name.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .with_context(|| format!("failed to create node '{}'", node.name))?;
    }
    log.info(&format!("Starting cluster '{name}'"));
    start_containers(docker, name, log).await?;
    let (port, creds) = start_apiserver(dir, name).await?;
    log.info(&format!("Cluster API server of '{name}' listens on 0.0.0.0:{port}"));
    // k3d returns once the server logged `k3s is up and running`, the load balancer
    // `start worker processes` and CoreDNS's config map took the host records: the
    // scenario's `k3d-create-ms` from the start (FIDELITY.md).
    let budget = Duration::from_millis(crate::scenario::Scenario::load(dir)?.k3d_create_ms);
    tokio::time::sleep(budget.saturating_sub(started.elapsed())).await;
    log.info(&format!("Updating default kubeconfig with a new context for cluster {name}"));
    kubeconfig::update(&kubeconfig_path()?, |c| {
        kubeconfig::upsert_cluster_tls(c, name, &server_url(port), Some(&creds))
    })?;
    log.info(&format!(
        "Successfully added cluster '{name}' to kubeconfig and switched context to 'k3d-{name}'"
    ));
    Ok(())
}

/// Start every container of the cluster (registry first, then servers, agents, lb).
async fn start_containers(docker: &Docker, cluster: &str, log: &Log) -> Result<()> {
    let mut containers = cluster_containers(docker, cluster).await?;
    containers.sort_by_key(|c| role_order(docker::label(c, "k3d.role").unwrap_or("")));
    for c in &containers {
        let name = docker::container_name(c);
        if docker::is_running(c) {
            continue;
        }
        log.info(&format!("Starting node '{name}'"));
        docker
            .start_container(&name, None)
            .await
            .with_context(|| format!("failed to start node '{name}'"))?;
    }
    if let Some(reg) = containers.iter().find(|c| docker::label(c, "k3d.role") == Some("registry"))
    {
        let port = docker::label(reg, "k3s.registry.port.external").unwrap_or("");
        wait_until(Duration::from_secs(20), || {
            http::get(&format!("http://127.0.0.1:{port}/v2/"), &[]).is_ok_and(|r| r.status == 200)
        });
    }
    Ok(())
}

/// The kubeconfig k3d updates: `$KUBECONFIG` (first entry) or `~/.kube/config`.
fn kubeconfig_path() -> Result<PathBuf> {
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .and_then(|v| std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty()))
    {
        return Ok(first);
    }
    let home = std::env::var_os("HOME").context("neither KUBECONFIG nor HOME is set")?;
    let dir = PathBuf::from(home).join(".kube");
    std::fs::create_dir_all(&dir)?;
    Ok(dir.join("config"))
}

async fn delete(dir: &Path, docker: &Docker, flags: &Flags, log: &Log) -> Result<i32> {
    let names: Vec<String> = if flags.switch(&["all", "a"]) {
        log.info("Deleting all clusters...");
        cluster_names(docker).await?
    } else if !flags.positional.is_empty() {
        flags.positional.clone()
    } else if let Some(path) = flags.value(&["config", "c"]) {
        vec![cluster_name(flags, Some(&read_config(path)?))]
    } else {
        vec![DEFAULT_CLUSTER.to_owned()]
    };
    if names.is_empty() {
        log.info("No clusters found");
    }
    for name in names {
        if cluster_containers(docker, &name).await?.is_empty() {
            log.info(&format!("No nodes found for cluster '{name}', nothing to delete."));
            continue;
        }
        delete_cluster(dir, docker, &name, log).await?;
        log.info("Removing cluster details from default kubeconfig...");
        kubeconfig::update(&kubeconfig_path()?, |c| kubeconfig::remove_cluster(c, &name))?;
        log.info(&format!("Successfully deleted cluster {name}!"));
    }
    Ok(0)
}

/// Remove the cluster's containers (its registry too, unless it is on another network),
/// its network, its API server and state.
async fn delete_cluster(dir: &Path, docker: &Docker, cluster: &str, log: &Log) -> Result<()> {
    log.info(&format!("Deleting cluster '{cluster}'"));
    let cdir = cluster_dir(dir, cluster);
    procs::stop_pid_file(&cdir.join("apiserver.pid"), "apiserver")?;
    let containers = cluster_containers(docker, cluster).await?;
    let net = network::of_nodes(&containers);
    for c in &containers {
        let name = docker::container_name(c);
        if let Some((net, _)) = &net
            && docker::label(c, "k3d.role") == Some("registry")
            && network::registry_stays(c, net)
        {
            log.info(&format!(
                "Registry {name} is also connected to other (non-default) networks, not deleting it..."
            ));
            crate::docker::network::disconnect(docker, net, &name).await?;
            continue;
        }
        log.info(&format!("Deleting node '{name}'"));
        docker::remove_container(docker, c.id.as_deref().unwrap_or(&name)).await?;
    }
    if let Some((name, external)) = &net {
        network::delete(docker, name, *external, log).await?;
    }
    match std::fs::remove_dir_all(&cdir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", cdir.display()))
        }
        _ => Ok(()),
    }
}

async fn start(dir: &Path, docker: &Docker, flags: &Flags, log: &Log) -> Result<i32> {
    let names = if flags.positional.is_empty() {
        vec![DEFAULT_CLUSTER.to_owned()]
    } else {
        flags.positional.clone()
    };
    for name in names {
        if cluster_containers(docker, &name).await?.is_empty() {
            log.fatal(&format!("failed to get cluster {name}: No nodes found for given cluster"));
            return Ok(1);
        }
        log.info(&format!("Starting cluster '{name}'"));
        start_containers(docker, &name, log).await?;
        let (port, creds) = start_apiserver(dir, &name).await?;
        kubeconfig::update(&kubeconfig_path()?, |c| {
            let current = c["current-context"].as_str().unwrap_or("").to_owned();
            kubeconfig::upsert_cluster_tls(c, &name, &server_url(port), Some(&creds));
            if !current.is_empty() {
                c["current-context"] = json!(current);
            }
        })?;
        log.info(&format!("Started cluster '{name}'"));
    }
    Ok(0)
}

async fn stop(dir: &Path, docker: &Docker, flags: &Flags, log: &Log) -> Result<i32> {
    let names = if flags.switch(&["all", "a"]) {
        cluster_names(docker).await?
    } else if flags.positional.is_empty() {
        vec![DEFAULT_CLUSTER.to_owned()]
    } else {
        flags.positional.clone()
    };
    for name in names {
        let containers = cluster_containers(docker, &name).await?;
        if containers.is_empty() {
            log.fatal(&format!("failed to get cluster {name}: No nodes found for given cluster"));
            return Ok(1);
        }
        log.info(&format!("Stopping cluster '{name}'"));
        // The API server stops serving by itself once the server node is stopped.
        for c in containers.iter().filter(|c| docker::is_running(c)) {
            let cname = docker::container_name(c);
            docker
                .stop_container(
                    &cname,
                    Some(StopContainerOptions { t: Some(5), ..Default::default() }),
                )
                .await
                .with_context(|| format!("failed to stop node '{cname}'"))?;
        }
        // k3s dies with its container: return once the API no longer answers.
        let port_file = cluster_dir(dir, &name).join("apiserver.port");
        if let Some(port) =
            std::fs::read_to_string(&port_file).ok().and_then(|p| p.trim().parse::<u16>().ok())
        {
            wait_until(Duration::from_secs(10), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
            });
        }
        log.info(&format!("Stopped cluster '{name}'"));
    }
    Ok(0)
}

#[cfg(test)]
#[path = "fake_tests.rs"]
mod tests;
