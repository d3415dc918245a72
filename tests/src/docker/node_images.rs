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
//!   ones. A download takes the scenario's `pull-ms` (round trips) plus, with
//!   `pull-mbps`, the image's compressed size ([`image_size`]) over the machine's one
//!   link ([`reserve_link`]): downloads share it, so parallel pulls are not faster in
//!   total than serial ones.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::scenario::Scenario;

pub const PULLS_FILE: &str = "pulls.jsonl";
/// Per Pod, how long it waited for its images (`{"pod", "waited_ms"}` lines).
pub const IMAGE_WAITS_FILE: &str = "image_waits.jsonl";

/// The sum of every Pod's image wait recorded so far, in ms, and how many Pods.
pub fn image_waits(testbed_dir: &Path) -> (u64, usize) {
    let lines: Vec<serde_json::Value> =
        crate::calls::read_lines(&testbed_dir.join(IMAGE_WAITS_FILE)).unwrap_or_default();
    (lines.iter().filter_map(|l| l["waited_ms"].as_u64()).sum(), lines.len())
}

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

/// Compressed (download) size of the sample platform's images, linux/amd64, as the
/// registry's manifests list them (Docker Hub tag pages; *from memory*, to be re-read):
/// what a pull moves over the link.
const IMAGE_SIZES: &[(&str, u64)] = &[
    ("docker.io/library/busybox:1.37.0", 2_200_000),
    ("docker.io/hashicorp/vault:1.17.6", 150_000_000),
    ("docker.io/library/postgres:16.4-alpine", 95_000_000),
];

/// An image not in the table: a typical small service image.
pub const DEFAULT_IMAGE_SIZE: u64 = 30_000_000;

/// The compressed size of `image`: its repository's entry in the table, whatever the
/// tag or digest (a test world's own tag of a sample image, `busybox:1.37.0-s2`, is the
/// same image).
pub fn image_size(image: &str) -> u64 {
    let repository = |reference: &str| {
        let name = reference.split('@').next().unwrap_or(reference);
        match name.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => repo.to_owned(),
            _ => name.to_owned(),
        }
    };
    let wanted = repository(&normalize(image));
    IMAGE_SIZES
        .iter()
        .find(|(i, _)| repository(i) == wanted)
        .map_or(DEFAULT_IMAGE_SIZE, |(_, size)| *size)
}

/// The file recording when the machine's link to the upstream registries is next free.
pub const LINK_FILE: &str = "link";

/// Book one download of `image` from upstream on the machine's link, starting no earlier
/// than `now_ms` (unix ms): returns when it completes (unix ms). The link carries one
/// download's bytes at a time in the order asked (a FIFO stand-in for TCP's fair share:
/// the same total, each download's end no later than under fair share for the last);
/// `pull-ms` is added to each as round-trip latency that does not occupy the link. With
/// `pull-mbps` 0 the size does not count. `dir` None: no shared link (unit tests).
pub fn reserve_link(dir: Option<&Path>, s: &Scenario, image: &str, now_ms: u64) -> u64 {
    if s.pull_mbps == 0 {
        return now_ms + s.pull_ms;
    }
    let transfer_ms = image_size(image) * 8 / (s.pull_mbps * 1000);
    let Some(dir) = dir else { return now_ms + transfer_ms + s.pull_ms };
    let book = || -> Result<u64> {
        let path = dir.join(LINK_FILE);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.lock()?;
        let free_at: u64 = std::fs::read_to_string(&path)?.trim().parse().unwrap_or(0);
        let end = free_at.max(now_ms) + transfer_ms;
        std::fs::write(&path, end.to_string())?;
        Ok(end + s.pull_ms)
    };
    book().unwrap_or_else(|e| {
        eprintln!("testbed: link: {e:#}");
        now_ms + transfer_ms + s.pull_ms
    })
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How a node's containerd gets `image` (kubelet or `crictl pull`): through the mirror
/// the cluster's `registries.yaml` (k3d `registries.config`) names for the image's
/// registry when its first endpoint is a pull-through cache (`k3d registry create
/// --proxy-remote-url`, [`pull_from_cache`]) that the node `reaches` (by container name),
/// else from upstream, as containerd goes on to the next endpoint when a mirror does not
/// answer. Returns when the node has it (unix ms) and, for a download straight from
/// upstream, who to record it as once done (`by`).
pub fn begin_pull(
    dir: Option<&Path>,
    cluster_dir: Option<&Path>,
    by: &str,
    reaches: &dyn Fn(&str) -> bool,
    image: &str,
    s: &Scenario,
    now_ms: u64,
) -> (u64, Option<String>) {
    let cache =
        dir.zip(cluster_dir).and_then(|(dir, cdir)| mirror_cache(dir, cdir, image, reaches));
    let Some((dir, cache)) = dir.zip(cache) else {
        return (reserve_link(dir, s, image, now_ms), Some(by.to_owned()));
    };
    (pull_from_cache(dir, &cache, image, s, now_ms), None)
}

/// [`begin_pull`] by a node's containerd, which fetches one image once at a time: a
/// pull of an image the node is already pulling (the kubelet's and `crictl pull`'s)
/// waits for that one (containerd's content ingest is locked by its ref: the second
/// fetch waits, then finds the content present).
pub fn begin_node_pull(
    dir: Option<&Path>,
    store: &Path,
    by: &str,
    image: &str,
    s: &Scenario,
    now_ms: u64,
) -> (u64, Option<String>) {
    let marker = store.join(".pulling").join(entry(Path::new(""), image));
    let running = std::fs::read_to_string(&marker).ok().and_then(|t| t.trim().parse::<u64>().ok());
    if let Some(end) = running.filter(|end| *end > now_ms) {
        return (end, None);
    }
    let cluster_dir = store.ancestors().nth(3);
    let node = store.parent().and_then(Path::file_name).unwrap_or_default().to_string_lossy();
    let reaches = |cache: &str| crate::docker::network::reaches(&node, cache);
    let (end, record) = begin_pull(dir, cluster_dir, by, &reaches, image, s, now_ms);
    let written = marker.parent().map_or(Ok(()), std::fs::create_dir_all);
    if let Err(e) = written.and_then(|()| std::fs::write(&marker, end.to_string())) {
        eprintln!("testbed: node pull of {image}: {e:#}");
    }
    (end, record)
}

/// A client's pull of `image` from the pull-through cache whose store is `cache`, as
/// distribution serves a blob in proxy mode (`registry/proxy/proxyblobstore.go`
/// `ServeBlob`): held, a local copy at 1 Gbit/s; not held, one download from upstream
/// that v3 (`registry:3`) stores while streaming it to the client, while v2.8 (k3d's
/// default `registry:2`) downloads it twice at once, into its storage (`storeLocal`)
/// and to the client (`copyContent`), both ending when the link has carried both;
/// still being stored (`inflight`), one more download streamed to this client. Each
/// download is one pull recorded as `cache/<container>`. Returns when the client has it
/// (unix ms).
pub fn pull_from_cache(dir: &Path, cache: &Path, image: &str, s: &Scenario, now_ms: u64) -> u64 {
    let name = cache.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let download = || {
        let at = reserve_link(Some(dir), s, image, now_ms);
        if let Err(e) = record_pull(dir, &format!("cache/{name}"), image) {
            eprintln!("testbed: cache {name}: {e:#}");
        }
        at
    };
    let held = entry(cache, image);
    let stored_at =
        std::fs::read_to_string(&held).ok().and_then(|at| at.trim().parse::<u64>().ok());
    match stored_at {
        Some(at) if at <= now_ms => now_ms + image_size(image) / 125_000,
        Some(_) => download(),
        None => {
            let registry = std::fs::read_to_string(cache.join(REGISTRY_IMAGE_FILE));
            let registry = registry.as_deref().unwrap_or(DEFAULT_REGISTRY_IMAGE);
            let stored = download();
            let served = if stores_while_serving(registry) { stored } else { download() };
            if let Err(e) = std::fs::write(&held, served.to_string()) {
                eprintln!("testbed: cache {name}: {e:#}");
            }
            served
        }
    }
}

/// The cache directory of the pull-through cache the cluster's first mirror endpoint for
/// `image`'s registry names, if that cache exists and the node `reaches` its container.
fn mirror_cache(
    dir: &Path,
    cluster_dir: &Path,
    image: &str,
    reaches: &dyn Fn(&str) -> bool,
) -> Option<PathBuf> {
    #[derive(Deserialize, Default)]
    struct RegistriesYaml {
        #[serde(default)]
        mirrors: std::collections::BTreeMap<String, Mirror>,
    }
    #[derive(Deserialize, Default)]
    struct Mirror {
        #[serde(default)]
        endpoint: Vec<String>,
    }
    let text = std::fs::read_to_string(cluster_dir.join("registries.yaml")).ok()?;
    let parsed: RegistriesYaml = serde_saphyr::from_str(&text).ok()?;
    let full = normalize(image);
    let host = full.split('/').next()?;
    let first = parsed.mirrors.get(host)?.endpoint.first()?;
    let address = first.strip_prefix("http://")?.trim_end_matches('/');
    let container = address.rsplit_once(':').map_or(address, |(n, _)| n);
    let cache = cache_dir(dir, container);
    (cache.is_dir() && reaches(container)).then_some(cache)
}

/// A cluster's directory (the fake k3d's, removed with the cluster): its
/// `registries.yaml` and its nodes' image stores.
pub fn cluster_dir(testbed_dir: &Path, cluster: &str) -> PathBuf {
    testbed_dir.join("clusters").join(cluster)
}

/// A node's image store.
pub fn node_store(testbed_dir: &Path, cluster: &str, node: &str) -> PathBuf {
    cluster_dir(testbed_dir, cluster).join("nodes").join(node).join("images")
}

/// What a pull-through cache container (`k3d registry create --proxy-remote-url`) holds.
pub fn cache_dir(testbed_dir: &Path, container: &str) -> PathBuf {
    testbed_dir.join("caches").join(container)
}

/// k3d v5.7.5's registry image (`pkg/types/images.go` `DefaultRegistryImageRepo` and
/// `DefaultRegistryImageTag` "2"): distribution v2.8.3.
pub const DEFAULT_REGISTRY_IMAGE: &str = "docker.io/library/registry:2";

/// In a cache's directory: the registry image `--image` named.
pub const REGISTRY_IMAGE_FILE: &str = "image";

/// Whether a cache made from `image` runs distribution v3 or later, whose proxy stores a
/// blob from the download it streams to the client (v2.8 downloads it twice).
pub fn stores_while_serving(image: &str) -> bool {
    let tag = image.rsplit_once(':').map_or("latest", |(_, t)| t);
    tag == "latest"
        || tag.split('.').next().and_then(|m| m.parse::<u32>().ok()).is_some_and(|m| m >= 3)
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
    fn downloads_share_one_link_and_take_their_size() {
        let dir = tempfile::tempdir().unwrap();
        let s = Scenario { pull_mbps: 50, pull_ms: 100, ..Scenario::default() };
        // 95 MB at 50 Mbit/s: 15.2 s; vault's 150 MB after it: 24 s more.
        let pg = reserve_link(Some(dir.path()), &s, "postgres:16.4-alpine", 1000);
        assert_eq!(pg, 1000 + 15_200 + 100);
        let vault = reserve_link(Some(dir.path()), &s, "hashicorp/vault:1.17.6", 1000);
        assert_eq!(vault, 1000 + 15_200 + 24_000 + 100);
        let pinned = format!("busybox@sha256:{}", "a".repeat(64));
        assert_eq!(image_size(&pinned), 2_200_000);
        assert_eq!(image_size("busybox:1.37.0-s2"), 2_200_000, "a world's own tag");
        assert_eq!(image_size("localhost:5000/busybox"), DEFAULT_IMAGE_SIZE);
        assert_eq!(image_size("ghcr.io/x/y:1"), DEFAULT_IMAGE_SIZE);
        let unlimited = Scenario { pull_ms: 7, ..Scenario::default() };
        assert_eq!(reserve_link(Some(dir.path()), &unlimited, "busybox:1.37.0", 5), 12);
    }

    #[test]
    fn a_mirror_cache_downloads_twice_on_a_miss_and_again_while_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let cdir = dir.path().join("clusters/c");
        std::fs::create_dir_all(&cdir).unwrap();
        std::fs::write(
            cdir.join("registries.yaml"),
            "mirrors:\n  docker.io:\n    endpoint: [http://k3d-cache:5000, https://registry-1.docker.io]\n",
        )
        .unwrap();
        let s = Scenario { pull_mbps: 50, ..Scenario::default() };
        let pull = |by, reaches: &dyn Fn(&str) -> bool, image, now| {
            begin_pull(Some(dir.path()), Some(&cdir), by, reaches, image, &s, now)
        };
        let reached = |_: &str| true;
        let begin_pull = |by, image, now| pull(by, &reached, image, now);
        // No cache container yet: straight from upstream, recorded by the caller.
        let (_, by) = begin_pull("kubelet/n", "busybox:1.37.0", 0);
        assert_eq!(by.as_deref(), Some("kubelet/n"));
        std::fs::create_dir_all(cache_dir(dir.path(), "k3d-cache")).unwrap();
        // A cache the node does not reach (not on its network, stopped): upstream too.
        let (_, by) = pull("kubelet/n", &|_: &str| false, "busybox:1.37.0", 0);
        assert_eq!(by.as_deref(), Some("kubelet/n"));
        std::fs::remove_file(dir.path().join(LINK_FILE)).unwrap();
        // registry:2 (no image file: k3d's default). 95 MB at 50 Mbit/s is 15.2 s: once
        // into the cache's storage, once to the client, on one link.
        let (first, by) = begin_pull("kubelet/n", "postgres:16.4-alpine", 0);
        assert_eq!((first, by), (30_400, None));
        let (again, _) = begin_pull("kubelet/m", "postgres:16.4-alpine", 0);
        assert_eq!(again, 45_600, "asked while the cache stores it: one more download");
        let later = begin_pull("k", "postgres:16.4-alpine", 30_400);
        assert_eq!(later.0, 30_400 + 95_000_000 / 125_000, "stored: a local copy");
        let pulls = pulls(dir.path()).unwrap();
        assert_eq!(pulls.len(), 3);
        assert!(pulls.iter().all(|p| p.by == "cache/k3d-cache"), "{pulls:?}");
        // distribution v3 stores what it streams: one download.
        let v3 = cache_dir(dir.path(), "k3d-v3");
        std::fs::create_dir_all(&v3).unwrap();
        std::fs::write(v3.join(REGISTRY_IMAGE_FILE), "docker.io/library/registry:3.0.0").unwrap();
        std::fs::remove_file(dir.path().join(LINK_FILE)).unwrap();
        assert_eq!(pull_from_cache(dir.path(), &v3, "postgres:16.4-alpine", &s, 0), 15_200);
        assert!(!stores_while_serving("registry:2") && stores_while_serving("registry:3.0.0"));
    }

    #[test]
    fn a_node_pulls_an_image_once_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = pod_node_store(dir.path(), "c");
        let s = Scenario { pull_mbps: 50, ..Scenario::default() };
        let (first, by) =
            begin_node_pull(Some(dir.path()), &store, "kubelet/n", "busybox:1.37.0", &s, 0);
        assert_eq!((first, by.as_deref()), (352, Some("kubelet/n")));
        let (second, by) =
            begin_node_pull(Some(dir.path()), &store, "crictl/n", "busybox:1.37.0", &s, 100);
        assert_eq!((second, by), (352, None), "the second pull waits for the first");
        let (other, _) = begin_node_pull(
            Some(dir.path()),
            &node_store(dir.path(), "c", "k3d-c-agent-0"),
            "kubelet/a",
            "busybox:1.37.0",
            &s,
            100,
        );
        assert_eq!(other, 704, "another node's containerd downloads it again");
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
