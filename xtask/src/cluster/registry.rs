//! The cluster's local registry as the summary shows it: its name and the repositories
//! it holds (`GET /v2/_catalog` on the port k3d publishes on the host).

use std::time::Duration;

use bollard::Docker;
use serde::{Deserialize, Serialize};

use crate::error::{Result, failed};

/// Label k3d puts on its registry container: the port published on the host.
pub const PORT_LABEL: &str = "k3s.registry.port.external";

/// How long the registry gets to answer.
pub const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Catalog {
    pub name: String,
    /// `http://127.0.0.1:<port>`: where `docker push` reaches it from this machine.
    pub url: String,
    pub repositories: Vec<String>,
}

impl Catalog {
    /// `registry <name> (<url>): N repositories: a, b`.
    pub fn describe(&self) -> String {
        let list = match self.repositories.is_empty() {
            true => "none yet".to_owned(),
            false => self.repositories.join(", "),
        };
        format!(
            "registry {} ({}): {} repositor{}: {list}",
            self.name,
            self.url,
            self.repositories.len(),
            if self.repositories.len() == 1 { "y" } else { "ies" }
        )
    }
}

/// The host URL of registry container `name`, from k3d's port label.
pub async fn url(docker: &Docker, name: &str) -> Result<String> {
    let container = docker.inspect_container(name, None).await.map_err(|e| {
        crate::error::Error::from(e).context(format!("inspecting registry container {name}"))
    })?;
    let labels = container.config.and_then(|c| c.labels).unwrap_or_default();
    let port = labels.get(PORT_LABEL).ok_or_else(|| {
        failed(format!(
            "registry container `{name}` has no `{PORT_LABEL}` label (not made by k3d?)"
        ))
    })?;
    Ok(format!("http://127.0.0.1:{port}"))
}

/// `GET <url>/v2/_catalog` of registry `name`.
pub async fn catalog(docker: &Docker, name: &str) -> Result<Catalog> {
    let url = url(docker, name).await?;
    let response = crate::http::get(&format!("{url}/v2/_catalog"), &[], TIMEOUT).await?;
    if !response.status.is_success() {
        return Err(failed(format!(
            "GET {url}/v2/_catalog answered HTTP {}",
            response.status.as_u16()
        )));
    }
    let repositories =
        parse_catalog(&response.body).map_err(|e| failed(format!("GET {url}/v2/_catalog: {e}")))?;
    Ok(Catalog { name: name.to_owned(), url, repositories })
}

/// The distribution API's `{"repositories": [...]}`, sorted.
fn parse_catalog(body: &[u8]) -> std::result::Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        repositories: Option<Vec<String>>,
    }
    let body: Body = serde_json::from_slice(body)
        .map_err(|e| format!("expected {{\"repositories\": [...]}}: {e}"))?;
    let mut repositories = body.repositories.unwrap_or_default();
    repositories.sort();
    Ok(repositories)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_is_read_and_described() {
        let repos = parse_catalog(br#"{"repositories":["ameide/web","ameide/api"]}"#).unwrap();
        assert_eq!(repos, ["ameide/api", "ameide/web"]);
        assert_eq!(parse_catalog(br#"{"repositories":null}"#).unwrap(), Vec::<String>::new());
        assert!(parse_catalog(b"<html>").unwrap_err().contains("expected {\"repositories\""));
        let catalog = Catalog {
            name: "sample-reg".into(),
            url: "http://127.0.0.1:5111".into(),
            repositories: repos,
        };
        assert_eq!(
            catalog.describe(),
            "registry sample-reg (http://127.0.0.1:5111): 2 repositories: ameide/api, ameide/web"
        );
    }
}
