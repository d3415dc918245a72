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
//! exist"). A failed sync is retried with controller-runtime's back-off. Flood gate
//! (`--enable-flood-gate`, default true): a store is `Ready` only once the operator
//! validated it (`startup-ms` after it first saw it; never with scenario
//! `store-not-ready=<name>`), and an ExternalSecret of a store that is not `Ready` fails
//! with `ClusterSecretStore "x" is not ready` (`client_manager.go` `assertStoreIsUsable`).
//! No refresh (`refreshInterval`), no `dataFrom`, no templates.

use std::hash::{Hash, Hasher};

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
    let stores: Vec<(String, Value)> = ["secretstores", "clustersecretstores"]
        .into_iter()
        .flat_map(|plural| store.objects_of("external-secrets.io", plural))
        .collect();
    if (externalsecrets.is_empty() && stores.is_empty()) || !operator_running(c, store) {
        return;
    }
    for (key, obj) in stores {
        validate_store(c, store, s, &key, &obj, now);
    }
    let broken = s.secret_missing_key.then(|| {
        externalsecrets
            .iter()
            .find(|(_, es)| es["spec"]["data"].as_array().is_some_and(|d| !d.is_empty()))
            .map(|(k, _)| k.clone())
    });
    let broken = broken.flatten();
    for (key, es) in externalsecrets {
        let generation = es["metadata"]["generation"].as_i64().unwrap_or(0);
        let seen = c.observe(&format!("{key}#eso"), &es, now);
        if seen.written == Some(1) {
            continue;
        }
        if seen.written == Some(2) && !retry_due(c, &key, now) {
            continue;
        }
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
                c.eso_retries.remove(&key);
                write_secret(store, &es, &ns, &target, &data);
                json!({"type": "Ready", "status": "True", "reason": "SecretSynced",
                       "message": "secret synced", "lastTransitionTime": now.timestamp()})
            }
            Err(e) => {
                let retry =
                    c.eso_retries.entry(key.clone()).or_insert((0, now.instant, String::new()));
                // The recorder folds a repeated Event into one (its `count`).
                if retry.2 != *e {
                    event(store, &es, "external-secrets", ("Warning", "UpdateFailed", e), now);
                }
                *retry = (retry.0 + 1, now.instant, e.clone());
                json!({"type": "Ready", "status": "False", "reason": "SecretSyncedError",
                       "message": "could not get secret data from provider", "lastTransitionTime": now.timestamp()})
            }
        };
        let mut status = json!({"refreshTime": now.timestamp(), "conditions": [condition],
                                "syncedResourceVersion": format!("{generation}-testbed")});
        if result.is_ok() {
            status["binding"] = json!({"name": target});
        }
        let was = es["status"]["conditions"][0].clone();
        c.observe(&format!("{key}#eso"), &es, now).written =
            Some(if result.is_ok() { 1 } else { 2 });
        // A retry that ends as before changes nothing (no new resourceVersion).
        if was["status"] != status["conditions"][0]["status"] || result.is_ok() {
            store.set_status(&key, status);
        }
    }
}

/// controller-runtime's per-item back-off for a failed reconcile: 5 ms doubling, capped
/// at 1000 s (`workqueue.DefaultTypedControllerRateLimiter`).
fn retry_due(c: &Controllers, key: &str, now: Now) -> bool {
    let Some((failures, at, _)) = c.eso_retries.get(key) else { return true };
    let wait = (5u64 << (*failures).saturating_sub(1).min(30)).min(1_000_000);
    now.instant.saturating_duration_since(*at) >= std::time::Duration::from_millis(wait)
}

/// The store controller: `Ready` True `Valid` "store validated" once the operator has
/// validated it (`startup-ms` after it first saw it); a store named by scenario
/// `store-not-ready` is `Ready` False `InvalidProviderConfig` "unable to validate
/// store", with a Warning Event carrying the provider's error (external-secrets
/// `pkg/controllers/secretstore/common.go` `reconcile`, `validateStore`).
fn validate_store(
    c: &mut Controllers,
    store: &mut Store,
    s: &Scenario,
    key: &str,
    obj: &Value,
    now: Now,
) {
    let name = meta(obj, "name").to_owned();
    let held = s.store_not_ready.contains(&name);
    let seen = c.observe(&format!("{key}#store"), obj, now);
    let validated =
        now.instant.saturating_duration_since(seen.since).as_millis() as u64 >= s.startup_ms;
    let code = match (held, validated) {
        (true, _) => 2,
        (false, true) => 1,
        (false, false) => return,
    };
    if seen.written == Some(code) {
        return;
    }
    seen.written = Some(code);
    let condition = if held {
        let message = "could not validate provider: the provider cannot be reached (testbed scenario store-not-ready)";
        event(store, obj, "external-secrets", ("Warning", "InvalidProviderConfig", message), now);
        json!({"type": "Ready", "status": "False", "reason": "InvalidProviderConfig",
               "message": "unable to validate store", "lastTransitionTime": now.timestamp()})
    } else {
        json!({"type": "Ready", "status": "True", "reason": "Valid",
               "message": "store validated", "lastTransitionTime": now.timestamp()})
    };
    store.set_status(key, json!({"conditions": [condition]}));
}

/// The store named by `spec.secretStoreRef`, as the client manager looks it up; with the
/// flood gate (`--enable-flood-gate`, default true) it must be `Ready`
/// (`assertStoreIsUsable`: `%s %q is not ready`).
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
    match store.get(&t) {
        Err(_) => Some(format!(
            "could not get {kind} \"{name}\", {plural}.external-secrets.io \"{name}\" not found"
        )),
        Ok(obj) => {
            let ready = obj["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            (!ready).then(|| format!("{kind} \"{name}\" is not ready"))
        }
    }
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

/// Keeps the names of Events written in the same millisecond apart.
fn apart(reason: &str, message: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (reason, message).hash(&mut h);
    h.finish() % 1_000_000
}

/// A core/v1 Event about `obj` from `component`, as client-go's recorder writes it:
/// (type, reason, message).
pub fn event(
    store: &mut Store,
    obj: &Value,
    component: &str,
    (kind, reason, message): (&str, &str, &str),
    now: Now,
) {
    let ns = meta(obj, "namespace");
    let event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{}.{:x}", meta(obj, "name"), now.unix_ms * 1_000_000 + apart(reason, message)), "namespace": ns},
        "involvedObject": {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
                           "namespace": ns, "uid": obj["metadata"]["uid"], "resourceVersion": obj["metadata"]["resourceVersion"]},
        "reason": reason, "message": message, "type": kind, "count": 1,
        "source": {"component": component},
        "firstTimestamp": now.timestamp(), "lastTimestamp": now.timestamp(),
        "reportingComponent": component, "reportingInstance": "",
    });
    let _ = store.create(&Target::collection("", "v1", "events", Some(ns)), event);
}
