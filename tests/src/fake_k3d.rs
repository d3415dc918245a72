//! Fake `k3d` (v5): the cluster's nodes and registry are REAL Docker containers named
//! and labelled exactly as k3d names and labels them (k3d-io/k3d pkg/types/types.go,
//! pkg/client/{cluster,registry}.go, cmd/cluster/*.go); the Kubernetes API is the
//! testbed's fake API server (`testbed apiserver`), one process per cluster, whose
//! address is written into the kubeconfig as context `k3d-<cluster>`.
//!
//! Not simulated: the cluster network (nodes join Docker's default bridge), the image
//! volume, published load-balancer ports, k3s itself. Output follows k3d's logrus lines
//! (`INFO[0000] ...` on stdout, `ERRO`/`FATA` on stderr); a fatal error exits 1.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, ContainerSummary, HostConfig, PortBinding};
use bollard::query_parameters::{CreateContainerOptions, StopContainerOptions};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::docker::{self, LABEL_TESTBED_DIR};
use crate::{images, kubeconfig, probe, procs};

/// The version we claim to be; the labels carry it as real k3d does.
pub const K3D_VERSION: &str = "v5.8.3";
const K3S_VERSION: &str = "v1.31.5-k3s1";
const DEFAULT_CLUSTER: &str = "k3s-default";

/// Entry point for `k3d ARGS...` (argv0 stripped).
pub fn main(args: Vec<String>) -> i32 {
    let log = Log::new();
    let dir = match crate::cli::fake_tool_start("k3d", &args) {
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

/// k3d's log lines: level, seconds since start, message.
struct Log {
    start: Instant,
}

impl Log {
    fn new() -> Log {
        Log { start: Instant::now() }
    }
    fn stamp(&self) -> String {
        format!("{:04}", self.start.elapsed().as_secs())
    }
    fn info(&self, msg: &str) {
        println!("INFO[{}] {msg}", self.stamp());
    }
    fn error(&self, msg: &str) {
        eprintln!("ERRO[{}] {msg}", self.stamp());
    }
    fn fatal(&self, msg: &str) {
        eprintln!("FATA[{}] {msg}", self.stamp());
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
            crate::k3d_kubeconfig::run(dir, verb, &rest)
        }
        ["registry", "list" | "ls" | "get", rest @ ..] => {
            let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            let docker = docker::connect().await?;
            registry_list(&docker, &Flags::parse(&rest)?).await
        }
        _ => usage_error(&format!("unknown command {args:?} for \"k3d\" (testbed fake)")),
    }
}

fn usage_error(msg: &str) -> Result<i32> {
    eprintln!("Error: {msg}");
    Ok(1)
}

/// Cobra-style flags: `--name value`, `--name=value`, `-c value`, booleans.
#[derive(Debug, Default)]
struct Flags {
    positional: Vec<String>,
    values: Vec<(String, String)>,
    switches: Vec<String>,
}

const VALUE_FLAGS: &[&str] = &[
    "config",
    "c",
    "runtime-label",
    "timeout",
    "output",
    "o",
    "image",
    "i",
    "servers",
    "s",
    "agents",
    "a-memory",
    "k3s-arg",
    "port",
    "p",
    "api-port",
    "registry-create",
    "registry-use",
    "network",
    "token",
    "volume",
    "v",
    "env",
    "e",
    "verbose-level",
];
const SWITCH_FLAGS: &[&str] = &[
    "wait",
    "all",
    "a",
    "no-rollback",
    "no-lb",
    "no-headers",
    "token-print",
    "verbose",
    "trace",
    "kubeconfig-update-default",
    "kubeconfig-switch-context",
    "no-image-volume",
];

impl Flags {
    fn parse(args: &[String]) -> Result<Flags> {
        let mut flags = Flags::default();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let Some(stripped) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                flags.positional.push(arg.clone());
                continue;
            };
            if stripped.is_empty() {
                flags.positional.extend(iter.by_ref().cloned());
                break;
            }
            let (name, inline) = match stripped.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (stripped, None),
            };
            if SWITCH_FLAGS.contains(&name) {
                if inline.as_deref() != Some("false") {
                    flags.switches.push(name.to_owned());
                }
            } else if VALUE_FLAGS.contains(&name) {
                let value = match inline {
                    Some(v) => v,
                    None => iter
                        .next()
                        .cloned()
                        .ok_or_else(|| anyhow!("flag needs an argument: --{name}"))?,
                };
                flags.values.push((name.to_owned(), value));
            } else {
                bail!("unknown flag: {arg}");
            }
        }
        Ok(flags)
    }

    fn value(&self, names: &[&str]) -> Option<&str> {
        self.values.iter().rev().find(|(n, _)| names.contains(&n.as_str())).map(|(_, v)| v.as_str())
    }

    fn all_values(&self, name: &str) -> Vec<&str> {
        self.values.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }

    fn switch(&self, names: &[&str]) -> bool {
        self.switches.iter().any(|s| names.contains(&s.as_str()))
    }
}

/// The parts of k3d's `SimpleConfig` (k3d.io/v1alpha5) the fake honours.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct SimpleConfig {
    api_version: String,
    kind: String,
    metadata: Metadata,
    servers: Option<u32>,
    agents: Option<u32>,
    image: String,
    registries: Registries,
    options: ConfigOptions,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Metadata {
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Registries {
    create: Option<RegistryCreate>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct RegistryCreate {
    name: String,
    host: String,
    host_port: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ConfigOptions {
    runtime: RuntimeOptions,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RuntimeOptions {
    labels: Vec<LabelWithFilters>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct LabelWithFilters {
    label: String,
    node_filters: Vec<String>,
}

fn read_config(path: &str) -> Result<SimpleConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read config file {path}"))?;
    let config: SimpleConfig = serde_saphyr::from_str(&text)
        .with_context(|| format!("failed to parse config file {path}"))?;
    if !config.api_version.starts_with("k3d.io/") || !config.kind.eq_ignore_ascii_case("simple") {
        bail!(
            "config file {path}: expected apiVersion k3d.io/v1alpha5 and kind Simple, got {:?} / {:?}",
            config.api_version,
            config.kind
        );
    }
    Ok(config)
}

/// A node as the fake makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeSpec {
    name: String,
    role: &'static str,
    index: Option<u32>,
}

fn node_specs(cluster: &str, servers: u32, agents: u32) -> Vec<NodeSpec> {
    let mut nodes = Vec::new();
    for i in 0..servers {
        nodes.push(NodeSpec {
            name: format!("k3d-{cluster}-server-{i}"),
            role: "server",
            index: Some(i),
        });
    }
    for i in 0..agents {
        nodes.push(NodeSpec {
            name: format!("k3d-{cluster}-agent-{i}"),
            role: "agent",
            index: Some(i),
        });
    }
    nodes.push(NodeSpec {
        name: format!("k3d-{cluster}-serverlb"),
        role: "loadbalancer",
        index: None,
    });
    nodes
}

/// k3d's node filter (pkg/util/filter.go): `group[:subset]` where group is
/// server(s)|agent(s)|loadbalancer|all and subset `*`, `0,2` or a range `0-1`.
fn filter_matches(filter: &str, node: &NodeSpec) -> bool {
    let (group, subset) = match filter.split_once(':') {
        Some((g, s)) => (g, Some(s.split(':').next().unwrap_or(""))),
        None => (filter, None),
    };
    let role = match group {
        "all" => return true,
        "loadbalancer" => return node.role == "loadbalancer",
        "server" | "servers" => "server",
        "agent" | "agents" => "agent",
        _ => return false,
    };
    if node.role != role {
        return false;
    }
    let Some(index) = node.index else { return false };
    match subset {
        None | Some("*") | Some("") => true,
        Some(s) if s.contains('-') => {
            let (lo, hi) = s.split_once('-').unwrap_or(("", ""));
            let lo = lo.parse().unwrap_or(0);
            let hi = hi.parse().unwrap_or(u32::MAX);
            (lo..=hi).contains(&index)
        }
        Some(s) => s.split(',').any(|n| n.trim().parse() == Ok(index)),
    }
}

/// `KEY=VALUE@FILTER[;FILTER...]` -> (key, value, filters); no filter means all nodes.
fn parse_runtime_label(spec: &str) -> (String, String, Vec<String>) {
    let (label, filters) = match spec.rsplit_once('@') {
        Some((l, f)) => (l, f.split(';').map(str::to_owned).collect()),
        None => (spec, vec!["all".to_owned()]),
    };
    let (k, v) = label.split_once('=').unwrap_or((label, ""));
    (k.to_owned(), v.to_owned(), filters)
}

fn cluster_name(flags: &Flags, config: Option<&SimpleConfig>) -> String {
    flags
        .positional
        .first()
        .cloned()
        .or_else(|| config.map(|c| c.metadata.name.clone()).filter(|n| !n.is_empty()))
        .unwrap_or_else(|| DEFAULT_CLUSTER.to_owned())
}

/// A registry created from the config file is named exactly `registries.create.name`,
/// else `k3d-<cluster>-registry` (k3d `pkg/config/transform.go`); only
/// `k3d registry create NAME` adds the `k3d-` prefix (`cmd/registry/registryCreate.go`).
fn registry_name(cluster: &str, configured: &str) -> String {
    if configured.is_empty() { format!("k3d-{cluster}-registry") } else { configured.to_owned() }
}

/// The registry's port inside its container (k3d `DefaultRegistryPort`).
const REGISTRY_INTERNAL_PORT: u16 = 5000;

fn cluster_dir(dir: &Path, cluster: &str) -> PathBuf {
    dir.join("clusters").join(cluster)
}

async fn cluster_containers(docker: &Docker, cluster: &str) -> Result<Vec<ContainerSummary>> {
    docker::containers_with_labels(docker, &[("app", "k3d"), ("k3d.cluster", cluster)]).await
}

async fn create(dir: &Path, docker: &Docker, flags: &Flags, log: &Log) -> Result<i32> {
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
    };
    if let Err(e) = create_cluster(dir, docker, &plan, log).await {
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
}

struct RegistryPlan {
    name: String,
    host: String,
    host_port: String,
}

fn base_labels(dir: &Path, cluster: &str, role: &str) -> HashMap<String, String> {
    HashMap::from([
        ("app".to_owned(), "k3d".to_owned()),
        ("k3d.cluster".to_owned(), cluster.to_owned()),
        ("k3d.role".to_owned(), role.to_owned()),
        ("k3d.version".to_owned(), K3D_VERSION.to_owned()),
        (LABEL_TESTBED_DIR.to_owned(), dir.to_string_lossy().into_owned()),
    ])
}

async fn create_cluster(dir: &Path, docker: &Docker, plan: &CreatePlan, log: &Log) -> Result<()> {
    let name = &plan.name;
    log.info("Prep: Network");
    log.info("Re-using existing network 'bridge' (testbed: no per-cluster network)");
    if let Some(reg) = &plan.registry {
        create_registry(dir, docker, name, reg, log).await.context("Failed Cluster Preparation")?;
    }
    for node in &plan.nodes {
        let mut labels = base_labels(dir, name, node.role);
        labels.insert("k3d.cluster.url".into(), format!("https://k3d-{name}-server-0:6443"));
        labels.insert("k3d.server.loadbalancer".into(), format!("k3d-{name}-serverlb"));
        labels.insert("k3d.cluster.network".into(), "bridge".into());
        labels.insert("k3d.cluster.network.external".into(), "true".into());
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
    log.info(&format!("Updating default kubeconfig with a new context for cluster {name}"));
    kubeconfig::update(&kubeconfig_path()?, |c| {
        kubeconfig::upsert_cluster_tls(c, name, &server_url(port), Some(&creds))
    })?;
    log.info(&format!(
        "Successfully added cluster '{name}' to kubeconfig and switched context to 'k3d-{name}'"
    ));
    Ok(())
}

async fn create_registry(
    dir: &Path,
    docker: &Docker,
    cluster: &str,
    reg: &RegistryPlan,
    log: &Log,
) -> Result<()> {
    let existing = docker::containers_with_labels(docker, &[]).await?;
    if existing.iter().any(|c| docker::container_name(c) == reg.name) {
        bail!("Failed to create registry: A registry node with that name already exists");
    }
    let port = match reg.host_port.as_str() {
        "" | "random" => free_port()?,
        p => {
            p.parse::<u16>().with_context(|| format!("registry hostPort {p:?}: expected a port"))?
        }
    };
    let (host_label, host_ip) = match reg.host.parse::<std::net::Ipv4Addr>() {
        Ok(ip) => (String::new(), ip.to_string()),
        Err(_) => (reg.host.clone(), resolve_ipv4(&reg.host)),
    };
    let mut labels = base_labels(dir, cluster, "registry");
    labels.insert("k3d.registry.host".into(), host_label);
    labels.insert("k3d.registry.hostIP".into(), host_ip.clone());
    labels.insert("k3s.registry.port.external".into(), port.to_string());
    labels.insert("k3s.registry.port.internal".into(), REGISTRY_INTERNAL_PORT.to_string());
    let port_key = format!("{REGISTRY_INTERNAL_PORT}/tcp");
    let body = ContainerCreateBody {
        image: Some(images::REGISTRY_IMAGE.to_owned()),
        cmd: Some(images::registry_command()),
        labels: Some(labels),
        exposed_ports: Some(vec![port_key.clone()]),
        host_config: Some(HostConfig {
            port_bindings: Some(HashMap::from([(
                port_key,
                Some(vec![PortBinding {
                    host_ip: Some(host_ip),
                    host_port: Some(port.to_string()),
                }]),
            )])),
            ..Default::default()
        }),
        ..Default::default()
    };
    log.info(&format!("Creating node '{}'", reg.name));
    docker
        .create_container(
            Some(CreateContainerOptions { name: Some(reg.name.clone()), ..Default::default() }),
            body,
        )
        .await
        .with_context(|| {
            format!("Failed to create registry: failed to create registry node '{}'", reg.name)
        })?;
    log.info(&format!("Successfully created registry '{}'", reg.name));
    Ok(())
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// `*.localhost` need not resolve on every host; k3d users rely on it meaning loopback.
fn resolve_ipv4(host: &str) -> String {
    use std::net::ToSocketAddrs;
    (host, 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.find(|a| a.is_ipv4()))
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "127.0.0.1".to_owned())
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
            probe::get(&format!("http://127.0.0.1:{port}/v2/"), &[]).is_ok_and(|r| r.status == 200)
        });
    }
    Ok(())
}

fn role_order(role: &str) -> u8 {
    match role {
        "registry" => 0,
        "server" => 1,
        "agent" => 2,
        _ => 3,
    }
}

fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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

/// The kubeconfig's server, as k3d writes it (`DefaultAPIHost` 0.0.0.0).
fn server_url(port: u16) -> String {
    format!("https://0.0.0.0:{port}")
}

/// Make sure the cluster's API server runs (it serves while the server node container
/// runs; one process per cluster, kept across stop/start) and wait until `/readyz`
/// answers 200 over TLS. Returns its port and the kubeconfig credentials.
async fn start_apiserver(dir: &Path, cluster: &str) -> Result<(u16, kubeconfig::Credentials)> {
    let cdir = cluster_dir(dir, cluster);
    let state = cdir.join("api");
    std::fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
    let pid_file = cdir.join("apiserver.pid");
    let port_file = cdir.join("apiserver.port");
    let log_file = cdir.join("apiserver.log");
    let running = procs::read_pid(&pid_file).is_some_and(|pid| procs::is_ours(pid, "apiserver"));
    let mut child = None;
    if !running {
        let exe = std::env::current_exe().context("locating the testbed binary")?;
        let mut args: Vec<String> = vec![
            "apiserver".into(),
            "--state-dir".into(),
            state.to_string_lossy().into_owned(),
            "--port-file".into(),
            port_file.to_string_lossy().into_owned(),
            "--container".into(),
            format!("k3d-{cluster}-server-0"),
        ];
        if let Some(p) =
            std::fs::read_to_string(&port_file).ok().and_then(|p| p.trim().parse::<u16>().ok())
        {
            args.extend(["--port".into(), p.to_string()]);
        }
        child = Some(procs::spawn_detached(&exe, &args, &log_file, &pid_file)?);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut problem = String::from("no port file after 30s");
    loop {
        if let Some(Ok(Some(status))) = child.as_mut().map(|c| c.try_wait()) {
            problem = format!("it exited ({status}) before answering");
            break;
        }
        let port =
            std::fs::read_to_string(&port_file).ok().and_then(|p| p.trim().parse::<u16>().ok());
        if let (Some(port), Ok(certs)) = (port, crate::tls::ensure(&state)) {
            let creds = kubeconfig::Credentials {
                ca: certs.ca.into_bytes(),
                client_cert: Some(certs.client_cert.into_bytes()),
                client_key: Some(certs.client_key.into_bytes()),
            };
            let client = crate::kube_api::Client::with_tls(
                &format!("https://127.0.0.1:{port}"),
                &creds.ca,
                creds.client_cert.as_deref().zip(creds.client_key.as_deref()),
            )?;
            match client.raw("GET", "/readyz", "text/plain", &[]).await {
                Ok((200, _)) => return Ok((port, creds)),
                Ok((code, _)) => problem = format!("GET /readyz answered {code}"),
                Err(e) => problem = format!("GET /readyz: {e:#}"),
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Some(mut c) = child {
        let _ = c.kill();
        let _ = c.wait();
        let _ = std::fs::remove_file(&pid_file);
    }
    let log_text = std::fs::read_to_string(&log_file).unwrap_or_default();
    let lines: Vec<&str> = log_text.lines().collect();
    let tail = lines[lines.len().saturating_sub(10)..].join("\n");
    bail!(
        "the cluster's API server did not become ready: {problem} (log {}):\n{tail}",
        log_file.display()
    )
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

/// Remove the cluster's containers (its registry too), its API server and state.
async fn delete_cluster(dir: &Path, docker: &Docker, cluster: &str, log: &Log) -> Result<()> {
    log.info(&format!("Deleting cluster '{cluster}'"));
    let cdir = cluster_dir(dir, cluster);
    procs::stop_pid_file(&cdir.join("apiserver.pid"), "apiserver")?;
    for c in cluster_containers(docker, cluster).await? {
        let name = docker::container_name(&c);
        log.info(&format!("Deleting node '{name}'"));
        docker::remove_container(docker, c.id.as_deref().unwrap_or(&name)).await?;
    }
    match std::fs::remove_dir_all(&cdir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", cdir.display()))
        }
        _ => Ok(()),
    }
}

async fn cluster_names(docker: &Docker) -> Result<Vec<String>> {
    let mut names: Vec<String> = docker::containers_with_labels(docker, &[("app", "k3d")])
        .await?
        .iter()
        .filter_map(|c| docker::label(c, "k3d.cluster").map(str::to_owned))
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
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

/// One node as `k3d cluster list -o json` / `k3d registry list -o json` print it.
fn node_json(c: &ContainerSummary) -> Value {
    let labels: BTreeMap<String, String> =
        c.labels.clone().unwrap_or_default().into_iter().collect();
    let status = c.state.as_ref().map(|s| s.to_string()).unwrap_or_default();
    json!({
        "name": docker::container_name(c),
        "role": labels.get("k3d.role").cloned().unwrap_or_default(),
        "image": c.image.clone().unwrap_or_default(),
        "runtimeLabels": labels,
        "State": {"Running": docker::is_running(c), "Status": status, "Started": ""},
    })
}

async fn list(docker: &Docker, flags: &Flags, log: &Log) -> Result<i32> {
    let all = docker::containers_with_labels(docker, &[("app", "k3d")]).await?;
    let wanted = if flags.positional.is_empty() {
        cluster_names(docker).await?
    } else {
        flags.positional.clone()
    };
    let mut clusters = Vec::new();
    for name in &wanted {
        let mut nodes: Vec<&ContainerSummary> =
            all.iter().filter(|c| docker::label(c, "k3d.cluster") == Some(name.as_str())).collect();
        if nodes.is_empty() {
            log.fatal(&format!("failed to get cluster {name}: No nodes found for given cluster"));
            return Ok(1);
        }
        nodes.sort_by_key(|c| docker::container_name(c));
        let count = |role: &str, running: bool| {
            nodes
                .iter()
                .filter(|c| {
                    docker::label(c, "k3d.role") == Some(role)
                        && (!running || docker::is_running(c))
                })
                .count()
        };
        clusters.push(json!({
            "name": name,
            "network": {"name": "bridge", "id": "", "isExternal": true},
            "nodes": nodes.iter().map(|c| node_json(c)).collect::<Vec<_>>(),
            "serversRunning": count("server", true),
            "serversCount": count("server", false),
            "agentsRunning": count("agent", true),
            "agentsCount": count("agent", false),
            "hasLoadbalancer": count("loadbalancer", false) > 0,
        }));
    }
    match flags.value(&["output", "o"]) {
        Some("json") => println!("{}", serde_json::to_string(&clusters)?),
        Some(other) if !other.is_empty() => {
            bail!("output format {other} is not supported by the testbed fake (json)")
        }
        _ => {
            println!("NAME   SERVERS   AGENTS   LOADBALANCER");
            for c in &clusters {
                println!(
                    "{}   {}/{}   {}/{}   {}",
                    c["name"].as_str().unwrap_or(""),
                    c["serversRunning"],
                    c["serversCount"],
                    c["agentsRunning"],
                    c["agentsCount"],
                    c["hasLoadbalancer"]
                );
            }
        }
    }
    Ok(0)
}

async fn registry_list(docker: &Docker, flags: &Flags) -> Result<i32> {
    let mut regs =
        docker::containers_with_labels(docker, &[("app", "k3d"), ("k3d.role", "registry")]).await?;
    regs.sort_by_key(docker::container_name);
    if !flags.positional.is_empty() {
        regs.retain(|c| flags.positional.contains(&docker::container_name(c)));
    }
    match flags.value(&["output", "o"]) {
        Some("json") => {
            let nodes: Vec<Value> = regs.iter().map(node_json).collect();
            println!("{}", serde_json::to_string(&nodes)?);
        }
        _ => {
            println!("NAME   ROLE   CLUSTER   STATUS");
            for c in &regs {
                let status = c.state.as_ref().map(|s| s.to_string()).unwrap_or_default();
                println!(
                    "{}   registry   {}   {status}",
                    docker::container_name(c),
                    docker::label(c, "k3d.cluster").unwrap_or("")
                );
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(role: &'static str, index: Option<u32>) -> NodeSpec {
        NodeSpec { name: String::new(), role, index }
    }

    #[test]
    fn node_filters_follow_k3d() {
        assert!(filter_matches("server:*", &node("server", Some(1))));
        assert!(filter_matches("server:0", &node("server", Some(0))));
        assert!(!filter_matches("server:0", &node("server", Some(1))));
        assert!(filter_matches("agent:0,2", &node("agent", Some(2))));
        assert!(filter_matches("agent:1-", &node("agent", Some(3))));
        assert!(!filter_matches("agent:*", &node("server", Some(0))));
        assert!(filter_matches("all", &node("loadbalancer", None)));
        assert!(filter_matches("loadbalancer", &node("loadbalancer", None)));
        assert!(!filter_matches("server:*", &node("loadbalancer", None)));
    }

    #[test]
    fn runtime_labels_and_names() {
        assert_eq!(
            parse_runtime_label("bootstrap.hash=abc@server:*;agent:*"),
            ("bootstrap.hash".into(), "abc".into(), vec!["server:*".into(), "agent:*".into()])
        );
        assert_eq!(registry_name("ameide", "dev-reg"), "dev-reg");
        assert_eq!(registry_name("ameide", "k3d-dev-reg"), "k3d-dev-reg");
        assert_eq!(registry_name("ameide", ""), "k3d-ameide-registry");
        let names: Vec<String> = node_specs("x", 1, 1).into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["k3d-x-server-0", "k3d-x-agent-0", "k3d-x-serverlb"]);
    }

    #[test]
    fn flags_parse_like_cobra() {
        let args: Vec<String> = [
            "ameide",
            "--config=k.yaml",
            "--runtime-label",
            "a=b@all",
            "--wait",
            "--timeout",
            "60s",
        ]
        .map(String::from)
        .to_vec();
        let f = Flags::parse(&args).unwrap();
        assert_eq!(f.positional, ["ameide"]);
        assert_eq!(f.value(&["config", "c"]), Some("k.yaml"));
        assert_eq!(f.all_values("runtime-label"), ["a=b@all"]);
        assert!(f.switch(&["wait"]));
        assert!(
            Flags::parse(&["--bogus".to_owned()]).unwrap_err().to_string().contains("unknown flag")
        );
    }
}
