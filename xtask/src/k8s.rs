//! Kubernetes clients for a named kubeconfig context.

use anyhow::Result;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::error::missing;

/// Field manager of every server-side apply we make.
pub const FIELD_MANAGER: &str = "cargo-xtask-bootstrap";

/// Longest wait for one API request (we never watch, so no request should take long).
const API_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A client for `context` (the current context when `None`). A missing kubeconfig or
/// context is a missing prerequisite (exit 3).
pub async fn client(context: Option<&str>) -> Result<kube::Client> {
    let options = KubeConfigOptions { context: context.map(str::to_owned), ..Default::default() };
    let mut config = kube::Config::from_kubeconfig(&options).await.map_err(|e| {
        let which = context
            .map_or("the current kube context".to_owned(), |c| format!("kube context `{c}`"));
        missing(format!("{which} is not usable: {e}"))
    })?;
    // kube sets no read timeout: an API that accepts and never answers would hang us.
    config.connect_timeout = Some(API_TIMEOUT);
    config.read_timeout = Some(API_TIMEOUT);
    config.write_timeout = Some(API_TIMEOUT);
    Ok(kube::Client::try_from(config)?)
}

/// The current context's name from the kubeconfig (`$KUBECONFIG` or `~/.kube/config`).
pub fn current_context() -> Option<String> {
    Kubeconfig::read().ok()?.current_context
}

/// `GET /readyz` answers `ok`.
pub async fn readyz(context: &str) -> Result<()> {
    let client = client(Some(context)).await?;
    let request = http::Request::get("/readyz").body(Vec::new())?;
    let body = client.request_text(request).await?;
    anyhow::ensure!(body.trim() == "ok", "/readyz answered {body:?}");
    Ok(())
}
