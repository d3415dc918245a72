//! The StatefulSet and DaemonSet controllers (kubernetes
//! `pkg/controller/statefulset/stateful_set_control.go`, `stateful_set_utils.go`,
//! `pkg/controller/daemon/daemon_controller.go`, `update.go`), and what the workload
//! controllers share: creating a Pod from a template, sticky condition times, the
//! template hash, readiness. Pods are run by the kubelet (`pods.rs`); these controllers
//! create and delete them and count them into their status.
//!
//! StatefulSet: Pods `<set>-<ordinal>` (labels `controller-revision-hash`,
//! `statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index`; hostname and
//! subdomain), one claim `<template>-<set>-<ordinal>` per `volumeClaimTemplates` entry
//! made before its Pod (kept after the set is gone: retention `Retain`).
//! `OrderedReady` creates ordinal n only once 0..n-1 are Ready, `Parallel` all at once.
//! A new template revision replaces Pods from the highest ordinal down, one at a time,
//! each once the others are Ready (`RollingUpdate`, partition honoured).
//!
//! DaemonSet: the testbed's one node gets one Pod `<set>-<random>` (labels
//! `controller-revision-hash`, `pod-template-generation`); a new template replaces it.

use serde_json::{Value, json};

use super::{Now, condition_times_kept, controller_uid, meta, owner_ref};
use crate::apiserver::store::{Store, Target};

pub(super) fn reconcile(store: &mut Store, now: Now) {
    statefulsets(store, now);
    daemonsets(store, now);
}

/// `<name>-<pod-template-hash>`-style hash of a Pod template (FNV-1a, rendered in the
/// alphabet of apimachinery's `rand.SafeEncodeString`), stable for one template.
pub(super) fn template_hash(template: &Value) -> String {
    let text = template.to_string();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..10).map(|i| ALPHABET[((h >> (i * 6)) % ALPHABET.len() as u64) as usize] as char).collect()
}

/// The live Pods (not finished, not being deleted) a controller with `uid` owns.
pub(super) fn owned_pods(store: &Store, ns: &str, uid: &str) -> Vec<(String, Value)> {
    let prefix = format!("core/pods/{ns}/");
    store
        .data
        .objects
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter(|(_, p)| controller_uid(p) == Some(uid))
        .filter(|(_, p)| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

pub(super) fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// Create a Pod of `owner` from its template: `name` exact, or generated from
/// `<prefix>` when `name` ends with `-`.
pub(super) fn create_pod(
    store: &mut Store,
    owner: &Value,
    template: &Value,
    name: &str,
    extra_labels: &[(&str, String)],
    extra_spec: Value,
) {
    let ns = meta(owner, "namespace");
    let mut labels = template["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    for (k, v) in extra_labels {
        labels[*k] = json!(v);
    }
    let mut spec = template["spec"].clone();
    if let Value::Object(extra) = extra_spec {
        for (k, v) in extra {
            spec[k] = v;
        }
    }
    let mut metadata =
        json!({"namespace": ns, "labels": labels, "ownerReferences": [owner_ref(owner)]});
    if template["metadata"]["annotations"].is_object() {
        metadata["annotations"] = template["metadata"]["annotations"].clone();
    }
    if name.ends_with('-') {
        metadata["generateName"] = json!(name);
    } else {
        metadata["name"] = json!(name);
    }
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec});
    if let Err(e) = store.create(&Target::collection("", "v1", "pods", Some(ns)), pod) {
        eprintln!(
            "testbed apiserver: creating a pod for {ns}/{}: {}",
            meta(owner, "name"),
            e.message
        );
    }
}

/// Write `status` if it differs from the stored one (conditions that did not change
/// keep their times).
pub(super) fn write_status(store: &mut Store, key: &str, obj: &Value, mut status: Value) {
    condition_times_kept(&obj["status"], &mut status);
    if obj["status"] != status {
        store.set_status(key, status);
    }
}

fn statefulsets(store: &mut Store, _now: Now) {
    for (key, sts) in store.objects_of("apps", "statefulsets") {
        let (ns, name, uid) = (meta(&sts, "namespace"), meta(&sts, "name"), meta(&sts, "uid"));
        let replicas = sts["spec"]["replicas"].as_i64().unwrap_or(1);
        let ordered = sts["spec"]["podManagementPolicy"].as_str() != Some("Parallel");
        let revision = format!("{name}-{}", template_hash(&sts["spec"]["template"]));
        let ordinal = |pod: &Value| {
            meta(pod, "name").rsplit('-').next().and_then(|n| n.parse::<i64>().ok()).unwrap_or(-1)
        };
        let mut pods = owned_pods(store, ns, uid);
        pods.sort_by_key(|(_, p)| ordinal(p));
        // Scale down: the highest ordinals go first.
        let extra: Vec<String> = pods
            .iter()
            .filter(|(_, p)| ordinal(p) >= replicas)
            .map(|(k, _)| k.clone())
            .rev()
            .collect();
        for k in extra.iter().take(if ordered { 1 } else { extra.len() }) {
            store.remove_key(k);
        }
        pods.retain(|(k, _)| !extra.contains(k));
        // Create the missing ordinals (OrderedReady: only after every lower one is Ready).
        for i in 0..replicas {
            let pod_name = format!("{name}-{i}");
            if pods.iter().any(|(_, p)| meta(p, "name") == pod_name) {
                continue;
            }
            let lower_ready =
                pods.iter().filter(|(_, p)| ordinal(p) < i).all(|(_, p)| pod_ready(p))
                    && pods.iter().filter(|(_, p)| ordinal(p) < i).count() as i64 == i;
            if ordered && !lower_ready {
                break;
            }
            let volumes = claims(store, &sts, &pod_name, i);
            let mut spec = json!({"hostname": pod_name});
            if let Some(svc) = sts["spec"]["serviceName"].as_str() {
                spec["subdomain"] = json!(svc);
            }
            if !volumes.is_empty() {
                let mut all = sts["spec"]["template"]["spec"]["volumes"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                all.extend(volumes);
                spec["volumes"] = json!(all);
            }
            let labels = [
                ("controller-revision-hash", revision.clone()),
                ("statefulset.kubernetes.io/pod-name", pod_name.clone()),
                ("apps.kubernetes.io/pod-index", i.to_string()),
            ];
            create_pod(store, &sts, &sts["spec"]["template"], &pod_name, &labels, spec);
            if ordered {
                break;
            }
        }
        let pods = owned_pods(store, ns, uid);
        let of_revision = |r: &str| {
            pods.iter()
                .filter(|(_, p)| p["metadata"]["labels"]["controller-revision-hash"] == r)
                .count()
        };
        // Rolling update: replace one outdated Pod (highest ordinal first) at a time,
        // once every Pod is Ready; ordinals below the partition keep their revision.
        let partition =
            sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"].as_i64().unwrap_or(0);
        let rolling = sts["spec"]["updateStrategy"]["type"] == "RollingUpdate";
        if rolling && pods.len() as i64 == replicas && pods.iter().all(|(_, p)| pod_ready(p)) {
            let outdated = pods.iter().rev().find(|(_, p)| {
                ordinal(p) >= partition
                    && p["metadata"]["labels"]["controller-revision-hash"] != revision.as_str()
            });
            if let Some((k, _)) = outdated {
                store.remove_key(k);
            }
        }
        let updated = of_revision(&revision) as i64;
        let mut current = sts["status"]["currentRevision"].as_str().unwrap_or(&revision).to_owned();
        let ready = pods.iter().filter(|(_, p)| pod_ready(p)).count() as i64;
        if updated == replicas && ready == replicas {
            current = revision.clone();
        }
        let mut status = json!({
            "observedGeneration": sts["metadata"]["generation"], "replicas": pods.len(),
            "currentReplicas": of_revision(&current), "updatedReplicas": updated,
            "currentRevision": current, "updateRevision": revision, "collisionCount": 0,
            "availableReplicas": ready,
        });
        if ready > 0 {
            status["readyReplicas"] = json!(ready);
        }
        write_status(store, &key, &sts, status);
    }
}

/// The claims of StatefulSet Pod `pod_name` (created when missing) as Pod volumes.
fn claims(store: &mut Store, sts: &Value, pod_name: &str, ordinal: i64) -> Vec<Value> {
    let ns = meta(sts, "namespace");
    let mut volumes = Vec::new();
    for template in sts["spec"]["volumeClaimTemplates"].as_array().cloned().unwrap_or_default() {
        let claim = meta(&template, "name");
        let claim_name = format!("{claim}-{pod_name}");
        if !store
            .data
            .objects
            .contains_key(&format!("core/persistentvolumeclaims/{ns}/{claim_name}"))
        {
            let mut labels = sts["spec"]["selector"]["matchLabels"].clone();
            if !labels.is_object() {
                labels = json!({});
            }
            for (k, v) in template["metadata"]["labels"].as_object().into_iter().flatten() {
                labels[k] = v.clone();
            }
            labels["apps.kubernetes.io/pod-index"] = json!(ordinal.to_string());
            let body = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim_name, "namespace": ns, "labels": labels},
                "spec": template["spec"].clone()});
            let target = Target::collection("", "v1", "persistentvolumeclaims", Some(ns));
            if let Err(e) = store.create(&target, body) {
                eprintln!(
                    "testbed apiserver: statefulset controller: claim {claim_name}: {}",
                    e.message
                );
            }
        }
        volumes.push(json!({"name": claim, "persistentVolumeClaim": {"claimName": claim_name}}));
    }
    volumes
}

fn daemonsets(store: &mut Store, _now: Now) {
    for (key, ds) in store.objects_of("apps", "daemonsets") {
        let (ns, name, uid) = (meta(&ds, "namespace"), meta(&ds, "name"), meta(&ds, "uid"));
        let hash = template_hash(&ds["spec"]["template"]);
        let generation = ds["metadata"]["generation"].as_i64().unwrap_or(1);
        let mut pods = owned_pods(store, ns, uid);
        // One node: one Pod; an outdated one is replaced (RollingUpdate, maxUnavailable 1).
        let rolling = ds["spec"]["updateStrategy"]["type"] == "RollingUpdate";
        let outdated: Vec<String> = pods
            .iter()
            .filter(|(_, p)| p["metadata"]["labels"]["controller-revision-hash"] != hash.as_str())
            .map(|(k, _)| k.clone())
            .collect();
        for k in outdated.iter().filter(|_| rolling) {
            store.remove_key(k);
        }
        if rolling {
            pods.retain(|(k, _)| !outdated.contains(k));
        }
        if pods.is_empty() {
            let labels = [
                ("controller-revision-hash", hash.clone()),
                ("pod-template-generation", generation.to_string()),
            ];
            create_pod(
                store,
                &ds,
                &ds["spec"]["template"],
                &format!("{name}-"),
                &labels,
                json!({}),
            );
        }
        let pods = owned_pods(store, ns, uid);
        let ready = pods.iter().filter(|(_, p)| pod_ready(p)).count() as i64;
        let updated = pods
            .iter()
            .filter(|(_, p)| p["metadata"]["labels"]["controller-revision-hash"] == hash.as_str())
            .count() as i64;
        let mut status = json!({
            "observedGeneration": generation, "desiredNumberScheduled": 1,
            "currentNumberScheduled": pods.len().min(1), "numberMisscheduled": 0,
            "numberReady": ready,
        });
        for (field, n) in [
            ("updatedNumberScheduled", updated),
            ("numberAvailable", ready),
            ("numberUnavailable", 1 - ready),
        ] {
            if n > 0 {
                status[field] = json!(n);
            }
        }
        write_status(store, &key, &ds, status);
    }
}

/// Whether a workload is rolled out and Ready: the current generation observed, every
/// replica updated, available and Ready, no extra Pods (what helm's `--wait` and
/// kstatus ask, at their strictest).
pub fn workload_ready(obj: &Value) -> bool {
    let status = &obj["status"];
    let g = obj["metadata"]["generation"].as_i64().unwrap_or(1);
    let observed = status["observedGeneration"].as_i64() == Some(g);
    let int = |f: &str| status[f].as_i64().unwrap_or(0);
    match obj["kind"].as_str().unwrap_or("") {
        "Deployment" => {
            let want = obj["spec"]["replicas"].as_i64().unwrap_or(1);
            observed
                && int("replicas") == want
                && int("updatedReplicas") >= want
                && int("availableReplicas") >= want
                && int("readyReplicas") >= want
        }
        "StatefulSet" => {
            let want = obj["spec"]["replicas"].as_i64().unwrap_or(1);
            observed
                && int("readyReplicas") >= want
                && int("updatedReplicas") >= want
                && status["currentRevision"] == status["updateRevision"]
        }
        "DaemonSet" => {
            let want = int("desiredNumberScheduled");
            observed
                && want > 0
                && int("numberReady") >= want
                && int("updatedNumberScheduled") >= want
        }
        "Pod" => pod_ready(obj),
        _ => true,
    }
}
