//! The cluster's controllers, inside the fake API server, so they act on every write
//! whoever makes it (helm, helmfile, kubectl, kube-rs): the Deployment and ReplicaSet
//! controllers (`deployments.rs`), the StatefulSet and DaemonSet controllers
//! (`workloads.rs`), the Job and CronJob controllers and the garbage collector
//! (`jobs.rs`), the local-path volume provisioner (`volumes.rs`), the kubelet that runs
//! every Pod (`pods.rs`, image pulls in `kubelet.rs`; Helm test hooks' checks in
//! `test_pods.rs`, their layers in `layers.rs`), k3s's ServiceLB (`services.rs`), and
//! the External Secrets operator (`eso.rs`), which runs only while a Helm release of
//! the upstream `external-secrets` chart is installed.
//!
//! A loop calls [`Controllers::tick`] every 100 ms with the store locked; what the
//! controllers remember (when a Pod's containers started) lives in memory, so a
//! restarted API server (a restarted cluster) starts its Pods again, as a restarted
//! node does.

mod deployments;
mod eso;
pub mod gate_probe;
pub mod jobs;
mod kubelet;
mod layers;
mod pods;
mod services;
mod test_pods;
mod volumes;
mod workloads;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::store::Store;
use crate::scenario::Scenario;

pub use jobs::VAULT_BOOTSTRAP;
pub use layers::SAMPLE_HELMFILE;
pub use test_pods::{is_test_hook, release_layer};
pub use workloads::workload_ready;

/// Annotation a writer may set on a Job to fix its outcome (`fail` or `succeed`); the
/// CronJob controller sets it from the scenario (`vault-flaky`) when it creates the Job.
pub const OUTCOME_ANNOTATION: &str = "testbed.local/outcome";

/// What one controller remembers about one object.
#[derive(Debug, Clone)]
struct Seen {
    uid: String,
    generation: i64,
    since: Instant,
    /// What was last written (a count, a state code): write only on change.
    written: Option<i64>,
    /// When a Pod's volumes, images and environment were ready (its containers started),
    /// and that moment in unix ms (for its status).
    started: Option<(Instant, u64)>,
}

#[derive(Default)]
pub struct Controllers {
    testbed_dir: Option<PathBuf>,
    seen: HashMap<String, Seen>,
    /// Per CronJob key: the last scaled minute it was scheduled for (or first seen in).
    cron_last: HashMap<String, u64>,
    /// Per Job key: how many of its Pods failed, and when the last failure was seen
    /// (the retry waits out the back-off).
    job_failures: HashMap<String, (i64, Instant)>,
    /// Per ExternalSecret key: its failed syncs in a row, when the last one was, and
    /// its message (ESO requeues a failure with controller-runtime's back-off).
    eso_retries: HashMap<String, (u32, Instant, String)>,
    /// Release Secret resourceVersion -> chart name (decoding is not free).
    chart_names: HashMap<String, String>,
    /// Decoded release records: which release a test hook belongs to.
    release_hooks: layers::ReleaseHooks,
    kubelet: kubelet::Kubelet,
}

/// The clock a tick runs on.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub instant: Instant,
    pub unix_ms: u64,
}

impl Now {
    pub fn current() -> Now {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        Now { instant: Instant::now(), unix_ms }
    }

    /// RFC 3339 in whole seconds, as Kubernetes writes times.
    pub fn timestamp(&self) -> String {
        timestamp_ms(self.unix_ms)
    }
}

pub fn timestamp_ms(unix_ms: u64) -> String {
    jiff::Timestamp::from_millisecond(unix_ms as i64)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

impl Controllers {
    /// `node_store`: the image store of the node Pods run on (none: images are not
    /// modelled).
    pub fn new(testbed_dir: Option<PathBuf>, node_store: Option<PathBuf>) -> Controllers {
        Controllers {
            testbed_dir,
            kubelet: kubelet::Kubelet::new(node_store),
            ..Controllers::default()
        }
    }

    fn scenario(&self) -> Scenario {
        match &self.testbed_dir {
            Some(dir) => Scenario::load(dir).unwrap_or_default(),
            None => Scenario::default(),
        }
    }

    /// One pass of every controller. Returns whether anything was written.
    pub fn tick(&mut self, store: &mut Store, now: Now) -> bool {
        let scenario = self.scenario();
        let before = store.data.resource_version;
        deployments::reconcile(store, now);
        workloads::reconcile(store, now);
        jobs::reconcile(self, store, &scenario, now);
        volumes::reconcile(store, self.kubelet.node_name());
        services::reconcile(store);
        pods::reconcile(self, store, &scenario, now);
        eso::reconcile(self, store, &scenario, now);
        jobs::collect_garbage(store);
        self.namespaces(store, now);
        // Forget objects that are gone.
        self.seen.retain(|k, _| {
            store.data.objects.contains_key(k.split_once('#').map_or(k.as_str(), |(k, _)| k))
        });
        store.data.resource_version != before
    }

    /// The namespace controller: a terminating namespace's content, then the namespace
    /// itself, are gone a second after the deletion (discovery and content deletion take
    /// a moment on a real cluster, too).
    fn namespaces(&mut self, store: &mut Store, now: Now) {
        for (key, ns) in store.objects_of("", "namespaces") {
            if ns["metadata"]["deletionTimestamp"].is_null() {
                continue;
            }
            let since = self.observe(&format!("{key}#terminating"), &ns, now).since;
            if now.instant.saturating_duration_since(since) >= Duration::from_millis(1000) {
                store.finish_namespace(meta(&ns, "name"));
            }
        }
    }

    /// When this generation of the object under `key` was first seen (resets when the
    /// uid or generation changes), and what was last written for it.
    fn observe(&mut self, key: &str, obj: &Value, now: Now) -> &mut Seen {
        let uid = obj["metadata"]["uid"].as_str().unwrap_or("").to_owned();
        let generation = obj["metadata"]["generation"].as_i64().unwrap_or(1);
        let entry = self.seen.entry(key.to_owned()).or_insert_with(|| Seen {
            uid: uid.clone(),
            generation,
            since: now.instant,
            written: None,
            started: None,
        });
        if entry.uid != uid || entry.generation != generation {
            *entry = Seen { uid, generation, since: now.instant, written: None, started: None };
        }
        entry
    }
}

/// Run the controllers every 100 ms while `running` (the node is up) until the process
/// ends, recording their writes for watches (`hub`) and saving after each change.
pub fn spawn(
    store: Arc<Mutex<Store>>,
    hub: Arc<super::watch::Hub>,
    testbed_dir: Option<PathBuf>,
    node_store: Option<PathBuf>,
    running: Arc<AtomicBool>,
) {
    tokio::spawn(async move {
        let mut controllers = Controllers::new(testbed_dir, node_store);
        let mut interval = tokio::time::interval(Duration::from_millis(100));
        loop {
            interval.tick().await;
            if !running.load(Ordering::SeqCst) {
                // A stopped node runs nothing; what ran is forgotten, as a reboot would.
                controllers.seen.clear();
                continue;
            }
            let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
            if controllers.tick(&mut store, Now::current()) {
                hub.record(&mut store);
                if let Err(e) = store.save() {
                    eprintln!("testbed apiserver: controllers: saving state: {e:#}");
                }
            }
        }
    });
}

fn meta<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj["metadata"][field].as_str().unwrap_or("")
}

fn condition(kind: &str, status: bool, reason: &str, message: &str, now: Now) -> Value {
    json!({
        "type": kind, "status": if status { "True" } else { "False" }, "reason": reason,
        "message": message, "lastTransitionTime": now.timestamp(), "lastUpdateTime": now.timestamp(),
    })
}

/// `ownerReferences[]` entry naming `owner` as the controller.
fn owner_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true,
    })
}

fn controller_uid(obj: &Value) -> Option<&str> {
    obj["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .and_then(|r| r["uid"].as_str())
}

/// A stable number for a text (FNV-1a): state codes, addresses.
fn code_of(text: &str) -> i64 {
    let h = text
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    (h >> 1) as i64
}

/// Keep the times of conditions that did not change (type, status, reason, message),
/// as controllers only move `lastTransitionTime` on a change.
fn condition_times_kept(old: &Value, new: &mut Value) {
    let Some(old) = old["conditions"].as_array() else { return };
    for c in new.get_mut("conditions").and_then(Value::as_array_mut).into_iter().flatten() {
        let same = old
            .iter()
            .find(|o| ["type", "status", "reason", "message"].iter().all(|f| o[*f] == c[*f]));
        if let Some(o) = same {
            for f in ["lastTransitionTime", "lastUpdateTime", "lastProbeTime"] {
                if !c[f].is_null() {
                    c[f] = o[f].clone();
                }
            }
        }
    }
}
