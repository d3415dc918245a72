//! Kubernetes clients for a named kubeconfig context (always named: which one is
//! decided once, by `config::default_kube_context` or `--context`), and the API's
//! `/readyz` with an answer a user can act on.

use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::error::{Error, Result, failed, missing};

/// Field manager of every server-side apply we make.
pub const FIELD_MANAGER: &str = "cargo-xtask-bootstrap";

/// Longest wait for one API request (we never watch, so no request should take long).
const API_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest wait for one `/readyz` answer: a hung API is asked again, not waited on.
const READYZ_TIMEOUT: Duration = Duration::from_secs(10);

/// The client configuration of `context`. A missing kubeconfig or context is a missing
/// prerequisite.
pub async fn config(context: &str) -> Result<kube::Config> {
    let known = Kubeconfig::read().map(|c| c.contexts.iter().any(|c| c.name == context));
    if known.is_ok_and(|known| !known) {
        return Err(missing(format!(
            "kube context `{context}` is not in the kubeconfig ({})",
            std::env::var("KUBECONFIG").unwrap_or_else(|_| "~/.kube/config".into())
        ))
        .with_remediation(format!(
            "create the cluster (`cargo xtask cluster`), or name an existing context with --context (`kubectl config get-contexts` lists them); `{context}` is the default"
        )));
    }
    let options = KubeConfigOptions { context: Some(context.to_owned()), ..Default::default() };
    let mut config = kube::Config::from_kubeconfig(&options)
        .await
        .map_err(|e| missing(format!("kube context `{context}` is not usable: {e}")))?;
    // kube sets no read timeout: an API that accepts and never answers would hang us.
    config.connect_timeout = Some(API_TIMEOUT);
    config.read_timeout = Some(API_TIMEOUT);
    config.write_timeout = Some(API_TIMEOUT);
    Ok(config)
}

/// A client for `context` (see [`config`]).
pub async fn client(context: &str) -> Result<kube::Client> {
    Ok(kube::Client::try_from(config(context).await?)?)
}

/// Whether the kubeconfig (`$KUBECONFIG` or `~/.kube/config`) has a context `name`.
pub fn has_context(name: &str) -> bool {
    Kubeconfig::read().is_ok_and(|config| config.contexts.iter().any(|c| c.name == name))
}

/// `GET /readyz` through `context` answers `ok`. A missing context is `Missing`; an API
/// that refuses, hangs or answers anything else is `Failed`, naming the URL and answer.
pub async fn readyz(context: &str) -> Result<()> {
    readyz_at(config(context).await?).await
}

/// [`readyz`] against the API of `config`.
pub async fn readyz_at(mut config: kube::Config) -> Result<()> {
    let base = config.cluster_url.to_string();
    let url = format!("{}/readyz", base.trim_end_matches('/'));
    config.read_timeout = Some(READYZ_TIMEOUT);
    // We poll ourselves and report every answer; kube's own retries of 503 would hide it.
    config.default_retry = false;
    let client = kube::Client::try_from(config).map_err(|e| failed(format!("GET {url}: {e}")))?;
    let request = http::Request::get("/readyz").body(Vec::new())?;
    let answer = tokio::time::timeout(READYZ_TIMEOUT, client.request_text(request)).await;
    match answer {
        Err(_) => Err(failed(format!("GET {url}: no answer within {}s", READYZ_TIMEOUT.as_secs()))),
        Ok(Ok(body)) if body.trim() == "ok" => Ok(()),
        Ok(Ok(body)) => {
            Err(failed(format!("GET {url} answered {:?}, not `ok`", first_line(&body))))
        }
        Ok(Err(kube::Error::Api(status))) => Err(failed(format!(
            "GET {url} answered {}: {}",
            status.code,
            first_line(&status.message)
        ))),
        Ok(Err(e)) => Err(failed(format!("GET {url}: {:#}", Error::from(e)))),
    }
}

fn first_line(text: &str) -> &str {
    let text = text.trim();
    text.lines().next().unwrap_or(text)
}

/// A `kubectl` command for a finding's "what to do", pinned to `context`: a copied
/// command reaches the cluster that was judged whatever kubectl's current context is
/// (a suggested `patch` or `create job` never lands on another cluster).
pub fn kubectl_command(context: &str, args: &str) -> String {
    format!("kubectl {args} --context {}", crate::exec::shell_quote(context))
}

/// A `helm` command for a finding, pinned to `context` as [`kubectl_command`] is.
pub fn helm_command(context: &str, args: &str) -> String {
    format!("helm {args} --kube-context {}", crate::exec::shell_quote(context))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-connection-at-a-time HTTP server answering every request with `response`.
    async fn serve(response: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        });
        url
    }

    #[test]
    fn suggested_commands_name_the_context() {
        assert_eq!(
            kubectl_command("k3d-ameide", "logs -n vault job/seed"),
            "kubectl logs -n vault job/seed --context k3d-ameide"
        );
        assert_eq!(
            helm_command("my ctx", "status auth -n ameide"),
            "helm status auth -n ameide --kube-context 'my ctx'"
        );
    }

    fn config_for(url: &str) -> kube::Config {
        kube::Config::new(url.parse().unwrap())
    }

    #[tokio::test]
    async fn a_5xx_answer_is_named_with_the_url() {
        let url = serve(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 16\r\nconnection: close\r\n\r\n[-]etcd failed\r\n",
        )
        .await;
        let err = readyz_at(config_for(&url)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Failed);
        let text = err.to_string();
        assert!(text.starts_with(&format!("GET {url}/readyz answered 503: ")), "{text}");
        assert!(text.contains("etcd failed"), "{text}");
    }

    #[tokio::test]
    async fn ok_is_ready_and_a_refused_connection_names_the_url() {
        let url = serve(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
        )
        .await;
        readyz_at(config_for(&url)).await.unwrap();

        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let err = readyz_at(config_for(&url)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Failed);
        let text = err.to_string().to_lowercase();
        assert!(text.starts_with(&format!("get {url}/readyz: ")), "{text}");
        assert!(text.contains("refused"), "{text}");
    }
}
