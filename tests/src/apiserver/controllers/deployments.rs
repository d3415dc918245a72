//! The Deployment and ReplicaSet controllers (kubernetes
//! `pkg/controller/deployment/sync.go`, `rolling.go`, `util/deployment_util.go`,
//! `pkg/controller/replicaset/replica_set.go`, `replica_set_utils.go`).
//!
//! A Deployment owns one ReplicaSet per Pod template, `<deployment>-<pod-template-hash>`,
//! whose selector, template labels and own labels carry `pod-template-hash` (what helm
//! 3's `--wait` finds with `deploymentutil.GetNewReplicaSet`: owned by the Deployment,
//! template equal but for that label). The new ReplicaSet is scaled to the Deployment's
//! replicas at once; the old ones are scaled to 0 once it is fully available (a
//! rollout without the surge/unavailable arithmetic of `rolling.go`, but old Pods serve
//! until the new ones are Ready). A template that comes back (A -> B -> A) reuses its
//! ReplicaSet, whose revision becomes the newest. Old ReplicaSets beyond
//! `revisionHistoryLimit` go.
//! The Deployment's status sums its ReplicaSets' as `calculateStatus` does, with the
//! `Available` and `Progressing` conditions.
//!
//! A ReplicaSet keeps `spec.replicas` live Pods `<replicaset>-<random>` (scale-down
//! removes unready, then newest Pods first) and counts them into its status.

use serde_json::{Value, json};

use super::workloads::{create_pod, owned_pods, pod_ready, template_hash, write_status};
use super::{Now, condition, controller_uid, meta, owner_ref};
use crate::apiserver::store::{Store, Target};

const REVISION: &str = "deployment.kubernetes.io/revision";
const HASH: &str = "pod-template-hash";

pub(super) fn reconcile(store: &mut Store, now: Now) {
    deployments(store, now);
    replicasets(store);
}

fn owned_replicasets(store: &Store, ns: &str, uid: &str) -> Vec<(String, Value)> {
    store
        .objects_of("apps", "replicasets")
        .into_iter()
        .filter(|(_, rs)| meta(rs, "namespace") == ns && controller_uid(rs) == Some(uid))
        .collect()
}

fn revision(rs: &Value) -> i64 {
    rs["metadata"]["annotations"][REVISION].as_str().and_then(|r| r.parse().ok()).unwrap_or(0)
}

fn replicas_of(obj: &Value) -> i64 {
    obj["spec"]["replicas"].as_i64().unwrap_or(1)
}

fn scale(store: &mut Store, rs: &Value, replicas: i64) {
    let target =
        Target::object("apps", "v1", "replicasets", meta(rs, "namespace"), meta(rs, "name"));
    let patch = json!({"spec": {"replicas": replicas},
        "metadata": {"annotations": {"deployment.kubernetes.io/desired-replicas": replicas.to_string()}}});
    if let Err(e) = store.patch(&target, patch, false) {
        eprintln!(
            "testbed apiserver: deployment controller: scaling {}: {}",
            meta(rs, "name"),
            e.message
        );
    }
}

/// `ResolveFenceposts` and `MaxUnavailable` of `deploymentutil`: the rolling update's
/// (maxSurge, maxUnavailable) of the replicas (surge rounds up, unavailable down; 1
/// unavailable when both come to 0); (0, 0) for `Recreate` or no replicas.
fn fenceposts(dep: &Value) -> (i64, i64) {
    let replicas = replicas_of(dep);
    if dep["spec"]["strategy"]["type"] != "RollingUpdate" || replicas == 0 {
        return (0, 0);
    }
    let rolling = &dep["spec"]["strategy"]["rollingUpdate"];
    let scaled = |v: &Value, round_up: bool| match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let x = pct * replicas;
            if round_up { (x + 99) / 100 } else { x / 100 }
        }
        _ => 0,
    };
    let surge = scaled(&rolling["maxSurge"], true);
    let mut unavailable = scaled(&rolling["maxUnavailable"], false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable.min(replicas))
}

fn max_unavailable(dep: &Value) -> i64 {
    fenceposts(dep).1
}

fn deployments(store: &mut Store, now: Now) {
    for (key, dep) in store.objects_of("apps", "deployments") {
        if dep["spec"]["paused"] == true {
            continue;
        }
        let (ns, name, uid) = (meta(&dep, "namespace"), meta(&dep, "name"), meta(&dep, "uid"));
        let replicas = replicas_of(&dep);
        let template = &dep["spec"]["template"];
        let hash = template_hash(template);
        let new_name = format!("{name}-{hash}");
        let owned = owned_replicasets(store, ns, uid);
        // `getNewReplicaSet`: the template's revision is one past the old ReplicaSets'
        // newest, also when a template comes back and its ReplicaSet is reused.
        let old_revision = owned
            .iter()
            .filter(|(_, rs)| meta(rs, "name") != new_name)
            .map(|(_, rs)| revision(rs))
            .max()
            .unwrap_or(0);
        let rev = (old_revision + 1).to_string();
        match owned.iter().find(|(_, rs)| meta(rs, "name") == new_name) {
            None => {
                create_replicaset(store, &dep, &new_name, &hash, replicas, &rev);
                store.merge_into(&key, &json!({"metadata": {"annotations": {REVISION: rev}}}));
            }
            Some((rs_key, rs)) => {
                if revision(rs) < old_revision + 1 {
                    let annotations = json!({"metadata": {"annotations": {REVISION: rev}}});
                    store.merge_into(rs_key, &annotations);
                    store.merge_into(&key, &annotations);
                }
                if replicas_of(rs) != replicas {
                    scale(store, rs, replicas);
                }
            }
        }
        let owned = owned_replicasets(store, ns, uid);
        let new_rs =
            owned.iter().find(|(_, rs)| meta(rs, "name") == new_name).map(|(_, rs)| rs.clone());
        let new_rs = new_rs.unwrap_or_default();
        let int = |rs: &Value, f: &str| rs["status"][f].as_i64().unwrap_or(0);
        let new_available = int(&new_rs, "availableReplicas") >= replicas
            && int(&new_rs, "replicas") == replicas
            && new_rs["status"]["observedGeneration"] == new_rs["metadata"]["generation"];
        let olds: Vec<&(String, Value)> =
            owned.iter().filter(|(_, rs)| meta(rs, "name") != new_name).collect();
        if new_available {
            for (_, rs) in olds.iter().filter(|(_, rs)| replicas_of(rs) > 0) {
                scale(store, rs, 0);
            }
        }
        // Revision history: the oldest scaled-down ReplicaSets beyond the limit go.
        let limit = dep["spec"]["revisionHistoryLimit"].as_i64().unwrap_or(10).max(0) as usize;
        let mut idle: Vec<&&(String, Value)> = olds
            .iter()
            .filter(|(_, rs)| replicas_of(rs) == 0 && int(rs, "replicas") == 0)
            .collect();
        idle.sort_by_key(|(_, rs)| revision(rs));
        for (k, _) in idle.iter().take(idle.len().saturating_sub(limit)) {
            store.remove_key(k);
        }
        let owned = owned_replicasets(store, ns, uid);
        let sum = |f: &str| owned.iter().map(|(_, rs)| int(rs, f)).sum::<i64>();
        let spec_total: i64 = owned.iter().map(|(_, rs)| replicas_of(rs)).sum();
        let (total, ready, available) =
            (sum("replicas"), sum("readyReplicas"), sum("availableReplicas"));
        let updated = int(&new_rs, "replicas");
        let complete = updated == replicas && total == replicas && available >= replicas;
        let min_available = available >= replicas - max_unavailable(&dep);
        let (avail_reason, avail_msg) = if min_available {
            ("MinimumReplicasAvailable", "Deployment has minimum availability.")
        } else {
            ("MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
        };
        let (prog_reason, prog_msg) = if complete {
            (
                "NewReplicaSetAvailable",
                format!("ReplicaSet \"{new_name}\" has successfully progressed."),
            )
        } else {
            ("ReplicaSetUpdated", format!("ReplicaSet \"{new_name}\" is progressing."))
        };
        let mut status = json!({
            "observedGeneration": dep["metadata"]["generation"],
            "conditions": [condition("Available", min_available, avail_reason, avail_msg, now),
                           condition("Progressing", true, prog_reason, &prog_msg, now)],
        });
        // As the API serializes it: zero counts are omitted (omitempty).
        for (field, n) in [
            ("replicas", total),
            ("updatedReplicas", updated),
            ("readyReplicas", ready),
            ("availableReplicas", available),
            ("unavailableReplicas", (spec_total - available).max(0)),
        ] {
            if n > 0 {
                status[field] = json!(n);
            }
        }
        write_status(store, &key, &dep, status);
    }
}

fn create_replicaset(
    store: &mut Store,
    dep: &Value,
    name: &str,
    hash: &str,
    replicas: i64,
    rev: &str,
) {
    let ns = meta(dep, "namespace");
    let mut template = dep["spec"]["template"].clone();
    template["metadata"]["labels"][HASH] = json!(hash);
    let mut labels = template["metadata"]["labels"].clone();
    labels[HASH] = json!(hash);
    let mut selector = dep["spec"]["selector"].clone();
    selector["matchLabels"][HASH] = json!(hash);
    let max = replicas + fenceposts(dep).0;
    let rs = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": ns, "labels": labels,
            "annotations": {REVISION: rev, "deployment.kubernetes.io/desired-replicas": replicas.to_string(),
                            "deployment.kubernetes.io/max-replicas": max.to_string()},
            "ownerReferences": [owner_ref(dep)]},
        "spec": {"replicas": replicas, "minReadySeconds": dep["spec"]["minReadySeconds"].as_i64().unwrap_or(0),
                 "selector": selector, "template": template},
    });
    if let Err(e) = store.create(&Target::collection("apps", "v1", "replicasets", Some(ns)), rs) {
        eprintln!("testbed apiserver: deployment controller: creating {name}: {}", e.message);
    }
}

fn replicasets(store: &mut Store) {
    for (key, rs) in store.objects_of("apps", "replicasets") {
        let (ns, name, uid) = (meta(&rs, "namespace"), meta(&rs, "name"), meta(&rs, "uid"));
        let want = replicas_of(&rs);
        let mut pods = owned_pods(store, ns, uid);
        let have = pods.len() as i64;
        for _ in have..want {
            create_pod(store, &rs, &rs["spec"]["template"], &format!("{name}-"), &[], json!({}));
        }
        if have > want {
            // Unready Pods first, then the newest.
            pods.sort_by(|(_, a), (_, b)| {
                (pod_ready(a), b["metadata"]["creationTimestamp"].as_str(), meta(b, "name")).cmp(&(
                    pod_ready(b),
                    a["metadata"]["creationTimestamp"].as_str(),
                    meta(a, "name"),
                ))
            });
            for (k, _) in pods.iter().take((have - want) as usize) {
                store.remove_key(k);
            }
        }
        let pods = owned_pods(store, ns, uid);
        let ready = pods.iter().filter(|(_, p)| pod_ready(p)).count() as i64;
        let mut status =
            json!({"replicas": pods.len(), "observedGeneration": rs["metadata"]["generation"]});
        for (field, n) in [
            ("fullyLabeledReplicas", pods.len() as i64),
            ("readyReplicas", ready),
            ("availableReplicas", ready),
        ] {
            if n > 0 {
                status[field] = json!(n);
            }
        }
        write_status(store, &key, &rs, status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_unavailable_follows_deploymentutil() {
        let dep = |replicas: i64, unavailable: Value, surge: Value| {
            json!({"spec": {"replicas": replicas, "strategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": unavailable, "maxSurge": surge}}}})
        };
        assert_eq!(max_unavailable(&dep(1, json!("25%"), json!("25%"))), 0);
        assert_eq!(max_unavailable(&dep(4, json!("25%"), json!("25%"))), 1);
        assert_eq!(max_unavailable(&dep(3, json!(0), json!(0))), 1);
        assert_eq!(
            max_unavailable(&json!({"spec": {"replicas": 3, "strategy": {"type": "Recreate"}}})),
            0
        );
    }
}
