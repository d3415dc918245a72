//! What the API server fills in on create and update before it stores an object: the
//! built-in types' defaulting functions and the registry strategies that real clients
//! (helm's `--wait`, kstatus, kubectl) rely on, applied before the generation is
//! compared, so a re-applied unchanged object keeps its generation.
//!
//! Upstream (kubernetes v1.33): `pkg/apis/apps/v1/defaults.go` (Deployment, StatefulSet,
//! DaemonSet, ReplicaSet), `pkg/apis/batch/v1/defaults.go` (Job, CronJob),
//! `pkg/apis/core/v1/defaults.go` (Service, PodSpec, Container, PVC),
//! `pkg/registry/batch/job/strategy.go` (`generateSelector`: the Job's selector and
//! template labels), `pkg/registry/core/service/ipallocator` (ClusterIP from the
//! service CIDR, k3s's `10.43.0.0/16`), the `DefaultStorageClass` admission plugin
//! (k3s's default class `local-path`), `pkg/registry/core/persistentvolumeclaim/
//! strategy.go` (a new claim is `Pending`).

use std::collections::{BTreeMap, HashSet};

use serde_json::{Value, json};

use super::target::Target;

/// k3s's default StorageClass (local-path-provisioner, `WaitForFirstConsumer`).
pub const DEFAULT_STORAGE_CLASS: &str = "local-path";

/// Fill in the defaults of `body` (a create when `current` is `None`). `objects` is the
/// store, for the Service IPs already taken.
pub fn apply(
    t: &Target,
    body: &mut Value,
    current: Option<&Value>,
    objects: &BTreeMap<String, Value>,
) {
    if t.subresource.is_some() || !body.is_object() {
        return;
    }
    let kinds_with_spec =
        ["deployments", "replicasets", "statefulsets", "daemonsets", "jobs", "cronjobs"];
    let with_spec = matches!(t.group.as_str(), "apps" | "batch")
        && kinds_with_spec.contains(&t.plural.as_str())
        || t.group.is_empty()
            && ["pods", "persistentvolumeclaims", "services"].contains(&t.plural.as_str());
    if !with_spec {
        return;
    }
    let spec = &mut body["spec"];
    match (t.group.as_str(), t.plural.as_str()) {
        ("apps", "deployments") => {
            or_insert(spec, "replicas", json!(1));
            if spec["strategy"]["type"].is_null() {
                spec["strategy"]["type"] = json!("RollingUpdate");
            }
            if spec["strategy"]["type"] == "RollingUpdate" {
                or_insert(&mut spec["strategy"]["rollingUpdate"], "maxUnavailable", json!("25%"));
                or_insert(&mut spec["strategy"]["rollingUpdate"], "maxSurge", json!("25%"));
            }
            or_insert(spec, "revisionHistoryLimit", json!(10));
            or_insert(spec, "progressDeadlineSeconds", json!(600));
            pod_template(&mut spec["template"]);
        }
        ("apps", "replicasets") => {
            or_insert(spec, "replicas", json!(1));
            pod_template(&mut spec["template"]);
        }
        ("apps", "statefulsets") => {
            or_insert(spec, "replicas", json!(1));
            or_insert(spec, "podManagementPolicy", json!("OrderedReady"));
            if spec["updateStrategy"]["type"].is_null() {
                spec["updateStrategy"]["type"] = json!("RollingUpdate");
            }
            if spec["updateStrategy"]["type"] == "RollingUpdate" {
                or_insert(&mut spec["updateStrategy"]["rollingUpdate"], "partition", json!(0));
            }
            or_insert(spec, "revisionHistoryLimit", json!(10));
            let retention = &mut spec["persistentVolumeClaimRetentionPolicy"];
            or_insert(retention, "whenDeleted", json!("Retain"));
            or_insert(retention, "whenScaled", json!("Retain"));
            let claims = spec.get_mut("volumeClaimTemplates").and_then(Value::as_array_mut);
            for claim in claims.into_iter().flatten() {
                claim_spec(&mut claim["spec"]);
            }
            pod_template(&mut spec["template"]);
        }
        ("apps", "daemonsets") => {
            if spec["updateStrategy"]["type"].is_null() {
                spec["updateStrategy"]["type"] = json!("RollingUpdate");
            }
            if spec["updateStrategy"]["type"] == "RollingUpdate" {
                or_insert(&mut spec["updateStrategy"]["rollingUpdate"], "maxUnavailable", json!(1));
                or_insert(&mut spec["updateStrategy"]["rollingUpdate"], "maxSurge", json!(0));
            }
            or_insert(spec, "revisionHistoryLimit", json!(10));
            pod_template(&mut spec["template"]);
        }
        ("batch", "jobs") => {
            job_spec(spec);
            // The job strategy dereferences it (`generateSelectorIfNeeded`).
            or_insert(spec, "manualSelector", json!(false));
            job_selector(body);
        }
        ("batch", "cronjobs") => {
            or_insert(spec, "concurrencyPolicy", json!("Allow"));
            or_insert(spec, "suspend", json!(false));
            or_insert(spec, "successfulJobsHistoryLimit", json!(3));
            or_insert(spec, "failedJobsHistoryLimit", json!(1));
            job_spec(&mut spec["jobTemplate"]["spec"]);
        }
        ("", "pods") => {
            pod_spec(spec);
            if current.is_none() {
                // The pod strategy's PrepareForCreate: a new Pod is Pending.
                body["status"] = json!({"phase": "Pending", "qosClass": qos_class(&body["spec"])});
            }
        }
        ("", "persistentvolumeclaims") => {
            claim_spec(spec);
            if current.is_none() {
                body["status"] = json!({"phase": "Pending"});
            }
        }
        ("", "services") => service(body, current, objects),
        _ => {}
    }
}

fn or_insert(obj: &mut Value, field: &str, value: Value) {
    if !obj.is_object() {
        *obj = json!({});
    }
    if obj[field].is_null() {
        obj[field] = value;
    }
}

fn job_spec(spec: &mut Value) {
    if spec["completions"].is_null() && spec["parallelism"].is_null() {
        spec["completions"] = json!(1);
    }
    or_insert(spec, "parallelism", json!(1));
    or_insert(spec, "backoffLimit", json!(6));
    or_insert(spec, "completionMode", json!("NonIndexed"));
    or_insert(spec, "suspend", json!(false));
    or_insert(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    pod_template(&mut spec["template"]);
}

/// The Job strategy's `generateSelector`: without `manualSelector`, the selector is the
/// Job's uid and the template carries the uid and name labels.
fn job_selector(job: &mut Value) {
    if job["spec"]["manualSelector"] == true {
        return;
    }
    let uid = job["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
    let name = job["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    if uid.is_empty() {
        return;
    }
    job["spec"]["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    let labels = &mut job["spec"]["template"]["metadata"]["labels"];
    if !labels.is_object() {
        *labels = json!({});
    }
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", &uid),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("job-name", &name),
    ] {
        labels[k] = json!(v);
    }
}

fn pod_template(template: &mut Value) {
    if template.is_object() {
        pod_spec(&mut template["spec"]);
    }
}

/// `SetDefaults_PodSpec` and `SetDefaults_Container` (the fields every Pod shows).
fn pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    or_insert(spec, "restartPolicy", json!("Always"));
    or_insert(spec, "dnsPolicy", json!("ClusterFirst"));
    or_insert(spec, "terminationGracePeriodSeconds", json!(30));
    or_insert(spec, "securityContext", json!({}));
    or_insert(spec, "schedulerName", json!("default-scheduler"));
    or_insert(spec, "enableServiceLinks", json!(true));
    for field in ["initContainers", "containers"] {
        for c in spec.get_mut(field).and_then(Value::as_array_mut).into_iter().flatten() {
            or_insert(c, "terminationMessagePath", json!("/dev/termination-log"));
            or_insert(c, "terminationMessagePolicy", json!("File"));
            let image = c["image"].as_str().unwrap_or_default().to_owned();
            or_insert(c, "imagePullPolicy", json!(pull_policy(&image)));
            for p in c.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
                or_insert(p, "protocol", json!("TCP"));
            }
        }
    }
}

/// `BestEffort` without any requests or limits, else `Burstable` (`Guaranteed` is not
/// told apart).
pub fn qos_class(pod_spec: &Value) -> &'static str {
    let any = pod_spec["containers"].as_array().into_iter().flatten().any(|c| {
        c["resources"]["requests"].as_object().is_some_and(|m| !m.is_empty())
            || c["resources"]["limits"].as_object().is_some_and(|m| !m.is_empty())
    });
    if any { "Burstable" } else { "BestEffort" }
}

/// `Always` for `:latest` or an untagged image, else `IfNotPresent`.
fn pull_policy(image: &str) -> &'static str {
    let name = image.split('@').next().unwrap_or(image);
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        _ if image.contains('@') => "IfNotPresent",
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn claim_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    or_insert(spec, "volumeMode", json!("Filesystem"));
    // The DefaultStorageClass admission plugin: k3s marks `local-path` the default.
    or_insert(spec, "storageClassName", json!(DEFAULT_STORAGE_CLASS));
}

/// Service defaults and its ClusterIP (kept across updates, as the registry does).
fn service(body: &mut Value, current: Option<&Value>, objects: &BTreeMap<String, Value>) {
    let spec = &mut body["spec"];
    or_insert(spec, "type", json!("ClusterIP"));
    or_insert(spec, "sessionAffinity", json!("None"));
    for p in spec.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
        or_insert(p, "protocol", json!("TCP"));
        if p["targetPort"].is_null() {
            p["targetPort"] = p["port"].clone();
        }
    }
    if spec["type"] == "ExternalName" {
        return;
    }
    or_insert(spec, "internalTrafficPolicy", json!("Cluster"));
    if matches!(spec["type"].as_str(), Some("NodePort" | "LoadBalancer")) {
        or_insert(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    let kept = current.map(|c| c["spec"]["clusterIP"].clone()).filter(|ip| ip.is_string());
    if spec["clusterIP"].as_str().is_none_or(str::is_empty) {
        let ip = kept.unwrap_or_else(|| json!(free_cluster_ip(body, objects)));
        body["spec"]["clusterIP"] = ip;
    }
    let spec = &mut body["spec"];
    if spec["clusterIPs"].is_null() {
        spec["clusterIPs"] = json!([spec["clusterIP"].clone()]);
    }
    or_insert(spec, "ipFamilies", json!(["IPv4"]));
    or_insert(spec, "ipFamilyPolicy", json!("SingleStack"));
}

/// A free address of k3s's service CIDR `10.43.0.0/16` (10.43.0.1 is `kubernetes`,
/// 10.43.0.10 is `kube-dns`), chosen from the Service's name so it is stable.
fn free_cluster_ip(body: &Value, objects: &BTreeMap<String, Value>) -> String {
    let taken: HashSet<&str> = objects
        .range("core/services/".to_owned()..)
        .take_while(|(k, _)| k.starts_with("core/services/"))
        .filter_map(|(_, s)| s["spec"]["clusterIP"].as_str())
        .collect();
    let seed = format!(
        "{}/{}",
        body["metadata"]["namespace"].as_str().unwrap_or(""),
        body["metadata"]["name"].as_str().unwrap_or("")
    );
    let mut n = seed
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    loop {
        let host = 11 + (n % 65_000) as u32;
        let ip = format!("10.43.{}.{}", host / 256, host % 256);
        if !host.is_multiple_of(256) && host % 256 != 255 && !taken.contains(ip.as_str()) {
            return ip;
        }
        n = n.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(group: &str, plural: &str) -> Target {
        Target::collection(group, "v1", plural, Some("ns"))
    }

    #[test]
    fn workloads_get_the_controllers_defaults() {
        let objects = BTreeMap::new();
        let mut d = json!({"metadata": {"name": "web"}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
        apply(&target("apps", "deployments"), &mut d, None, &objects);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], "25%");
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "Always");
        let again = {
            let mut x = d.clone();
            apply(&target("apps", "deployments"), &mut x, Some(&d), &objects);
            x
        };
        assert_eq!(again, d, "defaulting is idempotent");

        let mut s = json!({"metadata": {"name": "db"}, "spec": {}});
        apply(&target("apps", "statefulsets"), &mut s, None, &objects);
        assert_eq!(s["spec"]["updateStrategy"]["rollingUpdate"]["partition"], 0);
        assert_eq!(s["spec"]["podManagementPolicy"], "OrderedReady");

        let mut j =
            json!({"metadata": {"name": "j", "uid": "u-1"}, "spec": {"template": {"spec": {}}}});
        apply(&target("batch", "jobs"), &mut j, None, &objects);
        assert_eq!(j["spec"]["backoffLimit"], 6);
        assert_eq!(j["spec"]["completions"], 1);
        assert_eq!(
            j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
            "u-1"
        );
        assert_eq!(j["spec"]["template"]["metadata"]["labels"]["job-name"], "j");
    }

    #[test]
    fn services_get_a_stable_cluster_ip() {
        let mut objects = BTreeMap::new();
        let mut a = json!({"metadata": {"name": "a", "namespace": "ns"}, "spec": {"ports": [{"port": 80}]}});
        apply(&target("", "services"), &mut a, None, &objects);
        let ip = a["spec"]["clusterIP"].as_str().unwrap().to_owned();
        assert!(ip.starts_with("10.43."), "{ip}");
        assert_eq!(a["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(a["spec"]["clusterIPs"], json!([ip]));
        objects.insert("core/services/ns/a".to_owned(), a.clone());
        // An update without the IP keeps it; another Service gets another one.
        let mut update = json!({"metadata": {"name": "a", "namespace": "ns"}, "spec": {"ports": [{"port": 80}]}});
        apply(&target("", "services"), &mut update, Some(&a), &objects);
        assert_eq!(update["spec"]["clusterIP"], ip.as_str());
        let mut b = json!({"metadata": {"name": "a", "namespace": "other"}, "spec": {}});
        apply(&target("", "services"), &mut b, None, &objects);
        assert_ne!(b["spec"]["clusterIP"], ip.as_str());
        let mut headless = json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None"}});
        apply(&target("", "services"), &mut headless, None, &objects);
        assert_eq!(headless["spec"]["clusterIP"], "None");
        assert!(headless["spec"].get("ports").is_none(), "no field made up: {headless}");
        let mut cm = json!({"metadata": {"name": "c"}, "data": {}});
        apply(&target("", "configmaps"), &mut cm, None, &objects);
        assert_eq!(cm, json!({"metadata": {"name": "c"}, "data": {}}));
    }
}
