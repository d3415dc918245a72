//! The Docker side of the testbed: one way to connect (the daemon here speaks API 1.41,
//! older than bollard's default, so the version is always negotiated) and the labels
//! every testbed container carries; the images the testbed builds (`images`); the
//! simulated image stores, registry and link (`node_images`); the clusters' networks
//! (`network`); and the fake `docker` CLI (`fake`). Below the simulated tools and the API server's kubelet, which use it.

pub mod fake;
pub mod images;
pub mod network;
pub mod node_images;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use bollard::Docker;
use bollard::models::{ContainerSummary, ContainerSummaryStateEnum};
use bollard::query_parameters::{ListContainersOptions, RemoveContainerOptions};

/// Label on every container the testbed makes: the absolute testbed dir, so `down`
/// removes exactly its own containers (stopped ones too).
pub const LABEL_TESTBED_DIR: &str = "testbed.dir";

/// Connect to the local daemon and agree on an API version it speaks.
pub async fn connect() -> Result<Docker> {
    let docker =
        Docker::connect_with_local_defaults().context("connecting to the Docker daemon")?;
    docker.negotiate_version().await.context("Docker daemon did not answer /version")
}

/// A single-threaded runtime for the synchronous entry points (fake tools, CLI, World).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// Does a Docker daemon answer within a few seconds?
pub fn daemon_answers() -> bool {
    let Ok(rt) = runtime() else { return false };
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), async {
            let docker = connect().await.ok()?;
            docker.ping().await.ok()
        })
        .await
        .ok()
        .flatten()
        .is_some()
    })
}

/// Containers (running or not) carrying every `key=value` label given.
pub async fn containers_with_labels(
    docker: &Docker,
    labels: &[(&str, &str)],
) -> Result<Vec<ContainerSummary>> {
    let filter: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([("label".to_owned(), filter)])),
        ..Default::default()
    };
    docker.list_containers(Some(options)).await.context("listing containers")
}

/// The container's name without Docker's leading `/`.
pub fn container_name(c: &ContainerSummary) -> String {
    c.names
        .as_ref()
        .and_then(|n| n.first())
        .map(|n| n.trim_start_matches('/').to_owned())
        .unwrap_or_default()
}

pub fn label<'a>(c: &'a ContainerSummary, key: &str) -> Option<&'a str> {
    c.labels.as_ref().and_then(|l| l.get(key)).map(String::as_str)
}

pub fn is_running(c: &ContainerSummary) -> bool {
    matches!(c.state, Some(ContainerSummaryStateEnum::RUNNING))
}

/// Force-remove a container (and its anonymous volumes); a container already gone is fine.
pub async fn remove_container(docker: &Docker, id: &str) -> Result<()> {
    let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
    match docker.remove_container(id, Some(options)).await {
        Ok(()) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing container {id}")),
    }
}

/// Remove every container labelled with this testbed dir; returns their names.
pub async fn remove_testbed_containers(docker: &Docker, testbed_dir: &Path) -> Result<Vec<String>> {
    let dir = testbed_dir.to_string_lossy();
    let mut removed = Vec::new();
    for c in containers_with_labels(docker, &[(LABEL_TESTBED_DIR, &dir)]).await? {
        if let Some(id) = &c.id {
            remove_container(docker, id).await?;
            removed.push(container_name(&c));
        }
    }
    Ok(removed)
}

/// Remove every image labelled with this testbed dir (what its fake `docker pull` made).
pub async fn remove_testbed_images(docker: &Docker, testbed_dir: &Path) -> Result<()> {
    let filter = format!("{LABEL_TESTBED_DIR}={}", testbed_dir.to_string_lossy());
    let options = bollard::query_parameters::ListImagesOptions {
        filters: Some(HashMap::from([("label".to_owned(), vec![filter])])),
        ..Default::default()
    };
    for image in docker.list_images(Some(options)).await.context("listing images")? {
        let options =
            bollard::query_parameters::RemoveImageOptions { force: true, ..Default::default() };
        match docker.remove_image(&image.id, Some(options), None).await {
            Ok(_)
            | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
            Err(e) => return Err(e).with_context(|| format!("removing image {}", image.id)),
        }
    }
    Ok(())
}
