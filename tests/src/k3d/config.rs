//! The parts of k3d's config file (`SimpleConfig`, k3d.io/v1alpha5) the fake honours,
//! the nodes it makes and k3d's node filters.

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The parts of k3d's `SimpleConfig` (k3d.io/v1alpha5) the fake honours.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SimpleConfig {
    pub(crate) api_version: String,
    pub(crate) kind: String,
    pub(crate) metadata: Metadata,
    pub(crate) servers: Option<u32>,
    pub(crate) agents: Option<u32>,
    pub(crate) image: String,
    /// An existing network for the cluster (external); empty: k3d makes `k3d-<name>`.
    pub(crate) network: String,
    pub(crate) registries: Registries,
    pub(crate) options: ConfigOptions,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Metadata {
    pub(crate) name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Registries {
    pub(crate) create: Option<RegistryCreate>,
    /// Existing registries (`NAME[:PORT]`) to connect to the cluster's network.
    #[serde(rename = "use")]
    pub(crate) use_: Vec<String>,
    /// k3s's `registries.yaml` for every node (mirrors).
    pub(crate) config: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct RegistryCreate {
    pub(crate) name: String,
    pub(crate) host: String,
    pub(crate) host_port: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ConfigOptions {
    pub(crate) runtime: RuntimeOptions,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RuntimeOptions {
    pub(crate) labels: Vec<LabelWithFilters>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct LabelWithFilters {
    pub(crate) label: String,
    pub(crate) node_filters: Vec<String>,
}

pub(crate) fn read_config(path: &str) -> Result<SimpleConfig> {
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
pub(crate) struct NodeSpec {
    pub(crate) name: String,
    pub(crate) role: &'static str,
    pub(crate) index: Option<u32>,
}

pub(crate) fn node_specs(cluster: &str, servers: u32, agents: u32) -> Vec<NodeSpec> {
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
pub(crate) fn filter_matches(filter: &str, node: &NodeSpec) -> bool {
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
pub(crate) fn parse_runtime_label(spec: &str) -> (String, String, Vec<String>) {
    let (label, filters) = match spec.rsplit_once('@') {
        Some((l, f)) => (l, f.split(';').map(str::to_owned).collect()),
        None => (spec, vec!["all".to_owned()]),
    };
    let (k, v) = label.split_once('=').unwrap_or((label, ""));
    (k.to_owned(), v.to_owned(), filters)
}
