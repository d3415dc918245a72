//! `k3d cluster list` and `k3d registry list`, in k3d's JSON and table forms.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use bollard::Docker;
use bollard::models::ContainerSummary;
use serde_json::{Value, json};

use crate::docker;
use crate::k3d::common::*;
use crate::k3d::flags::*;
use crate::k3d::network::{LABEL_NETWORK, LABEL_NETWORK_EXTERNAL, LABEL_NETWORK_ID};

/// One node as `k3d cluster list -o json` / `k3d registry list -o json` print it.
pub(crate) fn node_json(c: &ContainerSummary) -> Value {
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

/// The cluster's network as `k3d cluster list -o json` prints it, from its nodes' labels.
fn network_json(nodes: &[&ContainerSummary]) -> Value {
    let label = |key: &str| nodes.iter().find_map(|c| docker::label(c, key)).unwrap_or("");
    json!({
        "name": label(LABEL_NETWORK),
        "id": label(LABEL_NETWORK_ID),
        "isExternal": label(LABEL_NETWORK_EXTERNAL) == "true",
    })
}

pub(crate) async fn list(docker: &Docker, flags: &Flags, log: &Log) -> Result<i32> {
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
            "network": network_json(&nodes),
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

pub(crate) async fn registry_list(docker: &Docker, flags: &Flags) -> Result<i32> {
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
