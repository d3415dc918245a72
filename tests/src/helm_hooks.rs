//! Running `helm test` hooks as the cluster would (the fake helm plays the kubelet
//! for test Pods; Job hooks run through the API server's Job controller), deleting
//! them by policy, and helm's wording of a failed hook per version.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::apiserver::controllers::OUTCOME_ANNOTATION;
use crate::apiserver::store::LOG_ANNOTATION;
use crate::helm_version::HelmVersion;
use crate::kube_api::{self, Client};
use crate::release;
use crate::scenario::Scenario;

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

/// Run one test hook as the cluster would: create its object (the previous one goes
/// first: before-hook-creation), let its Pod start (the startup delay), then its check
/// sees the cluster as it is now (`gate_probe`); a Job hook is run by the API server's
/// Job controller. Returns whether it passed. `leak`: a Pod hook is given the Postgres
/// credentials as environment and prints them before failing (`crate::leaks`).
pub(crate) async fn run_hook(
    client: &Client,
    ns: &str,
    hook: &release::Hook,
    forced_fail: bool,
    leak: bool,
    scenario: &Scenario,
    node: Option<(&Path, &str)>,
) -> Result<bool> {
    let startup_ms = scenario.startup_ms;
    let mut obj: Value = serde_saphyr::from_str(&hook.manifest)
        .with_context(|| format!("test hook {}: manifest is not YAML", hook.name))?;
    obj["metadata"]["namespace"] = json!(ns);
    let path = kube_api::path_of(&obj)?;
    client.delete(&path).await?;
    if hook.kind == "Job" {
        let spec = obj["spec"]["template"]["spec"].clone();
        tokio::time::sleep(Duration::from_millis(startup_ms / 2)).await;
        let fails = forced_fail || crate::gate_probe::failure(client, &spec).await?.is_some();
        obj["metadata"]["annotations"][OUTCOME_ANNOTATION] =
            json!(if fails { "fail" } else { "succeed" });
        client.create(&kube_api::collection_path("batch/v1", "Job", Some(ns)), &obj).await?;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let job = client.get(&path).await?;
            let conds = job["status"]["conditions"].as_array().cloned().unwrap_or_default();
            let is = |t: &str| conds.iter().any(|c| c["type"] == t && c["status"] == "True");
            if is("Complete") || is("Failed") {
                return Ok(is("Complete"));
            }
        }
    }
    if leak {
        obj["spec"] = crate::leaks::with_leaked_env(obj["spec"].take());
    }
    obj["status"] =
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]});
    client.create(&kube_api::collection_path("v1", "Pod", Some(ns)), &obj).await?;
    // The kubelet pulls what the node lacks before the containers start.
    let pulled = match node {
        Some((dir, cluster)) => {
            let images = crate::node_images::pod_images(&obj["spec"]);
            crate::node_images::pull_missing(dir, cluster, &images, scenario).await?
        }
        None => Ok(()),
    };
    let probe = match pulled {
        Err(pull_error) => Some(format!("{pull_error}\n")),
        Ok(()) => {
            tokio::time::sleep(Duration::from_millis(startup_ms)).await;
            crate::gate_probe::failure(client, &obj["spec"]).await?
        }
    };
    let ok = !forced_fail && !leak && probe.is_none();
    let log = match (&probe, ok) {
        _ if leak => leaked_log(client, ns, &hook.name).await?,
        (Some(text), _) => text.clone(),
        (None, true) => format!("{}: check passed\n", hook.name),
        (None, false) => format!("{}: check failed: exit status 1\n", hook.name),
    };
    let now = release::k8s_timestamp_now();
    let patch = json!({"metadata": {"annotations": {LOG_ANNOTATION: log}}});
    client.merge_patch(&path, &patch).await?;
    let status = crate::apiserver::controllers::finished_pod_status(&obj, ok, &now);
    client.merge_patch(&format!("{path}/status"), &json!({ "status": status })).await?;
    Ok(ok)
}

/// The log of a `gate-leak` Pod: what it prints with the Secret's password (as the
/// kubelet resolves `envFrom`; empty when the Secret does not exist).
async fn leaked_log(client: &Client, ns: &str, hook: &str) -> Result<String> {
    use base64::Engine as _;
    let path = kube_api::object_path("v1", "Secret", Some(ns), crate::leaks::GATE_LEAK_SECRET);
    let secret = client.get_opt(&path).await?.unwrap_or_default();
    let decoded = |key: &str| {
        let encoded = secret["data"][key].as_str().unwrap_or_default();
        let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Ok(crate::leaks::gate_leak_log(hook, &decoded("host"), &decoded("password")))
}
