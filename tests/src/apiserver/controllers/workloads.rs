//! Readiness after a startup delay, written as the real controllers write it
//! (kubernetes `pkg/controller/deployment/sync.go` + `util/deployment_util.go`,
//! `pkg/controller/statefulset/stateful_set_status.go`, `pkg/controller/daemon`,
//! the kubelet's `status_manager.go` / `pkg/kubelet/status/generate.go` for Pods).
//!
//! A new object, or a new generation of one (its spec changed), starts with nothing
//! ready; once its images are on the node (`kubelet.rs`), after `startup_ms` plus the containers' longest
//! `readinessProbe.initialDelaySeconds` its Pods are Ready. Deployments and
//! DaemonSets start their Pods in parallel; a StatefulSet with the default
//! `podManagementPolicy: OrderedReady` one after the other, so its n-th replica is Ready
//! after n delays. No Pods or ReplicaSets are created for workloads.

use serde_json::{Value, json};

use super::{Controllers, Now, condition, meta};
use crate::apiserver::store::Store;
use crate::scenario::Scenario;

pub(super) fn reconcile(c: &mut Controllers, store: &mut Store, s: &Scenario, now: Now) {
    for (key, obj) in store.objects_of("apps", "deployments") {
        let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(1);
        let ready = ready_count(c, &key, &obj, s, now, replicas, false);
        if let Some(ready) = ready {
            store.set_status(&key, deployment_status(&obj, replicas, ready, now));
        }
    }
    for (key, obj) in store.objects_of("apps", "statefulsets") {
        let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(1);
        let ordered = obj["spec"]["podManagementPolicy"].as_str() != Some("Parallel");
        if let Some(ready) = ready_count(c, &key, &obj, s, now, replicas, ordered) {
            store.set_status(&key, statefulset_status(&obj, replicas, ready));
        }
    }
    for (key, obj) in store.objects_of("apps", "daemonsets") {
        // One node schedules it (the testbed's cluster is one k3s server to its Pods).
        if let Some(ready) = ready_count(c, &key, &obj, s, now, 1, false) {
            let g = &obj["metadata"]["generation"];
            store.set_status(
                &key,
                json!({"observedGeneration": g, "desiredNumberScheduled": 1, "currentNumberScheduled": 1,
                       "updatedNumberScheduled": 1, "numberMisscheduled": 0, "numberReady": ready,
                       "numberAvailable": ready, "numberUnavailable": 1 - ready}),
            );
        }
    }
    for (key, obj) in store.objects_of("", "pods") {
        let phase = obj["status"]["phase"].as_str().unwrap_or("");
        // Finished Pods, Pods of Jobs (the Job controller runs those) and Helm test Pods
        // (the fake helm runs those, as the kubelet would) are not ours.
        let test_hook = obj["metadata"]["annotations"]["helm.sh/hook"].as_str().is_some_and(|h| {
            h.split(',').any(|e| e.trim() == "test" || e.trim() == "test-success")
        });
        let of_job = obj["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|refs| refs.iter().any(|r| r["kind"] == "Job"));
        if of_job || test_hook || phase == "Succeeded" || phase == "Failed" {
            continue;
        }
        if let Some(ready) = ready_count(c, &key, &obj, s, now, 1, false) {
            store.set_status(&key, pod_status(&obj, ready == 1, now));
        }
    }
}

/// The ready count to write now, if it changed since the last write.
fn ready_count(
    c: &mut Controllers,
    key: &str,
    obj: &Value,
    s: &Scenario,
    now: Now,
    replicas: i64,
    ordered: bool,
) -> Option<i64> {
    let spec = if obj["kind"] == "Pod" { &obj["spec"] } else { &obj["spec"]["template"]["spec"] };
    // Containers start once the node has their images (the kubelet pulls them).
    let started = c.pod_started(key, obj, spec, s, now);
    let seen = c.observe(key, obj, now);
    let elapsed = started.map(|t| now.instant.saturating_duration_since(t).as_millis() as u64);
    // A Pod is Ready after its start and its readiness probe's initial delay.
    let per_pod = s.startup_ms + probe_delay_ms(obj);
    let delays = elapsed.unwrap_or(0) / per_pod.max(1);
    let ready = if elapsed.is_none() {
        0
    } else if per_pod == 0 {
        replicas
    } else if ordered {
        (delays as i64).min(replicas)
    } else if delays >= 1 {
        replicas
    } else {
        0
    };
    if seen.written == Some(ready) {
        return None;
    }
    seen.written = Some(ready);
    Some(ready)
}

/// The longest `readinessProbe.initialDelaySeconds` of the Pod (template)'s containers.
fn probe_delay_ms(obj: &Value) -> u64 {
    let spec = if obj["kind"] == "Pod" { &obj["spec"] } else { &obj["spec"]["template"]["spec"] };
    spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["readinessProbe"]["initialDelaySeconds"].as_u64())
        .max()
        .unwrap_or(0)
        * 1000
}

/// `<name>-<pod-template-hash>`, stable for one template.
pub(super) fn template_hash(obj: &Value) -> String {
    let text = obj["spec"]["template"].to_string();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..10).map(|i| ALPHABET[((h >> (i * 6)) % ALPHABET.len() as u64) as usize] as char).collect()
}

fn deployment_status(obj: &Value, replicas: i64, ready: i64, now: Now) -> Value {
    let rs = format!("{}-{}", meta(obj, "name"), template_hash(obj));
    let available = ready >= replicas;
    let (avail_reason, avail_msg) = if available {
        ("MinimumReplicasAvailable", "Deployment has minimum availability.")
    } else {
        ("MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
    };
    let (prog_reason, prog_msg) = if available {
        ("NewReplicaSetAvailable", format!("ReplicaSet \"{rs}\" has successfully progressed."))
    } else {
        ("ReplicaSetUpdated", format!("ReplicaSet \"{rs}\" is progressing."))
    };
    let mut status = json!({
        "observedGeneration": obj["metadata"]["generation"], "replicas": replicas,
        "updatedReplicas": replicas,
        "conditions": [condition("Available", available, avail_reason, avail_msg, now),
                       condition("Progressing", true, prog_reason, &prog_msg, now)],
    });
    // As the API serializes it: zero counts are omitted (omitempty).
    if ready > 0 {
        status["readyReplicas"] = json!(ready);
        status["availableReplicas"] = json!(ready);
    }
    if replicas - ready > 0 {
        status["unavailableReplicas"] = json!(replicas - ready);
    }
    status
}

fn statefulset_status(obj: &Value, replicas: i64, ready: i64) -> Value {
    let revision = format!("{}-{}", meta(obj, "name"), template_hash(obj));
    let mut status = json!({
        "observedGeneration": obj["metadata"]["generation"], "replicas": replicas,
        "currentReplicas": replicas, "updatedReplicas": replicas,
        "currentRevision": revision, "updateRevision": revision, "collisionCount": 0,
    });
    if ready > 0 {
        status["readyReplicas"] = json!(ready);
        status["availableReplicas"] = json!(ready);
    }
    status
}

/// A running Pod's status: Pending (pulling) until the delay passed, then Running and Ready.
pub(super) fn pod_status(pod: &Value, ready: bool, now: Now) -> Value {
    let containers: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let state = if ready {
                json!({"running": {"startedAt": now.timestamp()}})
            } else {
                json!({"waiting": {"reason": "ContainerCreating"}})
            };
            json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": ready,
                   "started": ready, "restartCount": 0, "state": state})
        })
        .collect();
    let not_ready = (!ready).then_some("ContainersNotReady");
    let message = "containers with unready status: [main]";
    let cond = |kind: &str, ok: bool| {
        let mut c = json!({"type": kind, "status": if ok { "True" } else { "False" },
                           "lastProbeTime": null, "lastTransitionTime": now.timestamp()});
        if !ok {
            c["reason"] = json!(not_ready);
            c["message"] = json!(message);
        }
        c
    };
    json!({
        "phase": if ready { "Running" } else { "Pending" },
        "conditions": [cond("PodReadyToStartContainers", true), cond("Initialized", true),
                       cond("Ready", ready), cond("ContainersReady", ready), cond("PodScheduled", true)],
        "hostIP": "172.18.0.3", "podIP": "10.42.0.10", "startTime": now.timestamp(),
        "qosClass": "BestEffort", "containerStatuses": containers,
    })
}

/// Whether a workload object is Ready (all replicas ready, current generation).
pub fn workload_ready(obj: &Value) -> bool {
    let status = &obj["status"];
    let g = obj["metadata"]["generation"].as_i64().unwrap_or(1);
    match obj["kind"].as_str().unwrap_or("") {
        "Deployment" | "StatefulSet" => {
            let want = obj["spec"]["replicas"].as_i64().unwrap_or(1);
            status["observedGeneration"].as_i64() == Some(g)
                && status["readyReplicas"].as_i64().unwrap_or(0) >= want
        }
        "DaemonSet" => status["numberReady"].as_i64().unwrap_or(0) >= 1,
        "Pod" => status["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")),
        _ => true,
    }
}
