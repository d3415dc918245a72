//! One release of the fake helmfile's `sync`, as `helm upgrade --install` does it:
//! render with the real helm, store the objects, delete what the previous revision had
//! and this one does not (unless `helm.sh/resource-policy: keep`), wait when asked
//! (`--wait`/`--wait-for-jobs` semantics), write the revision Secret.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::apiserver::controllers::workload_ready;
use crate::apiserver::resources;
use crate::helm::records::{self, split_manifest};
use crate::helmfile::state::ReleaseSpec;
use crate::kube_api::{self, Client};
use crate::release::{self, Hook, Info, LastRun, Release};

/// helm's `--wait` (and `--wait-for-jobs`): every applied workload Ready (all replicas,
/// current generation), every claim Bound, every Service with its address, every Job
/// complete, within the release's timeout (helm 3 `pkg/kube/ready.go`).
pub(crate) async fn wait_ready(
    client: &Client,
    applied: &[String],
    r: &ReleaseSpec,
) -> Result<(), String> {
    let deadline = Instant::now() + std::time::Duration::from_secs(r.timeout);
    loop {
        let mut pending = Vec::new();
        for path in applied {
            let Ok(Some(obj)) = client.get_opt(path).await else { continue };
            let kind = obj["kind"].as_str().unwrap_or("");
            let ns = obj["metadata"]["namespace"].as_str().unwrap_or("");
            let name = obj["metadata"]["name"].as_str().unwrap_or("");
            let ready = match kind {
                "Job" if r.wait_for_jobs => {
                    let conds = obj["status"]["conditions"].as_array().cloned().unwrap_or_default();
                    if conds.iter().any(|c| c["type"] == "Failed" && c["status"] == "True") {
                        return Err(format!("job {name} failed: BackoffLimitExceeded"));
                    }
                    conds.iter().any(|c| c["type"] == "Complete" && c["status"] == "True")
                }
                "Deployment" | "StatefulSet" | "DaemonSet" | "Pod" => workload_ready(&obj),
                // As helm 3's ReadyChecker: a claim must be Bound, a Service have its IP
                // (and a LoadBalancer its ingress).
                "PersistentVolumeClaim" => obj["status"]["phase"] == "Bound",
                "Service" => match obj["spec"]["type"].as_str() {
                    Some("ExternalName") => true,
                    Some("LoadBalancer") => obj["status"]["loadBalancer"]["ingress"].is_array(),
                    _ => obj["spec"]["clusterIP"].as_str().is_some_and(|ip| !ip.is_empty()),
                },
                _ => true,
            };
            if !ready {
                pending.push(format!("{kind}/{ns}/{name}"));
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err("context deadline exceeded".into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// One `helm upgrade --install`: render, store objects, write the release revision.
pub(crate) async fn install(
    client: &Client,
    helm: &Path,
    r: &ReleaseSpec,
    fail: bool,
) -> Result<Release> {
    let chart_meta = chart_metadata(helm, r)?;
    let rendered = render(helm, r)?;
    if r.create_namespace {
        client.ensure_namespace(&r.namespace).await?;
    } else if client.get_opt(&format!("/api/v1/namespaces/{}", r.namespace)).await?.is_none() {
        bail!("create: failed to create: namespaces \"{}\" not found", r.namespace);
    }
    let previous = records::load(client, &r.namespace, &r.name).await?;
    // helm `pkg/action/upgrade.go` prepareUpgrade: a pending last revision (a helm that
    // was stopped mid-way, or one still running) refuses every upgrade (`errPending`).
    if let Some((_, last)) = &previous
        && last.info.status.starts_with("pending-")
    {
        bail!("UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress");
    }
    let version = previous.as_ref().map_or(0, |(_, p)| p.version) + 1;
    let now = release::timestamp_now();
    let mut rel = Release {
        name: r.name.clone(),
        namespace: r.namespace.clone(),
        version,
        info: Info {
            first_deployed: previous
                .as_ref()
                .map_or(now.clone(), |(_, p)| p.info.first_deployed.clone()),
            last_deployed: now,
            description: if version == 1 {
                "Install complete".into()
            } else {
                "Upgrade complete".into()
            },
            status: "deployed".into(),
            ..Info::default()
        },
        chart: json!({ "metadata": chart_meta, "lock": null, "templates": [], "values": {}, "schema": null, "files": [] }),
        config: json!({}),
        apply_method: "ssa".into(),
        ..Release::default()
    };
    let mut manifest = String::new();
    let mut objects = Vec::new();
    for doc in split_manifest(&rendered) {
        let obj: Value = serde_saphyr::from_str(&doc.text)
            .with_context(|| format!("{}: rendered YAML", doc.source))?;
        if !obj.is_object() {
            continue;
        }
        let annotations = &obj["metadata"]["annotations"];
        if let Some(events) = annotations["helm.sh/hook"].as_str() {
            let policies = annotations["helm.sh/hook-delete-policy"].as_str().unwrap_or("");
            rel.hooks.push(Hook {
                name: obj["metadata"]["name"].as_str().unwrap_or("").to_owned(),
                kind: obj["kind"].as_str().unwrap_or("").to_owned(),
                path: doc.source.clone(),
                manifest: doc.text.clone(),
                events: split_list(events),
                last_run: LastRun::default(),
                delete_policies: split_list(policies),
                weight: annotations["helm.sh/hook-weight"]
                    .as_str()
                    .and_then(|w| w.trim().parse().ok())
                    .unwrap_or(0),
            });
            continue;
        }
        manifest.push_str(&format!("---\n# Source: {}\n{}\n", doc.source, doc.text));
        objects.push(obj);
    }
    rel.manifest = manifest;
    if fail {
        rel.info.status = "failed".into();
        rel.info.description = format!("Upgrade \"{}\" failed: context deadline exceeded", r.name);
        write_revision(client, &rel, previous.as_ref().map(|(s, _)| s.as_slice())).await?;
        bail!("UPGRADE FAILED: context deadline exceeded");
    }
    let mut applied = Vec::new();
    for mut obj in objects {
        let (group, _) = resources::split_api_version(obj["apiVersion"].as_str().unwrap_or(""));
        let kind = obj["kind"].as_str().unwrap_or("").to_owned();
        if resources::cluster_scoped(group, &kind) {
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("namespace");
            }
        } else if obj["metadata"]["namespace"].as_str().is_none_or(str::is_empty) {
            obj["metadata"]["namespace"] = json!(r.namespace);
        }
        obj["metadata"]["annotations"]["meta.helm.sh/release-name"] = json!(r.name);
        obj["metadata"]["annotations"]["meta.helm.sh/release-namespace"] = json!(r.namespace);
        if let Some(ns) = obj["metadata"]["namespace"].as_str()
            && r.create_namespace
        {
            client.ensure_namespace(ns).await?;
        }
        let stored = client
            .apply_object(&obj)
            .await
            .with_context(|| format!("applying {kind} {}", obj["metadata"]["name"]))?;
        applied.push(kube_api::path_of(&stored)?);
    }
    // Objects of the previous revision that the new one no longer renders are deleted.
    if let Some((_, prev)) = &previous {
        for doc in split_manifest(&prev.manifest) {
            if let Ok(mut obj) = serde_saphyr::from_str::<Value>(&doc.text)
                && obj.is_object()
            {
                if obj["metadata"]["namespace"].is_null() {
                    obj["metadata"]["namespace"] = json!(r.namespace);
                }
                let path = kube_api::path_of(&obj)?;
                if !applied.contains(&path) && !records::kept(&obj) {
                    client.delete(&path).await?;
                }
            }
        }
    }
    for hook in rel.hooks.iter_mut().filter(|h| !h.events.iter().any(|e| e == "test")) {
        // Install/upgrade hooks ran and succeeded; their objects are not kept.
        hook.last_run = LastRun {
            started_at: release::timestamp_now(),
            completed_at: release::timestamp_now(),
            phase: "Succeeded".into(),
        };
    }
    if r.wait || r.wait_for_jobs {
        // As helm: the revision is pending while it waits, failed if the wait times out.
        let deployed = std::mem::replace(
            &mut rel.info.status,
            if version == 1 { "pending-install" } else { "pending-upgrade" }.into(),
        );
        write_revision(client, &rel, previous.as_ref().map(|(s, _)| s.as_slice())).await?;
        if let Err(e) = wait_ready(client, &applied, r).await {
            rel.info.status = "failed".into();
            rel.info.description = format!("Upgrade \"{}\" failed: {e}", r.name);
            records::store(client, &rel).await?;
            bail!("UPGRADE FAILED: {e}");
        }
        rel.info.status = deployed;
        write_revision(client, &rel, previous.as_ref().map(|(s, _)| s.as_slice())).await?;
    } else {
        write_revision(client, &rel, previous.as_ref().map(|(s, _)| s.as_slice())).await?;
    }
    if version == 1 {
        println!("Release \"{}\" does not exist. Installing it now.", r.name);
    } else {
        println!("Release \"{}\" has been upgraded. Happy Helming!", r.name);
    }
    print!("{}", records::status_text(&rel));
    println!();
    Ok(rel)
}

/// Store revision n (and mark the previously deployed revision `superseded`).
/// Store revision `rel`; as helm 3 (`pkg/action/upgrade.go` `releasingUpgrade`), the
/// deployed revision before it is superseded only once `rel` is deployed: a failed or
/// pending one leaves it `deployed`.
pub(crate) async fn write_revision(
    client: &Client,
    rel: &Release,
    previous: Option<&[Value]>,
) -> Result<()> {
    let previous = if rel.info.status == "deployed" { previous } else { None };
    for secret in previous.unwrap_or_default() {
        if secret["metadata"]["labels"]["status"] == "deployed" {
            let mut old = Release::from_record(secret)?;
            old.info.status = "superseded".into();
            records::store(client, &old).await?;
        }
    }
    records::store(client, rel).await
}

pub(crate) fn split_list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect()
}

/// The chart's `Chart.yaml` (as `helm show chart` prints it) as JSON.
pub(crate) fn chart_metadata(helm: &Path, r: &ReleaseSpec) -> Result<Value> {
    let out = std::process::Command::new(helm)
        .args(["show", "chart"])
        .arg(r.chart_path())
        .output()
        .with_context(|| format!("running {}", helm.display()))?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim().trim_start_matches("Error: "));
    }
    serde_saphyr::from_str(&String::from_utf8_lossy(&out.stdout))
        .context("helm show chart: not YAML")
}

/// `helm template NAME CHART -n NS -f values...` (inline values go through temp files).
pub(crate) fn render(helm: &Path, r: &ReleaseSpec) -> Result<String> {
    let tmp =
        std::env::temp_dir().join(format!("testbed-values-{}-{}", std::process::id(), r.name));
    let mut cmd = std::process::Command::new(helm);
    cmd.arg("template").arg(&r.name).arg(r.chart_path()).args(["--namespace", &r.namespace]);
    let mut temps = Vec::new();
    for (i, v) in r.values.iter().enumerate() {
        match v.as_str() {
            Some(path) => {
                cmd.arg("--values").arg(path);
            }
            None => {
                let path = tmp.with_extension(format!("{i}.json"));
                std::fs::write(&path, serde_json::to_vec(v)?)?;
                cmd.arg("--values").arg(&path);
                temps.push(path);
            }
        }
    }
    let out = cmd.output().with_context(|| format!("running {}", helm.display()));
    for t in temps {
        let _ = std::fs::remove_file(t);
    }
    let out = out?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim().trim_start_matches("Error: "));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
