//! The layer cycle: one `helmfile -f <layer> -e <env> sync` per layer, then its gate.
//!
//! A layer is skipped as converged when the digest of its inputs equals the one
//! recorded after its last green gate (ConfigMap `kube-system/bootstrap-layer-digests`,
//! so a new cluster has none) and every release of the layer is `deployed`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use sha2::{Digest, Sha256};

use crate::checks::{self, GateTarget, Verdict};
use crate::config::Context;
use crate::error::bad_input;
use crate::exec::{self, Cmd};
use crate::platform::helmfile::{Layer, Platform, Values};
use crate::report::{Failure, GateStatus, LayerStatus, LayerSummary, Log};

pub const DIGESTS_CONFIGMAP: &str = "bootstrap-layer-digests";
pub const DIGESTS_NAMESPACE: &str = "kube-system";

/// Helmfile's default namespace for a release that names none.
pub fn namespace_of(release: &crate::platform::helmfile::Release) -> &str {
    release.namespace.as_deref().unwrap_or("default")
}

// ---- digest ------------------------------------------------------------------------

/// sha256 over everything that decides what a layer's sync does: the layer file, the
/// values files its releases name, the files of its local charts (dirs or archives),
/// the environment's name and values. Paths are taken relative to `root` so the same
/// checkout hashes the same wherever it lives. A values file that does not exist is
/// bad input (helmfile would refuse it too).
pub fn digest(
    root: &Path,
    platform: &Platform,
    layer: &Layer,
    environment: &str,
) -> Result<String> {
    let mut files: BTreeMap<PathBuf, &'static str> = BTreeMap::new();
    files.insert(layer.file.clone(), "layer");
    let layer_dir = layer.file.parent().unwrap_or(Path::new("."));
    let mut inline = Vec::new();
    for release in layer.releases.as_slice() {
        for values in &release.values {
            match values {
                Values::Path(path) => {
                    let file = layer_dir.join(path);
                    if !file.is_file() {
                        return Err(bad_input(format!(
                            "{}: release `{}`: values file `{path}` does not exist ({})",
                            layer.file.display(),
                            release.name,
                            file.display()
                        )));
                    }
                    files.insert(file, "values");
                }
                Values::Inline(value) => inline.push(value.to_string()),
            }
        }
        if let Some(chart) = layer.local_chart(release) {
            if chart.is_dir() {
                for file in files_under(&chart)? {
                    files.insert(file, "chart");
                }
            } else if chart.is_file() {
                files.insert(chart, "chart");
            }
        }
    }
    let root_dir = platform.file.parent().unwrap_or(Path::new("."));
    if let Some(env) = platform.environments.get(environment) {
        for values in &env.values {
            match values {
                Values::Path(path) => {
                    let file = root_dir.join(path);
                    if file.is_file() {
                        files.insert(file, "environment");
                    }
                }
                Values::Inline(value) => inline.push(value.to_string()),
            }
        }
    }
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    field(format!("environment={environment}").as_bytes());
    for text in &inline {
        field(text.as_bytes());
    }
    for (file, kind) in &files {
        // Two spellings of one chart path hash alike.
        let shown = crate::fsutil::normalize(file.strip_prefix(root).unwrap_or(file));
        let bytes = std::fs::read(file)
            .map_err(|e| bad_input(format!("{}: cannot read: {e}", file.display())))?;
        field(format!("{kind}:{}", shown.display()).as_bytes());
        field(&bytes);
    }
    let sum = hasher.finalize();
    Ok(format!("sha256:{}", crate::digest::hex(&sum)))
}

fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| bad_input(format!("{}: cannot read chart folder: {e}", dir.display())))?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

// ---- plan --------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerPlan {
    Sync { reason: String },
    Unchanged,
}

impl std::fmt::Display for LayerPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayerPlan::Sync { reason } => write!(f, "sync: {reason}"),
            LayerPlan::Unchanged => f.write_str(
                "unchanged: inputs match the last green run and every release is deployed",
            ),
        }
    }
}

/// What one layer needs. `not_deployed` lists releases (with their state) that are not
/// `deployed`. Pure: every branch is unit-tested.
pub fn plan(
    digest: &str,
    recorded: Option<&str>,
    not_deployed: &[String],
    force: bool,
) -> LayerPlan {
    let sync = |reason: String| LayerPlan::Sync { reason };
    if force {
        return sync("--force".into());
    }
    match recorded {
        None => sync("no digest recorded in the cluster (new cluster, or never green)".into()),
        Some(r) if r != digest => sync("its inputs changed since the last green run".into()),
        Some(_) if !not_deployed.is_empty() => {
            sync(format!("not deployed: {}", not_deployed.join(", ")))
        }
        Some(_) => LayerPlan::Unchanged,
    }
}

/// Releases of `layer` (installed ones) whose latest revision is not `deployed`.
pub async fn not_deployed(client: &kube::Client, layer: &Layer) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for release in layer.releases.as_slice().iter().filter(|r| r.installed) {
        let check = checks::release_deployed(client, &release.name, namespace_of(release)).await?;
        if check.verdict == Verdict::Failed {
            out.push(format!("{} ({})", release.name, check.found));
        }
    }
    Ok(out)
}

// ---- recorded digests --------------------------------------------------------------

/// The digests recorded in the cluster (none on a new cluster).
pub async fn recorded_digests(client: &kube::Client) -> Result<BTreeMap<String, String>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), DIGESTS_NAMESPACE);
    let cm = api
        .get_opt(DIGESTS_CONFIGMAP)
        .await
        .with_context(|| format!("reading ConfigMap {DIGESTS_NAMESPACE}/{DIGESTS_CONFIGMAP}"))?;
    Ok(cm.and_then(|c| c.data).unwrap_or_default())
}

/// Record `layer`'s digest after a green gate (server-side apply of the whole map: all
/// its keys are ours, so a partial apply would drop the others).
pub async fn record_digest(client: &kube::Client, layer: &str, digest: &str) -> Result<()> {
    let mut data = recorded_digests(client).await?;
    data.insert(layer.to_owned(), digest.to_owned());
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), DIGESTS_NAMESPACE);
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": DIGESTS_CONFIGMAP, "namespace": DIGESTS_NAMESPACE },
        "data": data,
    });
    api.patch(
        DIGESTS_CONFIGMAP,
        &PatchParams::apply(crate::k8s::FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .with_context(|| {
        format!("recording the digest of layer {layer} in {DIGESTS_NAMESPACE}/{DIGESTS_CONFIGMAP}")
    })?;
    Ok(())
}

/// Forget `layer`'s digest before it syncs: if the sync or gate then fails, the next
/// run must not mistake it for converged.
pub async fn forget_digest(client: &kube::Client, layer: &str) -> Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), DIGESTS_NAMESPACE);
    let patch = serde_json::json!({ "data": { layer: null } });
    match api.patch(DIGESTS_CONFIGMAP, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => {
            Err(anyhow::Error::new(e).context(format!("forgetting the digest of layer {layer}")))
        }
    }
}

// ---- sync + gate -------------------------------------------------------------------

/// What one layer's cycle needs from the run.
pub struct Cycle<'a> {
    pub ctx: &'a Context,
    pub log: &'a Log,
    pub client: &'a kube::Client,
    pub kube_context: &'a str,
    pub environment: &'a str,
}

/// The result of a layer's cycle: its summary row, and the failure when it failed.
pub struct CycleResult {
    pub summary: LayerSummary,
    pub failure: Option<Failure>,
}

/// Sync `layer`, run its gates, record its digest when green. Errors are only for
/// "could not go on at all" (Ctrl-C, the API unreachable); a failed sync or gate is a
/// result.
pub async fn sync_and_gate(cycle: &Cycle<'_>, layer: &Layer, digest: &str) -> Result<CycleResult> {
    let started = Instant::now();
    let tag = format!("layers/{}", layer.name);
    let log = cycle.log;
    let mut summary = LayerSummary::new(&layer.name, LayerStatus::Synced);
    let fail = |summary: &mut LayerSummary, message: String, remediation: String| {
        summary.status = LayerStatus::Failed;
        Failure { stage: "layers".into(), layer: Some(layer.name.clone()), message, remediation }
    };

    forget_digest(cycle.client, &layer.name).await?;
    let spinner = crate::report::spinner(&format!("syncing {}", layer.name));
    let sync = Cmd::new(&tag, "helmfile", cycle.ctx.settings.timeouts.layer_sync())
        .arg("-f")
        .arg(layer.file.display().to_string())
        .args(["-e", cycle.environment, "sync", "--skip-deps"])
        .env("HELM_KUBECONTEXT", cycle.kube_context);
    let output = exec::run(log, &sync).await;
    spinner.finish_and_clear();
    let output = output?;
    if !output.success() {
        let failure = fail(
            &mut summary,
            format!(
                "`{}` failed (exit {}): {}",
                sync.display(),
                output.code.map_or("signal".into(), |c| c.to_string()),
                output.tail(3).replace('\n', " / ")
            ),
            format!(
                "read the helmfile output for layer {} in {} (tag [{tag}]), fix the cause, then run `cargo xtask sync {}`",
                layer.name,
                log.path().display(),
                layer.name
            ),
        );
        summary.duration_ms = started.elapsed().as_millis() as u64;
        return Ok(CycleResult { summary, failure: Some(failure) });
    }

    let gates: Vec<_> = layer.gates().filter(|r| r.installed).collect();
    let mut gate = if gates.is_empty() { GateStatus::None } else { GateStatus::Passed };
    for release in gates {
        let spinner = crate::report::spinner(&format!("gate {} of {}", release.name, layer.name));
        let target = GateTarget {
            release: &release.name,
            namespace: namespace_of(release),
            tag: &tag,
            kube_context: cycle.kube_context,
            timeout: cycle.ctx.settings.timeouts.gate(),
        };
        let check = checks::helm_test_gate(log, cycle.client, &target).await;
        spinner.finish_and_clear();
        let check = check?;
        log.line(&tag, &format!("{}: {:?}: found {}", check.name, check.verdict, check.found));
        summary.warnings.extend(check.warnings.iter().cloned());
        match check.verdict {
            Verdict::Passed => {}
            Verdict::Warned => gate = GateStatus::Warned,
            Verdict::Failed => {
                summary.gate = GateStatus::Failed;
                let failure = fail(
                    &mut summary,
                    format!(
                        "gate `{}` failed: expected {}, found {}",
                        release.name, check.expected, check.found
                    ),
                    check.remediation.clone().unwrap_or_else(|| "see the log".into()),
                );
                summary.duration_ms = started.elapsed().as_millis() as u64;
                return Ok(CycleResult { summary, failure: Some(failure) });
            }
        }
    }
    summary.gate = gate;
    record_digest(cycle.client, &layer.name, digest).await?;
    summary.duration_ms = started.elapsed().as_millis() as u64;
    Ok(CycleResult { summary, failure: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::helmfile::TemplateReader;

    #[test]
    fn plan_syncs_only_what_changed_or_is_not_deployed() {
        assert_eq!(plan("d1", Some("d1"), &[], false), LayerPlan::Unchanged);
        assert!(
            matches!(plan("d1", None, &[], false), LayerPlan::Sync { reason } if reason.contains("no digest recorded"))
        );
        assert!(
            matches!(plan("d2", Some("d1"), &[], false), LayerPlan::Sync { reason } if reason.contains("inputs changed"))
        );
        let failed = ["keycloak (revision 2 is `failed`)".to_owned()];
        assert!(
            matches!(plan("d1", Some("d1"), &failed, false), LayerPlan::Sync { reason } if reason.contains("keycloak"))
        );
        assert!(
            matches!(plan("d1", Some("d1"), &[], true), LayerPlan::Sync { reason } if reason == "--force")
        );
    }

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let w = |p: &str, text: &str| {
                let path = dir.path().join(p);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, text).unwrap();
            };
            w(
                "k/helmfile.yaml",
                "environments:\n  local: {}\nhelmfiles:\n  - helmfiles/10-a.yaml\n  - helmfiles/20-b.yaml\n",
            );
            w(
                "k/helmfiles/10-a.yaml",
                "releases:\n  - name: a\n    namespace: n\n    chart: ../charts/c\n    values: [../values/a.yaml]\n",
            );
            w(
                "k/helmfiles/20-b.yaml",
                "releases:\n  - name: b\n    chart: ../charts/d\n    values: [../values/b.yaml]\n",
            );
            w("k/charts/c/Chart.yaml", "name: c\n");
            w("k/charts/c/templates/x.yaml", "kind: ConfigMap\n");
            w("k/charts/d/Chart.yaml", "name: d\n");
            w("k/values/a.yaml", "x: 1\n");
            w("k/values/b.yaml", "y: 1\n");
            Fixture { dir }
        }

        async fn digests(&self, env: &str) -> Vec<String> {
            let reader = TemplateReader {
                helmfile: None,
                environment: "local".into(),
                timeout: std::time::Duration::from_secs(1),
            };
            let platform =
                Platform::read(&self.dir.path().join("k/helmfile.yaml"), &reader).await.unwrap();
            platform
                .layers
                .iter()
                .map(|l| digest(self.dir.path(), &platform, l, env).unwrap())
                .collect()
        }

        fn write(&self, p: &str, text: &str) {
            std::fs::write(self.dir.path().join(p), text).unwrap();
        }
    }

    #[tokio::test]
    async fn digest_follows_values_chart_files_and_environment_only() {
        let f = Fixture::new();
        let base = f.digests("local").await;
        assert!(base[0].starts_with("sha256:") && base[0] != base[1]);
        assert_eq!(f.digests("local").await, base, "stable");

        f.write("k/values/a.yaml", "x: 2\n");
        let after_values = f.digests("local").await;
        assert_ne!(after_values[0], base[0]);
        assert_eq!(after_values[1], base[1], "another layer's values do not touch this one");

        f.write("k/charts/d/templates-new.yaml", "kind: Secret\n");
        let after_chart = f.digests("local").await;
        assert_eq!(after_chart[0], after_values[0]);
        assert_ne!(after_chart[1], after_values[1], "a new file in a chart dir counts");

        assert_ne!(f.digests("staging").await[0], after_chart[0], "the environment counts");

        // A copy of the checkout elsewhere hashes the same: paths are root-relative.
        let copy = Fixture::new();
        copy.write("k/values/a.yaml", "x: 2\n");
        copy.write("k/charts/d/templates-new.yaml", "kind: Secret\n");
        assert_eq!(copy.digests("local").await, after_chart);
    }

    #[tokio::test]
    async fn missing_values_file_is_bad_input_naming_layer_and_release() {
        let f = Fixture::new();
        std::fs::remove_file(f.dir.path().join("k/values/b.yaml")).unwrap();
        let reader = TemplateReader {
            helmfile: None,
            environment: "local".into(),
            timeout: std::time::Duration::from_secs(1),
        };
        let platform =
            Platform::read(&f.dir.path().join("k/helmfile.yaml"), &reader).await.unwrap();
        let err = digest(f.dir.path(), &platform, &platform.layers[1], "local").unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
        assert!(
            err.to_string()
                .contains("20-b.yaml: release `b`: values file `../values/b.yaml` does not exist"),
            "{err}"
        );
    }
}
