//! The registry the fake k3d creates with a cluster: a real `docker-registry`
//! container named exactly `registries.create.name`, listening on 5000 inside and the
//! configured host port outside (k3d `pkg/config/transform.go`, `pkg/client/registry.go`).
//!
//! `k3d registry create NAME [--proxy-remote-url URL] [-v SRC:DEST] [-p PORT]
//! [--default-network NET] [--no-help]` makes a registry outside any cluster, on `NET`
//! (default `bridge`) only: container `k3d-NAME` (`cmd/registry/
//! registryCreate.go` prefixes `k3d-`), labels `app=k3d`, `k3d.role=registry` and no
//! `k3d.cluster`, so `k3d cluster delete` leaves it, only disconnected from the cluster's
//! network (k3d v5.7.5 `ClusterDelete` deletes only the cluster's nodes); for a pull-through cache k3d sets `REGISTRY_PROXY_REMOTEURL`
//! (`pkg/client/registry.go`), here a label `testbed.proxy.remoteurl` (the registry
//! process cannot reach upstream). What such a cache holds is
//! `$TESTBED_DIR/caches/<container>/` (`node_images`), not the volume named by `-v`,
//! with the `--image` it was made from (default `registry:2`), which decides what a
//! miss costs (`node_images::pull_from_cache`).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::CreateContainerOptions;

use crate::docker;
use crate::docker::{images, node_images};
use crate::k3d::common::*;

/// A registry created from the config file is named exactly `registries.create.name`,
/// else `k3d-<cluster>-registry` (k3d `pkg/config/transform.go`); only
/// `k3d registry create NAME` adds the `k3d-` prefix (`cmd/registry/registryCreate.go`).
pub(crate) fn registry_name(cluster: &str, configured: &str) -> String {
    if configured.is_empty() { format!("k3d-{cluster}-registry") } else { configured.to_owned() }
}

/// The registry's port inside its container (k3d `DefaultRegistryPort`).
pub(crate) const REGISTRY_INTERNAL_PORT: u16 = 5000;

pub(crate) async fn create_registry(
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
    let body = registry_container(labels, &host_ip, port);
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

/// A registry container serving on `host_ip:port` of the host.
fn registry_container(
    labels: HashMap<String, String>,
    host_ip: &str,
    port: u16,
) -> ContainerCreateBody {
    let port_key = format!("{REGISTRY_INTERNAL_PORT}/tcp");
    ContainerCreateBody {
        image: Some(images::REGISTRY_IMAGE.to_owned()),
        cmd: Some(images::registry_command()),
        labels: Some(labels),
        exposed_ports: Some(vec![port_key.clone()]),
        host_config: Some(HostConfig {
            port_bindings: Some(HashMap::from([(
                port_key,
                Some(vec![PortBinding {
                    host_ip: Some(host_ip.to_owned()),
                    host_port: Some(port.to_string()),
                }]),
            )])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(crate) fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// `*.localhost` need not resolve on every host; k3d users rely on it meaning loopback.
pub(crate) fn resolve_ipv4(host: &str) -> String {
    use std::net::ToSocketAddrs;
    (host, 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.find(|a| a.is_ipv4()))
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "127.0.0.1".to_owned())
}

/// `k3d registry create NAME ...`.
pub(crate) async fn create_standalone(
    dir: &Path,
    docker: &Docker,
    flags: &crate::k3d::flags::Flags,
    log: &Log,
) -> Result<i32> {
    let Some(name) = flags.positional.first() else {
        log.fatal("testbed: `k3d registry create` needs a NAME");
        return Ok(1);
    };
    let container = format!("k3d-{name}");
    let existing = docker::containers_with_labels(docker, &[]).await?;
    if existing.iter().any(|c| docker::container_name(c) == container) {
        log.fatal("Failed to create registry: A registry node with that name already exists");
        return Ok(1);
    }
    images::ensure_images(docker).await?;
    let port = free_port()?;
    let mut labels = HashMap::from([
        ("app".to_owned(), "k3d".to_owned()),
        ("k3d.role".to_owned(), "registry".to_owned()),
        ("k3d.version".to_owned(), K3D_VERSION.to_owned()),
        ("k3d.registry.host".to_owned(), String::new()),
        ("k3d.registry.hostIP".to_owned(), "0.0.0.0".to_owned()),
        ("k3s.registry.port.external".to_owned(), port.to_string()),
        ("k3s.registry.port.internal".to_owned(), REGISTRY_INTERNAL_PORT.to_string()),
    ]);
    labels.insert(docker::LABEL_TESTBED_DIR.to_owned(), dir.to_string_lossy().into_owned());
    let remote = flags.value(&["proxy-remote-url"]).unwrap_or("").to_owned();
    // Not the registry's `REGISTRY_PROXY_REMOTEURL`: the real registry process would try
    // to reach upstream, which the testbed has not; a label says what it proxies.
    labels.insert("testbed.proxy.remoteurl".to_owned(), remote.clone());
    let mut body = registry_container(labels, "0.0.0.0", port);
    // Only `--default-network` (default `bridge`): k3d connects it to a cluster's network
    // only at that cluster's create (`k3d::network`).
    let default_network = flags.value(&["default-network"]).unwrap_or("bridge");
    if let Some(host) = body.host_config.as_mut() {
        host.network_mode = Some(default_network.to_owned());
    }
    log.info(&format!("Creating node '{container}'"));
    docker
        .create_container(
            Some(CreateContainerOptions { name: Some(container.clone()), ..Default::default() }),
            body,
        )
        .await
        .with_context(|| format!("Failed to create registry node '{container}'"))?;
    docker.start_container(&container, None).await?;
    let cache = node_images::cache_dir(dir, &container);
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    std::fs::write(cache.join("upstream"), &remote)?;
    // Which distribution serves the cache decides what a miss costs (`node_images`).
    let image = flags.value(&["image", "i"]).unwrap_or(node_images::DEFAULT_REGISTRY_IMAGE);
    std::fs::write(cache.join(node_images::REGISTRY_IMAGE_FILE), image)?;
    log.info(&format!("Successfully created registry '{container}'"));
    if !flags.switch(&["no-help"]) {
        println!(
            "# You can now use the registry like this (example):\n# 1. create a new cluster that uses this registry\nk3d cluster create --registry-use {container}:{port}"
        );
    }
    Ok(0)
}
