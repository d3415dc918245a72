//! The object store behind the fake API server: plain JSON objects keyed by group,
//! resource, namespace and name (not by version, so `external-secrets.io/v1` and
//! `v1beta1` see the same objects), persisted as one JSON file rewritten atomically
//! after each write so a stopped and restarted cluster keeps its state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::selector;
use super::ssa::{self, Scope, Writer};
use super::target::group_key;
pub use super::target::{ApiError, ApiResult, Target, ns_target};
use crate::release::k8s_timestamp_now;

pub const STATE_FILE: &str = "state.json";
/// Annotation under which the fakes store a pod's log text (served by `pods/log`).
pub const LOG_ANNOTATION: &str = "testbed.local/log";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Data {
    pub resource_version: u64,
    pub objects: BTreeMap<String, Value>,
}

pub struct Store {
    path: Option<PathBuf>,
    pub data: Data,
}

impl Store {
    /// Open the state in `dir` (created with the default namespaces when new).
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(STATE_FILE);
        let data = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{}: not a testbed API state", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Data::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut store = Store { path: Some(path), data };
        if store.data.objects.is_empty() {
            store.seed();
            store.save()?;
        }
        Ok(store)
    }

    /// A store that is never written to disk (unit tests).
    pub fn in_memory() -> Store {
        let mut store = Store { path: None, data: Data::default() };
        store.seed();
        store
    }

    fn seed(&mut self) {
        let ns = ns_target(None);
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            self.create(&ns, body).expect("seeding namespaces");
        }
    }

    pub fn save(&self) -> Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&self.data)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
    }

    fn next_version(&mut self) -> String {
        self.data.resource_version += 1;
        self.data.resource_version.to_string()
    }

    /// A random-looking but unique id (UUID v4 layout) from the counter and the clock.
    fn uid(&self) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        let a = splitmix(nanos ^ self.data.resource_version.rotate_left(32));
        let b = splitmix(a ^ std::process::id() as u64);
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }

    /// The stored object with `apiVersion` of the request (objects are stored by group).
    fn present(t: &Target, obj: &Value) -> Value {
        let mut obj = obj.clone();
        obj["apiVersion"] = json!(t.api_version());
        obj
    }

    fn namespace_exists(&self, ns: &str) -> bool {
        self.data.objects.contains_key(&ns_target(None).key("", ns))
    }

    fn resolve(&self, t: &Target, body: Option<&Value>) -> Result<(String, String), ApiError> {
        let name = t
            .name
            .clone()
            .or_else(|| body.and_then(|b| b["metadata"]["name"].as_str()).map(str::to_owned))
            .ok_or_else(|| ApiError::bad_request("name is required"))?;
        let namespace =
            if t.namespaced() { t.namespace.clone().unwrap_or_default() } else { String::new() };
        Ok((namespace, name))
    }

    pub fn get(&self, t: &Target) -> ApiResult {
        let (ns, name) = self.resolve(t, None)?;
        self.data
            .objects
            .get(&t.key(&ns, &name))
            .map(|o| Self::present(t, o))
            .ok_or_else(|| ApiError::not_found(t, &name))
    }

    /// The log text of a pod (`pods/log`).
    /// A container that never started has no log: 400 with the kubelet's words
    /// (`pkg/kubelet/kubelet_pods.go` `validateContainerLogStatus`).
    pub fn pod_log(&self, t: &Target) -> Result<String, ApiError> {
        let pod = self.get(t)?;
        let status = &pod["status"]["containerStatuses"][0];
        if let Some(reason) = status["state"]["waiting"]["reason"].as_str() {
            let why = match reason {
                "ErrImagePull" | "ImagePullBackOff" => "trying and failing to pull image",
                other => other,
            };
            return Err(ApiError::bad_request(format!(
                "container \"{}\" in pod \"{}\" is waiting to start: {why}",
                status["name"].as_str().unwrap_or(""),
                pod["metadata"]["name"].as_str().unwrap_or("")
            )));
        }
        Ok(pod["metadata"]["annotations"][LOG_ANNOTATION].as_str().unwrap_or("").to_owned())
    }

    fn select(
        &self,
        t: &Target,
        labels: Option<&str>,
        fields: Option<&str>,
    ) -> Result<Vec<String>, ApiError> {
        let reqs = selector::parse(labels.unwrap_or("")).map_err(ApiError::bad_request)?;
        let fields = selector::parse_fields(fields.unwrap_or("")).map_err(ApiError::bad_request)?;
        let prefix = match (&t.namespace, t.namespaced()) {
            (Some(ns), true) => format!("{}{ns}/", t.prefix()),
            _ => t.prefix(),
        };
        Ok(self
            .data
            .objects
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(_, o)| {
                selector::matches(&reqs, &o["metadata"]["labels"])
                    && selector::matches_fields(&fields, o)
            })
            .map(|(k, _)| k.clone())
            .collect())
    }

    pub fn list(&self, t: &Target, labels: Option<&str>, fields: Option<&str>) -> ApiResult {
        let keys = self.select(t, labels, fields)?;
        let items: Vec<Value> =
            keys.iter().map(|k| Self::present(t, &self.data.objects[k])).collect();
        Ok(self.list_of(t, items))
    }

    fn list_of(&self, t: &Target, items: Vec<Value>) -> Value {
        json!({
            "apiVersion": t.api_version(),
            "kind": format!("{}List", t.kind(items.first())),
            "metadata": { "resourceVersion": self.data.resource_version.to_string() },
            "items": items,
        })
    }

    pub fn create(&mut self, t: &Target, body: Value) -> ApiResult {
        self.create_by(t, body, None)
    }

    /// Create, recording `writer`'s fields in `managedFields` (None: an internal write,
    /// not recorded).
    pub fn create_by(&mut self, t: &Target, mut body: Value, writer: Option<&Writer>) -> ApiResult {
        if !body.is_object() {
            return Err(ApiError::bad_request("the request body must be a JSON object"));
        }
        if body["metadata"]["name"].as_str().is_none_or(str::is_empty) {
            let Some(prefix) = body["metadata"]["generateName"].as_str().map(str::to_owned) else {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    format!(
                        "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                        t.kind(Some(&body))
                    ),
                ));
            };
            body["metadata"]["name"] = json!(format!("{prefix}{}", self.suffix()));
        }
        let (ns, name) = self.resolve(&Target { name: None, ..t.clone() }, Some(&body))?;
        if t.namespaced() {
            self.check_namespace(t, &body, &ns)?;
        }
        let key = t.key(&ns, &name);
        if self.data.objects.contains_key(&key) {
            return Err(ApiError::about(409, "AlreadyExists", t, &name, "already exists"));
        }
        body["apiVersion"] = json!(t.api_version());
        body["kind"] = json!(t.kind(Some(&body)));
        if self.status_is_subresource(t)
            && let Some(o) = body.as_object_mut()
        {
            // As the API server's strategies (PrepareForCreate): status is the controllers'.
            o.remove("status");
        }
        let rv = self.next_version();
        let uid = self.uid();
        let meta = body["metadata"].as_object_mut().expect("metadata checked above");
        if t.namespaced() {
            meta.insert("namespace".into(), json!(ns));
        } else {
            meta.remove("namespace");
        }
        meta.insert("uid".into(), json!(uid));
        meta.insert("resourceVersion".into(), json!(rv));
        meta.insert("creationTimestamp".into(), json!(k8s_timestamp_now()));
        meta.insert("generation".into(), json!(1));
        super::defaults::apply(t, &mut body, None, &self.data.objects);
        normalize(t, &mut body);
        if let Some(w) = writer {
            ssa::track_update(None, &mut body, w, &t.api_version(), self.scope(t));
        }
        self.data.objects.insert(key, body.clone());
        Ok(Self::present(t, &body))
    }

    /// Which fields a write to `t` may own (`ssa::Scope`).
    fn scope(&self, t: &Target) -> Scope {
        if t.subresource.as_deref() == Some("status") {
            Scope::Status
        } else if self.status_is_subresource(t) {
            Scope::MainResource
        } else {
            Scope::Whole
        }
    }

    fn check_namespace(&self, t: &Target, body: &Value, ns: &str) -> Result<(), ApiError> {
        if ns.is_empty() {
            return Err(ApiError::bad_request("a namespace is required for a namespaced resource"));
        }
        if let Some(body_ns) = body["metadata"]["namespace"].as_str()
            && !body_ns.is_empty()
            && body_ns != ns
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        if !self.namespace_exists(ns) {
            return Err(ApiError::not_found(&ns_target(None), ns));
        }
        let ns_obj = &self.data.objects[&ns_target(None).key("", ns)];
        if !ns_obj["metadata"]["deletionTimestamp"].is_null() {
            let name = body["metadata"]["name"].as_str().unwrap_or("");
            let mut e = ApiError::new(
                403,
                "Forbidden",
                format!(
                    "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    t.qualified()
                ),
            );
            e.details = json!({"name": name, "kind": t.plural,
                "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]});
            return Err(e);
        }
        Ok(())
    }

    fn suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut x = splitmix(self.data.resource_version ^ 0x5eed);
        self.data.resource_version += 1;
        (0..5)
            .map(|_| {
                let c = ALPHABET[(x % ALPHABET.len() as u64) as usize] as char;
                x /= ALPHABET.len() as u64;
                c
            })
            .collect()
    }

    /// Every stored object of `group`/`plural` (all namespaces): `(key, object)`.
    pub fn objects_of(&self, group: &str, plural: &str) -> Vec<(String, Value)> {
        let prefix = format!("{}/{plural}/", group_key(group));
        self.data
            .objects
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Replace the status of the object stored under `key` (what a controller's status
    /// update does): a new resourceVersion, the generation unchanged.
    pub fn set_status(&mut self, key: &str, status: Value) -> bool {
        let rv = self.data.resource_version + 1;
        let Some(obj) = self.data.objects.get_mut(key) else { return false };
        obj["status"] = status;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.data.resource_version = rv;
        true
    }

    /// Merge `patch` into the object under `key` (metadata or spec; a controller's update).
    pub fn merge_into(&mut self, key: &str, patch: &Value) -> bool {
        let rv = self.data.resource_version + 1;
        let Some(obj) = self.data.objects.get_mut(key) else { return false };
        merge(obj, patch, false);
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.data.resource_version = rv;
        true
    }

    /// Remove the object under `key` (garbage collection, history limits).
    pub fn remove_key(&mut self, key: &str) -> Option<Value> {
        let obj = self.data.objects.remove(key);
        if obj.is_some() {
            self.data.resource_version += 1;
        }
        obj
    }

    pub fn delete(&mut self, t: &Target) -> ApiResult {
        let (ns, name) = self.resolve(t, None)?;
        let key = t.key(&ns, &name);
        if t.group.is_empty() && t.plural == "namespaces" && t.subresource.is_none() {
            // A namespace terminates first; the namespace controller removes its content
            // and then the namespace (`controllers::tick`, `finish_namespace`).
            let rv = self.data.resource_version + 1;
            let Some(obj) = self.data.objects.get_mut(&key) else {
                return Err(ApiError::not_found(t, &name));
            };
            if obj["metadata"]["deletionTimestamp"].is_null() {
                obj["metadata"]["deletionTimestamp"] = json!(k8s_timestamp_now());
                obj["status"]["phase"] = json!("Terminating");
                obj["metadata"]["resourceVersion"] = json!(rv.to_string());
                self.data.resource_version = rv;
            }
            let obj = obj.clone();
            return Ok(Self::present(t, &obj));
        }
        let Some(obj) = self.data.objects.remove(&key) else {
            return Err(ApiError::not_found(t, &name));
        };
        self.data.resource_version += 1;
        Ok(Self::present(t, &obj))
    }

    /// The namespace controller's last step: remove a terminating namespace's content,
    /// then the namespace.
    pub fn finish_namespace(&mut self, name: &str) {
        let infix = format!("/{name}/");
        self.data.objects.retain(|k, _| {
            let mut parts = k.splitn(3, '/');
            let (_, _, rest) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
            !format!("/{rest}").starts_with(&infix)
        });
        self.data.objects.remove(&ns_target(None).key("", name));
        self.data.resource_version += 1;
    }

    pub fn delete_collection(
        &mut self,
        t: &Target,
        labels: Option<&str>,
        fields: Option<&str>,
    ) -> ApiResult {
        let keys = self.select(t, labels, fields)?;
        let items: Vec<Value> = keys
            .iter()
            .filter_map(|k| self.data.objects.remove(k))
            .map(|o| Self::present(t, &o))
            .collect();
        self.data.resource_version += 1;
        Ok(self.list_of(t, items))
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;

#[path = "store_update.rs"]
mod update;
pub use update::PatchKind;
use update::{merge, normalize};
