//! The Vault bootstrap: find the Job that seeds Vault (a CronJob's newest Job, or a
//! named Job), read where it stands, and wait until it succeeded. A failed Job is a
//! finding naming the Job, its pod's last log lines and what to do.

use std::time::Instant;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams, LogParams};

use super::{POLL, TAG, indent};
use crate::config::{Context, SecretsSettings};
use crate::error::Result;
use crate::outcome::{Check, Finding, Report, Verdict, tail};

const LOG_TAIL_LINES: i64 = 20;
/// Remediation from the troubleshooting table for a failing Vault bootstrap.
const VAULT_REMEDIATION: &str = "Vault pod still starting or service account missing auth: \
inspect the CronJob pod logs after layer 15 completes; ensure the `foundation-vault-core` \
StatefulSet is Healthy and the bootstrap service account retains `system:auth-delegator`.";
/// The subject of every Vault bootstrap finding but a failed Job's (which names the Job).
const SUBJECT: &str = "Vault bootstrap";

/// Where a Job stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Succeeded,
    Failed { reason: String },
    Running,
}

/// A Job's state from its conditions, else its pod counters.
pub fn job_state(job: &Job) -> JobState {
    let Some(status) = &job.status else { return JobState::Running };
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let holds = |kind: &str| conditions.iter().find(|c| c.type_ == kind && c.status == "True");
    if holds("Complete").is_some() {
        return JobState::Succeeded;
    }
    if let Some(c) = holds("Failed") {
        let reason = [c.reason.as_deref(), c.message.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": ");
        return JobState::Failed {
            reason: if reason.is_empty() { "Failed".into() } else { reason },
        };
    }
    if status.succeeded.unwrap_or(0) > 0 {
        return JobState::Succeeded;
    }
    let backoff_limit = job.spec.as_ref().and_then(|s| s.backoff_limit).unwrap_or(6);
    let failed = status.failed.unwrap_or(0);
    if failed > backoff_limit && status.active.unwrap_or(0) == 0 {
        return JobState::Failed { reason: format!("{failed} failed pod(s)") };
    }
    JobState::Running
}

/// The newest Job owned by CronJob `cronjob` (creation time, then name).
pub fn newest_owned_job<'a>(jobs: &'a [Job], cronjob: &str) -> Option<&'a Job> {
    jobs.iter()
        .filter(|job| {
            job.owner_references().iter().any(|o| o.kind == "CronJob" && o.name == cronjob)
        })
        .max_by(|a, b| {
            let key = |j: &Job| {
                let name = j.name_any();
                (j.metadata.creation_timestamp.clone(), name.len(), name)
            };
            key(a).cmp(&key(b))
        })
}

/// Where the Vault bootstrap stands, read once ([`vault_bootstrap_state`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultBootstrapState {
    /// Its Job succeeded; the Job's name.
    Succeeded { job: String },
    /// Its Job failed (the finding names the Job and its pod's log tail), or the CronJob
    /// that runs it does not exist: waiting would not change either.
    Failed(Finding),
    /// No Job yet, or it still runs: which, and what to do if it stays so.
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

/// Read the Vault bootstrap's state once, writing nothing. `Err` only when the API
/// cannot be read.
pub async fn vault_bootstrap_state(
    ctx: &Context,
    client: &kube::Client,
) -> Result<VaultBootstrapState> {
    let settings = &ctx.settings.secrets;
    let namespace = settings.vault_namespace.as_str();
    let owner = vault_owner(settings);
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let job = match &settings.vault_job {
        Some(name) => jobs.get_opt(name).await?,
        None => {
            let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), namespace);
            if cronjobs.get_opt(&settings.vault_cronjob).await?.is_none() {
                return Ok(VaultBootstrapState::Failed(Finding::new(
                    SUBJECT,
                    expected(settings),
                    format!("{owner} not found"),
                    format!(
                        "sync layer {0} first (`cargo xtask sync {0}`), or set `vault_cronjob` / \
                         `vault_namespace` in [workspace.metadata.bootstrap.secrets]",
                        settings.vault_after_layer
                    ),
                )));
            }
            let all = jobs.list(&ListParams::default()).await?.items;
            newest_owned_job(&all, &settings.vault_cronjob).cloned()
        }
    };
    let Some(job) = job else {
        return Ok(VaultBootstrapState::Pending(vault_pending(
            settings,
            format!("no Job of {owner} exists yet"),
        )));
    };
    let name = job.name_any();
    Ok(match job_state(&job) {
        JobState::Succeeded => VaultBootstrapState::Succeeded { job: name },
        JobState::Failed { reason } => {
            VaultBootstrapState::Failed(vault_failed(client, namespace, &name, &reason).await)
        }
        JobState::Running => VaultBootstrapState::Pending(vault_pending(
            settings,
            format!("Job {namespace}/{name} is still running"),
        )),
    })
}

fn vault_pending(settings: &SecretsSettings, found: String) -> Finding {
    let manual = format!(
        "kubectl create job -n {} --from=cronjob/{1} {1}-manual",
        settings.vault_namespace, settings.vault_cronjob
    );
    Finding::new(
        SUBJECT,
        expected(settings),
        found,
        format!("{VAULT_REMEDIATION} To start a run now: `{manual}`."),
    )
}

/// Wait until the Vault bootstrap Job succeeded. A failed Job, a missing CronJob or no
/// success within the timeout is a failed report; `Err` when the API cannot be read or
/// the wait is interrupted.
pub async fn wait_vault_bootstrap(ctx: &Context, client: &kube::Client) -> Result<Report> {
    let session = &ctx.session;
    let timeout = ctx.settings.timeouts.vault_bootstrap();
    let owner = vault_owner(&ctx.settings.secrets);
    let _wait = session.events.wait(
        TAG,
        &format!("waiting up to {}s for the Vault bootstrap ({owner})", timeout.as_secs()),
    );
    let started = Instant::now();
    let waited = async {
        loop {
            // The requests only read: an interruption may cut them anywhere.
            let state = session.cancel.unless_interrupted(vault_bootstrap_state(ctx, client));
            match state.await?? {
                VaultBootstrapState::Succeeded { job } => {
                    let namespace = &ctx.settings.secrets.vault_namespace;
                    let line = format!("Vault bootstrap Job {namespace}/{job} succeeded");
                    session.line(TAG, &line);
                    break Ok(Report::ok(line));
                }
                VaultBootstrapState::Failed(finding) => {
                    session.line(TAG, &finding.to_string());
                    let first = finding.found.lines().next().unwrap_or_default();
                    let detail = format!("{}: {first}", finding.subject);
                    break Ok(Report::failed(detail, finding));
                }
                VaultBootstrapState::Pending(mut finding) if started.elapsed() >= timeout => {
                    let detail = format!(
                        "the Vault bootstrap did not succeed within {}s",
                        timeout.as_secs()
                    );
                    finding.found = format!("{detail}: {}", finding.found);
                    session.line(TAG, &finding.to_string());
                    break Ok(Report::failed(detail, finding));
                }
                VaultBootstrapState::Pending(_) => session.cancel.sleep(POLL).await?,
            }
        }
    };
    let result: Result<Report> = waited.await;
    if let Err(err) = &result
        && err.kind().is_interrupted()
    {
        session.line(TAG, &format!("interrupted while waiting for the Vault bootstrap ({owner})"));
    }
    result
}

/// The finding for failed Job `job`, with its pod's last log lines.
async fn vault_failed(client: &kube::Client, namespace: &str, job: &str, reason: &str) -> Finding {
    let (pod, tail) = match job_pod_log_tail(client, namespace, job).await {
        Ok(Some((pod, tail))) => (Some(pod), tail),
        Ok(None) => (None, "(no pod of the Job found)".to_owned()),
        Err(e) => (None, format!("(pod log unavailable: {e})")),
    };
    let source = pod.as_deref().map_or(String::new(), |p| format!(" of pod {p}"));
    let logs_cmd = match &pod {
        Some(pod) => format!("kubectl logs -n {namespace} {pod}"),
        None => format!("kubectl logs -n {namespace} job/{job}"),
    };
    Finding::new(
        format!("Vault bootstrap Job {namespace}/{job}"),
        "succeeded",
        format!("Job {namespace}/{job} failed ({reason})\nlast lines{source}:\n{}", indent(&tail)),
        format!(
            "{VAULT_REMEDIATION} Commands: `{logs_cmd}`, `kubectl describe job -n {namespace} {job}`."
        ),
    )
}

/// The newest pod of `job` and the last lines of its log.
async fn job_pod_log_tail(
    client: &kube::Client,
    namespace: &str,
    job: &str,
) -> Result<Option<(String, String)>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let all = pods.list(&ListParams::default()).await?.items;
    let Some(pod) = all
        .iter()
        .filter(|pod| {
            let labels = pod.labels();
            labels.get("job-name").map(String::as_str) == Some(job)
                || labels.get("batch.kubernetes.io/job-name").map(String::as_str) == Some(job)
                || pod.owner_references().iter().any(|o| o.kind == "Job" && o.name == job)
        })
        .max_by_key(|pod| pod.metadata.creation_timestamp.clone())
    else {
        return Ok(None);
    };
    let name = pod.name_any();
    let params = LogParams { tail_lines: Some(LOG_TAIL_LINES), ..LogParams::default() };
    let text = pods.logs(&name, &params).await?;
    Ok(Some((name, tail(&text, LOG_TAIL_LINES as usize))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

    fn job(name: &str, owner: &str, created_secs: i64, status: JobStatus) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(
                    k8s_openapi::jiff::Timestamp::from_second(created_secs).unwrap(),
                )),
                owner_references: Some(vec![OwnerReference {
                    kind: "CronJob".into(),
                    name: owner.into(),
                    ..OwnerReference::default()
                }]),
                ..ObjectMeta::default()
            },
            spec: Some(JobSpec { backoff_limit: Some(1), ..JobSpec::default() }),
            status: Some(status),
        }
    }

    fn condition(kind: &str, reason: &str) -> JobCondition {
        JobCondition {
            type_: kind.into(),
            status: "True".into(),
            reason: Some(reason.into()),
            ..JobCondition::default()
        }
    }

    #[test]
    fn job_state_reads_conditions_then_counters() {
        let done =
            JobStatus { conditions: Some(vec![condition("Complete", "")]), ..JobStatus::default() };
        assert_eq!(job_state(&job("a", "c", 1, done)), JobState::Succeeded);
        let failed = JobStatus {
            conditions: Some(vec![condition("Failed", "BackoffLimitExceeded")]),
            ..JobStatus::default()
        };
        assert_eq!(
            job_state(&job("a", "c", 1, failed)),
            JobState::Failed { reason: "BackoffLimitExceeded".into() }
        );
        let counted = JobStatus { succeeded: Some(1), ..JobStatus::default() };
        assert_eq!(job_state(&job("a", "c", 1, counted)), JobState::Succeeded);
        let retrying = JobStatus { failed: Some(1), active: Some(1), ..JobStatus::default() };
        assert_eq!(job_state(&job("a", "c", 1, retrying)), JobState::Running);
        let exhausted = JobStatus { failed: Some(2), ..JobStatus::default() };
        assert!(matches!(job_state(&job("a", "c", 1, exhausted)), JobState::Failed { .. }));
    }

    #[test]
    fn newest_job_of_the_cronjob_wins() {
        let jobs = [
            job("vault-9", "vault", 10, JobStatus::default()),
            job("vault-10", "vault", 10, JobStatus::default()),
            job("other-99", "other", 99, JobStatus::default()),
            job("vault-1", "vault", 5, JobStatus::default()),
        ];
        assert_eq!(newest_owned_job(&jobs, "vault").unwrap().name_any(), "vault-10");
        assert!(newest_owned_job(&jobs, "missing").is_none());
    }

    #[test]
    fn states_become_checks_with_the_one_finding_shape() {
        let settings = SecretsSettings::default();
        let passed = VaultBootstrapState::Succeeded { job: "vault/x-1".into() }.into_check();
        assert_eq!(passed.verdict, Verdict::Passed);
        let pending = vault_pending(&settings, "no Job of CronJob vault/x exists yet".into());
        assert_eq!(
            pending.expected,
            "the newest Job of CronJob vault/foundation-vault-bootstrap succeeded"
        );
        assert!(pending.remediation.contains("--from=cronjob/foundation-vault-bootstrap"));
        let check = VaultBootstrapState::Pending(pending.clone()).into_check();
        assert_eq!((check.verdict, check.finding), (Verdict::Failed, pending));
        let named = SecretsSettings { vault_job: Some("seed".into()), ..settings };
        assert_eq!(expected(&named), "Job vault/seed succeeded");
    }
}
