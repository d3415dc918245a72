//! Pull-through image caches kept outside the cluster's lifecycle. The k3d config (data
//! the user owns) names them: each `registries.use` entry `NAME:PORT` that
//! `registries.config` (k3s's `registries.yaml`) lists first among a mirror's endpoints
//! as `http://NAME:PORT` is a cache of that mirror's registries, and the mirror's next
//! `https://` endpoint is the upstream it proxies:
//!
//! ```yaml
//! registries:
//!   use: [k3d-ameide-cache:5000]
//!   config: |
//!     mirrors:
//!       docker.io:
//!         endpoint: [http://k3d-ameide-cache:5000, https://registry-1.docker.io]
//! ```
//!
//! The bootstrap creates a missing cache with `k3d registry create` (`--image`
//! [`CACHE_IMAGE`], `--proxy-remote-url` the upstream, its storage the Docker volume
//! `<NAME>-data`) before k3d needs it, and starts a stopped one. `k3d cluster delete` only disconnects such a registry from the
//! cluster's network (k3d v5.7.5 `pkg/client/cluster.go` `ClusterDelete`: a registry
//! is not a node of the cluster unless the cluster created it), so what it holds stays.
//!
//! The nodes reach a cache by name on the cluster's network, which k3d joins it to only
//! at `k3d cluster create` (`ClusterRun` → `RegistryConnectNetworks`); `k3d registry
//! create` puts it on `bridge` alone (`--default-network`). A cache (re)made while the
//! cluster exists is therefore connected here ([`to_connect`], [`connect`]): unreached,
//! containerd would go on to the next endpoint and pull from upstream without a word.

use std::collections::BTreeMap;
use std::fmt;

use bollard::Docker;
use serde::{Deserialize, Serialize};

use crate::error::{Context as _, Result, bad_input, failed};
use crate::exec::{self, Cmd};
use crate::platform::k3d::K3dConfig;
use crate::session::Session;

/// The registry a cache runs: distribution v3, whose proxy stores a blob from the one
/// download it streams to the first client. k3d's default, `registry:2` (distribution
/// v2.8.3), downloads a blob it does not hold twice, once into its storage and once to
/// the client (`registry/proxy/proxyblobstore.go` `ServeBlob`), doubling every cold pull.
pub const CACHE_IMAGE: &str = "docker.io/library/registry:3.0.0";

/// One cache the k3d config names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageCache {
    /// Container name (`registries.use`): k3d's `registry create NAME` names it `k3d-NAME`.
    pub container: String,
    /// Its port inside the cluster's network.
    pub port: u16,
    /// The registries it mirrors (`docker.io`, ...).
    pub mirrors: Vec<String>,
    /// What it proxies (`https://registry-1.docker.io`).
    pub upstream: String,
}

impl ImageCache {
    /// The Docker volume holding what it cached.
    pub fn volume(&self) -> String {
        format!("{}-data", self.container)
    }
}

#[derive(Debug, Default, Deserialize)]
struct RegistriesYaml {
    #[serde(default)]
    mirrors: BTreeMap<String, Mirror>,
}

#[derive(Debug, Default, Deserialize)]
struct Mirror {
    #[serde(default)]
    endpoint: Vec<String>,
}

/// The caches `config` names; bad input (naming the file) when `registries.config` is
/// not YAML, or a cache's mirror has no upstream to proxy.
pub fn caches(config: &K3dConfig) -> Result<Vec<ImageCache>> {
    let registries = &config.spec.registries;
    let Some(text) = registries.config.as_deref() else { return Ok(Vec::new()) };
    let file = config.file.display();
    let parsed: RegistriesYaml = serde_saphyr::from_str(text).map_err(|e| {
        bad_input(format!("{file}: `registries.config` is not a registries.yaml: {e}"))
    })?;
    let mut out: Vec<ImageCache> = Vec::new();
    for (registry, mirror) in &parsed.mirrors {
        let Some(first) = mirror.endpoint.first() else { continue };
        let Some(address) = first.strip_prefix("http://").map(|a| a.trim_end_matches('/')) else {
            continue;
        };
        if !registries.use_.iter().any(|u| u == address) {
            continue;
        }
        let (container, port) = address.rsplit_once(':').unwrap_or((address, "5000"));
        let port: u16 = port.parse().map_err(|_| {
            bad_input(format!("{file}: registries.use `{address}`: expected NAME:PORT"))
        })?;
        let Some(upstream) = mirror.endpoint[1..].iter().find(|e| e.starts_with("https://")) else {
            return Err(bad_input(format!(
                "{file}: registries.config mirror `{registry}`: after the cache {first}, expected the https:// endpoint of the registry it proxies (e.g. https://registry-1.docker.io)"
            )));
        };
        match out.iter_mut().find(|c| c.container == container) {
            Some(cache) => cache.mirrors.push(registry.clone()),
            None => out.push(ImageCache {
                container: container.to_owned(),
                port,
                mirrors: vec![registry.clone()],
                upstream: upstream.clone(),
            }),
        }
    }
    Ok(out)
}

/// The warning for a cache made from k3d's default `registry:2` (what the bootstrap
/// made before [`CACHE_IMAGE`]): a container keeps its image, so the user removes it
/// once. With the cluster down first: `k3d registry create` joins only the `bridge`
/// network (its `--default-network`); `k3d cluster create` connects the registries in
/// `registries.use` to the cluster's network, so the nodes reach a cache made before it.
pub fn outdated_image_warning(cache: &ImageCache, image: &str) -> Option<String> {
    let (repository, tag) = match image.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, tag),
        _ => (image, "latest"),
    };
    let repository = repository.strip_prefix("docker.io/").unwrap_or(repository);
    let repository = repository.strip_prefix("library/").unwrap_or(repository);
    if repository != "registry" || !(tag == "2" || tag.starts_with("2.")) {
        return None;
    }
    let container = &cache.container;
    Some(format!(
        "image cache {container} runs {image} (distribution v2), whose proxy downloads every blob it does not hold twice; to replace it: `cargo xtask down`, `docker rm -f {container}` (its volume {} keeps what it holds), then `cargo xtask bootstrap` makes it anew from {CACHE_IMAGE} and k3d connects it to the new cluster's network",
        cache.volume()
    ))
}

/// Create each cache that is missing and start each that is stopped; a warning for
/// each that runs an outdated registry ([`outdated_image_warning`]).
pub async fn ensure(
    session: &Session,
    docker: &Docker,
    caches: &[ImageCache],
    timeout: std::time::Duration,
) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    for cache in caches {
        let state = match docker.inspect_container(&cache.container, None).await {
            Ok(found) => {
                let image = found.config.and_then(|c| c.image).unwrap_or_default();
                warnings.extend(outdated_image_warning(cache, &image));
                Some(found.state.and_then(|s| s.running).unwrap_or(false))
            }
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => None,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("inspecting image cache {}", cache.container));
            }
        };
        match state {
            Some(true) => {}
            Some(false) => {
                session.progress("images", &format!("starting image cache {}", cache.container));
                docker
                    .start_container(&cache.container, None)
                    .await
                    .with_context(|| format!("starting image cache {}", cache.container))?;
            }
            None => {
                let Some(name) = cache.container.strip_prefix("k3d-") else {
                    return Err(bad_input(format!(
                        "image cache `{}`: `k3d registry create NAME` names its container k3d-NAME; name it k3d-<something> in registries.use and registries.config",
                        cache.container
                    )));
                };
                let volume = format!("{}:/var/lib/registry", cache.volume());
                let cmd = Cmd::new("images", "k3d", timeout).args([
                    "registry",
                    "create",
                    name,
                    "--image",
                    CACHE_IMAGE,
                    "--proxy-remote-url",
                    &cache.upstream,
                    "--volume",
                    &volume,
                    "--no-help",
                ]);
                exec::run_ok(session, &cmd).await.map(drop).with_context(|| {
                    format!(
                        "creating image cache {} (a pull-through cache of {})",
                        cache.container, cache.upstream
                    )
                })?;
            }
        }
    }
    Ok(warnings)
}

/// An image cache the cluster's nodes cannot reach: `docker network connect NETWORK CACHE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Connect {
    /// The cache's container.
    pub cache: String,
    /// The cluster's network (`k3d-<cluster>`).
    pub network: String,
    /// Why it is not on it.
    pub reason: String,
}

impl fmt::Display for Connect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Connect { cache, network, reason } = self;
        write!(f, "connect image cache {cache} to network {network} ({reason})")
    }
}

/// The caches (containers named in `registries.use`) that a cluster which is not
/// (re)created by this run leaves unreached: missing now (the run makes it, on `bridge`
/// only), or not on `network`. `seen`: each existing cache's networks.
pub fn to_connect(
    caches: &[String],
    network: &str,
    seen: &BTreeMap<String, Vec<String>>,
) -> Vec<Connect> {
    let connect = |cache: &String, reason: String| Connect {
        cache: cache.clone(),
        network: network.to_owned(),
        reason,
    };
    caches
        .iter()
        .filter_map(|cache| match seen.get(cache) {
            None => Some(connect(
                cache,
                "made by this run: `k3d registry create` joins only `bridge`".into(),
            )),
            Some(on) if !on.iter().any(|n| n == network) => {
                let on = if on.is_empty() { "no network".to_owned() } else { on.join(", ") };
                Some(connect(cache, format!("on {on}, not the cluster's network")))
            }
            Some(_) => None,
        })
        .collect()
}

/// `docker network connect` the cache, unless it is on the network by now (nothing to
/// do); whether it connected. A failure says what the nodes do meanwhile and the command.
pub async fn connect(
    session: &Session,
    docker: &Docker,
    connect: &Connect,
    timeout: std::time::Duration,
) -> Result<bool> {
    let Connect { cache, network, .. } = connect;
    let found = docker
        .inspect_container(cache, None)
        .await
        .with_context(|| format!("inspecting image cache {cache}"))?;
    let on = found.network_settings.and_then(|n| n.networks).unwrap_or_default();
    if on.contains_key(network) {
        session.line(super::TAG, &format!("image cache {cache} is on network {network}"));
        return Ok(false);
    }
    let cmd = Cmd::new(super::TAG, "docker", timeout).args(["network", "connect", network, cache]);
    match exec::run_ok(session, &cmd).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind().is_interrupted() => Err(e),
        Err(e) => Err(failed(format!(
            "connecting image cache {cache} to the cluster's network {network} failed: {e:#}; until it is connected the nodes pull past it, from upstream"
        ))
        .with_remediation(format!("run `{}`, then `cargo xtask bootstrap` again", cmd.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "apiVersion: k3d.io/v1alpha5\nkind: Simple\nregistries:\n  use:\n    - k3d-c-cache:5000\n  config: |\n    mirrors:\n      docker.io:\n        endpoint:\n          - http://k3d-c-cache:5000\n          - https://registry-1.docker.io\n      ghcr.io:\n        endpoint: [https://mirror.example]\n";

    #[test]
    fn a_used_registry_first_among_a_mirrors_endpoints_is_a_cache_of_the_next() {
        let config = K3dConfig::parse(std::path::Path::new("k3d.yaml"), CONFIG).unwrap();
        let found = caches(&config).unwrap();
        assert_eq!(
            found,
            [ImageCache {
                container: "k3d-c-cache".into(),
                port: 5000,
                mirrors: vec!["docker.io".into()],
                upstream: "https://registry-1.docker.io".into(),
            }]
        );
        assert_eq!(found[0].volume(), "k3d-c-cache-data");
        let no_upstream = CONFIG.replace("          - https://registry-1.docker.io\n", "");
        let config = K3dConfig::parse(std::path::Path::new("k3d.yaml"), &no_upstream).unwrap();
        let err = caches(&config).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::BadInput);
        assert!(
            err.to_string().contains("k3d.yaml: registries.config mirror `docker.io`"),
            "{err}"
        );
    }

    #[test]
    fn a_cache_off_the_clusters_network_is_connected_and_one_on_it_is_left() {
        let caches = ["k3d-a".to_owned(), "k3d-b".to_owned(), "k3d-c".to_owned()];
        let seen = BTreeMap::from([
            ("k3d-b".to_owned(), vec!["bridge".to_owned()]),
            ("k3d-c".to_owned(), vec!["bridge".to_owned(), "k3d-x".to_owned()]),
        ]);
        let planned = to_connect(&caches, "k3d-x", &seen);
        let named: Vec<(&str, &str)> =
            planned.iter().map(|c| (c.cache.as_str(), c.network.as_str())).collect();
        assert_eq!(named, [("k3d-a", "k3d-x"), ("k3d-b", "k3d-x")], "k3d-c is on it already");
        assert_eq!(
            planned[0].to_string(),
            "connect image cache k3d-a to network k3d-x (made by this run: `k3d registry create` joins only `bridge`)"
        );
        assert_eq!(planned[1].reason, "on bridge, not the cluster's network");
        assert!(to_connect(&[], "k3d-x", &seen).is_empty());
    }

    #[test]
    fn a_cache_running_registry_2_is_named_with_how_to_remake_it() {
        let config = K3dConfig::parse(std::path::Path::new("k3d.yaml"), CONFIG).unwrap();
        let cache = &caches(&config).unwrap()[0];
        let warning = outdated_image_warning(cache, "docker.io/library/registry:2").unwrap();
        assert_eq!(
            warning,
            "image cache k3d-c-cache runs docker.io/library/registry:2 (distribution v2), whose proxy downloads every blob it does not hold twice; to replace it: `cargo xtask down`, `docker rm -f k3d-c-cache` (its volume k3d-c-cache-data keeps what it holds), then `cargo xtask bootstrap` makes it anew from docker.io/library/registry:3.0.0 and k3d connects it to the new cluster's network"
        );
        for outdated in ["registry:2", "registry:2.8.3", "library/registry:2.8"] {
            assert!(outdated_image_warning(cache, outdated).is_some(), "{outdated}");
        }
        for current in [
            CACHE_IMAGE,
            "registry:3",
            "registry",
            "ghcr.io/x/registry:2",
            "my:5000/registry:3.0.1",
            "",
        ] {
            assert_eq!(outdated_image_warning(cache, current), None, "{current}");
        }
    }
}
