//! The cluster's network, as k3d v5.7.5 makes and removes it (`pkg/client/cluster.go`):
//! `ClusterPrepNetwork` creates `k3d-<cluster>` (or the config's `network`, which is
//! external) unless it exists, which makes it external too; every node joins only it;
//! `ClusterRun` connects each registry of `registries.use` (and the one the config
//! creates) with `RegistryConnectNetworks`. `ClusterDelete` deletes a registry of the
//! cluster unless it is on another non-default network (then only disconnects it), and
//! removes a network it created: when registries that are not the cluster's are still
//! on it, they are disconnected first.

use anyhow::{Context, Result};
use bollard::Docker;
use bollard::models::ContainerSummary;

use crate::docker::{self, network};
use crate::k3d::common::Log;

/// Node labels naming the cluster's network (k3d `pkg/types/types.go`).
pub(crate) const LABEL_NETWORK: &str = "k3d.cluster.network";
pub(crate) const LABEL_NETWORK_EXTERNAL: &str = "k3d.cluster.network.external";
pub(crate) const LABEL_NETWORK_ID: &str = "k3d.cluster.network.id";
const LABEL_NETWORK_IPRANGE: &str = "k3d.cluster.network.iprange";

/// The cluster's network as its nodes carry it.
pub(crate) struct ClusterNetwork {
    pub(crate) name: String,
    labels: Vec<(String, String)>,
}

impl ClusterNetwork {
    /// The labels every node gets (k3d's `GlobalLabels`).
    pub(crate) fn labels(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.labels.iter().cloned()
    }
}

/// `Prep: Network`: `configured` (the config's `network`, external) or `k3d-<cluster>`,
/// created unless it exists.
pub(crate) async fn prep(
    dir: &std::path::Path,
    docker: &Docker,
    cluster: &str,
    configured: &str,
    log: &Log,
) -> Result<ClusterNetwork> {
    log.info("Prep: Network");
    let name = if configured.is_empty() { format!("k3d-{cluster}") } else { configured.to_owned() };
    let made = network::ensure(docker, &name, dir).await.with_context(|| {
        format!("Failed Network Preparation: failed to create cluster network '{name}'")
    })?;
    if made.existed {
        log.info(&format!("Re-using existing network '{name}' ({})", made.id));
    } else {
        log.info(&format!("Created network '{name}'"));
    }
    let external = !configured.is_empty() || made.existed;
    let labels = vec![
        (LABEL_NETWORK.to_owned(), name.clone()),
        (LABEL_NETWORK_EXTERNAL.to_owned(), external.to_string()),
        (LABEL_NETWORK_ID.to_owned(), made.id),
        (LABEL_NETWORK_IPRANGE.to_owned(), made.subnet),
    ];
    Ok(ClusterNetwork { name, labels })
}

/// `RegistryConnectNetworks` for each registry the cluster uses.
pub(crate) async fn connect_registries(
    docker: &Docker,
    net: &ClusterNetwork,
    registries: &[String],
    log: &Log,
) -> Result<()> {
    for registry in registries {
        let connected = network::connect(docker, &net.name, registry).await.with_context(|| {
            format!("Failed to connect registry node '{registry}' to cluster network")
        })?;
        if !connected {
            log.info(&format!("Container '{registry}' is already connected to '{}'", net.name));
        }
    }
    Ok(())
}

/// Whether `ClusterDelete` keeps a registry of the cluster, only disconnecting it: it is
/// also on a network that is neither the cluster's nor `bridge`/`host`.
pub(crate) fn registry_stays(registry: &ContainerSummary, cluster_network: &str) -> bool {
    networks_of(registry).iter().any(|n| n != cluster_network && n != "bridge" && n != "host")
}

fn networks_of(c: &ContainerSummary) -> Vec<String> {
    c.network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .map(|n| n.keys().cloned().collect())
        .unwrap_or_default()
}

/// The cluster's network as its nodes name it: (name, external).
pub(crate) fn of_nodes(nodes: &[ContainerSummary]) -> Option<(String, bool)> {
    nodes.iter().find_map(|c| {
        let name = docker::label(c, LABEL_NETWORK)?;
        Some((name.to_owned(), docker::label(c, LABEL_NETWORK_EXTERNAL) == Some("true")))
    })
}

/// After the nodes are gone: remove the network the cluster created. Registries still on
/// it (not the cluster's: `k3d registry create`, `registries.use`) are disconnected first;
/// other k3d nodes keep it; containers k3d does not know keep it, with k3d's warning.
pub(crate) async fn delete(docker: &Docker, name: &str, external: bool, log: &Log) -> Result<()> {
    if external {
        return Ok(());
    }
    log.info(&format!("Deleting cluster network '{name}'"));
    let members = network::members(docker, name).await.unwrap_or_default();
    let k3d: Vec<ContainerSummary> = docker::containers_with_labels(docker, &[("app", "k3d")])
        .await?
        .into_iter()
        .filter(|c| members.contains(&docker::container_name(c)))
        .collect();
    if !members.is_empty() && k3d.is_empty() {
        log.warn(&format!(
            "Failed to delete cluster network '{name}' because it's still in use: is there another cluster using it?"
        ));
        return Ok(());
    }
    if k3d.iter().any(|c| docker::label(c, "k3d.role") != Some("registry")) {
        return Ok(());
    }
    for registry in &k3d {
        network::disconnect(docker, name, &docker::container_name(registry)).await?;
    }
    if let Err(e) = network::remove(docker, name).await {
        log.warn(&format!(
            "Failed to delete cluster network, even after disconnecting registry node(s): {e:#}"
        ));
    }
    Ok(())
}
