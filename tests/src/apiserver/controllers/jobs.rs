//! The Job and CronJob controllers and the garbage collector (kubernetes
//! `pkg/controller/job/job_controller.go`, `pkg/controller/cronjob/cronjob_controllerv2.go`
//! and `utils.go`, `pkg/controller/garbagecollector`).
//!
//! A Job runs one Pod at a time (`completions`/`parallelism` 1); the kubelet (`pods.rs`)
//! ends it Succeeded or Failed after the startup delay (the scenario decides: `job-fail`,
//! `vault-fail`, `vault-flaky`, or the Job's `testbed.local/outcome` annotation; a Job
//! that is a Helm test hook runs its check, `test_pods.rs`). A
//! failed Pod is replaced after the back-off (10 s doubling, scaled like the cron
//! minute) until `backoffLimit` (default 6) failures more than allowed, then the Job is
//! `Failed` (`BackoffLimitExceeded`). A CronJob creates Job `<cronjob>-<minute>` at each
//! matching (scaled) minute after it was first seen, honours `concurrencyPolicy`, keeps
//! `successfulJobsHistoryLimit`/`failedJobsHistoryLimit` Jobs, and records
//! `lastScheduleTime`, `lastSuccessfulTime` and `active`.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};

use super::{Controllers, Now, OUTCOME_ANNOTATION, controller_uid, meta, owner_ref, timestamp_ms};
use crate::apiserver::store::{Store, Target};
use crate::scenario::Scenario;

pub const VAULT_BOOTSTRAP: &str = "foundation-vault-bootstrap";

/// A Job that ended: `Some(true)` Complete, `Some(false)` Failed.
pub fn finished(job: &Value) -> Option<bool> {
    let conds = job["status"]["conditions"].as_array()?;
    let is = |t: &str| conds.iter().any(|c| c["type"] == t && c["status"] == "True");
    if is("Complete") {
        Some(true)
    } else if is("Failed") {
        Some(false)
    } else {
        None
    }
}

fn owner_name<'a>(obj: &'a Value, kind: &str) -> Option<&'a str> {
    obj["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["kind"] == kind)
        .and_then(|r| r["name"].as_str())
}

/// Whether this Job's Pods fail.
pub(super) fn fails(job: &Value, s: &Scenario) -> bool {
    match job["metadata"]["annotations"][OUTCOME_ANNOTATION].as_str() {
        Some("fail") => return true,
        Some("succeed") => return false,
        _ => {}
    }
    let name = meta(job, "name");
    s.job_fail.iter().any(|p| name.starts_with(p.as_str()))
        || (s.vault_fail && owner_name(job, "CronJob") == Some(VAULT_BOOTSTRAP))
}

/// What a Pod of this Job printed.
pub(super) fn pod_log(job: &Value, failed: bool) -> String {
    let name = meta(job, "name");
    match (owner_name(job, "CronJob") == Some(VAULT_BOOTSTRAP), failed) {
        // A bootstrap that initialises Vault and echoes `vault operator init` (its unseal
        // keys and root token) before seeding fails: the log the engine must redact.
        (true, true) => format!(
            "{}seeding keycloak/admin\nError writing data to secret/data/keycloak/admin: Put \"http://foundation-vault-core.vault:8200/v1/secret/data/keycloak/admin\": dial tcp 10.43.0.42:8200: connect: connection refused\n",
            crate::leaks::vault_init_output()
        ),
        (true, false) => {
            "seeded keycloak/admin\nseeded keycloak/db\nseeded 2 path(s) into secret/\n".to_owned()
        }
        (false, true) => format!("job {name}: exit status 1\n"),
        (false, false) => format!("job {name}: done\n"),
    }
}

pub(super) fn reconcile(c: &mut Controllers, store: &mut Store, s: &Scenario, now: Now) {
    cronjobs(c, store, s, now);
    // Pods by the uid of the Job that controls them.
    let mut pods: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    for (key, pod) in store.objects_of("", "pods") {
        if let Some(uid) = controller_uid(&pod) {
            pods.entry(uid.to_owned()).or_default().push((key, pod));
        }
    }
    for (key, job) in store.objects_of("batch", "jobs") {
        if finished(&job).is_some() || job["spec"]["suspend"] == true {
            continue;
        }
        let uid = meta(&job, "uid").to_owned();
        let mine = pods.remove(&uid).unwrap_or_default();
        let count =
            |p: &str| mine.iter().filter(|(_, pod)| pod["status"]["phase"] == p).count() as i64;
        let (succeeded, failed) = (count("Succeeded"), count("Failed"));
        // The kubelet (`pods.rs`) ends the Pods; a new failure starts the back-off.
        let seen_failed = c.job_failures.get(&key).map_or(0, |(n, _)| *n);
        if failed > seen_failed {
            c.job_failures.insert(key.clone(), (failed, now.instant));
        }
        let mut active = mine.len() as i64 - succeeded - failed;
        let backoff_limit = job["spec"]["backoffLimit"].as_i64().unwrap_or(6);
        let start =
            job["status"]["startTime"].as_str().map_or_else(|| now.timestamp(), str::to_owned);
        let mut status = json!({"startTime": start, "ready": 0, "terminating": 0, "uncountedTerminatedPods": {}});
        if succeeded > 0 {
            let msg = "Reached expected number of succeeded pods";
            status["succeeded"] = json!(succeeded);
            status["completionTime"] = json!(now.timestamp());
            status["conditions"] = json!([
                {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "message": msg,
                 "lastProbeTime": now.timestamp(), "lastTransitionTime": now.timestamp()},
                {"type": "Complete", "status": "True", "reason": "CompletionsReached", "message": msg,
                 "lastProbeTime": now.timestamp(), "lastTransitionTime": now.timestamp()}]);
        } else if failed > backoff_limit {
            let msg = "Job has reached the specified backoff limit";
            status["conditions"] = json!([
                {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "message": msg,
                 "lastProbeTime": now.timestamp(), "lastTransitionTime": now.timestamp()},
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": msg,
                 "lastProbeTime": now.timestamp(), "lastTransitionTime": now.timestamp()}]);
        } else if active == 0 && retry_due(c, &key, failed, s, now) {
            create_pod(store, &job);
            active = 1;
        }
        if failed > 0 {
            status["failed"] = json!(failed);
        }
        if active > 0 {
            status["active"] = json!(active);
        }
        let code = succeeded * 1_000_000
            + failed * 1000
            + active
            + i64::from(status["conditions"].is_array()) * 7;
        let seen = c.observe(&format!("{key}#status"), &job, now);
        if seen.written != Some(code) {
            seen.written = Some(code);
            store.set_status(&key, status);
        }
    }
}

/// A failed Job waits 10 s, 20 s, 40 s ... (capped at 10 min, `MaxJobPodFailureBackOff`; scaled like the cron minute).
fn retry_due(c: &Controllers, key: &str, failed: i64, s: &Scenario, now: Now) -> bool {
    if failed == 0 {
        return true;
    }
    let Some((_, at)) = c.job_failures.get(key) else { return true };
    let base = 10_000u64.saturating_mul(1 << (failed - 1).clamp(0, 10)).min(600_000);
    let wait = base * s.cron_minute_ms / 60_000;
    now.instant.saturating_duration_since(*at) >= Duration::from_millis(wait)
}

fn create_pod(store: &mut Store, job: &Value) {
    let ns = meta(job, "namespace");
    let name = meta(job, "name");
    let uid = meta(job, "uid");
    let mut labels = job["spec"]["template"]["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", uid),
        ("batch.kubernetes.io/job-name", name),
        ("controller-uid", uid),
        ("job-name", name),
    ] {
        labels[k] = json!(v);
    }
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": format!("{name}-"), "namespace": ns, "labels": labels,
                     "annotations": job["spec"]["template"]["metadata"]["annotations"].clone(),
                     "ownerReferences": [owner_ref(job)]},
        "spec": job["spec"]["template"]["spec"].clone(),
    });
    if let Err(e) = store.create(&Target::collection("", "v1", "pods", Some(ns)), pod) {
        eprintln!(
            "testbed apiserver: job controller: creating a pod for {ns}/{name}: {}",
            e.message
        );
    }
}

/// Whether the scaled minute `m` matches a cron schedule's minute field (the other
/// fields are not simulated: every hour, day and month match).
pub fn minute_matches(schedule: &str, m: u64) -> bool {
    let minute = m % 60;
    let field = match schedule.trim() {
        "@hourly" | "@daily" | "@midnight" | "@weekly" | "@monthly" | "@yearly" | "@annually" => {
            "0"
        }
        s => s.split_whitespace().next().unwrap_or("*"),
    };
    field.split(',').any(|part| {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => (r, st.parse::<u64>().unwrap_or(1).max(1)),
            None => (part, 1),
        };
        let (lo, hi) = match range {
            "*" => (0, 59),
            r => match r.split_once('-') {
                Some((a, b)) => (a.parse().unwrap_or(60), b.parse().unwrap_or(0)),
                None => {
                    let v = r.parse().unwrap_or(60);
                    (v, if step > 1 { 59 } else { v })
                }
            },
        };
        minute >= lo && minute <= hi && (minute - lo).is_multiple_of(step)
    })
}

fn cronjobs(c: &mut Controllers, store: &mut Store, s: &Scenario, now: Now) {
    let minute_ms = s.cron_minute_ms.max(1);
    let m_now = now.unix_ms / minute_ms;
    let jobs = store.objects_of("batch", "jobs");
    for (key, cj) in store.objects_of("batch", "cronjobs") {
        let uid = meta(&cj, "uid");
        let ns = meta(&cj, "namespace");
        let name = meta(&cj, "name");
        let mut owned: Vec<(String, Value)> =
            jobs.iter().filter(|(_, j)| controller_uid(j) == Some(uid)).cloned().collect();
        owned.sort_by_key(|(_, j)| {
            j["metadata"]["name"]
                .as_str()
                .and_then(|n| n.rsplit('-').next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        });
        let last = *c.cron_last.entry(key.clone()).or_insert(m_now);
        let schedule = cj["spec"]["schedule"].as_str().unwrap_or("* * * * *");
        let due = (last + 1..=m_now).rev().find(|m| minute_matches(schedule, *m));
        c.cron_last.insert(key.clone(), m_now);
        let mut status = cj["status"].clone();
        if !status.is_object() {
            status = json!({});
        }
        if let (Some(m), false) = (due, cj["spec"]["suspend"] == true) {
            let active: Vec<&(String, Value)> =
                owned.iter().filter(|(_, j)| finished(j).is_none()).collect();
            let policy = cj["spec"]["concurrencyPolicy"].as_str().unwrap_or("Allow");
            if policy == "Replace" {
                for (k, _) in &active {
                    store.remove_key(k);
                }
            }
            if policy != "Forbid" || active.is_empty() {
                let first = status["lastScheduleTime"].is_null();
                let template = &cj["spec"]["jobTemplate"];
                let mut annotations = template["metadata"]["annotations"].clone();
                if !annotations.is_object() {
                    annotations = json!({});
                }
                annotations["batch.kubernetes.io/cronjob-scheduled-timestamp"] =
                    json!(timestamp_ms(m * minute_ms));
                if s.vault_flaky && name == VAULT_BOOTSTRAP {
                    annotations[OUTCOME_ANNOTATION] = json!(if first { "fail" } else { "succeed" });
                }
                let job = json!({
                    "apiVersion": "batch/v1", "kind": "Job",
                    "metadata": {"name": format!("{name}-{m}"), "namespace": ns,
                                 "labels": template["metadata"]["labels"].clone(), "annotations": annotations,
                                 "ownerReferences": [owner_ref(&cj)]},
                    "spec": template["spec"].clone(),
                });
                match store.create(&Target::collection("batch", "v1", "jobs", Some(ns)), job) {
                    Ok(created) => owned.push((format!("batch/jobs/{ns}/{name}-{m}"), created)),
                    Err(e) => eprintln!("testbed apiserver: cronjob controller: {}", e.message),
                }
                status["lastScheduleTime"] = json!(timestamp_ms(m * minute_ms));
            }
        }
        // History limits, oldest first.
        for (outcome, limit) in
            [(true, "successfulJobsHistoryLimit"), (false, "failedJobsHistoryLimit")]
                .map(|(o, f)| (o, cj["spec"][f].as_i64().unwrap_or(if o { 3 } else { 1 })))
        {
            let done: Vec<&(String, Value)> =
                owned.iter().filter(|(_, j)| finished(j) == Some(outcome)).collect();
            for (k, _) in done.iter().take(done.len().saturating_sub(limit.max(0) as usize)) {
                store.remove_key(k);
            }
        }
        let active: Vec<Value> = owned
            .iter()
            .filter(|(k, j)| finished(j).is_none() && store.data.objects.contains_key(k))
            .map(|(_, j)| json!({"apiVersion": "batch/v1", "kind": "Job", "namespace": ns, "name": j["metadata"]["name"], "uid": j["metadata"]["uid"]}))
            .collect();
        match active.is_empty() {
            true => status.as_object_mut().map(|o| o.remove("active")),
            false => status.as_object_mut().map(|o| o.insert("active".into(), json!(active))),
        };
        if let Some(t) = owned
            .iter()
            .filter(|(_, j)| finished(j) == Some(true))
            .filter_map(|(_, j)| j["status"]["completionTime"].as_str())
            .max()
            && status["lastSuccessfulTime"].as_str().is_none_or(|old| old < t)
        {
            status["lastSuccessfulTime"] = json!(t);
        }
        if status != cj["status"] {
            store.set_status(&key, status);
        }
    }
}

/// Delete objects whose every owner is gone (the garbage collector's background
/// cascade: a deleted CronJob takes its Jobs, a Job its Pods, an ExternalSecret its Secret).
pub(super) fn collect_garbage(store: &mut Store) {
    let uids: HashSet<String> = store
        .data
        .objects
        .values()
        .filter_map(|o| o["metadata"]["uid"].as_str().map(str::to_owned))
        .collect();
    let orphans: Vec<String> = store
        .data
        .objects
        .iter()
        .filter(|(_, o)| {
            o["metadata"]["ownerReferences"].as_array().is_some_and(|refs| {
                !refs.is_empty()
                    && refs.iter().all(|r| r["uid"].as_str().is_none_or(|u| !uids.contains(u)))
            })
        })
        .map(|(k, _)| k.clone())
        .collect();
    for k in orphans {
        store.remove_key(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_minute_fields() {
        assert!(minute_matches("* * * * *", 17));
        assert!(minute_matches("*/5 * * * *", 65));
        assert!(!minute_matches("*/5 * * * *", 66));
        assert!(minute_matches("0,30 * * * *", 90));
        assert!(minute_matches("10-12 * * * *", 11));
        assert!(!minute_matches("@hourly", 1));
    }
}
