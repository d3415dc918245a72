//! Container images in the simulated platform: the upstream registry (what a pull
//! downloads, how long it takes, which references it does not have), each node's
//! containerd image store, and the pull log.
//!
//! - A node's store is `clusters/<c>/nodes/<node>/images/`, one file per image
//!   reference (k3d's cluster delete removes the node containers and with them their
//!   containerd stores; the fake k3d removes `clusters/<c>/`, so a new cluster starts
//!   with empty stores). The kubelet (`apiserver::controllers`, the fake helm's test
//!   Pods) pulls into it on demand; `k3d image import` writes into it.
//! - Every download from the upstream registry, by the fake `docker pull` or by a
//!   kubelet, is one line of `$TESTBED_DIR/pulls.jsonl`: `{"by", "image"}`.
//! - The registry knows every reference except the scenario's `image-unfetchable=<ref>`
//!   ones, and a download takes the scenario's `pull-ms`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::scenario::Scenario;

pub const PULLS_FILE: &str = "pulls.jsonl";

/// One download from the upstream registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pull {
    /// `docker` (the host's daemon) or `kubelet/<node>`.
    pub by: String,
    pub image: String,
}

/// The fully qualified reference, as docker and containerd name an image:
/// `busybox:1.37.0` -> `docker.io/library/busybox:1.37.0`, no tag -> `:latest`.
/// (docker/distribution `reference.ParseNormalizedNamed` + `TagNameOnly`.)
pub fn normalize(image: &str) -> String {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let first = name.split('/').next().unwrap_or("");
    let has_domain =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut full = if has_domain {
        name.to_owned()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    let last = full.rsplit('/').next().unwrap_or("");
    if digest.is_none() && !last.contains(':') {
        full.push_str(":latest");
    }
    match digest {
        Some(d) => format!("{full}@{d}"),
        None => full,
    }
}

/// Whether the scenario's registry refuses this reference.
pub fn unfetchable(scenario: &Scenario, image: &str) -> bool {
    let wanted = normalize(image);
    scenario.image_unfetchable.iter().any(|i| normalize(i) == wanted)
}

/// What containerd's CRI pull says for a reference the registry does not have
/// (`ErrImagePull`); the kubelet then backs off (`ImagePullBackOff`).
pub fn kubelet_pull_error(image: &str) -> String {
    format!(
        "Failed to pull image \"{image}\": rpc error: code = NotFound desc = failed to pull and unpack image \"{}\": failed to resolve reference \"{}\": {}: not found",
        normalize(image),
        normalize(image),
        normalize(image)
    )
}

/// A node's image store.
pub fn node_store(testbed_dir: &Path, cluster: &str, node: &str) -> PathBuf {
    testbed_dir.join("clusters").join(cluster).join("nodes").join(node).join("images")
}

/// The store of the node the cluster's Pods run on (k3d's first server; the testbed
/// schedules every Pod there).
pub fn pod_node_store(testbed_dir: &Path, cluster: &str) -> PathBuf {
    node_store(testbed_dir, cluster, &format!("k3d-{cluster}-server-0"))
}

fn entry(store: &Path, image: &str) -> PathBuf {
    let name: String = normalize(image)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
        .collect();
    store.join(name)
}

pub fn node_has(store: &Path, image: &str) -> bool {
    entry(store, image).exists()
}

/// Put `image` into a node's store (a pull finished, or an import).
pub fn node_add(store: &Path, image: &str) -> Result<()> {
    std::fs::create_dir_all(store).with_context(|| format!("creating {}", store.display()))?;
    let path = entry(store, image);
    std::fs::write(&path, normalize(image)).with_context(|| format!("writing {}", path.display()))
}

/// Every image reference in a node's store.
pub fn node_images(store: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(store)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect();
    out.sort();
    out
}

/// Append one download to the pull log.
pub fn record_pull(testbed_dir: &Path, by: &str, image: &str) -> Result<()> {
    let pull = Pull { by: by.to_owned(), image: normalize(image) };
    crate::calls::append(&testbed_dir.join(PULLS_FILE), &pull)
}

/// Every download so far, oldest first.
pub fn pulls(testbed_dir: &Path) -> Result<Vec<Pull>> {
    crate::calls::read_lines(&testbed_dir.join(PULLS_FILE))
}

/// The images a Pod spec runs (init containers first).
pub fn pod_images(spec: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["initContainers", "containers"] {
        for c in spec[key].as_array().into_iter().flatten() {
            if let Some(image) = c["image"].as_str()
                && !out.iter().any(|i| i == image)
            {
                out.push(image.to_owned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalize_like_docker() {
        assert_eq!(normalize("busybox:1.37.0"), "docker.io/library/busybox:1.37.0");
        assert_eq!(normalize("hashicorp/vault:1.17.6"), "docker.io/hashicorp/vault:1.17.6");
        assert_eq!(normalize("postgres"), "docker.io/library/postgres:latest");
        assert_eq!(normalize("localhost:5001/app"), "localhost:5001/app:latest");
        assert_eq!(normalize("ghcr.io/a/b:v1"), "ghcr.io/a/b:v1");
        assert_eq!(normalize("docker.io/library/busybox:1.37.0"), normalize("busybox:1.37.0"));
    }

    #[test]
    fn stores_hold_what_was_added() {
        let dir = tempfile::tempdir().unwrap();
        let store = pod_node_store(dir.path(), "c");
        assert!(!node_has(&store, "busybox:1.37.0"));
        node_add(&store, "docker.io/library/busybox:1.37.0").unwrap();
        assert!(node_has(&store, "busybox:1.37.0"));
        assert_eq!(node_images(&store), ["docker.io/library/busybox:1.37.0"]);
        record_pull(dir.path(), "docker", "busybox:1.37.0").unwrap();
        assert_eq!(pulls(dir.path()).unwrap()[0].image, "docker.io/library/busybox:1.37.0");
    }
}
