//! Running one trial: call the xtask library's check, and word its outcome as
//! expected / found / remediation, so a JUnit report read alone is enough to act.
//! Everything a trial prints passes the session's redactor first, the one `cargo xtask`
//! applies to its events: secrets the check read (the Postgres credentials) and
//! secret shapes never reach the test output or nextest's JUnit.

use std::time::Duration;

use libtest_mimic::{Failed, Trial};
use xtask::cluster::{self, Action};
use xtask::config::Context;
use xtask::error::Result;
use xtask::outcome::{Check, Finding, Verdict};
use xtask::session::Session;
use xtask::{checks, k8s, release, secrets, tilt};

use xtask::lock::Shared;

use crate::trials::{GateMode, TrialSpec, What};

/// A check that gets no answer within this time fails (a hung API must not hang CI).
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// A passing check (its finding says what was found).
fn passed(warnings: Vec<String>) -> Check {
    Check { verdict: Verdict::Passed, finding: Finding::default(), warnings }
}

/// A failing check in this trial's words (its `expected` is filled in by [`run`]).
fn failed(found: impl Into<String>, remediation: impl Into<String>) -> Check {
    Check {
        verdict: Verdict::Failed,
        finding: Finding::new("", "", found, remediation),
        warnings: Vec::new(),
    }
}

/// The message of a failed trial, redacted. Also written to stderr after `Error: `, the
/// line nextest lifts into the JUnit `<failure>` element, so the report alone says what
/// to do.
fn report(session: &Session, expected: &str, found: &str, remediation: &str) -> Failed {
    let message = format!("expected: {expected}\nfound: {found}\nremediation: {remediation}");
    let message = session.redact(&message).into_owned();
    eprintln!("Error: {message}");
    message.into()
}

pub fn trial(check: TrialSpec) -> Trial {
    let TrialSpec { name, what, ctx, not_applicable } = check;
    let ignored = not_applicable.is_some();
    let label = name.clone();
    Trial::test(name, move || {
        if let Some(reason) = not_applicable {
            // Only reached with `--ignored` / `--include-ignored`.
            eprintln!("{label}: not applicable: {reason}");
            return Ok(());
        }
        let ctx = match ctx {
            Ok(ctx) => ctx,
            Err(e) => {
                return Err(report(
                    &Session::silent(),
                    &format!("the settings of the workspace to be readable ({label})"),
                    &format!("could not check: {e}"),
                    "run from inside the repository (or set BOOTSTRAP_ROOT to it) and fix the \
                     file the message names; `cargo xtask doctor` checks the settings",
                ));
            }
        };
        run(&label, &ctx, &what)
    })
    .with_ignored_flag(ignored)
}

fn run(name: &str, ctx: &Context, what: &What) -> Result<(), Failed> {
    let expected = expected(ctx, what);
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
            let found = format!("could not check: no async runtime: {e}");
            report(&ctx.session, &expected, &found, "")
        })?;
    let limit = time_limit(ctx, what);
    let outcome = runtime.block_on(async { tokio::time::timeout(limit, check(ctx, what)).await });
    let outcome = match outcome {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => could_not_check(what, &e),
        Err(_) => failed(
            format!("could not check: no answer within {}s", limit.as_secs()),
            unreachable_remediation(what),
        ),
    };
    for warning in &outcome.warnings {
        eprintln!("{name}: warning: {}", ctx.session.redact(warning));
    }
    match outcome.verdict {
        Verdict::Passed | Verdict::Warned => Ok(()),
        Verdict::Failed => {
            let f = &outcome.finding;
            let own = if f.expected.is_empty() { &expected } else { &f.expected };
            Err(report(&ctx.session, own, &f.found, &f.remediation))
        }
    }
}

/// A live gate runs the layer's Helm tests (the `gate` timeout), after waiting for a
/// running bootstrap; everything else only reads.
fn time_limit(ctx: &Context, what: &What) -> Duration {
    match what {
        What::Gate { mode: Ok(GateMode::Live), .. } => {
            ctx.settings.timeouts.gate() + lock_wait() + CHECK_TIMEOUT
        }
        _ => CHECK_TIMEOUT,
    }
}

/// How long a live gate waits for a running bootstrap (`SMOKE_LOCK_WAIT`, seconds; 0:
/// refuse at once).
fn lock_wait() -> Duration {
    let secs = std::env::var(LOCK_WAIT_ENV).ok().and_then(|v| v.trim().parse().ok());
    Duration::from_secs(secs.unwrap_or(DEFAULT_LOCK_WAIT_SECS))
}

const LOCK_WAIT_ENV: &str = "SMOKE_LOCK_WAIT";
const DEFAULT_LOCK_WAIT_SECS: u64 = 300;

/// An error instead of a verdict: the check could not run; its own remediation wins.
fn could_not_check(what: &What, err: &xtask::error::Error) -> Check {
    let remediation =
        err.remediation().map_or_else(|| unreachable_remediation(what), str::to_owned);
    failed(format!("could not check: {err:#}"), remediation)
}

fn unreachable_remediation(what: &What) -> String {
    match what {
        What::ClusterExists | What::ClusterRegistry => {
            "start Docker (or set DOCKER_HOST to a running daemon), then create or start the \
             cluster with `cargo xtask cluster`"
                .into()
        }
        What::TiltReady => "start Tilt with `cargo xtask tilt`".into(),
        What::Unreadable(_) => {
            "fix the file the message names; `cargo xtask plan` shows what is read".into()
        }
        _ => "make sure the cluster runs (`cargo xtask cluster`) and the kubeconfig has its \
              context (`k3d-<cluster>`, or the one BOOTSTRAP_CONTEXT names; KUBECONFIG)"
            .into(),
    }
}

fn expected(ctx: &Context, what: &What) -> String {
    let s = &ctx.settings;
    let secrets = &s.secrets;
    match what {
        What::ClusterExists => format!(
            "k3d cluster `{}` running, matching {}, its API answering /readyz",
            s.cluster,
            ctx.display_path(&s.k3d_config)
        ),
        What::ClusterRegistry => "the cluster's registry container running and answering \
                                  GET /v2/"
            .into(),
        What::VaultBootstrap => match &secrets.vault_job {
            Some(job) => format!("Job {}/{job} succeeded", secrets.vault_namespace),
            None => format!(
                "the newest Job of CronJob {}/{} succeeded",
                secrets.vault_namespace, secrets.vault_cronjob
            ),
        },
        What::DbMigrations => format!(
            "Secret {}/{} holds url, user, password from Secret {}/{}",
            secrets.db_migrations_namespace,
            secrets.db_migrations_secret,
            secrets.postgres_namespace,
            secrets.postgres_secret
        ),
        What::ExternalSecretsReady => {
            "every ExternalSecret Ready (every key it references exists)".into()
        }
        What::ReleasesDeployed(_) => {
            "every installed release of every layer at status deployed".into()
        }
        What::Gate { release, namespace, mode } => match mode {
            Ok(GateMode::Live) => {
                format!("`helm test {release} -n {namespace}` run now: every test hook Succeeded")
            }
            _ => format!(
                "every test hook of gate release {namespace}/{release} Succeeded (as last recorded)"
            ),
        },
        What::Unreadable(_) => "the platform model readable".into(),
        What::TiltReady => format!(
            "Tilt answering on http://localhost:{}/ with {} Ready",
            s.tilt_port,
            tilt::TILTFILE_RESOURCE
        ),
    }
}

async fn check(ctx: &Context, what: &What) -> Result<Check> {
    match what {
        What::ClusterExists => cluster_exists(ctx).await,
        What::ClusterRegistry => cluster_registry(ctx).await,
        What::VaultBootstrap => vault_bootstrap(ctx).await,
        What::DbMigrations => db_migrations(ctx).await,
        What::ExternalSecretsReady => external_secrets_ready(ctx).await,
        What::ReleasesDeployed(releases) => releases_deployed(ctx, releases).await,
        What::Gate { release, namespace, mode } => match mode {
            Ok(GateMode::Live) => live_gate(ctx, release, namespace).await,
            Ok(GateMode::Recorded) => recorded_gate(ctx, release, namespace).await,
            Err(why) => Ok(failed(why.clone(), "unset SMOKE_GATES, or set it to `recorded`")),
        },
        What::Unreadable(why) => Ok(failed(
            why.clone(),
            "fix the file the message names; `cargo xtask plan` shows what is read",
        )),
        What::TiltReady => tilt_ready(ctx).await,
    }
}

// ---- cluster -----------------------------------------------------------------------

async fn cluster_exists(ctx: &Context) -> Result<Check> {
    let (_, desired) = cluster::desired(ctx)?;
    let docker = cluster::docker().await?;
    let observed = cluster::observe(&docker, &desired).await?;
    let plan = cluster::decide(&desired, &observed);
    let mut warnings = Vec::new();
    if !plan.remove_legacy.is_empty() {
        warnings.push(format!(
            "legacy registry container(s) {} still exist; `cargo xtask cluster` removes them",
            plan.remove_legacy.join(", ")
        ));
    }
    let remediation = match &plan.action {
        Action::Noop => None,
        Action::Create => Some(
            "create it with `cargo xtask cluster` (or everything with `cargo xtask bootstrap`)",
        ),
        Action::Recreate { .. } => Some(
            "`cargo xtask cluster` recreates it from the config (its contents are lost: run \
             `cargo xtask bootstrap` afterwards)",
        ),
        Action::Start { .. } => Some("start it with `cargo xtask cluster`"),
    };
    if let Some(remediation) = remediation {
        return Ok(failed(format!("cluster `{}`: {}", desired.name, plan.action), remediation));
    }
    let context = &ctx.kube_context;
    if let Err(e) = k8s::readyz(context).await {
        return Ok(failed(
            format!("the API of kube context `{context}` does not answer /readyz: {e:#}"),
            format!(
                "the cluster's containers run but its API does not: look at `docker logs \
                 k3d-{}-server-0`; `cargo xtask cluster` restarts a stopped cluster, \
                 `k3d kubeconfig merge {}` restores a lost kube context",
                desired.name, desired.name
            ),
        ));
    }
    Ok(passed(warnings))
}

use xtask::cluster::registry::{PORT_LABEL as REGISTRY_PORT_LABEL, TIMEOUT as REGISTRY_TIMEOUT};

async fn cluster_registry(ctx: &Context) -> Result<Check> {
    let (_, desired) = cluster::desired(ctx)?;
    let Some(name) = &desired.registry else {
        return Ok(passed(vec!["the k3d config creates no registry: nothing to check".into()]));
    };
    let docker = cluster::docker().await?;
    let observed = cluster::observe(&docker, &desired).await?;
    let Some(registry) = observed.registry else {
        return Ok(failed(
            format!("no container `{name}`"),
            "k3d creates the registry only with the cluster: `cargo xtask cluster` recreates \
             both (then `cargo xtask bootstrap`)",
        ));
    };
    if !registry.running {
        return Ok(failed(
            format!("container `{name}` exists but is not running"),
            "start it with the cluster: `cargo xtask cluster`",
        ));
    }
    let Some(port) = registry.labels.get(REGISTRY_PORT_LABEL) else {
        return Ok(failed(
            format!("container `{name}` has no `{REGISTRY_PORT_LABEL}` label (not made by k3d?)"),
            format!("remove it (`docker rm -f {name}`) and run `cargo xtask cluster`"),
        ));
    };
    let url = format!("http://127.0.0.1:{port}/v2/");
    match xtask::http::get(&url, &[], REGISTRY_TIMEOUT).await.map(|r| r.status.as_u16()) {
        // The registry API answers 200, or 401 when it requires a login.
        Ok(200 | 401) => Ok(passed(vec![])),
        Ok(status) => Ok(failed(
            format!("GET {url} answered HTTP {status}"),
            format!(
                "look at `docker logs {name}`; `cargo xtask cluster` recreates a broken registry"
            ),
        )),
        // The error names the URL.
        Err(e) => Ok(failed(
            format!("{e:#}"),
            format!("look at `docker logs {name}` and `docker port {name}`"),
        )),
    }
}

// ---- layers and releases -------------------------------------------------------------

/// The gate as the bootstrap runs it: stale test pods removed, a fresh `helm test`, the
/// verdict from the release, the logs of failed hooks. Never beside a command that
/// changes the platform: it waits for one (up to `SMOKE_LOCK_WAIT`), then refuses.
async fn live_gate(ctx: &Context, release_name: &str, namespace: &str) -> Result<Check> {
    let wait = lock_wait();
    let deadline = tokio::time::Instant::now() + wait;
    let mut said = false;
    let _lock = loop {
        match xtask::lock::RunLock::shared(&ctx.root)? {
            Shared::Taken(lock) => break lock,
            Shared::Busy(holder) if tokio::time::Instant::now() >= deadline => {
                return Ok(failed(
                    format!(
                        "refused: {holder} is running, and a live gate does not run beside it (waited {}s)",
                        wait.as_secs()
                    ),
                    "run smoke again when it has finished, wait longer with SMOKE_LOCK_WAIT=<seconds>, or read the recorded verdicts now with SMOKE_GATES=recorded",
                ));
            }
            Shared::Busy(holder) => {
                if !said {
                    eprintln!(
                        "gate {namespace}/{release_name}: waiting up to {}s for {holder} to finish (SMOKE_LOCK_WAIT)",
                        wait.as_secs()
                    );
                    said = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    if said {
        eprintln!("gate {namespace}/{release_name}: the other run finished; running the gate");
    }
    let client = k8s::client(&ctx.kube_context).await?;
    let target = checks::GateTarget {
        release: release_name,
        namespace,
        tag: &format!("smoke/{release_name}"),
        kube_context: &ctx.kube_context,
        timeout: ctx.settings.timeouts.gate(),
    };
    checks::helm_test_gate(&ctx.session, &client, &target).await
}

async fn recorded_gate(ctx: &Context, release_name: &str, namespace: &str) -> Result<Check> {
    let client = k8s::client(&ctx.kube_context).await?;
    let release = release::read(&client, namespace, release_name).await?;
    // The verdict `helm test` recorded in the release (no new test run): helm's own exit
    // status is unknown here, so only the hooks' phases decide.
    let context = &ctx.kube_context;
    Ok(checks::gate_verdict(release_name, namespace, context, release.as_ref(), true, "", &[]))
}

async fn releases_deployed(
    ctx: &Context,
    releases: &Result<Vec<(String, String, String)>, String>,
) -> Result<Check> {
    let releases = match releases {
        Ok(releases) => releases,
        Err(why) => {
            return Ok(failed(
                format!("could not check: {why}"),
                "fix the file the message names; `cargo xtask plan` shows what is read",
            ));
        }
    };
    if releases.is_empty() {
        return Ok(failed(
            "0 installed releases in the platform model: nothing to check",
            "list the layer files under `helmfiles:` in the root Helmfile",
        ));
    }
    let client = k8s::client(&ctx.kube_context).await?;
    let mut bad = Vec::new();
    for (layer, name, namespace) in releases {
        let result = checks::release_deployed(&client, name, namespace, &ctx.kube_context).await?;
        if result.verdict == Verdict::Failed {
            bad.push((layer, result));
        }
    }
    let Some((layer, first)) = bad.first() else { return Ok(passed(vec![])) };
    let list: Vec<String> = bad
        .iter()
        .map(|(layer, r)| format!("{} (layer {layer}): {}", r.finding.subject, r.finding.found))
        .collect();
    Ok(failed(
        format!("{} of {} releases not deployed: {}", bad.len(), releases.len(), list.join("; ")),
        format!("{} (`cargo xtask sync {layer}`)", first.finding.remediation),
    ))
}

// ---- secrets -------------------------------------------------------------------------

async fn vault_bootstrap(ctx: &Context) -> Result<Check> {
    let client = k8s::client(&ctx.kube_context).await?;
    // Asked once, without the bootstrap's wait or its log.
    Ok(secrets::vault_bootstrap_state(ctx, &client).await?.into_check())
}

async fn db_migrations(ctx: &Context) -> Result<Check> {
    let client = k8s::client(&ctx.kube_context).await?;
    secrets::check_db_migrations(ctx, &client).await
}

async fn external_secrets_ready(ctx: &Context) -> Result<Check> {
    let client = k8s::client(&ctx.kube_context).await?;
    let found = secrets::list_external_secrets(&client).await?;
    Ok(secrets::judge_external_secrets(&found, &ctx.kube_context))
}

// ---- tilt ----------------------------------------------------------------------------

async fn tilt_ready(ctx: &Context) -> Result<Check> {
    let port = ctx.settings.tilt_port;
    let probe = tilt::probe(port).await;
    if probe.is_ready() {
        return Ok(passed(vec![]));
    }
    let found = probe.describe(port);
    let tilt_log = tilt::tilt_log_path(&ctx.log_path);
    Ok(failed(
        found,
        format!(
            "`cargo xtask tilt` starts Tilt and waits for Ready; if it runs, read {} and the \
             Tilt UI at http://localhost:{port}/",
            tilt_log.display()
        ),
    ))
}
