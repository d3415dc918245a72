//! Unit tests of `vault.rs` (the Vault bootstrap's pure decisions), beside it so that
//! file stays short.

use super::*;

const CONTEXT: &str = "k3d-ameide";

fn log(job: &str, tail: &str) -> AttemptLog {
    AttemptLog {
        job: job.into(),
        reason: "BackoffLimitExceeded".into(),
        pod: Some(format!("{job}-abcde")),
        tail: tail.into(),
    }
}

fn retrying(job: &str) -> Decision {
    Decision::Waiting(Waiting::Retrying { job: job.into(), reason: "BackoffLimitExceeded".into() })
}

#[test]
fn states_become_checks_with_the_one_finding_shape() {
    let settings = SecretsSettings::default();
    let passed = VaultBootstrapState::Succeeded { job: "vault/x-1".into() }.into_check();
    assert_eq!(passed.verdict, Verdict::Passed);
    let VaultBootstrapState::Pending(pending) =
        state_of(&settings, CONTEXT, Decision::Waiting(Waiting::NoJobYet), &[])
    else {
        panic!("no Job yet is pending")
    };
    assert_eq!(
        pending.expected,
        "the newest Job of CronJob vault/foundation-vault-bootstrap succeeded"
    );
    assert!(pending.found.contains("its first Job comes at its next schedule tick"));
    assert!(pending.remediation.contains(
        "`kubectl create job -n vault --from=cronjob/foundation-vault-bootstrap \
         foundation-vault-bootstrap-manual --context k3d-ameide`"
    ));
    let check = VaultBootstrapState::Pending(pending.clone()).into_check();
    assert_eq!((check.verdict, check.finding), (Verdict::Failed, pending));
    let named = SecretsSettings { vault_job: Some("seed".into()), ..settings };
    assert_eq!(expected(&named), "Job vault/seed succeeded");
}

#[test]
fn a_failed_newest_job_with_a_next_tick_is_pending_and_says_so() {
    let settings = SecretsSettings::default();
    let logs = [log("v-1", "seeding\nconnect: connection refused")];
    let VaultBootstrapState::Pending(finding) =
        state_of(&settings, CONTEXT, retrying("v-1"), &logs)
    else {
        panic!("a retry is pending")
    };
    assert_eq!(finding.subject, "Vault bootstrap Job vault/v-1");
    assert!(finding.found.starts_with(
        "Job vault/v-1 failed (BackoffLimitExceeded); CronJob vault/foundation-vault-bootstrap \
         runs a new Job at its next schedule tick\nlast lines of pod v-1-abcde:\n  seeding\n"
    ));
    assert!(finding.found.contains("connection refused"));
    assert!(finding.remediation.contains("system:auth-delegator"));
    assert!(finding.remediation.contains("`kubectl logs -n vault v-1-abcde --context k3d-ameide`"));
}

#[test]
fn the_final_finding_lists_every_attempt_with_its_log_tail() {
    let settings = SecretsSettings::default();
    let logs = [log("v-1", "one\nrefused 1"), log("v-2", "two\nrefused 2")];
    let running = Decision::Waiting(Waiting::Running { job: "v-3".into() });
    let VaultBootstrapState::Pending(finding) = state_of(&settings, CONTEXT, running, &logs) else {
        panic!("a running Job is pending")
    };
    assert!(
        finding.found.starts_with(
            "Job vault/v-3 is still running; the previous attempt Job vault/v-2 failed"
        )
    );
    let every = "\nEvery failed attempt (2, oldest first):\n\
        - Job vault/v-1 failed (BackoffLimitExceeded); last lines of pod v-1-abcde:\n  one\n  refused 1\n\
        - Job vault/v-2 failed (BackoffLimitExceeded); last lines of pod v-2-abcde:\n  two\n  refused 2\n";
    assert!(finding.remediation.contains(every), "{}", finding.remediation);

    let suspended = Decision::Failed(Failure::Suspended {
        failed: Some(("v-2".into(), "BackoffLimitExceeded".into())),
    });
    let VaultBootstrapState::Failed(finding) = state_of(&settings, CONTEXT, suspended, &logs)
    else {
        panic!("a suspended CronJob whose Job failed is final")
    };
    assert!(finding.found.contains("is suspended: no new Job will run"));
    assert!(finding.remediation.contains(
        "`kubectl patch cronjob -n vault foundation-vault-bootstrap -p '{\"spec\":{\"suspend\":false}}' \
         --context k3d-ameide`"
    ));
    assert!(finding.remediation.contains(every));

    let plain = SecretsSettings { vault_job: Some("seed".into()), ..SecretsSettings::default() };
    let failed = Decision::Failed(Failure::JobFailed {
        job: "seed".into(),
        reason: "BackoffLimitExceeded".into(),
    });
    let VaultBootstrapState::Failed(finding) =
        state_of(&plain, CONTEXT, failed, &[log("seed", "x")])
    else {
        panic!("a failed plain Job is final")
    };
    assert_eq!(finding.subject, "Vault bootstrap Job vault/seed");
    assert!(
        finding.remediation.contains("`kubectl describe job -n vault seed --context k3d-ameide`")
    );
}

#[test]
fn a_failed_attempt_is_a_warning_that_says_what_came_after_it() {
    let settings = SecretsSettings::default();
    let attempt = log("v-1", "connect: connection refused");
    assert_eq!(
        attempt_warning(&settings, &retrying("v-1"), &attempt).as_deref(),
        Some(
            "Vault bootstrap attempt Job vault/v-1 failed (BackoffLimitExceeded); CronJob \
             vault/foundation-vault-bootstrap runs a new Job at its next schedule tick"
        )
    );
    // The wait's first look came after the retry succeeded: the attempt is still named.
    let succeeded = Decision::Succeeded { job: "v-2".into() };
    assert_eq!(
        attempt_warning(&settings, &succeeded, &attempt).as_deref(),
        Some(
            "Vault bootstrap attempt Job vault/v-1 failed (BackoffLimitExceeded); a later Job \
             of CronJob vault/foundation-vault-bootstrap succeeded (vault/v-2)"
        )
    );
    // A final failure is the finding, not a warning.
    let failed = Decision::Failed(Failure::JobFailed { job: "v-1".into(), reason: "x".into() });
    assert_eq!(attempt_warning(&settings, &failed, &attempt), None);
}
