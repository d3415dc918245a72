//! Unit tests of `external_secrets.rs` (beside it to keep that file short).

use super::*;
use crate::outcome::Status;
use serde_json::{Value, json};

fn external_secret(conditions: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "metadata": {"name": "keycloak-db", "namespace": "ameide"},
        "spec": {"data": [
            {"secretKey": "password", "remoteRef": {"key": "keycloak/db", "property": "password"}},
            {"secretKey": "username", "remoteRef": {"key": "keycloak/db", "property": "username"}},
        ]},
        "status": {"conditions": conditions},
    }))
    .unwrap()
}

const RUNNING: &str = "external-secrets/external-secrets";

fn listed(statuses: Vec<ExternalSecretStatus>) -> ExternalSecrets {
    let controller = Controller::Running(RUNNING.into());
    ExternalSecrets::Listed { version: "v1".into(), statuses, controller }
}

#[test]
fn ready_external_secret_passes() {
    let es =
        external_secret(json!([{"type": "Ready", "status": "True", "reason": "SecretSynced"}]));
    let status = external_secret_status(&es);
    assert!(status.ready && status.missing_keys.is_empty());
    let found = listed(vec![status]);
    let check = judge_external_secrets(&found, "k3d-ameide");
    assert_eq!(check.verdict, Verdict::Passed);
    assert_eq!(report_of(check), Report::ok("1 ExternalSecrets Ready"));
}

#[test]
fn not_ready_external_secret_names_itself_and_the_missing_key() {
    let es = external_secret(json!([{
        "type": "Ready", "status": "False", "reason": "SecretSyncedError",
        "message": "error retrieving secret at .data[0], key: keycloak/db, err: cannot find secret data for key: \"password\"",
    }]));
    let status = external_secret_status(&es);
    assert!(!status.ready);
    assert_eq!(status.missing_keys, ["keycloak/db", "password"]);
    let found = listed(vec![status]);
    let check = judge_external_secrets(&found, "k3d-ameide");
    assert_eq!(check.verdict, Verdict::Failed);
    let finding = &check.finding;
    assert!(finding.found.starts_with("1 of 1 ExternalSecrets not Ready"), "{finding}");
    assert!(
        finding.found.contains("ExternalSecret ameide/keycloak-db is not Ready: SecretSyncedError")
    );
    assert!(finding.found.contains("missing remote key(s): keycloak/db, password"), "{finding}");
    assert!(
        finding.remediation.contains(
            "`kubectl describe externalsecret -n ameide keycloak-db --context k3d-ameide`"
        )
    );
    let report = report_of(check);
    assert_eq!(report.status, Status::Failed);
    assert_eq!(report.detail, "1 of 1 ExternalSecrets not Ready");
}

#[test]
fn no_external_secrets_or_no_crd_is_said_with_a_count() {
    let none = listed(vec![]);
    let check = judge_external_secrets(&none, "k3d-ameide");
    assert_eq!(check.verdict, Verdict::Warned);
    assert!(check.warnings[0].starts_with("0 ExternalSecrets"));
    let absent = report_of(judge_external_secrets(&ExternalSecrets::CrdAbsent, "k3d-ameide"));
    assert_eq!(absent.status, Status::Ok);
    assert!(absent.detail.is_empty());
    assert!(
        absent.warnings[0].contains("0 ExternalSecrets checked")
            && absent.warnings[0].contains("CRD")
    );
}

#[test]
fn without_a_running_operator_external_secrets_are_a_warning_naming_it() {
    let es = external_secret(json!(null));
    let status = external_secret_status(&es);
    assert_eq!(status.reason, "NoReadyCondition");
    let missing = |not_ready: Vec<String>| ExternalSecrets::Listed {
        version: "v1".into(),
        statuses: vec![status.clone()],
        controller: Controller::Missing { not_ready },
    };
    let check = judge_external_secrets(&missing(vec![]), "k3d-ameide");
    assert_eq!(check.verdict, Verdict::Warned);
    let warning = &check.warnings[0];
    assert!(warning.starts_with("no External Secrets Operator runs (no Deployment labelled app.kubernetes.io/name=external-secrets): 1 ExternalSecret(s)"), "{warning}");
    assert!(warning.contains("ameide/keycloak-db"), "{warning}");
    assert!(
        warning.contains(
            "cargo xtask vendor add external-secrets --repo https://charts.external-secrets.io"
        ),
        "{warning}"
    );
    let report = report_of(check);
    assert_eq!(report.status, Status::Ok);
    let check = judge_external_secrets(
        &missing(vec!["eso/external-secrets (0 of 1 ready)".into()]),
        "k3d-ameide",
    );
    assert!(
        check.warnings[0].contains(
            "app.kubernetes.io/name=external-secrets: eso/external-secrets (0 of 1 ready)"
        )
    );
}

fn deployment(ready: Option<i32>) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "external-secrets", "namespace": "eso"},
        "spec": {"replicas": 1, "selector": {}, "template": {}},
        "status": {"readyReplicas": ready},
    }))
    .unwrap()
}

#[test]
fn the_controller_runs_when_its_deployment_has_a_ready_replica() {
    assert_eq!(controller_of(&[]), Controller::Missing { not_ready: vec![] });
    assert_eq!(
        controller_of(&[deployment(None)]),
        Controller::Missing { not_ready: vec!["eso/external-secrets (0 of 1 ready)".into()] }
    );
    assert_eq!(
        controller_of(&[deployment(None), deployment(Some(1))]),
        Controller::Running("eso/external-secrets".into())
    );
}

fn event(kind: &str, object: &str, reason: &str, message: &str, at: i64) -> Event {
    serde_json::from_value(json!({
        "metadata": {"name": format!("{object}.{at}"), "namespace": "ameide"},
        "involvedObject": {"kind": "ExternalSecret", "name": object, "namespace": "ameide"},
        "type": kind, "reason": reason, "message": message,
        "lastTimestamp": k8s_openapi::jiff::Timestamp::from_second(at).unwrap().to_string(),
    }))
    .unwrap()
}

#[test]
fn the_missing_key_comes_from_the_warning_event_not_the_generic_condition() {
    let es = external_secret(json!([{
        "type": "Ready", "status": "False", "reason": "SecretSyncedError",
        "message": "could not get secret data from provider",
    }]));
    let status = external_secret_status(&es);
    assert!(status.missing_keys.is_empty());
    let events = [
        event("Warning", "keycloak-db", "UpdateFailed", "old: key: stale/key", 1),
        event(
            "Warning",
            "keycloak-db",
            "UpdateFailed",
            "error processing spec.data[0] (key: keycloak/db), err: Secret does not exist",
            5,
        ),
        event("Normal", "keycloak-db", "Updated", "key: not/this", 9),
        event("Warning", "other", "UpdateFailed", "key: not/mine", 9),
    ];
    let status = with_warning_event(status, &events);
    assert_eq!(status.missing_keys, ["keycloak/db"]);
    let check = judge_external_secrets(&listed(vec![status]), "k3d-ameide");
    assert_eq!(check.verdict, Verdict::Failed);
    let found = &check.finding.found;
    assert!(found.contains("SecretSyncedError: could not get secret data from provider (event UpdateFailed: error processing spec.data[0] (key: keycloak/db), err: Secret does not exist) (missing remote key(s): keycloak/db)"), "{found}");
    assert!(check.finding.remediation.starts_with("seed keycloak/db in the secret store"));
}
