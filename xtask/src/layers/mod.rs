//! The layer cycle: one `helmfile -f <layer> -e <env> sync` per layer, then its gate.
//!
//! A layer is skipped as converged when the digest of its inputs ([`inputs`]) equals
//! the one recorded ([`record`]) after its last fully green run (ConfigMap
//! `kube-system/bootstrap-layer-digests`, so a new cluster has none) and every release
//! of the layer is `deployed`.

mod inputs;
pub mod pending;
mod record;

pub use inputs::{digest, validate_inputs};
pub use record::{
    DIGESTS_CONFIGMAP, DIGESTS_NAMESPACE, forget_digest, record_digest, recorded_digests,
};

use std::collections::BTreeSet;
use std::time::Duration;

use crate::checks::{self, GateTarget};
use crate::config::Context;
use crate::error::Result;
use crate::exec::{self, Cmd};
use crate::helmfile_cli::Helmfile;
use crate::helmfile_list::StateValues;
use crate::outcome::{Finding, Verdict};
use crate::platform::bundles;
use crate::platform::helmfile::Layer;
use crate::spans::{SpanKind, SpanOutcome};

/// Helmfile's default namespace for a release that names none.
pub fn namespace_of(release: &crate::platform::helmfile::Release) -> &str {
    release.namespace.as_deref().unwrap_or("default")
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
/// `deployed`; `to_uninstall` the installed releases of bundles that are off. Pure:
/// every branch is unit-tested.
pub fn plan(
    digest: &str,
    recorded: Option<&str>,
    not_deployed: &[String],
    to_uninstall: &[String],
    force: bool,
) -> LayerPlan {
    let sync = |reason: String| LayerPlan::Sync { reason };
    if force {
        return sync("--force".into());
    }
    if !to_uninstall.is_empty() {
        return sync(format!("uninstall {}: bundle off", to_uninstall.join(", ")));
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

/// Releases of bundles that are off which Helm still has (`name (bundle b)`), to uninstall.
pub async fn off_but_present(
    client: &kube::Client,
    layer: &Layer,
    enabled: &BTreeSet<String>,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for release in bundles::off_releases(layer, enabled) {
        if crate::release::read(client, namespace_of(release), &release.name).await?.is_some() {
            out.push(format!("{} (bundle {})", release.name, release.bundle().unwrap_or_default()));
        }
    }
    Ok(out)
}

/// Releases of `layer` (installed ones) whose latest revision is not `deployed`, read
/// through `context`.
pub async fn not_deployed(
    client: &kube::Client,
    context: &str,
    layer: &Layer,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for release in layer.releases.as_slice().iter().filter(|r| r.installed) {
        let (name, namespace) = (&release.name, namespace_of(release));
        let check = checks::release_deployed(client, name, namespace, context).await?;
        if check.verdict == Verdict::Failed {
            out.push(format!("{} ({})", release.name, check.finding.found));
        }
    }
    Ok(out)
}

/// Bring back the pending releases planned for `layer` before its sync: `helm rollback`
/// or `helm uninstall`, pinned to the run's context. What was done (or left alone) is
/// returned as summary warnings; a helm that fails is the layer's finding.
async fn recover_pending(
    cycle: &Cycle<'_>,
    layer: &Layer,
    recoveries: &[pending::Recover],
) -> Result<std::result::Result<Vec<String>, Finding>> {
    let ctx = cycle.ctx;
    let mut done = Vec::new();
    for recover in recoveries {
        let helm =
            Cmd::new(&format!("layers/{}", layer.name), "helm", ctx.settings.timeouts.layer_sync())
                .env("HELM_KUBECONTEXT", &ctx.kube_context);
        let cmd = match &recover.action {
            pending::Recovery::Rollback { to, .. } => {
                helm.args(["rollback", &recover.release, &to.to_string()])
            }
            pending::Recovery::Uninstall => helm.args(["uninstall", &recover.release]),
            pending::Recovery::Held { .. } => {
                done.push(recover.done());
                continue;
            }
        };
        let cmd =
            cmd.args(["--namespace", &recover.namespace, "--kube-context", &ctx.kube_context]);
        let output = exec::run(&ctx.session, &cmd).await?;
        if !output.success() {
            return Ok(Err(Finding::new(
                format!("release {} in layer {}", recover.release, layer.name),
                format!("to {recover}"),
                format!(
                    "`{}` exit {}: {}",
                    cmd.display(),
                    output.code.map_or("signal".into(), |c| c.to_string()),
                    last_lines(&output.tail(12), 3)
                ),
                format!(
                    "read helm's output in the log; `{}` shows its revisions",
                    crate::k8s::helm_command(
                        &ctx.kube_context,
                        &format!("history {} -n {}", recover.release, recover.namespace)
                    )
                ),
            )));
        }
        ctx.session.line(&format!("layers/{}", layer.name), &recover.done());
        done.push(recover.done());
    }
    Ok(Ok(done))
}

// ---- sync + gate -------------------------------------------------------------------

/// What one layer's cycle needs from the run.
pub struct Cycle<'a> {
    pub ctx: &'a Context,
    pub client: &'a kube::Client,
    /// The helmfile the run calls (how it takes helm's timeout depends on its version).
    pub helmfile: Helmfile,
}

/// A layer's gate, as the summary shows it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum GateStatus {
    Passed,
    Warned,
    Failed,
    /// The layer has no gate release, or it was not run.
    None,
}

/// How a layer's sync and gate went: a failed one carries its finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleResult {
    pub gate: GateStatus,
    pub warnings: Vec<String>,
    pub failure: Option<Finding>,
}

/// The `helmfile sync` of one layer. It waits for the layer's workloads to be Ready and
/// its Jobs done (`--wait --wait-for-jobs`) so the gate never races pods still starting;
/// the user's layer files need no `wait: true` for this. Pinned to the run's context.
/// The releases of bundles that are off are left out (`--selector bundle!=<b>`), and
/// the layer files see the bundles that are on as the state value `bundles`. helm gets
/// the `layer_sync` timeout as the helmfile version takes it (`--timeout`, or
/// `--sync-args` before 1.1.6: see [`crate::helmfile_cli`]).
/// The engine stops the sync only [`HELM_TIMEOUT_MARGIN`] after that timeout.
pub fn sync_command(
    ctx: &Context,
    layer: &Layer,
    state_values: &StateValues,
    helmfile: &Helmfile,
) -> Cmd {
    let timeout = ctx.settings.timeouts.layer_sync();
    selected_releases(ctx, layer, timeout + HELM_TIMEOUT_MARGIN, state_values)
        .args(["sync", "--skip-deps", "--wait", "--wait-for-jobs"])
        .args(helmfile.sync_timeout_args(timeout))
}

/// How long past helm's own `--timeout` a sync may run before the engine stops it. helm's
/// clock starts late (after helmfile and helm started and applied the manifests); given
/// the time, helm ends its own wait: it records the release `failed` and prints which one
/// did not become ready, instead of being killed mid-wait (a race between recording it
/// `failed` on SIGTERM and leaving it `pending-upgrade` on SIGKILL). The engine's stop
/// stays for a helmfile or helm that hangs.
pub const HELM_TIMEOUT_MARGIN: Duration = Duration::from_secs(30);

/// `helmfile template` of `layer` as its sync would install it (the same context,
/// environment, state values and bundle selector): what the images fetch reads.
pub fn template_command(
    ctx: &Context,
    layer: &Layer,
    state_values: &StateValues,
    timeout: Duration,
) -> Cmd {
    selected_releases(ctx, layer, timeout, state_values).args(["template", "--skip-deps"])
}

/// [`helmfile`] narrowed to the releases this run installs: those of bundles that are
/// off are left out (`--selector bundle!=<b>`). Sync and template share it, so the
/// images fetched are the ones the sync installs.
fn selected_releases(
    ctx: &Context,
    layer: &Layer,
    timeout: Duration,
    state_values: &StateValues,
) -> Cmd {
    let selector = bundles::sync_selector(&bundles::off_in(layer, &ctx.bundles));
    helmfile(ctx, layer, timeout, state_values)
        .args(selector.into_iter().flat_map(|s| ["--selector".to_owned(), s]))
}

/// `helmfile --kube-context <ctx> -f <layer> -e <env> --state-values-file <f>`, pinned to
/// the run's context for helm too.
fn helmfile(ctx: &Context, layer: &Layer, timeout: Duration, state_values: &StateValues) -> Cmd {
    Cmd::new(&format!("layers/{}", layer.name), "helmfile", timeout)
        .args(["--kube-context", &ctx.kube_context, "-f"])
        .arg(layer.file.display().to_string())
        .args(["-e", &ctx.environment])
        .args(state_values.args())
        .env("HELM_KUBECONTEXT", &ctx.kube_context)
}

/// Uninstall the releases of each bundle of `layer` that is off and still installed
/// (`helmfile destroy --selector bundle=<b>`). A failure is the layer's finding.
async fn uninstall_off_bundles(
    cycle: &Cycle<'_>,
    layer: &Layer,
    state_values: &StateValues,
) -> Result<Option<Finding>> {
    let ctx = cycle.ctx;
    if off_but_present(cycle.client, layer, &ctx.bundles).await?.is_empty() {
        return Ok(None);
    }
    for bundle in bundles::off_in(layer, &ctx.bundles) {
        let cmd = helmfile(ctx, layer, ctx.settings.timeouts.layer_sync(), state_values)
            .args(["--selector".to_owned(), format!("{}={bundle}", bundles::BUNDLE_LABEL)])
            .args(["destroy", "--skip-charts"]);
        let output = exec::run(&ctx.session, &cmd).await?;
        if !output.success() {
            return Ok(Some(Finding::new(
                format!("bundle {bundle} in layer {}", layer.name),
                "its releases uninstalled (the bundle is off)",
                format!(
                    "`helmfile destroy` exit {}: {}",
                    output.code.map_or("signal".into(), |c| c.to_string()),
                    last_lines(&output.tail(12), 3)
                ),
                format!(
                    "read the helmfile output in the log, or turn the bundle on with `--bundle {bundle}`"
                ),
            )));
        }
    }
    Ok(None)
}

/// Sync `layer`, then run its gates. First the releases a stopped run left pending are
/// brought back (`recoveries`, as planned). Errors are only for "could not go on at all"
/// (interruption, the API unreachable); a failed recovery, sync or gate is a result. The
/// digest is the caller's to record, once everything that follows the layer succeeded.
pub async fn sync_and_gate(
    cycle: &Cycle<'_>,
    layer: &Layer,
    recoveries: &[pending::Recover],
) -> Result<CycleResult> {
    forget_digest(cycle.client, &layer.name).await?;
    let recovered = match recover_pending(cycle, layer, recoveries).await? {
        Ok(done) => done,
        Err(failure) => {
            return Ok(CycleResult {
                gate: GateStatus::None,
                warnings: Vec::new(),
                failure: Some(failure),
            });
        }
    };
    let mut result = sync_and_gate_recovered(cycle, layer).await?;
    result.warnings.splice(0..0, recovered);
    Ok(result)
}

async fn sync_and_gate_recovered(cycle: &Cycle<'_>, layer: &Layer) -> Result<CycleResult> {
    let session = &cycle.ctx.session;
    let tag = format!("layers/{}", layer.name);
    let state_values = StateValues::write(&cycle.ctx.bundles)?;
    if let Some(failure) = uninstall_off_bundles(cycle, layer, &state_values).await? {
        return Ok(CycleResult {
            gate: GateStatus::None,
            warnings: Vec::new(),
            failure: Some(failure),
        });
    }
    if bundles::all_off(layer, &cycle.ctx.bundles) {
        session.line(&tag, "every release is in a bundle that is off: nothing to sync");
        return Ok(CycleResult { gate: GateStatus::None, warnings: Vec::new(), failure: None });
    }
    let sync = sync_command(cycle.ctx, layer, &state_values, &cycle.helmfile);
    let output = {
        let _wait = session.events.wait(&tag, &format!("syncing {}", layer.name));
        exec::run(session, &sync).await?
    };
    if !output.success() {
        let finding = Finding::new(
            format!("layer {}", layer.name),
            format!("`helmfile sync` of {} to succeed", layer.file.display()),
            format!(
                "exit {}{}: {}",
                output.code.map_or("signal".into(), |c| c.to_string()),
                failed_release(&output.stdout, &output.stderr)
                    .map_or(String::new(), |r| format!(" in release `{r}`")),
                last_lines(&output.tail(12), 3)
            ),
            format!(
                "fix the cause shown in the helmfile output for layer {}{}, then run `cargo xtask sync {}`",
                layer.name,
                session.where_output_is(&format!(" (tag [{tag}] in "), ")"),
                layer.name
            ),
        );
        return Ok(CycleResult {
            gate: GateStatus::None,
            warnings: Vec::new(),
            failure: Some(finding),
        });
    }

    let gates: Vec<_> = layer.gates().filter(|r| r.installed).collect();
    let mut gate = if gates.is_empty() { GateStatus::None } else { GateStatus::Passed };
    let mut warnings = Vec::new();
    for release in gates {
        let target = GateTarget {
            release: &release.name,
            namespace: namespace_of(release),
            tag: &tag,
            kube_context: &cycle.ctx.kube_context,
            timeout: cycle.ctx.settings.timeouts.gate(),
        };
        let span = session.events.span(SpanKind::Gate, &tag, &release.name);
        let check = {
            let _wait =
                session.events.wait(&tag, &format!("gate {} of {}", release.name, layer.name));
            checks::helm_test_gate(session, cycle.client, &target).await?
        };
        span.finish(SpanOutcome::of_verdict(check.verdict));
        session.line(&tag, &format!("{:?}: {}", check.verdict, check.finding));
        warnings.extend(check.warnings.iter().cloned());
        match check.verdict {
            Verdict::Passed => {}
            Verdict::Warned => gate = GateStatus::Warned,
            Verdict::Failed => {
                return Ok(CycleResult {
                    gate: GateStatus::Failed,
                    warnings,
                    failure: Some(check.finding),
                });
            }
        }
    }
    Ok(CycleResult { gate, warnings, failure: None })
}

/// The last `n` lines of `text` that carry something, joined on one line.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" / ")
}

/// The release helmfile names in its failure output (`in ./x.yaml: failed processing
/// release auth: ...` or helm's `release auth failed`), when it names one.
pub fn failed_release(stdout: &str, stderr: &str) -> Option<String> {
    let text = format!("{stdout}\n{stderr}");
    for marker in ["failed processing release ", "release \"", "UPGRADE FAILED: release "] {
        if let Some(at) = text.find(marker) {
            let rest = &text[at + marker.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_' || *c == '.')
                .collect();
            if !name.is_empty() {
                return Some(name);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// helm gets `layer_sync`; the engine stops the sync only a margin later, so helm's
    /// own timeout ends it first and names the release.
    #[test]
    fn the_sync_is_stopped_only_after_helms_own_timeout() {
        let mut settings =
            crate::config::Settings { cluster: "ameide".into(), ..Default::default() };
        settings.timeouts.layer_sync = 10;
        let ctx = Context::for_tests(settings);
        let layer = Layer {
            name: "22-control-plane".into(),
            file: ctx.root.join("22-control-plane.yaml"),
            template: false,
            releases: crate::platform::helmfile::LayerReleases::Parsed { releases: Vec::new() },
        };
        let state_values = StateValues::write(&Default::default()).unwrap();
        let cmd = sync_command(&ctx, &layer, &state_values, &Helmfile { version: None });
        assert!(cmd.args.iter().any(|a| a == "--sync-args=--timeout=10s"), "{:?}", cmd.args);
        assert_eq!(cmd.timeout, Duration::from_secs(10) + HELM_TIMEOUT_MARGIN);
        assert!(HELM_TIMEOUT_MARGIN >= Duration::from_secs(10));
    }

    #[test]
    fn a_failed_sync_names_its_release() {
        let out = "Error: UPGRADE FAILED: release auth failed, and has been rolled back";
        assert_eq!(failed_release("", out).as_deref(), Some("auth"));
        let out = "in ./helmfiles/24-auth.yaml: failed processing release keycloak: command failed";
        assert_eq!(failed_release(out, "").as_deref(), Some("keycloak"));
        assert_eq!(failed_release("exit status 1", ""), None);
    }

    #[test]
    fn plan_syncs_only_what_changed_or_is_not_deployed() {
        assert_eq!(plan("d1", Some("d1"), &[], &[], false), LayerPlan::Unchanged);
        assert!(
            matches!(plan("d1", None, &[], &[], false), LayerPlan::Sync { reason } if reason.contains("no digest recorded"))
        );
        assert!(
            matches!(plan("d2", Some("d1"), &[], &[], false), LayerPlan::Sync { reason } if reason.contains("inputs changed"))
        );
        let failed = ["keycloak (revision 2 is `failed`)".to_owned()];
        assert!(
            matches!(plan("d1", Some("d1"), &failed, &[], false), LayerPlan::Sync { reason } if reason.contains("keycloak"))
        );
        assert!(
            matches!(plan("d1", Some("d1"), &[], &[], true), LayerPlan::Sync { reason } if reason == "--force")
        );
        let off = ["grafana (bundle observability)".to_owned()];
        assert!(
            matches!(plan("d2", Some("d1"), &[], &off, false), LayerPlan::Sync { reason } if reason == "uninstall grafana (bundle observability): bundle off"),
            "the plan says what it uninstalls first"
        );
    }
}
