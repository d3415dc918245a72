//! The kubelet runs every Pod, whoever created it (a ReplicaSet, a StatefulSet, a Job,
//! helm, kubectl), on the one node the testbed schedules to (k3d's first server), in
//! the kubelet's order (`pkg/kubelet/kubelet.go` `SyncPod`, `kuberuntime_manager.go`,
//! `kuberuntime_container.go`, `pkg/kubelet/status/generate.go`):
//!
//! 1. volumes: every `persistentVolumeClaim` must be Bound (a missing claim leaves the
//!    Pod unschedulable), every non-optional `secret`/`configMap` volume must exist,
//!    else the Pod stays `Pending`, its containers `ContainerCreating`;
//! 2. images (`kubelet.rs`): pulled when missing, in parallel; a failed pull is
//!    `ErrImagePull`, then `ImagePullBackOff`, with the kubelet's Events;
//! 3. environment: `env[].value`/`valueFrom` (`secretKeyRef`, `configMapKeyRef`,
//!    `fieldRef`) and `envFrom` are resolved; a missing non-optional Secret, ConfigMap or
//!    key is `CreateContainerConfigError` with the kubelet's message;
//! 4. the containers start; `startup-ms` later they run: a Pod that runs to completion
//!    (a Pod of a Job, a Helm hook: helm waits for hooks to end) ends `Succeeded` or
//!    `Failed` with its log, any other Pod is `Running` and `Ready` once its readiness
//!    probe's initial delay passed.
//!
//! What a finished container printed is its log (`pods/<p>/log`), stored under the
//! `testbed.local/log` annotation.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{Value, json};

use super::kubelet::Images;
use super::services::HOST_IP;
use super::test_pods::{self, Outcome};
use super::{Controllers, Now, controller_uid, meta, timestamp_ms};
use crate::apiserver::store::{LOG_ANNOTATION, Store};
use crate::scenario::Scenario;

/// Where a Pod is in its life, as the kubelet reports it.
#[derive(Debug, Clone, PartialEq)]
enum State {
    /// Not scheduled (a claim it needs does not exist).
    Unschedulable(String),
    /// Containers waiting: `ContainerCreating`, `ErrImagePull`, `ImagePullBackOff`,
    /// `CreateContainerConfigError`.
    Waiting {
        reason: &'static str,
        message: String,
    },
    Running {
        ready: bool,
        started_ms: u64,
    },
    Finished {
        ok: bool,
        started_ms: u64,
        finished_ms: u64,
    },
}

pub(super) fn reconcile(c: &mut Controllers, store: &mut Store, s: &Scenario, now: Now) {
    for (key, pod) in store.objects_of("", "pods") {
        let phase = pod["status"]["phase"].as_str().unwrap_or("");
        if phase == "Succeeded"
            || phase == "Failed"
            || !pod["metadata"]["deletionTimestamp"].is_null()
        {
            continue;
        }
        let state = sync_pod(c, store, s, &key, &pod, now);
        let seen = c.observe(&key, &pod, now);
        let code = super::code_of(&format!("{state:?}"));
        if seen.written == Some(code) {
            continue;
        }
        seen.written = Some(code);
        let mut status = pod_status(&pod, &state, now);
        super::condition_times_kept(&pod["status"], &mut status);
        store.set_status(&key, status);
    }
}

/// One pass of the kubelet over one Pod: its state now (and its log once finished).
fn sync_pod(
    c: &mut Controllers,
    store: &mut Store,
    s: &Scenario,
    key: &str,
    pod: &Value,
    now: Now,
) -> State {
    let ns = meta(pod, "namespace").to_owned();
    let started = c.observe(key, pod, now).started;
    let started = match started {
        Some(at) => at,
        None => {
            if let Some(state) = volumes_waiting(store, &ns, &pod["spec"]) {
                return state;
            }
            let images = crate::docker::node_images::pod_images(&pod["spec"]);
            match c.kubelet.ensure(c.testbed_dir.as_deref(), &images, s, now.instant) {
                Images::Present => {}
                Images::Pulling => return creating(),
                Images::Failed { reason, message, events } => {
                    for e in events {
                        super::eso::event(store, pod, "kubelet", (e.0, e.1, &e.2), now);
                    }
                    return State::Waiting { reason, message };
                }
            }
            if let Err(message) = container_env(store, pod, 0) {
                return State::Waiting { reason: "CreateContainerConfigError", message };
            }
            let since = c.observe(key, pod, now).since;
            c.kubelet.record_image_wait(c.testbed_dir.as_deref(), key, now.instant - since);
            *c.observe(key, pod, now).started.get_or_insert((now.instant, now.unix_ms))
        }
    };
    let (started, started_ms) = started;
    let elapsed = now.instant.saturating_duration_since(started).as_millis() as u64;
    if elapsed < s.startup_ms {
        return creating();
    }
    let Some(hook) = runs_to_completion(store, pod) else {
        let ready = elapsed >= s.startup_ms + probe_delay_ms(&pod["spec"]);
        return State::Running { ready, started_ms };
    };
    let outcome = match hook {
        Completion::Hook { kind, name, test } => {
            let env = container_env(store, pod, 0).unwrap_or_default();
            test_pods::run_check(c, store, s, pod, (&kind, &name), test, &env)
        }
        Completion::Job(job) => {
            let fail = super::jobs::fails(&job, s);
            Outcome { ok: !fail, log: super::jobs::pod_log(&job, fail) }
        }
    };
    store.merge_into(key, &json!({"metadata": {"annotations": {LOG_ANNOTATION: outcome.log}}}));
    State::Finished { ok: outcome.ok, started_ms, finished_ms: now.unix_ms }
}

fn creating() -> State {
    State::Waiting { reason: "ContainerCreating", message: String::new() }
}

/// Why a Pod runs to completion: it is a Helm hook (helm waits for hooks to succeed;
/// recorded in its release as this kind and name; `test`: a test hook), or a Pod of
/// this (non-hook) Job.
enum Completion {
    Hook { kind: String, name: String, test: bool },
    Job(Value),
}

fn runs_to_completion(store: &Store, pod: &Value) -> Option<Completion> {
    if test_pods::is_hook(pod) {
        let (name, test) = (meta(pod, "name").to_owned(), test_pods::is_test_hook(pod));
        return Some(Completion::Hook { kind: "Pod".into(), name, test });
    }
    let owner = controller_uid(pod)?;
    let is_job_owner = pod["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .any(|r| r["uid"] == owner && r["kind"] == "Job");
    if !is_job_owner {
        return None;
    }
    let job = store
        .objects_of("batch", "jobs")
        .into_iter()
        .map(|(_, j)| j)
        .find(|j| meta(j, "uid") == owner)?;
    if test_pods::is_hook(&job) {
        let (name, test) = (meta(&job, "name").to_owned(), test_pods::is_test_hook(&job));
        return Some(Completion::Hook { kind: "Job".into(), name, test });
    }
    Some(Completion::Job(job))
}

/// What keeps a Pod's volumes from mounting, if anything.
fn volumes_waiting(store: &Store, ns: &str, spec: &Value) -> Option<State> {
    for v in spec["volumes"].as_array().into_iter().flatten() {
        if let Some(claim) = v["persistentVolumeClaim"]["claimName"].as_str() {
            match store.data.objects.get(&format!("core/persistentvolumeclaims/{ns}/{claim}")) {
                None => {
                    return Some(State::Unschedulable(format!(
                        "0/1 nodes are available: persistentvolumeclaim \"{claim}\" not found. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
                    )));
                }
                Some(pvc) if pvc["status"]["phase"] != "Bound" => return Some(creating()),
                Some(_) => {}
            }
        }
        for (field, name_field, plural) in
            [("secret", "secretName", "secrets"), ("configMap", "name", "configmaps")]
        {
            let source = &v[field];
            if let Some(name) = source[name_field].as_str()
                && source["optional"] != true
                && !store.data.objects.contains_key(&format!("core/{plural}/{ns}/{name}"))
            {
                return Some(creating());
            }
        }
    }
    None
}

/// The environment of container `index` as the kubelet builds it
/// (`kuberuntime_container.go` `makeEnvironmentVariables`): `envFrom` first, then
/// `env` (later entries win). Every container (init containers too) must resolve, else
/// `Err` with the kubelet's `CreateContainerConfigError` message.
pub(super) fn container_env(
    store: &Store,
    pod: &Value,
    index: usize,
) -> Result<BTreeMap<String, String>, String> {
    let spec = &pod["spec"];
    for c in spec["initContainers"].as_array().into_iter().flatten() {
        one_container_env(store, pod, c)?;
    }
    let mut env = BTreeMap::new();
    for (i, c) in spec["containers"].as_array().into_iter().flatten().enumerate() {
        let resolved = one_container_env(store, pod, c)?;
        if i == index {
            env = resolved;
        }
    }
    Ok(env)
}

fn one_container_env(
    store: &Store,
    pod: &Value,
    container: &Value,
) -> Result<BTreeMap<String, String>, String> {
    let ns = meta(pod, "namespace");
    let mut env = BTreeMap::new();
    for from in container["envFrom"].as_array().into_iter().flatten() {
        let prefix = from["prefix"].as_str().unwrap_or("");
        for (source, kind) in [("secretRef", "Secret"), ("configMapRef", "ConfigMap")] {
            let r = &from[source];
            let Some(name) = r["name"].as_str() else { continue };
            match data_of(store, ns, kind, name) {
                Some(data) => {
                    env.extend(data.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)))
                }
                None if r["optional"] == true => {}
                None => return Err(format!("{} \"{name}\" not found", kind.to_lowercase())),
            }
        }
    }
    for e in container["env"].as_array().into_iter().flatten() {
        let Some(var) = e["name"].as_str() else { continue };
        if let Some(value) = e["value"].as_str() {
            env.insert(var.to_owned(), value.to_owned());
            continue;
        }
        let from = &e["valueFrom"];
        for (source, kind) in [("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")] {
            let r = &from[source];
            let (Some(name), Some(key)) = (r["name"].as_str(), r["key"].as_str()) else {
                continue;
            };
            let optional = r["optional"] == true;
            match data_of(store, ns, kind, name).map(|data| data.get(key).cloned()) {
                Some(Some(v)) => {
                    env.insert(var.to_owned(), v);
                }
                _ if optional => {}
                Some(None) => return Err(format!("couldn't find key {key} in {kind} {ns}/{name}")),
                None => return Err(format!("{} \"{name}\" not found", kind.to_lowercase())),
            }
        }
        if let Some(path) = from["fieldRef"]["fieldPath"].as_str() {
            let value = match path {
                "metadata.name" => meta(pod, "name").to_owned(),
                "metadata.namespace" => ns.to_owned(),
                "metadata.uid" => meta(pod, "uid").to_owned(),
                "spec.nodeName" => pod["spec"]["nodeName"].as_str().unwrap_or("").to_owned(),
                "spec.serviceAccountName" => {
                    pod["spec"]["serviceAccountName"].as_str().unwrap_or("default").to_owned()
                }
                "status.podIP" | "status.podIPs" => pod_ip(pod),
                "status.hostIP" | "status.hostIPs" => HOST_IP.to_owned(),
                _ => String::new(),
            };
            env.insert(var.to_owned(), value);
        }
    }
    Ok(env)
}

/// A Secret's (decoded) or ConfigMap's data, if it exists.
fn data_of(store: &Store, ns: &str, kind: &str, name: &str) -> Option<BTreeMap<String, String>> {
    let plural = if kind == "Secret" { "secrets" } else { "configmaps" };
    let obj = store.data.objects.get(&format!("core/{plural}/{ns}/{name}"))?;
    let mut out = BTreeMap::new();
    for (k, v) in obj["data"].as_object().into_iter().flatten() {
        let text = v.as_str().unwrap_or("");
        let value = if kind == "Secret" {
            let bytes = base64::engine::general_purpose::STANDARD.decode(text).unwrap_or_default();
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            text.to_owned()
        };
        out.insert(k.clone(), value);
    }
    Some(out)
}

/// The longest `readinessProbe.initialDelaySeconds` of a Pod's containers, in ms.
fn probe_delay_ms(spec: &Value) -> u64 {
    spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["readinessProbe"]["initialDelaySeconds"].as_u64())
        .max()
        .unwrap_or(0)
        * 1000
}

/// A Pod's address in k3s's Pod CIDR `10.42.0.0/24` of the node, stable per uid.
fn pod_ip(pod: &Value) -> String {
    format!("10.42.0.{}", 2 + super::code_of(meta(pod, "uid")).rem_euclid(250))
}

/// The Pod's status for a state, as the kubelet's status manager writes it.
fn pod_status(pod: &Value, state: &State, now: Now) -> Value {
    let time = now.timestamp();
    let start = pod["status"]["startTime"].as_str().map_or_else(|| time.clone(), str::to_owned);
    let names: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .map(|cs| cs.iter().map(|c| c["name"].clone()).collect())
        .unwrap_or_default();
    let cond = |kind: &str, ok: bool, reason: Option<&str>, message: Option<String>| {
        let mut c = json!({"type": kind, "status": if ok { "True" } else { "False" },
                           "lastProbeTime": null, "lastTransitionTime": time});
        if let Some(r) = reason {
            c["reason"] = json!(r);
        }
        if let Some(m) = message {
            c["message"] = json!(m);
        }
        c
    };
    if let State::Unschedulable(message) = state {
        return json!({
            "phase": "Pending", "qosClass": crate::apiserver::defaults::qos_class(&pod["spec"]),
            "conditions": [cond("PodScheduled", false, Some("Unschedulable"), Some(message.clone()))],
        });
    }
    let unready = |why: &str| {
        let list: Vec<&str> = names.iter().filter_map(Value::as_str).collect();
        Some(format!("containers with {why} status: [{}]", list.join(" ")))
    };
    let (phase, ready, container_state, started) = match state {
        State::Waiting { reason, message } => {
            let mut w = json!({"reason": reason});
            if !message.is_empty() {
                w["message"] = json!(message);
            }
            ("Pending", false, json!({"waiting": w}), false)
        }
        State::Running { ready, started_ms } => {
            ("Running", *ready, json!({"running": {"startedAt": timestamp_ms(*started_ms)}}), true)
        }
        State::Finished { ok, started_ms, finished_ms } => {
            let (code, reason) = if *ok { (0, "Completed") } else { (1, "Error") };
            let terminated = json!({"exitCode": code, "reason": reason,
                "startedAt": timestamp_ms(*started_ms), "finishedAt": timestamp_ms(*finished_ms),
                "containerID": container_id(pod)});
            (
                if *ok { "Succeeded" } else { "Failed" },
                false,
                json!({"terminated": terminated}),
                false,
            )
        }
        State::Unschedulable(_) => unreachable!("returned above"),
    };
    let finished = matches!(state, State::Finished { .. });
    let containers: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let mut s = json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": ready,
                               "started": started, "restartCount": 0, "state": container_state});
            if started {
                s["containerID"] = json!(container_id(pod));
            }
            s
        })
        .collect();
    let (ready_reason, ready_message) = match (finished, ready) {
        (true, _) => (Some("PodCompleted"), None),
        (false, true) => (None, None),
        (false, false) => (Some("ContainersNotReady"), unready("unready")),
    };
    let sandbox = !matches!(state, State::Waiting { reason: "ContainerCreating", .. }) || started;
    json!({
        "phase": phase, "qosClass": crate::apiserver::defaults::qos_class(&pod["spec"]), "startTime": start,
        "hostIP": HOST_IP, "hostIPs": [{"ip": HOST_IP}],
        "podIP": pod_ip(pod), "podIPs": [{"ip": pod_ip(pod)}],
        "conditions": [
            cond("PodReadyToStartContainers", sandbox && !finished, None, None),
            cond("Initialized", true, finished.then_some("PodCompleted"), None),
            cond("Ready", ready, ready_reason, ready_message.clone()),
            cond("ContainersReady", ready, ready_reason, ready_message),
            cond("PodScheduled", true, None, None),
        ],
        "containerStatuses": containers,
    })
}

fn container_id(pod: &Value) -> String {
    format!(
        "containerd://{:016x}{:016x}",
        super::code_of(meta(pod, "uid")),
        super::code_of(meta(pod, "name"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::store::Target;

    fn store_with(objects: &[Value]) -> Store {
        let mut store = Store::in_memory();
        for o in objects {
            let plural = match o["kind"].as_str().unwrap() {
                "Secret" => "secrets",
                "ConfigMap" => "configmaps",
                _ => "pods",
            };
            store
                .create(&Target::collection("", "v1", plural, Some("default")), o.clone())
                .unwrap();
        }
        store
    }

    #[test]
    fn environment_is_resolved_from_secrets_as_the_kubelet_does() {
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
                            "stringData": {"password": "pw", "host": "h"}});
        let store = store_with(&[secret]);
        let pod = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [{
            "name": "c",
            "envFrom": [{"secretRef": {"name": "db"}, "prefix": "DB_"}, {"secretRef": {"name": "nope", "optional": true}}],
            "env": [{"name": "A", "value": "1"},
                    {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]}});
        let env = container_env(&store, &pod, 0).unwrap();
        assert_eq!(env["DB_password"], "pw");
        assert_eq!(env["PGPASSWORD"], "pw");
        assert_eq!((env["A"].as_str(), env["POD"].as_str()), ("1", "p"));

        let mut missing = pod.clone();
        missing["spec"]["containers"][0]["envFrom"] = json!([{"secretRef": {"name": "nope"}}]);
        assert_eq!(container_env(&store, &missing, 0).unwrap_err(), "secret \"nope\" not found");
        let mut no_key = pod.clone();
        no_key["spec"]["containers"][0]["env"][1]["valueFrom"]["secretKeyRef"]["key"] = json!("x");
        assert_eq!(
            container_env(&store, &no_key, 0).unwrap_err(),
            "couldn't find key x in Secret default/db"
        );
    }
}
