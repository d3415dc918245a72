//! The Vault bootstrap: observe the CronJob that seeds Vault (or a named Job) and its
//! Jobs, decide where it stands ([`super::cronjob::decide`]), and wait until it
//! succeeded. A failed Job while the CronJob will run again is an attempt (a warning,
//! and the wait goes on); the timeout, a suspended or missing CronJob, or a failed plain
//! Job end it with a finding that lists every failed attempt with its pod's log tail.

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use kube::ResourceExt;
use kube::api::{Api, ListParams, LogParams};

use super::cronjob::{
    Attempt, Decision, Failure, JobState, Runner, Waiting, decide, failed_since,
    failed_since_success, job_state, owned_jobs,
};
use super::{POLL, TAG, indent};
use crate::config::{Context, SecretsSettings};
use crate::error::Result;
use crate::k8s::kubectl_command;
use crate::learn::learn_pod_secrets;
use crate::outcome::{Check, Finding, Report, Verdict, tail};
use crate::wait::{self, Poll, Waited};

const LOG_TAIL_LINES: i64 = 20;
/// Lines of each earlier attempt's log in a remediation.
const ATTEMPT_TAIL_LINES: usize = 5;
/// Remediation from the troubleshooting table for a failing Vault bootstrap.
const VAULT_REMEDIATION: &str = "Vault pod still starting or service account missing auth: \
inspect the CronJob pod logs after layer 15 completes; ensure the `foundation-vault-core` \
StatefulSet is Healthy and the bootstrap service account retains `system:auth-delegator`.";
/// The subject of every Vault bootstrap finding but a failed Job's (which names the Job).
const SUBJECT: &str = "Vault bootstrap";

/// Where the Vault bootstrap stands, read once ([`vault_bootstrap_state`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultBootstrapState {
    /// Its Job succeeded; the Job's name.
    Succeeded { job: String },
    /// Waiting would not change it: the CronJob is missing or suspended, or the plain
    /// Job failed. The finding names the Job and every failed attempt's log tail.
    Failed(Finding),
    /// No Job yet, a Job still runs, or the newest Job failed and the CronJob runs a new
    /// one at its next schedule tick: which, and what to do if it stays so.
    Pending(Finding),
}

impl VaultBootstrapState {
    /// The state as a check (smoke's trial): pending counts as not passed.
    pub fn into_check(self) -> Check {
        match self {
            VaultBootstrapState::Succeeded { job } => Check {
                verdict: Verdict::Passed,
                finding: Finding::new(
                    SUBJECT,
                    "its Job succeeded",
                    format!("Job {job} succeeded"),
                    "",
                ),
                warnings: Vec::new(),
            },
            VaultBootstrapState::Failed(finding) | VaultBootstrapState::Pending(finding) => {
                Check { verdict: Verdict::Failed, finding, warnings: Vec::new() }
            }
        }
    }
}

/// A failed attempt with the last lines of its (newest) pod's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptLog {
    pub job: String,
    pub reason: String,
    pub pod: Option<String>,
    /// The log tail, or why it could not be read.
    pub tail: String,
}

impl AttemptLog {
    fn line(&self, namespace: &str) -> String {
        format!("Job {namespace}/{} failed ({})", self.job, self.reason)
    }

    /// "last lines of pod P:" and the tail (at most `lines` lines), indented.
    fn log_block(&self, lines: usize) -> String {
        let source = self.pod.as_deref().map_or(String::new(), |p| format!(" of pod {p}"));
        format!("last lines{source}:\n{}", indent(&tail(&self.tail, lines)))
    }
}

/// "Job ns/name" or "CronJob ns/name": what runs the Vault bootstrap.
fn vault_owner(settings: &SecretsSettings) -> String {
    let namespace = &settings.vault_namespace;
    match &settings.vault_job {
        Some(job) => format!("Job {namespace}/{job}"),
        None => format!("CronJob {namespace}/{}", settings.vault_cronjob),
    }
}

/// What a passing Vault bootstrap looks like, for findings.
fn expected(settings: &SecretsSettings) -> String {
    match &settings.vault_job {
        Some(_) => format!("{} succeeded", vault_owner(settings)),
        None => format!("the newest Job of {} succeeded", vault_owner(settings)),
    }
}

/// What was read of the Vault bootstrap: its runner, its Jobs (oldest first) and the
/// spec of the pods it runs.
struct Observed {
    runner: Runner,
    attempts: Vec<Attempt>,
    pod_spec: Option<PodSpec>,
}

/// The runner and its Jobs, read once.
async fn observe(settings: &SecretsSettings, client: &kube::Client) -> Result<Observed> {
    let namespace = settings.vault_namespace.as_str();
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let attempt = |job: &Job| Attempt {
        job: job.name_any(),
        state: job_state(job),
        created: job.metadata.creation_timestamp.as_ref().map(|t| t.0),
    };
    if let Some(name) = &settings.vault_job {
        let job = jobs.get_opt(name).await?;
        let pod_spec = job.as_ref().and_then(|j| j.spec.as_ref()?.template.spec.clone());
        let attempts = job.iter().map(attempt).collect();
        return Ok(Observed { runner: Runner::Job, attempts, pod_spec });
    }
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), namespace);
    let Some(cronjob) = cronjobs.get_opt(&settings.vault_cronjob).await? else {
        return Ok(Observed {
            runner: Runner::CronJobMissing,
            attempts: Vec::new(),
            pod_spec: None,
        });
    };
    let spec = cronjob.spec.as_ref();
    let suspended = spec.and_then(|s| s.suspend).unwrap_or(false);
    let pod_spec = spec.and_then(|s| s.job_template.spec.as_ref()?.template.spec.clone());
    let all = jobs.list(&ListParams::default()).await?.items;
    let attempts = owned_jobs(&all, &settings.vault_cronjob).into_iter().map(attempt).collect();
    Ok(Observed { runner: Runner::CronJob { suspended }, attempts, pod_spec })
}

/// Read the Vault bootstrap's state once, writing nothing. `Err` only when the API
/// cannot be read.
pub async fn vault_bootstrap_state(
    ctx: &Context,
    client: &kube::Client,
) -> Result<VaultBootstrapState> {
    let settings = &ctx.settings.secrets;
    let namespace = settings.vault_namespace.as_str();
    let Observed { runner, attempts, pod_spec } = observe(settings, client).await?;
    let decision = decide(runner, &attempts);
    let logs = match decision {
        Decision::Succeeded { .. } => Vec::new(),
        _ => {
            learn_pod_secrets(&ctx.session, client, namespace, pod_spec.as_ref()).await;
            attempt_logs(client, namespace, &failed_since_success(&attempts)).await
        }
    };
    Ok(state_of(settings, &ctx.kube_context, decision, &logs))
}

/// The state a decision means, with every failed attempt (`logs`, oldest first) in the
/// finding.
pub fn state_of(
    settings: &SecretsSettings,
    context: &str,
    decision: Decision,
    logs: &[AttemptLog],
) -> VaultBootstrapState {
    let namespace = settings.vault_namespace.as_str();
    let cronjob = format!("CronJob {namespace}/{}", settings.vault_cronjob);
    let log_of = |job: &str, reason: &str| {
        logs.iter().find(|l| l.job == job).cloned().unwrap_or_else(|| AttemptLog {
            job: job.to_owned(),
            reason: reason.to_owned(),
            pod: None,
            tail: "(pod log not read)".into(),
        })
    };
    let failed_job = |log: &AttemptLog, note: &str, extra: &str| {
        Finding::new(
            format!("Vault bootstrap Job {namespace}/{}", log.job),
            expected(settings),
            format!("{}{note}\n{}", log.line(namespace), log.log_block(LOG_TAIL_LINES as usize)),
            remediation(settings, context, extra, logs, log),
        )
    };
    let patch = format!(
        "patch cronjob -n {namespace} {} -p '{{\"spec\":{{\"suspend\":false}}}}'",
        settings.vault_cronjob
    );
    let resume = format!(" Resume it: `{}`.", kubectl_command(context, &patch));
    match decision {
        Decision::Succeeded { job } => VaultBootstrapState::Succeeded { job },
        Decision::Waiting(Waiting::NoJobYet) => {
            let found = match settings.vault_job {
                Some(_) => format!("no {} exists yet", vault_owner(settings)),
                None => format!(
                    "no Job of {cronjob} exists yet (its first Job comes at its next schedule tick)"
                ),
            };
            VaultBootstrapState::Pending(vault_pending(settings, context, found))
        }
        Decision::Waiting(Waiting::Running { job }) => {
            let mut finding =
                vault_pending(settings, context, format!("Job {namespace}/{job} is still running"));
            if let Some(last) = logs.last() {
                finding.found = format!(
                    "{}; the previous attempt {}\n{}",
                    finding.found,
                    last.line(namespace),
                    last.log_block(LOG_TAIL_LINES as usize)
                );
                finding.remediation = remediation(settings, context, "", logs, last);
            }
            VaultBootstrapState::Pending(finding)
        }
        Decision::Waiting(Waiting::Retrying { job, reason }) => {
            let note = format!("; {cronjob} runs a new Job at its next schedule tick");
            VaultBootstrapState::Pending(failed_job(&log_of(&job, &reason), &note, ""))
        }
        Decision::Failed(Failure::CronJobMissing) => VaultBootstrapState::Failed(Finding::new(
            SUBJECT,
            expected(settings),
            format!("{} not found", vault_owner(settings)),
            format!(
                "sync layer {0} first (`cargo xtask sync {0}`), or set `vault_cronjob` / \
                 `vault_namespace` in [workspace.metadata.bootstrap.secrets]",
                settings.vault_after_layer
            ),
        )),
        Decision::Failed(Failure::Suspended { failed: None }) => {
            VaultBootstrapState::Failed(Finding::new(
                SUBJECT,
                expected(settings),
                format!("{cronjob} is suspended and has no Job"),
                resume.trim_start(),
            ))
        }
        Decision::Failed(Failure::Suspended { failed: Some((job, reason)) }) => {
            let note = format!("; {cronjob} is suspended: no new Job will run");
            VaultBootstrapState::Failed(failed_job(&log_of(&job, &reason), &note, &resume))
        }
        Decision::Failed(Failure::JobFailed { job, reason }) => {
            VaultBootstrapState::Failed(failed_job(&log_of(&job, &reason), "", ""))
        }
    }
}

/// The remediation for failed attempts: the troubleshooting text, `extra`, every failed
/// attempt (oldest first) with its log tail when there was more than `newest`, and the
/// commands to look further.
fn remediation(
    settings: &SecretsSettings,
    context: &str,
    extra: &str,
    attempts: &[AttemptLog],
    newest: &AttemptLog,
) -> String {
    let namespace = settings.vault_namespace.as_str();
    let mut text = format!("{VAULT_REMEDIATION}{extra}");
    if !attempts.is_empty() {
        text.push_str(&format!("\nEvery failed attempt ({}, oldest first):", attempts.len()));
        for attempt in attempts {
            let block = attempt.log_block(ATTEMPT_TAIL_LINES);
            text.push_str(&format!("\n- {}; {block}", attempt.line(namespace)));
        }
    }
    let logs_cmd = match &newest.pod {
        Some(pod) => format!("logs -n {namespace} {pod}"),
        None => format!("logs -n {namespace} job/{}", newest.job),
    };
    let describe = match &settings.vault_job {
        Some(job) => format!("describe job -n {namespace} {job}"),
        None => format!("describe cronjob -n {namespace} {}", settings.vault_cronjob),
    };
    let (logs_cmd, describe) =
        (kubectl_command(context, &logs_cmd), kubectl_command(context, &describe));
    text.push_str(&format!("\nCommands: `{logs_cmd}`, `{describe}`."));
    text
}

fn vault_pending(settings: &SecretsSettings, context: &str, found: String) -> Finding {
    let manual = kubectl_command(
        context,
        &format!(
            "create job -n {} --from=cronjob/{1} {1}-manual",
            settings.vault_namespace, settings.vault_cronjob
        ),
    );
    Finding::new(
        SUBJECT,
        expected(settings),
        found,
        format!("{VAULT_REMEDIATION} To start a run now: `{manual}`."),
    )
}

/// Wait until the Vault bootstrap Job succeeded. A failed attempt while the CronJob will
/// run again is a warning (and a progress line); the timeout, a suspended or missing
/// CronJob or a failed plain Job is a failed report listing every failed attempt. `Err`
/// when the API cannot be read or the wait is interrupted.
pub async fn wait_vault_bootstrap(ctx: &Context, client: &kube::Client) -> Result<Report> {
    let session = &ctx.session;
    let settings = &ctx.settings.secrets;
    let namespace = settings.vault_namespace.as_str();
    let timeout = ctx.settings.timeouts.vault_bootstrap();
    let owner = vault_owner(settings);
    let _wait = session.events.wait(
        TAG,
        &format!("waiting up to {}s for the Vault bootstrap ({owner})", timeout.as_secs()),
    );
    // Every failed attempt seen, oldest first: the CronJob's history limits may delete a
    // Job before the wait ends, so its log tail is read when it is first seen.
    let mut attempts: Vec<AttemptLog> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    // One look: the requests only read, so an interruption may cut them anywhere.
    let check = async || {
        let Observed { runner, attempts: observed, pod_spec } = observe(settings, client).await?;
        let decision = decide(runner, &observed);
        // Once it succeeded, this run's failed attempts are still worth a warning: a
        // slow layer may let the first look come after the retry that succeeded.
        let failed = match &decision {
            Decision::Succeeded { .. } => failed_since(&observed, ctx.started_at),
            _ => failed_since_success(&observed),
        };
        let new: Vec<&Attempt> =
            failed.into_iter().filter(|a| !attempts.iter().any(|seen| seen.job == a.job)).collect();
        if !new.is_empty() {
            learn_pod_secrets(session, client, namespace, pod_spec.as_ref()).await;
        }
        for log in attempt_logs(client, namespace, &new).await {
            if let Some(line) = attempt_warning(settings, &decision, &log) {
                session.progress(TAG, &line);
                warnings.push(line);
            }
            attempts.push(log);
        }
        Ok(match state_of(settings, &ctx.kube_context, decision, &attempts) {
            VaultBootstrapState::Pending(finding) => wait::Check::Pending(finding),
            done => wait::Check::Done(done),
        })
    };
    let waited = wait::until(&session.cancel, timeout, Poll::every(POLL), check, |_, _| {}).await;
    let report = match waited {
        Ok(Waited::Done(VaultBootstrapState::Succeeded { job })) => {
            let line = format!("Vault bootstrap Job {namespace}/{job} succeeded");
            session.line(TAG, &line);
            Report::ok(line)
        }
        Ok(Waited::Done(VaultBootstrapState::Failed(finding))) => {
            session.line(TAG, &finding.to_string());
            let first = finding.found.lines().next().unwrap_or_default();
            let detail = format!("{}: {first}", finding.subject);
            Report::failed(detail, finding)
        }
        Ok(
            Waited::Done(VaultBootstrapState::Pending(mut finding)) | Waited::TimedOut(mut finding),
        ) => {
            let detail =
                format!("the Vault bootstrap did not succeed within {}s", timeout.as_secs());
            finding.found = format!("{detail}: {}", finding.found);
            session.line(TAG, &finding.to_string());
            Report::failed(detail, finding)
        }
        Err(err) => {
            if err.kind().is_interrupted() {
                let line = format!("interrupted while waiting for the Vault bootstrap ({owner})");
                session.line(TAG, &line);
            }
            return Err(err);
        }
    };
    Ok(report.warn(warnings))
}

/// The warning for a failed attempt the wait saw: what came or comes after it. `None`
/// when the decision is final: its finding lists the attempt.
fn attempt_warning(
    settings: &SecretsSettings,
    decision: &Decision,
    attempt: &AttemptLog,
) -> Option<String> {
    let namespace = settings.vault_namespace.as_str();
    let cronjob = format!("CronJob {namespace}/{}", settings.vault_cronjob);
    let then = match decision {
        Decision::Waiting(_) => format!("{cronjob} runs a new Job at its next schedule tick"),
        Decision::Succeeded { job } => {
            format!("a later Job of {cronjob} succeeded ({namespace}/{job})")
        }
        Decision::Failed(_) => return None,
    };
    Some(format!("Vault bootstrap attempt {}; {then}", attempt.line(namespace)))
}

/// Each failed attempt with its newest pod's log tail (pods listed once). A log that
/// cannot be read is said in its place: it never stops the check.
async fn attempt_logs(
    client: &kube::Client,
    namespace: &str,
    attempts: &[&Attempt],
) -> Vec<AttemptLog> {
    if attempts.is_empty() {
        return Vec::new();
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let listed = pods.list(&ListParams::default()).await.map(|l| l.items);
    let mut logs = Vec::new();
    for attempt in attempts {
        let reason = match &attempt.state {
            JobState::Failed { reason } => reason.clone(),
            _ => "not failed".into(),
        };
        let (pod, tail) = match &listed {
            Err(e) => (None, format!("(pod log unavailable: {e})")),
            Ok(all) => match newest_pod_of(all, &attempt.job) {
                None => (None, "(no pod of the Job found)".to_owned()),
                Some(name) => {
                    let params =
                        LogParams { tail_lines: Some(LOG_TAIL_LINES), ..LogParams::default() };
                    let tail = match pods.logs(&name, &params).await {
                        Ok(text) => tail(&text, LOG_TAIL_LINES as usize),
                        Err(e) => format!("(pod log unavailable: {e})"),
                    };
                    (Some(name), tail)
                }
            },
        };
        logs.push(AttemptLog { job: attempt.job.clone(), reason, pod, tail });
    }
    logs
}

/// The newest pod of Job `job` (labels `job-name` / `batch.kubernetes.io/job-name`, or
/// its owner reference).
fn newest_pod_of(pods: &[Pod], job: &str) -> Option<String> {
    pods.iter()
        .filter(|pod| {
            let labels = pod.labels();
            labels.get("job-name").map(String::as_str) == Some(job)
                || labels.get("batch.kubernetes.io/job-name").map(String::as_str) == Some(job)
                || pod.owner_references().iter().any(|o| o.kind == "Job" && o.name == job)
        })
        .max_by_key(|pod| (pod.metadata.creation_timestamp.clone(), pod.name_any()))
        .map(|pod| pod.name_any())
}

#[cfg(test)]
#[path = "vault_tests.rs"]
mod tests;
