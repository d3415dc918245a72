//! The `docker` CLI in a testbed world: `docker pull` downloads from the simulated
//! upstream registry (`node_images`); every other command is the real docker CLI.
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

use crate::docker::{self, LABEL_TESTBED_DIR};
use crate::node_images;
use crate::scenario::Scenario;

pub fn main(args: Vec<String>) -> i32 {
    if args.first().map(String::as_str) != Some("pull") {
        return forward(&args);
    }
    let dir = match crate::cli::fake_tool_start("docker", &args) {
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
    let (repo, tag) = crate::images::split_tag(image);
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
    let now_ms = node_images::unix_ms();
    let end_ms = if node_images::unfetchable(&scenario, image) {
        now_ms + scenario.pull_ms
    } else {
        node_images::reserve_link(Some(dir), &scenario, image, now_ms)
    };
    tokio::time::sleep(std::time::Duration::from_millis(end_ms.saturating_sub(now_ms))).await;
    if node_images::unfetchable(&scenario, image) {
        eprintln!(
            "Error response from daemon: manifest for {repo}:{tag} not found: manifest unknown: manifest unknown"
        );
        return Ok(1);
    }
    let label = format!("LABEL {LABEL_TESTBED_DIR}={}", dir.display());
    crate::images::build_with(&docker, image, &crate::images::pulled_rootfs(&full)?, vec![label])
        .await
        .with_context(|| format!("creating {image} in the host's image store"))?;
    node_images::record_pull(dir, "docker", image)?;
    let id = docker.inspect_image(image).await?.id.unwrap_or_default();
    if !quiet {
        println!("{tag}: Pulling from {path}");
        println!("Digest: {id}\nStatus: Downloaded newer image for {repo}:{tag}");
    }
    println!("{full}");
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
    crate::fake_helm::run_real("docker", &docker, args)
}
