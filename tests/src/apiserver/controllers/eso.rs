//! The External Secrets operator (external-secrets `pkg/controllers/externalsecret/
//! externalsecret_controller.go`, `externalsecret_controller_secret.go`,
//! `pkg/controllers/secretstore/client_manager.go`, `apis/externalsecrets/v1`).
//!
//! It runs only while a Helm release of the upstream chart `external-secrets` (chart
//! metadata name) is `deployed` and that release's Deployments are Ready: without the
//! operator an ExternalSecret never gets a status. Then, per ExternalSecret generation:
//! the store it names (`spec.secretStoreRef`, `SecretStore` or `ClusterSecretStore`)
//! must exist, and each `spec.data[].remoteRef.key` is read from the (simulated)
//! provider, which has every key except, with scenario `secret-missing-key`, the first
//! key of the first ExternalSecret (by namespace/name) with data. Success: the target
//! Secret (owned by the ExternalSecret, values `testbed-<secretKey>`) and Ready `True`
//! `SecretSynced` "secret synced". Failure: Ready `False` `SecretSyncedError` "could not
//! get secret data from provider", no Secret, and a Warning Event `UpdateFailed` whose
//! message names the key ("error processing spec.data[0] (key: K), err: Secret does not
//! exist"). No refresh (`refreshInterval`), no `dataFrom`, no templates.

use base64::Engine;
use serde_json::{Value, json};

use super::workloads::workload_ready;
use super::{Controllers, Now, meta, owner_ref};
use crate::apiserver::store::{Store, Target};
use crate::release::{Release, SECRET_TYPE};
use crate::scenario::Scenario;

pub const CHART: &str = "external-secrets";

/// Whether the operator runs: its release is deployed and its Deployments are Ready.
fn operator_running(c: &mut Controllers, store: &Store) -> bool {
    // Helm's release records: Secrets, or ConfigMaps with `HELM_DRIVER=configmap`.
    let secrets = store.objects_of("", "secrets").into_iter();
    let records = secrets.filter(|(_, s)| s["type"] == SECRET_TYPE).chain(
        store
            .objects_of("", "configmaps")
            .into_iter()
            .filter(|(_, c)| c["metadata"]["labels"]["owner"] == "helm"),
    );
    for (_, secret) in records {
        if secret["metadata"]["labels"]["status"] != "deployed" {
            continue;
        }
        let cache_key = format!("{}@{}", meta(&secret, "uid"), meta(&secret, "resourceVersion"));
        let chart = c.chart_names.entry(cache_key).or_insert_with(|| {
            Release::from_record(&secret).map(|r| r.chart_name().to_owned()).unwrap_or_default()
        });
        if chart != CHART {
            continue;
        }
        let release = secret["metadata"]["labels"]["name"].as_str().unwrap_or("");
        let ns = meta(&secret, "namespace");
        let deployments: Vec<Value> = store
            .objects_of("apps", "deployments")
            .into_iter()
            .map(|(_, d)| d)
            .filter(|d| {
                meta(d, "namespace") == ns
                    && d["metadata"]["annotations"]["meta.helm.sh/release-name"] == release
            })
            .collect();
        if deployments.iter().all(workload_ready) {
            return true;
        }
    }
    false
}

pub(super) fn reconcile(c: &mut Controllers, store: &mut Store, s: &Scenario, now: Now) {
    let externalsecrets = store.objects_of("external-secrets.io", "externalsecrets");
    if externalsecrets.is_empty() || !operator_running(c, store) {
        return;
    }
    let broken = s.secret_missing_key.then(|| {
        externalsecrets
            .iter()
            .find(|(_, es)| es["spec"]["data"].as_array().is_some_and(|d| !d.is_empty()))
            .map(|(k, _)| k.clone())
    });
    let broken = broken.flatten();
    for (key, es) in externalsecrets {
        let seen = c.observe(&format!("{key}#eso"), &es, now);
        if seen.written == Some(1) {
            continue;
        }
        seen.written = Some(1);
        let ns = meta(&es, "namespace").to_owned();
        let name = meta(&es, "name").to_owned();
        let data = es["spec"]["data"].as_array().cloned().unwrap_or_default();
        let result = match store_error(store, &es, &ns) {
            Some(e) => Err(e),
            None if broken.as_deref() == Some(key.as_str()) => {
                let k = data[0]["remoteRef"]["key"].as_str().unwrap_or("");
                Err(format!("error processing spec.data[0] (key: {k}), err: Secret does not exist"))
            }
            None => Ok(()),
        };
        let target = es["spec"]["target"]["name"].as_str().unwrap_or(&name).to_owned();
        let condition = match &result {
            Ok(()) => {
                write_secret(store, &es, &ns, &target, &data);
                json!({"type": "Ready", "status": "True", "reason": "SecretSynced",
                       "message": "secret synced", "lastTransitionTime": now.timestamp()})
            }
            Err(e) => {
                event(store, &es, "Warning", "UpdateFailed", e, now);
                json!({"type": "Ready", "status": "False", "reason": "SecretSyncedError",
                       "message": "could not get secret data from provider", "lastTransitionTime": now.timestamp()})
            }
        };
        let mut status = json!({"refreshTime": now.timestamp(), "conditions": [condition],
                                "syncedResourceVersion": format!("{}-testbed", es["metadata"]["generation"])});
        if result.is_ok() {
            status["binding"] = json!({"name": target});
        }
        store.set_status(&key, status);
    }
}

/// The store named by `spec.secretStoreRef`, as the client manager looks it up.
fn store_error(store: &Store, es: &Value, ns: &str) -> Option<String> {
    let r = &es["spec"]["secretStoreRef"];
    let name = r["name"].as_str().unwrap_or("");
    let cluster = r["kind"] == "ClusterSecretStore";
    let (plural, kind, t) = if cluster {
        (
            "clustersecretstores",
            "ClusterSecretStore",
            Target::object("external-secrets.io", "v1", "clustersecretstores", "", name),
        )
    } else {
        (
            "secretstores",
            "SecretStore",
            Target::object("external-secrets.io", "v1", "secretstores", ns, name),
        )
    };
    store.get(&t).err().map(|_| {
        format!(
            "could not get {kind} \"{name}\", {plural}.external-secrets.io \"{name}\" not found"
        )
    })
}

fn write_secret(store: &mut Store, es: &Value, ns: &str, target: &str, data: &[Value]) {
    let mut secret_data = serde_json::Map::new();
    for d in data {
        if let Some(k) = d["secretKey"].as_str() {
            let v = base64::engine::general_purpose::STANDARD.encode(format!("testbed-{k}"));
            secret_data.insert(k.to_owned(), json!(v));
        }
    }
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": target, "namespace": ns,
                     "labels": {"reconcile.external-secrets.io/managed": "true"},
                     "ownerReferences": [owner_ref(es)]},
        "data": secret_data});
    let t = Target::object("", "v1", "secrets", ns, target);
    if store.patch(&t, secret, true).is_err() {
        eprintln!("testbed apiserver: external-secrets: writing secret {ns}/{target} failed");
    }
}

/// A core/v1 Event about `obj`, as client-go's recorder writes it.
pub fn event(store: &mut Store, obj: &Value, kind: &str, reason: &str, message: &str, now: Now) {
    let ns = meta(obj, "namespace");
    let event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{}.{:x}", meta(obj, "name"), now.unix_ms * 1_000_000), "namespace": ns},
        "involvedObject": {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
                           "namespace": ns, "uid": obj["metadata"]["uid"], "resourceVersion": obj["metadata"]["resourceVersion"]},
        "reason": reason, "message": message, "type": kind, "count": 1,
        "source": {"component": "external-secrets"},
        "firstTimestamp": now.timestamp(), "lastTimestamp": now.timestamp(),
        "reportingComponent": "external-secrets", "reportingInstance": "",
    });
    let _ = store.create(&Target::collection("", "v1", "events", Some(ns)), event);
}
