//! The cluster stage: [`plan`] (desired, observed, decided; nothing changed) and
//! [`apply`] (k3d, then the API's `/readyz` through the run's kube context), and
//! `cargo xtask cluster` over them.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::RemoveContainerOptions;
use serde::Serialize;

use super::{
    Action, Args, Desired, HASH_LABEL, Observed, Plan, TAG, decide, desired, docker, observe,
};
use crate::config::Context;
use crate::error::{Context as _, ErrorKind, Result, bad_input, failed, missing};
use crate::events::{Event, Rendered};
use crate::exec::{self, Cmd};
use crate::k8s;
use crate::outcome::{Document, Report, Status, WithStatus};
use crate::platform::k3d::K3dConfig;
use crate::session::Session;
use crate::wait::{self, Check, Poll, Waited};

/// How often the readiness wait asks `/readyz`.
const READYZ_POLL: Duration = Duration::from_millis(500);

/// What [`plan`] found and decided: all [`apply`] needs.
#[derive(Debug, Clone)]
pub struct Planned {
    pub config: K3dConfig,
    pub desired: Desired,
    pub observed: Observed,
    pub plan: Plan,
    docker: Docker,
}

impl Planned {
    /// The Docker connection the plan observed through.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The `--plan` row: the action and the caches to connect, nothing done.
    pub fn report(&self) -> Report {
        let connects = self.plan.connect_caches.iter().map(ToString::to_string);
        let detail: Vec<String> =
            std::iter::once(self.plan.action.to_string()).chain(connects).collect();
        Report::planned(detail.join("; "))
    }
}

/// Desired, observed, decided; changes nothing. Bad input (k3d.yaml) before Docker is
/// asked anything; an unreachable Docker daemon is `Missing`.
pub async fn plan(ctx: &Context) -> Result<Planned> {
    let (config, desired) = desired(ctx)?;
    let docker = docker().await?;
    let observed = observe(&docker, &desired).await?;
    let plan = decide(&desired, &observed);
    ctx.session.line(TAG, &format!("plan for `{}`: {}", desired.name, plan.action));
    if !plan.remove_legacy.is_empty() {
        let names = plan.remove_legacy.join(", ");
        ctx.session.line(TAG, &format!("legacy registries to remove: {names}"));
    }
    for connect in &plan.connect_caches {
        ctx.session.line(TAG, &format!("plan: {connect}"));
    }
    Ok(Planned { config, desired, observed, plan, docker })
}

/// Carry out the plan, then prove the API answers `/readyz` through `ctx.kube_context`
/// (always, converged or not) within `timeouts.cluster_ready`. The report's detail is
/// the action (`create: no cluster exists`, `nothing to do: ...`).
pub async fn apply(ctx: &Context, planned: &Planned) -> Result<Report> {
    apply_decided(ctx, planned, &planned.plan).await
}

/// [`apply`] with `plan` decided elsewhere (a run plan) over what `planned` observed.
pub async fn apply_decided(ctx: &Context, planned: &Planned, plan: &Plan) -> Result<Report> {
    let Planned { config, desired, docker, .. } = planned;
    let session = &ctx.session;
    // Creating a cluster pulls images and boots k3s: the cluster budget, not a short call's.
    let timeout = ctx.settings.timeouts.cluster_ready();
    let k3d = |args: &[&str]| Cmd::new(TAG, "k3d", timeout).args(args.iter().copied());
    let create = || {
        // The positional name wins over a config without `metadata.name`.
        k3d(&["cluster", "create", &desired.name, "--config"])
            .arg(config.file.display().to_string())
            .arg("--runtime-label")
            .arg(format!("{HASH_LABEL}={}@server:*", desired.config_hash))
    };
    // Pull-through image caches live outside the cluster: k3d needs them before create.
    let caches = super::image_cache::caches(config)?;
    let warnings = super::image_cache::ensure(session, docker, &caches, timeout).await?;
    match &plan.action {
        Action::Noop => {}
        Action::Create => create_cluster(session, &create()).await?,
        Action::Recreate { .. } => {
            exec::run_ok(session, &k3d(&["cluster", "delete", &desired.name])).await?;
            create_cluster(session, &create()).await?;
        }
        Action::Start { .. } => {
            exec::run_ok(session, &k3d(&["cluster", "start", &desired.name])).await?;
            // `k3d cluster start` starts the nodes; a registry stopped by hand is ours to start.
            if let Some(registry) = &desired.registry {
                let state = docker.inspect_container(registry, None).await?.state;
                if !state.and_then(|s| s.running).unwrap_or(false) {
                    session
                        .events
                        .progress(TAG, &format!("starting registry container {registry}"));
                    docker.start_container(registry, None).await?;
                }
            }
        }
    }
    let mut connected = Vec::new();
    for connect in &plan.connect_caches {
        let tool_call = ctx.settings.timeouts.tool_call();
        if super::image_cache::connect(session, docker, connect, tool_call).await? {
            connected
                .push(format!("connected image cache {} to {}", connect.cache, connect.network));
        }
    }
    for name in &plan.remove_legacy {
        session.events.progress(TAG, &format!("removing legacy registry container {name}"));
        let options = RemoveContainerOptions { force: true, ..Default::default() };
        docker
            .remove_container(name, Some(options))
            .await
            .with_context(|| format!("removing legacy registry container {name}"))?;
    }
    ensure_context(ctx, &desired.name).await?;
    let context = ctx.kube_context.as_str();
    if plan.action == Action::Noop {
        // After create or start k3d wrote the kubeconfig itself.
        refresh_if_stale(ctx, &desired.name).await?;
    }
    wait_ready(session, context, timeout, || k8s::readyz(context)).await?;
    let detail = std::iter::once(plan.action.to_string()).chain(connected).collect::<Vec<_>>();
    Ok(Report::ok(detail.join("; ")).warn(warnings))
}

async fn create_cluster(session: &Session, cmd: &Cmd) -> Result<()> {
    exec::run_ok(session, cmd).await.map(drop).context(
        "creating the k3d cluster failed; k3d's exact output is in the log. \
         Fix the cause, then run `cargo xtask cluster` again",
    )
}

/// `k3d kubeconfig merge`: writes the cluster's `k3d-<cluster>` context into the default
/// kubeconfig without switching the current context.
pub fn merge_command(cluster: &str, timeout: Duration) -> Cmd {
    Cmd::new(TAG, "k3d", timeout).args([
        "kubeconfig",
        "merge",
        cluster,
        "--kubeconfig-merge-default",
        "--kubeconfig-switch-context=false",
    ])
}

/// The run's kube context must be in the kubeconfig. The cluster's own `k3d-<cluster>`,
/// when lost, is restored with k3d's own merge; otherwise it is `Missing`, naming the
/// exact command.
async fn ensure_context(ctx: &Context, cluster: &str) -> Result<()> {
    let context = ctx.kube_context.as_str();
    if k8s::has_context(context) {
        return Ok(());
    }
    let merge = merge_command(cluster, ctx.settings.timeouts.tool_call());
    let not_there = format!("kube context `{context}` is not in the kubeconfig ({})", kubeconfig());
    if context != format!("k3d-{cluster}") {
        return Err(missing(not_there).with_remediation(format!(
            "add the context `{context}` to the kubeconfig, or drop --context to use k3d-{cluster}"
        )));
    }
    ctx.session.events.progress(TAG, &format!("{not_there}; restoring it: {}", merge.display()));
    let merged = exec::run_ok(&ctx.session, &merge).await;
    match merged {
        Err(e) if e.kind().is_interrupted() => Err(e),
        _ if k8s::has_context(context) => Ok(()),
        Ok(_) => Err(missing(format!("{not_there}, and `{}` did not add it", merge.display()))
            .with_remediation(format!(
                "run `{}` and check the kubeconfig it writes",
                merge.display()
            ))),
        Err(e) => Err(missing(format!("{not_there}, and restoring it failed: {e:#}"))
            .with_remediation(format!("run `{}`", merge.display()))),
    }
}

/// A `k3d-<cluster>` context that does not answer may point at an old port (a cluster
/// recreated by hand, a kubeconfig copied from elsewhere): refresh it once with k3d's
/// own merge, which writes the cluster's current address. Another context is left as
/// the user wrote it; the readiness wait then names its URL and answer.
async fn refresh_if_stale(ctx: &Context, cluster: &str) -> Result<()> {
    let context = ctx.kube_context.as_str();
    if context != format!("k3d-{cluster}") || k8s::readyz(context).await.is_ok() {
        return Ok(());
    }
    let merge = merge_command(cluster, ctx.settings.timeouts.tool_call());
    let text =
        format!("kube context `{context}` does not answer; refreshing it: {}", merge.display());
    ctx.session.events.progress(TAG, &text);
    match exec::run(&ctx.session, &merge).await {
        Err(e) if e.kind().is_interrupted() => Err(e),
        // Whatever merge did, the readiness wait that follows says how the API answers.
        _ => Ok(()),
    }
}

/// Where the kubeconfig is read from, for messages.
fn kubeconfig() -> String {
    match std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        Some(path) => format!("KUBECONFIG={}", PathBuf::from(path).display()),
        None => "~/.kube/config; KUBECONFIG is not set".into(),
    }
}

/// Ask `readyz` until it answers, `timeout` passes (`Failed`, naming the last answer)
/// or the run is interrupted. A `Missing` answer (no such context) ends it at once.
/// A spinner shows while it waits; the first refusal is shown as progress.
pub async fn wait_ready<F, Fut>(
    session: &Session,
    context: &str,
    timeout: Duration,
    readyz: F,
) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let _wait = session.events.wait(TAG, &format!("waiting for the {context} API (/readyz)"));
    let mut last: Option<String> = None;
    let check = async || match readyz().await {
        Ok(()) => Ok(Check::Done(())),
        Err(e) if e.kind() == ErrorKind::Missing => Err(e),
        Err(e) => Ok(Check::Pending(format!("{e:#}"))),
    };
    let progress = |error: &String, _| {
        if last.as_ref() != Some(error) {
            let text =
                format!("{context}: API not ready ({error}); waiting up to {}s", timeout.as_secs());
            match last {
                None => session.events.progress(TAG, &text),
                Some(_) => session.line(TAG, &text),
            }
            last = Some(error.clone());
        }
    };
    match wait::until(&session.cancel, timeout, Poll::every(READYZ_POLL), check, progress).await {
        Ok(Waited::Done(())) => {
            session.line(TAG, &format!("{context}: /readyz ok"));
            Ok(())
        }
        Ok(Waited::TimedOut(error)) => {
            session
                .line(TAG, &format!("{context}: not ready after {}s: {error}", timeout.as_secs()));
            Err(failed(format!(
                "the cluster API (context {context}) did not become ready within {}s: {error}",
                timeout.as_secs()
            ))
            .with_remediation(format!(
                "look at the cluster's containers (`docker ps -a --filter label=app=k3d`) and their logs; `cargo xtask cluster` again once the API answers{}",
                session.where_output_is(" (log: ", ")")
            )))
        }
        Err(stopped) => {
            if stopped.kind().is_interrupted() {
                session.line(TAG, &format!("{context}: interrupted while waiting for /readyz"));
            }
            Err(stopped)
        }
    }
}

/// `cargo xtask cluster [--plan]`: reconcile (or only plan) and emit the result.
pub async fn run(ctx: &Context, args: &Args) -> Result<()> {
    if !ctx.targets_own_cluster() {
        return Err(bad_input(format!(
            "`cargo xtask cluster` manages the k3d cluster `{}`, whose context is `{}`; --context `{}` names another: drop --context",
            ctx.settings.cluster,
            crate::config::default_kube_context(&ctx.settings),
            ctx.kube_context
        )));
    }
    let started = Instant::now();
    let planned = plan(ctx).await?;
    let warnings = if args.plan { Vec::new() } else { apply(ctx, &planned).await?.warnings };
    let result = Outcome {
        cluster: planned.desired.name.clone(),
        plan: planned.plan.clone(),
        planned: args.plan,
        warnings,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        log: ctx.session.log_path.clone(),
    };
    ctx.session.events.emit(Event::Result { result: &result });
    Ok(())
}

/// The version of the JSON shape (`schemas/cluster.schema.json`).
pub const SCHEMA_VERSION: u32 = 1;

/// What `cargo xtask cluster` shows: the decision, and what was done.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Outcome {
    pub cluster: String,
    #[serde(flatten)]
    pub plan: Plan,
    /// `--plan`: decided, nothing changed.
    pub planned: bool,
    /// What needs the user's attention but failed nothing (an outdated image cache).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub duration_ms: u64,
    #[serde(skip)]
    pub log: Option<PathBuf>,
}

impl Rendered for Outcome {
    fn human(&self) -> String {
        let cluster = &self.cluster;
        let (verb, did) = if self.planned { ("plan", "would remove") } else { ("done", "removed") };
        let mut out = format!("cluster `{cluster}`: {verb}: {}\n", self.plan.action);
        for name in &self.plan.remove_legacy {
            out.push_str(&format!(
                "cluster `{cluster}`: {did} legacy registry container `{name}`\n"
            ));
        }
        for connect in &self.plan.connect_caches {
            out.push_str(&format!("cluster `{cluster}`: {verb}: {connect}\n"));
        }
        for warning in &self.warnings {
            out.push_str(&format!("cluster `{cluster}`: warning: {warning}\n"));
        }
        if !self.planned {
            let log =
                self.log.as_ref().map_or(String::new(), |p| format!("; log: {}", p.display()));
            let secs = self.duration_ms as f64 / 1000.0;
            out.push_str(&format!("cluster `{cluster}`: took {secs:.1}s{log}\n"));
        }
        out
    }

    fn json(&self) -> serde_json::Value {
        let status = if self.planned { Status::Planned } else { Status::Ok };
        Document::new(SCHEMA_VERSION, WithStatus { status, body: self }).json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::testing::recording;

    fn outcome(planned: bool, action: Action) -> Outcome {
        Outcome {
            cluster: "ameide".into(),
            plan: Plan { action, remove_legacy: vec!["dev-reg".into()], connect_caches: vec![] },
            planned,
            warnings: vec![],
            duration_ms: 1234,
            log: Some("/tmp/setup.log".into()),
        }
    }

    #[test]
    fn the_result_reads_as_before_and_as_json() {
        let planned = outcome(true, Action::Recreate { reason: "config drift: x".into() });
        assert_eq!(
            planned.human(),
            "cluster `ameide`: plan: recreate: config drift: x\n\
             cluster `ameide`: would remove legacy registry container `dev-reg`\n"
        );
        let json = planned.json();
        assert_eq!(
            json,
            serde_json::json!({"cluster": "ameide", "action": "recreate", "reason": "config drift: x",
                "remove_legacy": ["dev-reg"], "planned": true, "duration_ms": 1234, "status": "planned",
                "schema_version": 1})
        );
        let done = outcome(false, Action::Create);
        let text = done.human();
        assert!(text.starts_with("cluster `ameide`: done: create: no cluster exists\n"), "{text}");
        assert!(text.contains("removed legacy registry container `dev-reg`"), "{text}");
        assert!(text.ends_with("took 1.2s; log: /tmp/setup.log\n"), "{text}");
        assert!(done.json().get("reason").is_none());
        assert!(done.json().get("warnings").is_none());
        let warned = Outcome { warnings: vec!["image cache k3d-c runs registry:2".into()], ..done };
        assert!(
            warned
                .human()
                .contains("cluster `ameide`: warning: image cache k3d-c runs registry:2\n"),
            "{}",
            warned.human()
        );
        assert_eq!(
            warned.json()["warnings"],
            serde_json::json!(["image cache k3d-c runs registry:2"])
        );
    }

    #[tokio::test]
    async fn an_api_that_never_answers_ok_fails_naming_the_answer() {
        let (events, seen) = recording();
        let session = Session { events, ..Session::silent() };
        let answer =
            || async { Err(failed("GET https://127.0.0.1:6443/readyz answered 503: etcd")) };
        let err =
            wait_ready(&session, "k3d-ameide", Duration::from_secs(1), answer).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Failed);
        let text = err.to_string();
        assert!(text.contains("did not become ready within 1s"), "{text}");
        assert!(text.ends_with("GET https://127.0.0.1:6443/readyz answered 503: etcd"), "{text}");
        let seen = seen.0.lock().unwrap().join("\n");
        assert!(seen.contains("WaitStarted") && seen.contains("WaitFinished"), "{seen}");
        assert!(seen.contains("Progress") && seen.contains("API not ready"), "{seen}");
    }

    #[tokio::test]
    async fn readiness_ends_at_once_when_ready_missing_or_interrupted() {
        let session = Session::silent();
        let long = Duration::from_secs(300);
        wait_ready(&session, "k3d-ameide", long, || async { Ok(()) }).await.unwrap();
        let gone = || async { Err(missing("kube context `k3d-ameide` is not usable")) };
        let err = wait_ready(&session, "k3d-ameide", long, gone).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Missing);
        session.cancel.request(crate::error::Signal::Terminate);
        let err = wait_ready(&session, "k3d-ameide", long, || async { Ok(()) }).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Interrupted(crate::error::Signal::Terminate));
    }

    #[tokio::test]
    async fn a_lost_context_names_the_k3d_merge_command() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = "apiVersion: k3d.io/v1alpha5\nkind: Simple\n";
        let mut ctx = super::super::tests::context(dir.path(), yaml);
        ctx.settings.cluster = "xtask-unit-no-such-cluster".into();
        ctx.kube_context = "k3d-xtask-unit-no-such-cluster".into();
        // No k3d on this PATH: the repair cannot run, so the command is named.
        ctx.session.tool_path = Some(dir.path().as_os_str().to_owned());
        let err = ensure_context(&ctx, "xtask-unit-no-such-cluster").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Missing);
        let command = "k3d kubeconfig merge xtask-unit-no-such-cluster --kubeconfig-merge-default --kubeconfig-switch-context=false";
        assert_eq!(err.remediation(), Some(format!("run `{command}`").as_str()), "{err}");
        assert!(err.to_string().contains("is not in the kubeconfig"), "{err}");

        ctx.kube_context = "shared-prod".into();
        let err = ensure_context(&ctx, "xtask-unit-no-such-cluster").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Missing);
        assert!(err.to_string().starts_with("kube context `shared-prod` is not in"), "{err}");
    }
}
