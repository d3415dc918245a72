//! The `docker` CLI in a testbed world: `docker pull` downloads from the simulated
//! upstream registry (`node_images`), or through a pull-through cache when it names the
//! cache's published host port (`127.0.0.1:<port>/<path>`); `docker exec <node> crictl
//! pull` is the node's containerd pulling; every other command is the real docker CLI.
//!
//! Docker here cannot reach a registry, so a pull is simulated on the real daemon: it
//! takes the scenario's `pull-ms` and the image's size over the shared link
//! (`node_images::reserve_link`), then the image is created in the host's real image
//! store (`docker import` of a one-file rootfs, labelled `testbed.dir` so `testbed down`
//! removes it) under the reference asked for. A reference the registry does not have
//! fails with the daemon's words. Output follows docker CLI 2x `docker pull`
//! (docker/cli `cli/command/image/pull.go`, moby `distribution/pull_v2.go`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::docker::node_images;
use crate::docker::{self, LABEL_TESTBED_DIR};
use crate::scenario::Scenario;

pub fn main(args: Vec<String>) -> i32 {
    if let Some((node, image)) = crictl_pull(&args) {
        let dir = match crate::calls::fake_tool_start("docker", &args) {
            Ok(dir) => dir,
            Err(e) => {
                eprintln!("{e:#}");
                return 1;
            }
        };
        return match docker::runtime().and_then(|rt| rt.block_on(node_pull(&dir, node, image))) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("{e:#}");
                1
            }
        };
    }
    if args.first().map(String::as_str) != Some("pull") {
        return forward(&args);
    }
    let dir = match crate::calls::fake_tool_start("docker", &args) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("{e:#}");
            return 1;
        }
    };
    let quiet = args.iter().any(|a| a == "-q" || a == "--quiet");
    let Some(image) = args[1..].iter().find(|a| !a.starts_with('-')) else {
        eprintln!("\"docker pull\" requires exactly 1 argument.");
        return 1;
    };
    match docker::runtime().and_then(|rt| rt.block_on(pull(&dir, image, quiet))) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e:#}");
            1
        }
    }
}

async fn pull(dir: &Path, image: &str, quiet: bool) -> Result<i32> {
    let scenario = Scenario::load(dir)?;
    let docker = docker::connect().await?;
    let full = node_images::normalize(image);
    let (repo, tag) = crate::docker::images::split_tag(image);
    let path = full.split_once('/').map_or(full.as_str(), |(_, p)| p);
    let path = path.rsplit_once(':').map_or(path, |(p, _)| p);
    if docker.inspect_image(image).await.is_ok() {
        // The registry is asked for the manifest; nothing is downloaded.
        if !quiet {
            println!("{tag}: Pulling from {path}\nStatus: Image is up to date for {image}");
        }
        println!("{full}");
        return Ok(0);
    }
    // Through a pull-through cache's port published on the host: what the cache proxies.
    let cache = cache_behind(dir, &docker, image).await?;
    let wanted = cache.as_ref().map_or_else(|| image.to_owned(), |(_, upstream)| upstream.clone());
    let now_ms = node_images::unix_ms();
    let end_ms = match &cache {
        _ if node_images::unfetchable(&scenario, &wanted) => now_ms + scenario.pull_ms,
        Some((cache, _)) => node_images::pull_from_cache(dir, cache, &wanted, &scenario, now_ms),
        None => node_images::reserve_link(Some(dir), &scenario, image, now_ms),
    };
    tokio::time::sleep(std::time::Duration::from_millis(end_ms.saturating_sub(now_ms))).await;
    if node_images::unfetchable(&scenario, &wanted) {
        eprintln!(
            "Error response from daemon: manifest for {repo}:{tag} not found: manifest unknown: manifest unknown"
        );
        return Ok(1);
    }
    let label = format!("LABEL {LABEL_TESTBED_DIR}={}", dir.display());
    // A digest-pinned pull stores the image untagged; here it gets a tag naming the
    // digest (`docker image rm` by digest then misses it; `testbed down` removes it).
    let stored = match image.split_once("@sha256:") {
        Some((name, digest)) => format!("{name}:sha256-{}", &digest[..digest.len().min(12)]),
        None => image.to_owned(),
    };
    crate::docker::images::build_with(
        &docker,
        &stored,
        &crate::docker::images::pulled_rootfs(&full)?,
        vec![label],
    )
    .await
    .with_context(|| format!("creating {image} in the host's image store"))?;
    if cache.is_none() {
        node_images::record_pull(dir, "docker", image)?;
    }
    let id = docker.inspect_image(&stored).await?.id.unwrap_or_default();
    if !quiet {
        println!("{tag}: Pulling from {path}");
        println!("Digest: {id}\nStatus: Downloaded newer image for {repo}:{tag}");
    }
    println!("{full}");
    Ok(0)
}

/// For `127.0.0.1:<port>/<path>` (or `localhost:`) where `<port>` is the host port of a
/// running pull-through cache (`k3d registry create --proxy-remote-url`, label
/// `k3s.registry.port.external`): its store and the upstream reference it fetches,
/// `docker.io/<path>` (the testbed's caches proxy Docker Hub).
async fn cache_behind(
    dir: &Path,
    docker: &bollard::Docker,
    image: &str,
) -> Result<Option<(PathBuf, String)>> {
    let Some((host, path)) = image.split_once('/') else { return Ok(None) };
    let Some(port) = host.strip_prefix("127.0.0.1:").or_else(|| host.strip_prefix("localhost:"))
    else {
        return Ok(None);
    };
    let registries = docker::containers_with_labels(docker, &[("k3d.role", "registry")]).await?;
    let Some(found) = registries.iter().find(|c| {
        docker::label(c, "k3s.registry.port.external") == Some(port)
            && docker::label(c, "testbed.proxy.remoteurl").is_some_and(|u| !u.is_empty())
            && docker::is_running(c)
    }) else {
        return Ok(None);
    };
    let cache = node_images::cache_dir(dir, &docker::container_name(found));
    Ok(cache.is_dir().then(|| (cache, node_images::normalize(&format!("docker.io/{path}")))))
}

/// `docker exec [-opts] <node> crictl pull <image>`: (node, image).
fn crictl_pull(args: &[String]) -> Option<(&str, &str)> {
    let rest: Vec<&str> = args.iter().map(String::as_str).collect();
    let ["exec", rest @ ..] = rest.as_slice() else { return None };
    let rest: Vec<&str> = rest.iter().copied().skip_while(|a| a.starts_with('-')).collect();
    match rest.as_slice() {
        [node, "crictl", "pull", image] => {
            let node = args.iter().find(|a| a == node)?;
            let image = args.iter().rev().find(|a| a == image)?;
            Some((node.as_str(), image.as_str()))
        }
        _ => None,
    }
}

/// The cluster of a node container `k3d-<cluster>-<role>-<n>`.
fn cluster_of(node: &str) -> Option<&str> {
    let rest = node.strip_prefix("k3d-")?;
    let (rest, _n) = rest.rsplit_once('-')?;
    let (cluster, _role) = rest.rsplit_once('-')?;
    Some(cluster)
}

/// The node's containerd pulls (`node_images::begin_node_pull`: through the cluster's mirror
/// when it names a cache), as `crictl pull` does: `Image is up to date for sha256:...`,
/// or containerd's error, exit 1.
async fn node_pull(dir: &Path, node: &str, image: &str) -> Result<i32> {
    let scenario = Scenario::load(dir)?;
    let Some(cluster) = cluster_of(node) else {
        eprintln!("Error response from daemon: No such container: {node}");
        return Ok(1);
    };
    let store = node_images::node_store(dir, cluster, node);
    let id = |image: &str| {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        node_images::normalize(image).hash(&mut h);
        format!(
            "{:016x}{:016x}{:016x}{:016x}",
            h.finish(),
            h.finish() ^ 1,
            h.finish() ^ 2,
            h.finish() ^ 3
        )
    };
    if node_images::node_has(&store, image) {
        println!("Image is up to date for sha256:{}", id(image));
        return Ok(0);
    }
    let now_ms = node_images::unix_ms();
    if node_images::unfetchable(&scenario, image) {
        tokio::time::sleep(std::time::Duration::from_millis(scenario.pull_ms)).await;
        let full = node_images::normalize(image);
        eprintln!(
            "FATA[0000] pulling image: rpc error: code = NotFound desc = failed to pull and unpack image \"{full}\": failed to resolve reference \"{full}\": {full}: not found"
        );
        return Ok(1);
    }
    let by = format!("crictl/{node}");
    let (end_ms, record) =
        node_images::begin_node_pull(Some(dir), &store, &by, image, &scenario, now_ms);
    tokio::time::sleep(std::time::Duration::from_millis(end_ms.saturating_sub(now_ms))).await;
    if let Some(by) = record {
        node_images::record_pull(dir, &by, image)?;
    }
    node_images::node_add(&store, image)?;
    println!("Image is up to date for sha256:{}", id(image));
    Ok(0)
}

/// The real docker CLI: the first `docker` on PATH that is not this fake.
fn real_docker() -> Option<PathBuf> {
    let me = std::env::current_exe().ok().and_then(|p| p.canonicalize().ok());
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("docker"))
        .find(|p| p.is_file() && p.canonicalize().ok() != me)
}

fn forward(args: &[String]) -> i32 {
    let Some(docker) = real_docker() else {
        eprintln!("testbed docker: no real docker CLI on PATH for `docker {}`", args.join(" "));
        return 127;
    };
    crate::real_tools::run_real("docker", &docker, args)
}
