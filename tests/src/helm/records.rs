//! Helm's release records in the fake API server, as the fake `helm` and `helmfile`
//! both read and write them: load and store a release, what `helm status` prints,
//! uninstall (keeping `helm.sh/resource-policy: keep` objects), and a rendered
//! manifest's documents. Below `helm::fake`, `helm::rollback`, `helmfile::fake` and
//! `helmfile::install`, so none of them imports another for these.

use anyhow::Result;
use serde_json::{Value, json};

use crate::kube_api::{self, Client};
use crate::release::{self, Release};

/// Every release record of a release (Secrets, or ConfigMaps with
/// `HELM_DRIVER=configmap`), and the latest release.
pub async fn load(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<(Vec<Value>, Release)>> {
    let collection = release::Driver::from_env()?.collection(namespace);
    let records = client.list(&collection, Some(&format!("name={name},owner=helm"))).await?;
    Ok(release::latest(&records)?.map(|r| (records, r)))
}

/// Write a release back into its own revision's record.
pub async fn store(client: &Client, release: &Release) -> Result<()> {
    let record = release.to_record(release::Driver::from_env()?)?;
    client.apply_object(&record).await?;
    Ok(())
}

/// What `helm status` (and `helm test`) print for a release.
pub fn status_text(rel: &Release) -> String {
    let mut out = format!(
        "NAME: {}\nLAST DEPLOYED: {}\nNAMESPACE: {}\nSTATUS: {}\nREVISION: {}\n",
        rel.name,
        release::ansic(&rel.info.last_deployed),
        rel.namespace,
        rel.info.status,
        rel.version
    );
    let tests: Vec<_> = rel.hooks.iter().filter(|h| h.events.iter().any(|e| e == "test")).collect();
    if tests.is_empty() {
        out.push_str("TEST SUITE: None\n");
    }
    // As helm's status printer: a hook that never ran prints nothing.
    for h in tests.into_iter().filter(|h| !h.last_run.started_at.is_empty()) {
        let when = |t: &str| if t.is_empty() { String::new() } else { release::ansic(t) };
        out.push_str(&format!(
            "TEST SUITE:     {}\nLast Started:   {}\nLast Completed: {}\nPhase:          {}\n",
            h.name,
            when(&h.last_run.started_at),
            when(&h.last_run.completed_at),
            h.last_run.phase
        ));
    }
    out
}

/// `helm.sh/resource-policy: keep`: helm leaves the object when the release drops it or
/// is uninstalled (helm `pkg/action/resource_policy.go`).
pub fn kept(obj: &Value) -> bool {
    obj["metadata"]["annotations"]["helm.sh/resource-policy"].as_str() == Some("keep")
}

/// Delete a release's objects (from its latest manifest) and every revision Secret.
/// `Ok(false)` when there was no such release.
pub async fn uninstall(client: &Client, namespace: &str, name: &str) -> Result<bool> {
    let Some((secrets, rel)) = load(client, namespace, name).await? else { return Ok(false) };
    for doc in split_manifest(&rel.manifest) {
        if let Ok(mut obj) = serde_saphyr::from_str::<Value>(&doc.text)
            && obj.is_object()
        {
            if obj["metadata"]["namespace"].is_null() {
                obj["metadata"]["namespace"] = json!(namespace);
            }
            if !kept(&obj) {
                client.delete(&kube_api::path_of(&obj)?).await?;
            }
        }
    }
    for record in secrets {
        client.delete(&kube_api::path_of(&record)?).await?;
    }
    Ok(true)
}

/// One document of a rendered manifest: its `# Source:` path and its YAML text.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestDoc {
    pub source: String,
    pub text: String,
}

/// Split `helm template` output (or a release manifest) into its documents.
pub fn split_manifest(text: &str) -> Vec<ManifestDoc> {
    let mut docs = Vec::new();
    let mut source = String::new();
    let mut body = Vec::new();
    let mut flush = |source: &mut String, body: &mut Vec<&str>| {
        let text = body.join("\n").trim().to_owned();
        if !text.is_empty()
            && text.lines().any(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        {
            docs.push(ManifestDoc { source: std::mem::take(source), text });
        }
        source.clear();
        body.clear();
    };
    for line in text.lines() {
        if line.trim_end() == "---" {
            flush(&mut source, &mut body);
        } else if let Some(s) = line.strip_prefix("# Source: ") {
            source = s.trim().to_owned();
        } else {
            body.push(line);
        }
    }
    flush(&mut source, &mut body);
    docs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lists_each_test_suite() {
        let rel = Release {
            name: "demo".into(),
            namespace: "ameide".into(),
            version: 3,
            info: release::Info {
                status: "deployed".into(),
                last_deployed: "2006-01-02T15:04:05Z".into(),
                ..Default::default()
            },
            hooks: vec![release::Hook {
                name: "demo-check".into(),
                events: vec!["test".into()],
                last_run: release::LastRun {
                    phase: "Failed".into(),
                    started_at: "2006-01-02T15:04:06Z".into(),
                    ..Default::default()
                },
                ..Default::default()
            }],
            ..Release::default()
        };
        let text = status_text(&rel);
        assert!(text.contains("LAST DEPLOYED: Mon Jan  2 15:04:05 2006\n"), "{text}");
        assert!(text.contains("TEST SUITE:     demo-check\n"));
        assert!(text.contains("Phase:          Failed\n"));
    }
}
