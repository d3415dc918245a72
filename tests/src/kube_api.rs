//! A small async client for the fake API server, used by the fake tools: the testbed's
//! HTTP client (`crate::http`) over TLS (the cluster CA and admin certificate from the
//! kubeconfig; plain http:// works too), one connection per request, JSON objects as
//! `serde_json::Value`. The base URL comes from the current kubeconfig context.
//!
//! Paths are built from an object's `apiVersion`, `kind`, namespace and name with
//! [`collection_path`] / [`object_path`].

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::apiserver::resources;

/// A Kubernetes `Status` failure answered by the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusError {
    pub code: u16,
    pub reason: String,
    pub message: String,
}

impl std::fmt::Display for StatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.reason, self.code, self.message)
    }
}

impl std::error::Error for StatusError {}

/// Whether an error is the API's 404.
pub fn is_not_found(err: &anyhow::Error) -> bool {
    err.downcast_ref::<StatusError>().is_some_and(|e| e.code == 404)
}

#[derive(Clone)]
pub struct Client {
    /// `http://host:port` or `https://host:port`.
    server: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("server", &self.server()).finish()
    }
}

impl Client {
    /// `http://127.0.0.1:PORT` (a trailing slash is fine).
    pub fn new(server: &str) -> Result<Client> {
        let Some(rest) = server.strip_prefix("http://") else {
            bail!("{server}: an https:// server needs its CA (Client::with_tls)");
        };
        let server = format!("http://{}", rest.trim_end_matches('/'));
        Ok(Client { server, http: crate::http::client(None)? })
    }

    /// `https://HOST:PORT` trusting `ca_pem`, with an optional client certificate and key.
    pub fn with_tls(server: &str, ca_pem: &[u8], client: Option<(&[u8], &[u8])>) -> Result<Client> {
        let Some(rest) = server.strip_prefix("https://") else { return Client::new(server) };
        let config = crate::tls::client_config(ca_pem, client)?;
        let server = format!("https://{}", rest.trim_end_matches('/'));
        Ok(Client { server, http: crate::http::client(Some(config))? })
    }

    /// The server of the current context of `$KUBECONFIG` (first file of the list).
    pub fn from_env() -> Result<Client> {
        Client::for_context(None)
    }

    /// The server of the context a helm command uses, as helm chooses it: `--kube-context`
    /// (`named`), else `$HELM_KUBECONTEXT`, else the kubeconfig's current context
    /// (helm `pkg/cli/environment.go`; helmfile passes its `--kube-context` to helm).
    pub fn for_context(named: Option<&str>) -> Result<Client> {
        let var = std::env::var("KUBECONFIG").context("KUBECONFIG is not set")?;
        let first = var.split(':').next().unwrap_or_default();
        let from_env = std::env::var("HELM_KUBECONTEXT").ok().filter(|c| !c.is_empty());
        Client::from_kubeconfig_context(Path::new(first), named.map(str::to_owned).or(from_env))
    }

    pub fn from_kubeconfig(path: &Path) -> Result<Client> {
        Client::from_kubeconfig_context(path, None)
    }

    /// Context `name` of the kubeconfig at `path`, or its current context.
    pub fn from_kubeconfig_context(path: &Path, name: Option<String>) -> Result<Client> {
        let config = crate::kubeconfig::read(path)?;
        let name = match name {
            Some(name) => name,
            None => config["current-context"].as_str().unwrap_or_default().to_owned(),
        };
        let server =
            crate::kubeconfig::context_server(&config, &name).with_context(|| {
                match name.is_empty() {
                    true => format!("{}: no current context with a cluster server", path.display()),
                    false => format!("{}: context \"{name}\" does not exist", path.display()),
                }
            })?;
        if !server.starts_with("https://") {
            return Client::new(&server);
        }
        let creds = crate::kubeconfig::context_credentials(&config, &name)
            .with_context(|| format!("{}: no certificate-authority-data", path.display()))?;
        let client = creds.client_cert.as_deref().zip(creds.client_key.as_deref());
        Client::with_tls(&server, &creds.ca, client)
    }

    pub fn server(&self) -> String {
        self.server.clone()
    }

    /// One request; `Ok((status, body))` whatever the status.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>)> {
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .with_context(|| format!("{method}: not an HTTP method"))?;
        let answer = self
            .http
            .request(method.clone(), format!("{}{path}", self.server))
            .header("Accept", "application/json")
            .header("User-Agent", "testbed")
            .header("Content-Type", content_type)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| {
                let doing = if e.is_connect() { "connecting to" } else { "asking" };
                anyhow::Error::new(e).context(format!("{doing} the API at {}", self.server))
            })?;
        let status = answer.status().as_u16();
        let body = answer
            .bytes()
            .await
            .with_context(|| format!("{method} {path}: reading the API's answer"))?;
        Ok((status, body.to_vec()))
    }

    async fn json(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let bytes = body.map(serde_json::to_vec).transpose()?.unwrap_or_default();
        let (code, answer) = self.raw(method, path, content_type, &bytes).await?;
        let value: Value = serde_json::from_slice(&answer).with_context(|| {
            format!(
                "{method} {path}: answer {code} is not JSON: {}",
                String::from_utf8_lossy(&answer)
            )
        })?;
        if code >= 400 {
            return Err(StatusError {
                code,
                reason: value["reason"].as_str().unwrap_or("Unknown").to_owned(),
                message: value["message"].as_str().unwrap_or("").to_owned(),
            }
            .into());
        }
        Ok(value)
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.json("GET", path, "application/json", None).await
    }

    /// `None` when the object does not exist.
    pub async fn get_opt(&self, path: &str) -> Result<Option<Value>> {
        match self.get(path).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The items of a collection path, optionally filtered by a label selector.
    pub async fn list(&self, collection: &str, label_selector: Option<&str>) -> Result<Vec<Value>> {
        let path = with_selector(collection, label_selector);
        let list = self.get(&path).await?;
        Ok(list["items"].as_array().cloned().unwrap_or_default())
    }

    pub async fn create(&self, collection: &str, object: &Value) -> Result<Value> {
        self.json("POST", collection, "application/json", Some(object)).await
    }

    /// Server-side apply (an upsert on the fake API).
    pub async fn apply(&self, object_path: &str, object: &Value) -> Result<Value> {
        let path = format!("{object_path}?fieldManager=testbed&force=true");
        self.json("PATCH", &path, "application/apply-patch+yaml", Some(object)).await
    }

    /// Server-side apply of a whole object, its path derived from its own fields.
    pub async fn apply_object(&self, object: &Value) -> Result<Value> {
        self.apply(&path_of(object)?, object).await
    }

    pub async fn replace(&self, object_path: &str, object: &Value) -> Result<Value> {
        self.json("PUT", object_path, "application/json", Some(object)).await
    }

    pub async fn merge_patch(&self, object_path: &str, patch: &Value) -> Result<Value> {
        self.json("PATCH", object_path, "application/merge-patch+json", Some(patch)).await
    }

    /// `Ok(false)` when there was nothing to delete.
    pub async fn delete(&self, object_path: &str) -> Result<bool> {
        match self.json("DELETE", object_path, "application/json", None).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The deleted objects.
    pub async fn delete_collection(
        &self,
        collection: &str,
        label_selector: Option<&str>,
    ) -> Result<Vec<Value>> {
        let path = with_selector(collection, label_selector);
        let list = self.json("DELETE", &path, "application/json", None).await?;
        Ok(list["items"].as_array().cloned().unwrap_or_default())
    }

    /// A pod's log (`pods/log`).
    pub async fn pod_log(&self, namespace: &str, pod: &str) -> Result<String> {
        let path = format!("/api/v1/namespaces/{namespace}/pods/{pod}/log");
        let (code, body) = self.raw("GET", &path, "application/json", &[]).await?;
        let text = String::from_utf8_lossy(&body).into_owned();
        if code >= 400 {
            let status: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            return Err(StatusError {
                code,
                reason: status["reason"].as_str().unwrap_or("Unknown").to_owned(),
                message: status["message"].as_str().unwrap_or(&text).to_owned(),
            }
            .into());
        }
        Ok(text)
    }

    /// Create a namespace unless it exists.
    pub async fn ensure_namespace(&self, name: &str) -> Result<()> {
        let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        match self.create("/api/v1/namespaces", &ns).await {
            Ok(_) => Ok(()),
            Err(e) if e.downcast_ref::<StatusError>().is_some_and(|s| s.code == 409) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Wait until `GET /readyz` of `client`'s server answers 200.
pub async fn wait_ready(client: &Client, timeout: Duration) -> Result<()> {
    let server = client.server();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match client.raw("GET", "/readyz", "text/plain", &[]).await {
            Ok((200, _)) => return Ok(()),
            other if tokio::time::Instant::now() >= deadline => {
                bail!("the API at {server} is not ready after {timeout:?}: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn with_selector(path: &str, label_selector: Option<&str>) -> String {
    match label_selector {
        Some(sel) if !sel.is_empty() => format!("{path}?labelSelector={}", percent_encode(sel)),
        _ => path.to_owned(),
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `/api/v1/namespaces/NS/secrets` or `/apis/batch/v1/jobs` (all namespaces).
pub fn collection_path(api_version: &str, kind: &str, namespace: Option<&str>) -> String {
    let (group, version) = resources::split_api_version(api_version);
    let plural = resources::by_kind(group, kind)
        .map(|r| r.plural.to_owned())
        .unwrap_or_else(|| resources::guess_plural(kind));
    let root = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let namespaced = !resources::cluster_scoped(group, kind);
    match namespace {
        Some(ns) if namespaced => format!("{root}/namespaces/{ns}/{plural}"),
        _ => format!("{root}/{plural}"),
    }
}

pub fn object_path(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> String {
    format!("{}/{name}", collection_path(api_version, kind, namespace))
}

/// The path of an object from its own `apiVersion`, `kind` and metadata.
pub fn path_of(object: &Value) -> Result<String> {
    let (Some(api_version), Some(kind), Some(name)) = (
        object["apiVersion"].as_str(),
        object["kind"].as_str(),
        object["metadata"]["name"].as_str(),
    ) else {
        bail!("an object needs apiVersion, kind and metadata.name: {object}");
    };
    Ok(object_path(api_version, kind, object["metadata"]["namespace"].as_str(), name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_api_layout() {
        assert_eq!(collection_path("v1", "Secret", Some("a")), "/api/v1/namespaces/a/secrets");
        assert_eq!(collection_path("v1", "Secret", None), "/api/v1/secrets");
        assert_eq!(object_path("v1", "Namespace", Some("x"), "a"), "/api/v1/namespaces/a");
        assert_eq!(
            object_path("external-secrets.io/v1beta1", "ExternalSecret", Some("a"), "b"),
            "/apis/external-secrets.io/v1beta1/namespaces/a/externalsecrets/b"
        );
        assert_eq!(
            object_path("example.io/v1", "Widget", Some("a"), "w"),
            "/apis/example.io/v1/namespaces/a/widgets/w"
        );
        assert_eq!(
            collection_path("rbac.authorization.k8s.io/v1", "ClusterRole", Some("a")),
            "/apis/rbac.authorization.k8s.io/v1/clusterroles"
        );
    }

    #[test]
    fn label_selectors_are_percent_encoded() {
        assert_eq!(percent_encode("name=a,owner=helm"), "name%3Da%2Cowner%3Dhelm");
        assert_eq!(
            with_selector("/api/v1/secrets", Some("owner=helm")),
            "/api/v1/secrets?labelSelector=owner%3Dhelm"
        );
    }
}
