//! Docker networks as k3d uses them (k3d v5.7.5 `pkg/runtimes/docker/network.go`): a
//! cluster's network `k3d-<cluster>` (a user-defined bridge labelled `app=k3d`), its
//! nodes on it, registries connected to it; and whether one container reaches another
//! by name, as a node's containerd reaches a mirror `http://NAME:PORT`.
//!
//! Names resolve only on user-defined networks (Docker's embedded DNS; the default
//! `bridge` has none), so two containers that share only `bridge` do not reach each
//! other by name. The testbed's networks carry `testbed.dir`, so `testbed down` removes
//! exactly its own.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use bollard::Docker;
use bollard::models::{NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest};
use bollard::query_parameters::ListNetworksOptions;

use crate::docker::{self, LABEL_TESTBED_DIR};

/// Docker's networks that are not user-defined: no name resolution between containers.
const DEFAULT_NETWORKS: [&str; 3] = ["bridge", "host", "none"];

/// A network as k3d labels its nodes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// It was there before (k3d then treats it as external: `Re-using existing network`).
    pub existed: bool,
    pub id: String,
    /// Its first IPAM subnet (`172.19.0.0/16`).
    pub subnet: String,
}

/// Create the bridge network `name` unless it exists (k3d `CreateNetworkIfNotPresent`).
pub async fn ensure(docker: &Docker, name: &str, testbed_dir: &Path) -> Result<Created> {
    let existed = docker.inspect_network(name, None).await.is_ok();
    if !existed {
        let labels = HashMap::from([
            ("app".to_owned(), "k3d".to_owned()),
            (LABEL_TESTBED_DIR.to_owned(), testbed_dir.to_string_lossy().into_owned()),
        ]);
        let request = NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("bridge".to_owned()),
            labels: Some(labels),
            ..Default::default()
        };
        docker
            .create_network(request)
            .await
            .with_context(|| format!("docker failed to create new network '{name}'"))?;
    }
    let found = docker
        .inspect_network(name, None)
        .await
        .with_context(|| format!("docker failed to inspect network '{name}'"))?;
    let subnet = found
        .ipam
        .and_then(|i| i.config)
        .and_then(|c| c.into_iter().find_map(|c| c.subnet))
        .unwrap_or_default();
    Ok(Created { existed, id: found.id.unwrap_or_default(), subnet })
}

/// The networks container `name` is on, and whether it runs; `None` when it does not exist.
pub async fn container_networks(
    docker: &Docker,
    name: &str,
) -> Result<Option<(bool, Vec<String>)>> {
    let found = match docker.inspect_container(name, None).await {
        Ok(found) => found,
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
            return Ok(None);
        }
        Err(e) => return Err(e).with_context(|| format!("inspecting container {name}")),
    };
    let running = found.state.and_then(|s| s.running).unwrap_or(false);
    let mut networks: Vec<String> = found
        .network_settings
        .and_then(|n| n.networks)
        .map(|n| n.into_keys().collect())
        .unwrap_or_default();
    networks.sort();
    Ok(Some((running, networks)))
}

/// Connect `container` to `network`; already connected is nothing to do (k3d
/// `ConnectNodeToNetwork`: `Container '%s' is already connected to '%s'`). Whether it
/// was connected by this call.
pub async fn connect(docker: &Docker, network: &str, container: &str) -> Result<bool> {
    let on = container_networks(docker, container).await?.map(|(_, n)| n).unwrap_or_default();
    if on.iter().any(|n| n == network) {
        return Ok(false);
    }
    let request = NetworkConnectRequest { container: container.to_owned(), ..Default::default() };
    docker
        .connect_network(network, request)
        .await
        .with_context(|| format!("connecting {container} to network {network}"))?;
    Ok(true)
}

/// Disconnect `container` from `network` (forced, as k3d's `DisconnectNodeFromNetwork`).
pub async fn disconnect(docker: &Docker, network: &str, container: &str) -> Result<()> {
    let request = NetworkDisconnectRequest { container: container.to_owned(), force: Some(true) };
    docker
        .disconnect_network(network, request)
        .await
        .with_context(|| format!("disconnecting {container} from network {network}"))
}

/// The containers on `network`, by name.
pub async fn members(docker: &Docker, network: &str) -> Result<Vec<String>> {
    let found = docker
        .inspect_network(network, None)
        .await
        .with_context(|| format!("inspecting network {network}"))?;
    let mut names: Vec<String> = found
        .containers
        .unwrap_or_default()
        .into_values()
        .filter_map(|endpoint| endpoint.name)
        .collect();
    names.sort();
    Ok(names)
}

/// Remove `network`; a network already gone is fine.
pub async fn remove(docker: &Docker, network: &str) -> Result<()> {
    match docker.remove_network(network).await {
        Ok(())
        | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing network {network}")),
    }
}

/// Remove every testbed network (one labelled `testbed.dir`) for which `doomed(name,
/// its testbed dir)` holds, disconnecting what is still on it first.
pub async fn remove_testbed_networks(
    docker: &Docker,
    doomed: impl Fn(&str, &str) -> bool,
) -> Result<()> {
    for net in
        docker.list_networks(None::<ListNetworksOptions>).await.context("listing networks")?
    {
        let name = net.name.unwrap_or_default();
        let labels = net.labels.unwrap_or_default();
        let Some(dir) = labels.get(LABEL_TESTBED_DIR) else { continue };
        if !doomed(&name, dir) {
            continue;
        }
        for member in members(docker, &name).await.unwrap_or_default() {
            disconnect(docker, &name, &member).await?;
        }
        remove(docker, &name).await?;
    }
    Ok(())
}

/// Whether `from` reaches `to` by name: `to` runs and both are on one user-defined
/// network. Synchronous (a thread of its own), for the kubelet's and `crictl`'s pulls; a
/// Docker error counts as unreachable and is printed.
pub fn reaches(from: &str, to: &str) -> bool {
    let ask = || -> Result<bool> {
        docker::runtime()?.block_on(async {
            let docker = docker::connect().await?;
            let Some((true, target)) = container_networks(&docker, to).await? else {
                return Ok(false);
            };
            let source = container_networks(&docker, from).await?.map(|(_, n)| n);
            Ok(shares_named_network(&source.unwrap_or_default(), &target))
        })
    };
    // Its own thread: the caller may be inside a runtime already (the API server's).
    let answer = std::thread::scope(|s| s.spawn(ask).join());
    match answer {
        Ok(Ok(reached)) => reached,
        Ok(Err(e)) => {
            eprintln!("testbed: can {from} reach {to}? {e:#}");
            false
        }
        Err(_) => false,
    }
}

/// Whether two containers' networks include a user-defined one they share.
pub fn shares_named_network(a: &[String], b: &[String]) -> bool {
    a.iter().any(|n| !DEFAULT_NETWORKS.contains(&n.as_str()) && b.contains(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_shared_user_defined_network_resolves_names() {
        let s = |v: &[&str]| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert!(shares_named_network(&s(&["k3d-c"]), &s(&["bridge", "k3d-c"])));
        assert!(!shares_named_network(&s(&["k3d-c"]), &s(&["bridge"])));
        assert!(!shares_named_network(&s(&["bridge"]), &s(&["bridge"])), "no DNS on bridge");
        assert!(!shares_named_network(&s(&["k3d-a"]), &s(&["k3d-b"])));
        assert!(!shares_named_network(&[], &s(&["k3d-c"])));
    }
}
