//! `k3d image import [-c CLUSTER]... [-m auto|direct|tools] IMAGE...`, after k3d v5
//! `cmd/image/imageImport.go` and `pkg/client/tools.go` (`ImageImportIntoClusterMulti`,
//! `findImages`, `importWithStream`): each IMAGE must be in the host's image store
//! (`docker save` reads it from there; names compare as k3d does, `docker.io/library/`
//! and `:latest` aside), else a warning; none found is an error, exit 1. What is found is
//! imported into every server and agent node (`ctr image import` in each), which here
//! means the node's image store (`node_images`). Nothing is downloaded.
//!
//! With scenario `docker-containerd-store` the host's Docker keeps images in the
//! containerd image store: `docker save` of a multi-platform image writes an index whose
//! other platforms' blobs are absent, and `ctr image import --all-platforms` fails with
//! `ctr: content digest sha256:...: not found` (k3d issue 1538, open at v5.7.5); the
//! direct mode's error is then `error loading image to cluster, first error: failed to
//! import images in node '<node>': Exec process in node '<node>' failed with exit code
//! '1'` (`pkg/client/tools.go` `importWithStream`, `pkg/runtimes/docker/node.go`).
//! Every image counts as multi-platform here (the sample's are).

use std::path::Path;

use anyhow::Result;
use bollard::Docker;

use crate::docker;
use crate::docker::node_images;
use crate::k3d::common::{Log, cluster_containers};
use crate::k3d::flags::Flags;
use crate::scenario::Scenario;

pub(crate) async fn import(dir: &Path, docker: &Docker, flags: &Flags, log: &Log) -> Result<i32> {
    let mut clusters: Vec<&str> = flags.all_values("cluster");
    clusters.extend(flags.all_values("c"));
    if clusters.is_empty() {
        clusters.push("k3s-default");
    }
    let mode = flags.value(&["mode", "m"]).unwrap_or("tools");
    if !["auto", "direct", "tools", "tools-node"].contains(&mode) {
        log.fatal(&format!("Unknown image loading mode '{mode}'"));
        return Ok(1);
    }
    if flags.positional.is_empty() {
        log.fatal("No images specified!");
        return Ok(1);
    }
    let mut nodes_of = Vec::new();
    for cluster in &clusters {
        let nodes: Vec<String> = cluster_containers(docker, cluster)
            .await?
            .iter()
            .filter(|c| matches!(docker::label(c, "k3d.role"), Some("server" | "agent")))
            .map(docker::container_name)
            .collect();
        if nodes.is_empty() {
            log.fatal(&format!(
                "failed to get cluster {cluster}: No nodes found for given cluster"
            ));
            return Ok(1);
        }
        nodes_of.push((cluster, nodes));
    }
    let mut failed = false;
    for (cluster, nodes) in nodes_of {
        log.info(&format!("Importing image(s) into cluster '{cluster}'"));
        let mut found = Vec::new();
        for image in &flags.positional {
            if docker.inspect_image(image).await.is_ok()
                || docker.inspect_image(&node_images::normalize(image)).await.is_ok()
            {
                found.push(image.clone());
            } else {
                log.warn(&format!(
                    "Image '{image}' is not a file and couldn't be found in the container runtime"
                ));
            }
        }
        if found.is_empty() {
            log.error(&format!(
                "Failed to import image(s) into cluster '{cluster}': no valid images specified"
            ));
            failed = true;
            continue;
        }
        log.info(&format!("Loading {} image(s) from runtime into nodes...", found.len()));
        if Scenario::load(dir)?.docker_containerd_store {
            let node = &nodes[0];
            log.info(&format!("Importing images '{found:?}' into node '{node}'..."));
            log.error(&format!(
                "Failed to import image(s) into cluster '{cluster}': error loading image to cluster, first error: \
                 failed to import images in node '{node}': Exec process in node '{node}' failed with exit code '1': \
                 Logs from failed access process:\nunpacking {} (sha256:{})...\nctr: content digest sha256:{}: not found",
                node_images::normalize(&found[0]),
                digest_of(&found[0], "index"),
                digest_of(&found[0], "arm64"),
            ));
            failed = true;
            continue;
        }
        for node in &nodes {
            log.info(&format!("Importing images '{found:?}' into node '{node}'..."));
            let store = node_images::node_store(dir, cluster, node);
            for image in &found {
                node_images::node_add(&store, image)?;
            }
        }
        log.info("Successfully imported image(s)");
    }
    if failed {
        log.warn("At least one error occured while trying to import the image(s) into the selected cluster(s)");
        return Ok(1);
    }
    log.info(&format!(
        "Successfully imported {} image(s) into {} cluster(s)",
        flags.positional.len(),
        clusters.len()
    ));
    Ok(0)
}

/// A stable stand-in for a content digest of `image` (64 hex digits).
fn digest_of(image: &str, part: &str) -> String {
    use std::hash::{Hash, Hasher};
    (0..4)
        .map(|i| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (image, part, i).hash(&mut h);
            format!("{:016x}", h.finish())
        })
        .collect()
}
