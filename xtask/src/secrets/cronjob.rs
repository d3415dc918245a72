//! Where the Vault bootstrap stands, decided from what was observed (pure: no API).
//!
//! It follows the CronJob controller (kubernetes `pkg/controller/cronjob/utils.go`,
//! `cronjob_controllerv2.go`): at each schedule tick it creates Job
//! `<cronjob>-<unix minutes>` (`getJobName`/`getTimeHashInMinutes`) with a controller
//! owner reference to the CronJob, the first one at the next tick after the CronJob was
//! created (so "no Job yet" right after a sync is normal). A Job retries its failed pods
//! per `backoffLimit` and is then `Failed`; unless the CronJob is suspended, the next
//! tick brings a new Job. So a failed newest Job is an attempt, not the end: only a
//! suspended or missing CronJob (or the caller's timeout) ends the wait. A plain Job
//! (`vault_job`) has no next tick: its failure is final. A Job still running right after
//! a Job that succeeded is the schedule's next re-seed (the sample runs every minute):
//! the success stands, so a one-shot check does not flake on the seconds it runs.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

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

/// The Jobs owned by CronJob `cronjob`, oldest first: by creation time, then by the
/// scheduled minute in the name (`<cronjob>-<unix minutes>`; creation times have
/// one-second resolution), then by name (a manual `kubectl create job --from=cronjob/..`).
pub fn owned_jobs<'a>(jobs: &'a [Job], cronjob: &str) -> Vec<&'a Job> {
    let mut owned: Vec<&Job> = jobs
        .iter()
        .filter(|job| {
            job.owner_references().iter().any(|o| o.kind == "CronJob" && o.name == cronjob)
        })
        .collect();
    owned.sort_by_key(|job| {
        let name = job.name_any();
        let minute = scheduled_minute(&name, cronjob);
        (job.metadata.creation_timestamp.clone(), minute, name)
    });
    owned
}

/// The newest Job owned by CronJob `cronjob`.
pub fn newest_owned_job<'a>(jobs: &'a [Job], cronjob: &str) -> Option<&'a Job> {
    owned_jobs(jobs, cronjob).pop()
}

/// The scheduled minute of a Job the CronJob controller named `<cronjob>-<unix minutes>`.
pub fn scheduled_minute(job: &str, cronjob: &str) -> Option<u64> {
    job.strip_prefix(cronjob)?.strip_prefix('-')?.parse().ok()
}

/// What runs the Vault bootstrap, as observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    /// The CronJob exists; a suspended one creates no new Job.
    CronJob { suspended: bool },
    /// The configured CronJob does not exist.
    CronJobMissing,
    /// A plain Job (`vault_job`): no next tick after a failure.
    Job,
}

/// One run of the bootstrap (a Job) and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub job: String,
    pub state: JobState,
    /// The Job's creation time (whole seconds), when the API gave one.
    pub created: Option<Timestamp>,
}

/// The verdict on one observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Succeeded {
        job: String,
    },
    Waiting(Waiting),
    /// Waiting would not change it.
    Failed(Failure),
}

/// Why the bootstrap is not done yet, though it may still be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// No Job yet: the CronJob creates its first at its next schedule tick.
    NoJobYet,
    Running {
        job: String,
    },
    /// The newest Job failed; the CronJob runs a new one at its next schedule tick.
    Retrying {
        job: String,
        reason: String,
    },
}

/// Why the bootstrap will not succeed without the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    CronJobMissing,
    /// The CronJob is suspended and its newest Job (if any) failed.
    Suspended {
        failed: Option<(String, String)>,
    },
    /// The plain Job failed.
    JobFailed {
        job: String,
        reason: String,
    },
}

/// Decide from the runner and its Jobs (oldest first; the newest is the last).
pub fn decide(runner: Runner, attempts: &[Attempt]) -> Decision {
    let suspended = match runner {
        Runner::CronJobMissing => return Decision::Failed(Failure::CronJobMissing),
        Runner::CronJob { suspended } => suspended,
        Runner::Job => false,
    };
    let Some(newest) = attempts.last() else {
        return match suspended {
            true => Decision::Failed(Failure::Suspended { failed: None }),
            false => Decision::Waiting(Waiting::NoJobYet),
        };
    };
    let job = newest.job.clone();
    let mut previous = attempts[..attempts.len() - 1].iter().rev();
    let previous = previous.find(|a| a.state != JobState::Running);
    match &newest.state {
        JobState::Succeeded => Decision::Succeeded { job },
        JobState::Running => match previous {
            Some(done) if done.state == JobState::Succeeded => {
                Decision::Succeeded { job: done.job.clone() }
            }
            _ => Decision::Waiting(Waiting::Running { job }),
        },
        JobState::Failed { reason } => {
            let reason = reason.clone();
            match runner {
                Runner::Job => Decision::Failed(Failure::JobFailed { job, reason }),
                _ if suspended => {
                    Decision::Failed(Failure::Suspended { failed: Some((job, reason)) })
                }
                _ => Decision::Waiting(Waiting::Retrying { job, reason }),
            }
        }
    }
}

/// The failed attempts since the last success (oldest first): what the bootstrap tried
/// and what a finding lists. Older failures were followed by a success and are history.
pub fn failed_since_success(attempts: &[Attempt]) -> Vec<&Attempt> {
    let start =
        attempts.iter().rposition(|a| a.state == JobState::Succeeded).map_or(0, |last| last + 1);
    attempts[start..].iter().filter(|a| matches!(a.state, JobState::Failed { .. })).collect()
}

/// The failed attempts created at or after `since` (oldest first): a run's own, which a
/// first look after a slow layer may find already followed by a success. Creation times
/// have one-second resolution, so `since` counts from its whole second.
pub fn failed_since(attempts: &[Attempt], since: Timestamp) -> Vec<&Attempt> {
    attempts
        .iter()
        .filter(|a| matches!(a.state, JobState::Failed { .. }))
        .filter(|a| a.created.is_some_and(|created| created.as_second() >= since.as_second()))
        .collect()
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
    fn jobs_of_the_cronjob_in_schedule_order() {
        let jobs = [
            job("vault-29000009", "vault", 10, JobStatus::default()),
            job("vault-29000010", "vault", 10, JobStatus::default()),
            job("other-29000099", "other", 99, JobStatus::default()),
            job("vault-29000001", "vault", 5, JobStatus::default()),
        ];
        let names: Vec<String> = owned_jobs(&jobs, "vault").iter().map(|j| j.name_any()).collect();
        assert_eq!(names, ["vault-29000001", "vault-29000009", "vault-29000010"]);
        assert_eq!(newest_owned_job(&jobs, "vault").unwrap().name_any(), "vault-29000010");
        assert!(newest_owned_job(&jobs, "missing").is_none());
        assert_eq!(scheduled_minute("vault-29000010", "vault"), Some(29_000_010));
        assert_eq!(scheduled_minute("vault-manual", "vault"), None);
    }

    fn attempt(job: &str, state: JobState) -> Attempt {
        Attempt { job: job.into(), state, created: None }
    }

    fn failed(reason: &str) -> JobState {
        JobState::Failed { reason: reason.into() }
    }

    const CRON: Runner = Runner::CronJob { suspended: false };
    const SUSPENDED: Runner = Runner::CronJob { suspended: true };

    #[test]
    fn a_cronjob_without_a_job_is_pending_until_its_first_tick() {
        assert_eq!(decide(CRON, &[]), Decision::Waiting(Waiting::NoJobYet));
        assert_eq!(decide(Runner::Job, &[]), Decision::Waiting(Waiting::NoJobYet));
        assert_eq!(decide(SUSPENDED, &[]), Decision::Failed(Failure::Suspended { failed: None }));
        assert_eq!(decide(Runner::CronJobMissing, &[]), Decision::Failed(Failure::CronJobMissing));
    }

    #[test]
    fn a_failed_attempt_is_progress_while_the_cronjob_will_run_again() {
        let attempts = [attempt("v-1", failed("BackoffLimitExceeded"))];
        assert_eq!(
            decide(CRON, &attempts),
            Decision::Waiting(Waiting::Retrying {
                job: "v-1".into(),
                reason: "BackoffLimitExceeded".into()
            })
        );
        let next = [attempts[0].clone(), attempt("v-2", JobState::Running)];
        assert_eq!(decide(CRON, &next), Decision::Waiting(Waiting::Running { job: "v-2".into() }));
        let done = [attempts[0].clone(), attempt("v-2", JobState::Succeeded)];
        assert_eq!(decide(CRON, &done), Decision::Succeeded { job: "v-2".into() });
        // The next tick's re-seed runs: the success stands.
        let reseed = [done[0].clone(), done[1].clone(), attempt("v-3", JobState::Running)];
        assert_eq!(decide(CRON, &reseed), Decision::Succeeded { job: "v-2".into() });
    }

    #[test]
    fn a_failure_is_final_only_without_a_next_tick() {
        let attempts = [attempt("v-1", failed("BackoffLimitExceeded"))];
        assert_eq!(
            decide(SUSPENDED, &attempts),
            Decision::Failed(Failure::Suspended {
                failed: Some(("v-1".into(), "BackoffLimitExceeded".into()))
            })
        );
        assert_eq!(
            decide(Runner::Job, &attempts),
            Decision::Failed(Failure::JobFailed {
                job: "v-1".into(),
                reason: "BackoffLimitExceeded".into()
            })
        );
        // A suspended CronJob's running Job may still succeed.
        let running = [attempt("v-2", JobState::Running)];
        assert_eq!(
            decide(SUSPENDED, &running),
            Decision::Waiting(Waiting::Running { job: "v-2".into() })
        );
    }

    #[test]
    fn attempts_are_the_failures_since_the_last_success() {
        let attempts = [
            attempt("v-1", failed("a")),
            attempt("v-2", JobState::Succeeded),
            attempt("v-3", failed("b")),
            attempt("v-4", failed("c")),
            attempt("v-5", JobState::Running),
        ];
        let names: Vec<&str> =
            failed_since_success(&attempts).iter().map(|a| a.job.as_str()).collect();
        assert_eq!(names, ["v-3", "v-4"]);
        assert!(failed_since_success(&attempts[..2]).is_empty());
        assert_eq!(failed_since_success(&attempts[..1]).len(), 1);
    }

    #[test]
    fn a_runs_attempts_are_the_failures_created_since_it_started() {
        let at = |job: &str, state: JobState, secs: i64| Attempt {
            created: Some(Timestamp::from_second(secs).unwrap()),
            ..attempt(job, state)
        };
        let attempts = [
            at("v-1", failed("before the run"), 99),
            at("v-2", JobState::Succeeded, 99),
            at("v-3", failed("BackoffLimitExceeded"), 100),
            attempt("v-4", failed("no creation time")),
            at("v-5", JobState::Succeeded, 160),
        ];
        // Started within second 100: a Job created in that second (truncated) is the run's.
        let started = Timestamp::from_millisecond(100_700).unwrap();
        let names: Vec<&str> =
            failed_since(&attempts, started).iter().map(|a| a.job.as_str()).collect();
        assert_eq!(names, ["v-3"]);
        assert!(failed_since(&attempts, Timestamp::from_second(101).unwrap()).is_empty());
    }
}
