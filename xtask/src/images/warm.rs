//! Warming the image caches while k3d creates the cluster: as soon as the caches run,
//! the layers are rendered and each image a cache mirrors is pulled through the cache's
//! port published on the host (`docker pull 127.0.0.1:<port>/<repository>:<tag>`), one
//! at a time in the order the layers first need them, so the earliest layers' images
//! have the shared link to themselves. A pull-through cache fetches a manifest and its
//! blobs from upstream when a client asks for them, so once an image is warmed the
//! nodes' pulls are local copies. The host's copy is removed again. A failure is a
//! warning naming the image; the nodes still pull it through the cache.

use std::collections::HashSet;
use std::time::Duration;

use bollard::Docker;
use futures::StreamExt;
use tokio::sync::{mpsc, watch};

use super::LayerImages;
use crate::cluster::image_cache::ImageCache;
use crate::config::Context;
use crate::exec::{self, Cmd};
use crate::platform::helmfile::Layer;
use crate::session::Session;

const TAG: &str = "images";

/// What the warming task has done so far.
#[derive(Debug, Clone, Default)]
struct WarmState {
    /// Every layer's images, once all are rendered.
    rendered: Option<Vec<LayerImages>>,
    /// Images whose warming ended (in the cache, failed, or not behind a cache).
    warmed: HashSet<String>,
    /// One per image that could not be warmed.
    warnings: Vec<String>,
    /// Nothing more will happen.
    done: bool,
}

/// The warming task, running beside the cluster stage and then the layers.
#[derive(Debug, Clone)]
pub struct Warming {
    state: watch::Receiver<WarmState>,
}

impl Warming {
    /// The layers' images, once rendered (`None` if the task ended without them).
    pub async fn rendered(&mut self) -> Option<Vec<LayerImages>> {
        let state = self.state.wait_for(|s| s.rendered.is_some() || s.done).await.ok()?;
        state.rendered.clone()
    }

    /// Wait until `image`'s warming has ended (or the task has): a node asking the cache
    /// for a blob the cache is still downloading makes it download the blob once more
    /// (distribution's proxy serves a blob in flight from upstream again).
    pub async fn warmed(&mut self, image: &str) {
        let _ = self.state.wait_for(|s| s.done || s.warmed.contains(image)).await;
    }

    /// The images of `layer` whose warming has not ended yet (none once the task ended
    /// or when the layers are not rendered yet: then nothing is known to wait for).
    pub fn pending(&self, layer: &str) -> Vec<String> {
        let state = self.state.borrow();
        let Some(rendered) = state.rendered.as_ref().filter(|_| !state.done) else {
            return Vec::new();
        };
        let images = rendered.iter().filter(|l| l.layer == layer).flat_map(|l| &l.images);
        images.filter(|i| !state.warmed.contains(*i)).cloned().collect()
    }

    /// Wait until the warming of every image of `layer` has ended.
    pub async fn layer_warmed(&mut self, layer: &str) {
        let Some(rendered) = self.rendered().await else { return };
        let images = rendered.iter().filter(|l| l.layer == layer).flat_map(|l| l.images.clone());
        for image in images.collect::<Vec<_>>() {
            self.warmed(&image).await;
        }
    }

    /// The warnings of images that could not be warmed, once the task ended.
    pub async fn warnings(&mut self) -> Vec<String> {
        match self.state.wait_for(|s| s.done).await {
            Ok(state) => state.warnings.clone(),
            Err(_) => Vec::new(),
        }
    }
}

/// Start rendering `layers` and warming `caches` with their images, in a task of its
/// own (it outlives the cluster stage).
pub fn start(
    ctx: &Context,
    docker: Docker,
    layers: Vec<Layer>,
    caches: Vec<ImageCache>,
) -> Warming {
    let (tx, rx) = watch::channel(WarmState::default());
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let (images_tx, images_rx) = mpsc::unbounded_channel();
        let render = async {
            let parallel = ctx.settings.images.parallel.max(1) as usize;
            let mut seen = HashSet::new();
            let renders: Vec<_> =
                layers.iter().map(|layer| super::fetch::render_layer(&ctx, layer)).collect();
            let mut layers = futures::stream::iter(renders).buffered(parallel);
            let mut rendered: Vec<LayerImages> = Vec::new();
            while let Some(layer) = layers.next().await {
                for image in layer.images.iter().filter(|i| seen.insert((*i).clone())) {
                    let _ = images_tx.send(image.clone());
                }
                rendered.push(layer);
            }
            drop(images_tx);
            tx.send_modify(|s| s.rendered = Some(rendered));
        };
        let timeout = ctx.settings.images.fetch_timeout();
        let warm = warm_each(&ctx.session, timeout, &docker, &caches, images_rx, &tx);
        tokio::join!(render, warm);
        tx.send_modify(|s| s.done = true);
    });
    Warming { state: rx }
}

/// Warm each image as it arrives, one at a time.
async fn warm_each(
    session: &Session,
    timeout: Duration,
    docker: &Docker,
    caches: &[ImageCache],
    mut images: mpsc::UnboundedReceiver<String>,
    tx: &watch::Sender<WarmState>,
) {
    while let Some(image) = images.recv().await {
        let warning = match cache_for(caches, &image) {
            None => None,
            Some(cache) => warm_one(session, timeout, docker, cache, &image).await.err(),
        };
        tx.send_modify(|s| {
            s.warmed.insert(image);
            s.warnings.extend(warning);
        });
    }
}

/// The cache mirroring `image`'s registry.
fn cache_for<'a>(caches: &'a [ImageCache], image: &str) -> Option<&'a ImageCache> {
    let (registry, _) = split_registry(image);
    caches.iter().find(|c| c.mirrors.contains(&registry))
}

/// `busybox:1.37.0` -> (`docker.io`, `library/busybox:1.37.0`), as docker and containerd
/// read a reference (distribution `reference.ParseNormalizedNamed`).
pub fn split_registry(image: &str) -> (String, String) {
    let (domain, rest) = match image.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (first, rest),
        _ => ("docker.io", image),
    };
    let domain = if domain == "index.docker.io" { "docker.io" } else { domain };
    if domain == "docker.io" && !rest.contains('/') {
        return (domain.to_owned(), format!("library/{rest}"));
    }
    (domain.to_owned(), rest.to_owned())
}

/// Pull `image` through `cache`'s published port, then drop the host's copy.
async fn warm_one(
    session: &Session,
    timeout: Duration,
    docker: &Docker,
    cache: &ImageCache,
    image: &str,
) -> Result<(), String> {
    let why = |e: String| {
        format!(
            "image {image} was not warmed in cache {}: {e}; the nodes pull it through the cache",
            cache.container
        )
    };
    let port = published_port(docker, cache).await.map_err(why)?;
    let (_, path) = split_registry(image);
    let local = format!("127.0.0.1:{port}/{path}");
    let pull = Cmd::new(TAG, "docker", timeout).args(["pull", "--quiet", &local]);
    match exec::run(session, &pull).await {
        Ok(out) if out.success() => {}
        Ok(out) => return Err(why(super::fetch::reason(&out.stderr))),
        Err(e) => return Err(why(e.to_string())),
    }
    session.line(TAG, &format!("{image}: in cache {}", cache.container));
    // The host needs no copy; failing to remove it changes nothing for the cluster.
    let remove = Cmd::new(TAG, "docker", timeout).args(["image", "rm", &local]);
    let _ = exec::run(session, &remove).await;
    Ok(())
}

/// The host port `k3d registry create` published the cache's registry port on.
async fn published_port(docker: &Docker, cache: &ImageCache) -> Result<String, String> {
    let found =
        docker.inspect_container(&cache.container, None).await.map_err(|e| e.to_string())?;
    let key = format!("{}/tcp", cache.port);
    found
        .network_settings
        .and_then(|n| n.ports)
        .and_then(|ports| ports.get(&key).cloned().flatten())
        .and_then(|bindings| bindings.into_iter().find_map(|b| b.host_port))
        .filter(|p| !p.is_empty())
        .ok_or_else(|| format!("port {key} is not published on the host"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_registry_and_path_like_docker() {
        let d = |s: &str| ("docker.io".to_owned(), s.to_owned());
        assert_eq!(split_registry("busybox:1.37.0"), d("library/busybox:1.37.0"));
        assert_eq!(split_registry("hashicorp/vault:1.17.6"), d("hashicorp/vault:1.17.6"));
        let pinned = format!("busybox@sha256:{}", "a".repeat(64));
        assert_eq!(split_registry(&pinned), d(&format!("library/{pinned}")));
        assert_eq!(split_registry("docker.io/library/postgres:16"), d("library/postgres:16"));
        assert_eq!(split_registry("ghcr.io/a/b:1"), ("ghcr.io".into(), "a/b:1".into()));
        assert_eq!(split_registry("localhost:5000/x"), ("localhost:5000".into(), "x".into()));
        let cache = ImageCache {
            container: "k3d-c".into(),
            port: 5000,
            mirrors: vec!["docker.io".into()],
            upstream: "https://registry-1.docker.io".into(),
        };
        assert!(cache_for(std::slice::from_ref(&cache), "busybox:1").is_some());
        assert!(cache_for(&[cache], "ghcr.io/a/b:1").is_none());
    }
}
