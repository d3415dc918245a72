//! The registry the fake k3d creates with a cluster: a real `docker-registry`
//! container named exactly `registries.create.name`, listening on 5000 inside and the
//! configured host port outside (k3d `pkg/config/transform.go`, `pkg/client/registry.go`).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::CreateContainerOptions;

use crate::k3d_common::*;
use crate::{docker, images};

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
