//! Getting chart archives: HTTP(S) Helm repositories with our HTTP client (proxies
//! from the environment, bounded retries), OCI registries through the user's
//! `helm pull`.

use std::time::Duration;

use super::index::{RepoIndex, Resolved, resolve_url};
use crate::error::{Context, Error, ErrorKind, Result, bad_input, failed, missing};
use crate::exec::{Cmd, run_ok};
use crate::session::Session;

/// One HTTP request (connect, headers and body) may take this long.
const HTTP_TIMEOUT: Duration = Duration::from_secs(120);
/// `helm pull` / `helm show` may take this long.
const HELM_TIMEOUT: Duration = Duration::from_secs(300);
const MAX_REDIRECTS: usize = 5;

/// `sha256:<hex>` of some bytes, the lock's digest format.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", crate::digest::sha256_hex(bytes))
}

/// True for `oci://` repositories.
pub fn is_oci(repository: &str) -> bool {
    repository.starts_with("oci://")
}

/// Registries on the loopback interface are spoken to over plain HTTP (`--plain-http`):
/// local registries (k3d's, a test's) have no TLS, every other host must.
pub fn plain_http(repository: &str) -> bool {
    let rest = repository.split_once("://").map_or(repository, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = if authority.starts_with('[') {
        authority.split(']').next().map_or(authority, |h| &authority[..h.len() + 1])
    } else {
        authority.rsplit_once(':').map_or(authority, |(host, _)| host)
    };
    host == "localhost"
        || host.ends_with(".localhost")
        || host == "[::1]"
        || host.starts_with("127.")
}

/// A downloaded archive, not yet written anywhere.
pub struct Fetched {
    pub version: String,
    pub bytes: Vec<u8>,
    pub digest: String,
    /// Where it came from, for messages.
    pub source: String,
}

/// Fetches archives; one HTTP client (and its connection pool) for the whole run.
pub struct Fetcher {
    client: crate::http::Client,
    session: Session,
}

impl Fetcher {
    pub fn new(session: &Session) -> Result<Fetcher> {
        let client = crate::http::Client::new()?.follow_redirects(MAX_REDIRECTS);
        Ok(Fetcher { client, session: session.clone() })
    }

    /// The version `version` (or the newest stable one) of chart `name` from `repository`.
    pub async fn fetch(
        &self,
        repository: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<Fetched> {
        if is_oci(repository) {
            return self.fetch_oci(repository, name, version).await;
        }
        let resolved = self.resolve(repository, name, version).await?;
        let bytes = self.get(&resolved.url).await?;
        let digest = digest_of(&bytes);
        let promised = resolved.index_digest.as_deref().unwrap_or_default();
        if !promised.is_empty() && !digest.ends_with(promised) {
            return Err(failed(format!(
                "chart `{name}` {}: {} has digest {digest} but the repository's index.yaml says sha256:{promised}",
                resolved.version, resolved.url
            )));
        }
        Ok(Fetched { version: resolved.version, bytes, digest, source: resolved.url })
    }

    async fn resolve(
        &self,
        repository: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<Resolved> {
        let index_url = resolve_url(repository, "index.yaml")?;
        let bytes = self.get(&index_url).await?;
        let text = String::from_utf8(bytes)
            .map_err(|_| bad_input(format!("{index_url}: index.yaml is not UTF-8 text")))?;
        RepoIndex::parse(repository, &text)?.resolve(repository, name, version)
    }

    /// GET a URL, following a few redirects. Any failure to reach the server or a
    /// non-2xx answer is a missing prerequisite: the repository is unreachable.
    async fn get(&self, url: &str) -> Result<Vec<u8>> {
        self.session.line("vendor", &format!("GET {url}"));
        let request = self.client.get(url, &[], HTTP_TIMEOUT);
        let response = self.session.cancel.unless_interrupted(request).await?;
        match response.and_then(crate::http::Response::success) {
            Ok(response) => {
                if response.url != url {
                    let text = format!("GET {url}: redirected to {}", response.url);
                    self.session.line("vendor", &text);
                }
                Ok(response.body)
            }
            Err(e) if e.kind() == ErrorKind::Missing => {
                Err(missing(format!("repository unreachable: {e}")))
            }
            Err(e) => Err(e),
        }
    }

    async fn fetch_oci(
        &self,
        repository: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<Fetched> {
        let reference = format!("{}/{name}", repository.trim_end_matches('/'));
        let version = match version {
            Some(v) => v.to_owned(),
            None => self.oci_latest(&reference).await?,
        };
        let dest = tempfile::tempdir().context("creating a temp folder for `helm pull`")?;
        let mut cmd = Cmd::new("vendor", "helm", HELM_TIMEOUT)
            .args(["pull", reference.as_str(), "--version", version.as_str(), "--destination"])
            .arg(dest.path().to_string_lossy());
        if plain_http(repository) {
            cmd = cmd.arg("--plain-http");
        }
        run_ok(&self.session, &cmd).await.map_err(|e| {
            unless_interrupted(e, |e| {
                missing(format!("cannot pull chart `{name}` {version} from {repository}: {e}"))
            })
        })?;
        let archive = std::fs::read_dir(dest.path())?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .find(|path| path.extension().is_some_and(|ext| ext == "tgz"))
            .ok_or_else(|| failed(format!("`{}` wrote no .tgz archive", cmd.display())))?;
        let bytes = std::fs::read(&archive)?;
        Ok(Fetched { digest: digest_of(&bytes), version, bytes, source: reference })
    }

    /// The newest version an OCI chart has, from `helm show chart` (its Chart.yaml).
    async fn oci_latest(&self, reference: &str) -> Result<String> {
        #[derive(serde::Deserialize)]
        struct ChartYaml {
            version: String,
        }
        let mut cmd = Cmd::new("vendor", "helm", HELM_TIMEOUT).args(["show", "chart", reference]);
        if plain_http(reference) {
            cmd = cmd.arg("--plain-http");
        }
        let output = run_ok(&self.session, &cmd).await.map_err(|e| {
            unless_interrupted(e, |e| {
                missing(format!("cannot read the newest version of {reference}: {e}"))
            })
        })?;
        let chart: ChartYaml =
            crate::platform::parse_yaml(std::path::Path::new(reference), &output.stdout)?;
        Ok(chart.version)
    }
}

/// `err` reworded by `reword`, unless it is an interruption (which must stay one).
fn unless_interrupted(err: Error, reword: impl FnOnce(Error) -> Error) -> Error {
    if err.kind().is_interrupted() { err } else { reword(err) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_sha256_hex() {
        assert_eq!(
            digest_of(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn plain_http_only_for_loopback_registries() {
        assert!(plain_http("oci://localhost:5000/charts"));
        assert!(plain_http("oci://127.0.0.1:41234/charts"));
        assert!(plain_http("oci://k3d-dev-reg.localhost:5000/charts"));
        assert!(plain_http("oci://[::1]:5000/charts"));
        assert!(!plain_http("oci://ghcr.io/org/charts"));
        assert!(!plain_http("oci://registry.example.com:5000/localhost"));
    }
}
