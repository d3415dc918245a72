//! Kubernetes clients for a named kubeconfig context.

use anyhow::Result;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::error::missing;

/// A client for `context` (the current context when `None`). A missing kubeconfig or
/// context is a missing prerequisite (exit 3).
pub async fn client(context: Option<&str>) -> Result<kube::Client> {
    let options = KubeConfigOptions { context: context.map(str::to_owned), ..Default::default() };
    let config = kube::Config::from_kubeconfig(&options).await.map_err(|e| {
        let which = context
            .map_or("the current kube context".to_owned(), |c| format!("kube context `{c}`"));
        missing(format!("{which} is not usable: {e}"))
    })?;
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
