//! The fake helm's `helm test` hooks: created in the cluster, which runs them (the
//! kubelet decides a test Pod, the Job controller a test Job), waited for, deleted by
//! policy, and helm's wording of a failed hook per version.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::helm::version::HelmVersion;
use crate::kube_api::{self, Client};
use crate::release;

/// Delete the `hook-succeeded` objects of passing hooks (in reverse order, as helm).
pub(crate) async fn delete_passed(
    client: &Client,
    ns: &str,
    passed: Vec<release::Hook>,
) -> Result<()> {
    for h in passed.iter().rev() {
        if h.delete_policies.iter().any(|p| p == "hook-succeeded") {
            delete_hook(client, ns, h).await?;
        }
    }
    Ok(())
}

/// How helm words a failed test hook: v3's legacy waiter, v4's status watcher.
pub(crate) fn hook_error(helm: HelmVersion, ns: &str, hook: &release::Hook) -> String {
    match (helm.0 >= 4, hook.kind.as_str()) {
        (false, "Job") => format!("job {} failed: BackoffLimitExceeded", hook.name),
        (false, _) => format!("pod {} failed", hook.name),
        (true, "Job") => format!(
            "resource Job/{ns}/{} not ready. status: Failed, message: Job Failed. failed: 1/1",
            hook.name
        ),
        (true, _) => format!(
            "resource Pod/{ns}/{n} not ready. status: Failed, message: pod {n} failed",
            n = hook.name
        ),
    }
}

pub(crate) async fn delete_hook(client: &Client, ns: &str, hook: &release::Hook) -> Result<()> {
    let mut obj: Value = serde_saphyr::from_str(&hook.manifest)
        .with_context(|| format!("test hook {}: manifest is not YAML", hook.name))?;
    obj["metadata"]["namespace"] = json!(ns);
    client.delete(&kube_api::path_of(&obj)?).await?;
    Ok(())
}

/// Run one test hook as helm does: delete the previous object (before-hook-creation),
/// create it, and wait until the cluster ends it (the kubelet runs a test Pod's check,
/// the Job controller a test Job: `apiserver/controllers/test_pods.rs`), within
/// `timeout`. Returns whether it passed; `Err` when it did not end in time.
pub(crate) async fn run_hook(
    client: &Client,
    ns: &str,
    hook: &release::Hook,
    timeout: Duration,
) -> Result<bool> {
    let mut obj: Value = serde_saphyr::from_str(&hook.manifest)
        .with_context(|| format!("test hook {}: manifest is not YAML", hook.name))?;
    obj["metadata"]["namespace"] = json!(ns);
    let path = kube_api::path_of(&obj)?;
    client.delete(&path).await?;
    let api_version = obj["apiVersion"].as_str().unwrap_or("v1").to_owned();
    let kind = obj["kind"].as_str().unwrap_or("Pod").to_owned();
    client.create(&kube_api::collection_path(&api_version, &kind, Some(ns)), &obj).await?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let now = client.get(&path).await?;
        if let Some(ok) = ended(&now) {
            return Ok(ok);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out waiting for the condition");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether a hook object has ended, and how: a Pod `Succeeded`/`Failed`, a Job
/// `Complete`/`Failed`; any other kind is done once created.
fn ended(obj: &Value) -> Option<bool> {
    match obj["kind"].as_str() {
        Some("Pod") => match obj["status"]["phase"].as_str() {
            Some("Succeeded") => Some(true),
            Some("Failed") => Some(false),
            _ => None,
        },
        Some("Job") => crate::apiserver::controllers::jobs::finished(obj),
        _ => Some(true),
    }
}
