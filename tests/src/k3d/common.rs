//! What the fake `k3d`'s commands share (its log lines, the cluster's containers and
//! labels, waiting): below `fake` and each command's module, so they import it and
//! not each other.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use bollard::Docker;
use bollard::models::ContainerSummary;

use crate::docker::{self, LABEL_TESTBED_DIR};

/// The version we claim to be; the labels carry it as real k3d does.
pub const K3D_VERSION: &str = "v5.8.3";

/// k3d's log lines: level, seconds since start, message.
pub(crate) struct Log {
    start: Instant,
}

impl Log {
    pub(crate) fn new() -> Log {
        Log { start: Instant::now() }
    }
    pub(crate) fn stamp(&self) -> String {
        format!("{:04}", self.start.elapsed().as_secs())
    }
    pub(crate) fn info(&self, msg: &str) {
        println!("INFO[{}] {msg}", self.stamp());
    }
    pub(crate) fn warn(&self, msg: &str) {
        eprintln!("WARN[{}] {msg}", self.stamp());
    }
    pub(crate) fn error(&self, msg: &str) {
        eprintln!("ERRO[{}] {msg}", self.stamp());
    }
    pub(crate) fn fatal(&self, msg: &str) {
        eprintln!("FATA[{}] {msg}", self.stamp());
    }
}

pub(crate) fn usage_error(msg: &str) -> Result<i32> {
    eprintln!("Error: {msg}");
    Ok(1)
}

pub(crate) use crate::docker::node_images::cluster_dir;

pub(crate) async fn cluster_containers(
    docker: &Docker,
    cluster: &str,
) -> Result<Vec<ContainerSummary>> {
    docker::containers_with_labels(docker, &[("app", "k3d"), ("k3d.cluster", cluster)]).await
}

pub(crate) struct RegistryPlan {
    pub(crate) name: String,
    pub(crate) host: String,
    pub(crate) host_port: String,
}

pub(crate) fn base_labels(dir: &Path, cluster: &str, role: &str) -> HashMap<String, String> {
    HashMap::from([
        ("app".to_owned(), "k3d".to_owned()),
        ("k3d.cluster".to_owned(), cluster.to_owned()),
        ("k3d.role".to_owned(), role.to_owned()),
        ("k3d.version".to_owned(), K3D_VERSION.to_owned()),
        (LABEL_TESTBED_DIR.to_owned(), dir.to_string_lossy().into_owned()),
    ])
}

pub(crate) fn role_order(role: &str) -> u8 {
    match role {
        "registry" => 0,
        "server" => 1,
        "agent" => 2,
        _ => 3,
    }
}

pub(crate) fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
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

/// Every cluster k3d knows of: the `k3d.cluster` label of its containers, sorted.
pub(crate) async fn cluster_names(docker: &Docker) -> Result<Vec<String>> {
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
