//! Writes that change an existing object (PUT, PATCH) and what the API server does to
//! every object it stores (`normalize`): a child module of `store`, sharing its
//! private helpers.

use base64::Engine;
use serde_json::{Map, Value, json};

use super::ssa::{self, Scope, Writer};
use super::{ApiError, ApiResult, Store, Target};
use crate::apiserver::strategic;
use crate::release::k8s_timestamp_now;

/// How a PATCH body changes the object (its `Content-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/apply-patch+yaml`: server-side apply.
    Apply,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json` ([`strategic`]).
    Strategic,
    /// `application/json-patch+json` (RFC 6902).
    Json,
}

/// An RFC 6902 patch, refused as the API server refuses it (`patch.go`: 400 for a body
/// that is not a patch, 422 for a patch that does not apply).
fn json_patch(object: &Value, patch: Value) -> ApiResult {
    let ops: json_patch::Patch = serde_json::from_value(patch)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
    let mut patched = object.clone();
    json_patch::patch(&mut patched, &ops).map_err(|e| {
        ApiError::new(
            422,
            "Invalid",
            format!("the server rejected our request due to an error in our request: {e}"),
        )
    })?;
    Ok(patched)
}

impl Store {
    /// PUT: replace an existing object (or only its status, for `/status`).
    pub fn replace(&mut self, t: &Target, body: Value) -> ApiResult {
        self.replace_by(t, body, None)
    }

    pub fn replace_by(
        &mut self,
        t: &Target,
        mut body: Value,
        writer: Option<&Writer>,
    ) -> ApiResult {
        let (ns, name) = self.resolve(t, Some(&body))?;
        let key = t.key(&ns, &name);
        let Some(current) = self.data.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(t, &name));
        };
        if let Some(rv) = body["metadata"]["resourceVersion"].as_str()
            && !rv.is_empty()
            && rv != current["metadata"]["resourceVersion"]
        {
            return Err(ApiError::about(
                409,
                "Conflict",
                t,
                &name,
                "the object has been modified; please apply your changes to the latest version and try again",
            )
            .with_message_prefix("Operation cannot be fulfilled on "));
        }
        if t.subresource.as_deref() == Some("status") {
            let mut next = current.clone();
            next["status"] = body["status"].take();
            body = next;
        }
        self.store_update(t, key, current, body, writer)
    }

    /// Whether `status` is a subresource of the target's resource: then writes to the
    /// main resource cannot change it (create drops it, updates keep the stored one).
    pub(super) fn status_is_subresource(&self, t: &Target) -> bool {
        if crate::apiserver::discovery::builtin_group(&t.group) {
            crate::apiserver::resources::find(&t.group, &t.plural)
                .is_some_and(|r| r.subresources.contains(&"status"))
        } else {
            crate::apiserver::discovery::crds(self)
                .iter()
                .any(|c| c.group == t.group && c.plural == t.plural && c.status)
        }
    }

    fn store_update(
        &mut self,
        t: &Target,
        key: String,
        current: Value,
        mut body: Value,
        writer: Option<&Writer>,
    ) -> ApiResult {
        if !body.is_object() || !body["metadata"].is_object() {
            return Err(ApiError::bad_request("the request body must be an object with metadata"));
        }
        if t.subresource.as_deref() != Some("status") && self.status_is_subresource(t) {
            match current.get("status") {
                Some(status) => body["status"] = status.clone(),
                None => {
                    if let Some(o) = body.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
        }
        // Defaults first, so an unchanged re-apply compares equal (no new generation).
        crate::apiserver::defaults::apply(t, &mut body, Some(&current), &self.data.objects);
        let generation = current["metadata"]["generation"].as_i64().unwrap_or(1)
            + i64::from(body.get("spec") != current.get("spec"));
        let rv = self.next_version();
        for field in ["uid", "creationTimestamp", "namespace", "name"] {
            if let Some(v) = current["metadata"].get(field) {
                body["metadata"][field] = v.clone();
            }
        }
        body["metadata"]["resourceVersion"] = json!(rv);
        body["metadata"]["generation"] = json!(generation);
        body["apiVersion"] = current["apiVersion"].clone();
        body["kind"] = current["kind"].clone();
        normalize(t, &mut body);
        if let Some(w) = writer {
            ssa::track_update(Some(&current), &mut body, w, &t.api_version(), self.scope(t));
        }
        self.data.objects.insert(key, body.clone());
        Ok(Self::present(t, &body))
    }

    /// PATCH without field management: server-side apply (`apply`) merges like a merge
    /// patch and creates a missing object; a merge patch is applied as RFC 7386.
    pub fn patch(&mut self, t: &Target, patch: Value, apply: bool) -> ApiResult {
        let kind = if apply { PatchKind::Apply } else { PatchKind::Merge };
        self.patch_by(t, patch, kind, None)
    }

    /// PATCH by `writer`: server-side apply (`ssa::apply`: managed fields, conflicts,
    /// creates a missing object), or a merge or JSON patch, recorded as an update.
    pub fn patch_by(
        &mut self,
        t: &Target,
        patch: Value,
        kind: PatchKind,
        writer: Option<&Writer>,
    ) -> ApiResult {
        let apply = kind == PatchKind::Apply;
        let (ns, name) = self.resolve(t, None)?;
        let key = t.key(&ns, &name);
        let current = self.data.objects.get(&key).cloned();
        let scope = self.scope(t);
        if let (true, Some(w)) = (apply, writer) {
            let mut config = patch;
            if scope == Scope::Status {
                let status = config["status"].take();
                config = json!({"metadata": config["metadata"].take(), "status": status});
            }
            config["metadata"]["name"] = json!(name);
            let applied = ssa::apply(current.as_ref(), &config, w, &t.api_version(), scope)?;
            return match current {
                None => self.create_by(&Target { name: None, ..t.clone() }, applied, None),
                Some(current) => self.store_update(t, key, current, applied, None),
            };
        }
        let Some(current) = current else {
            if !apply {
                return Err(ApiError::not_found(t, &name));
            }
            let mut body = patch;
            body["metadata"]["name"] = json!(name);
            return self.create(&Target { name: None, ..t.clone() }, body);
        };
        let mut next = current.clone();
        if kind == PatchKind::Json {
            let patched = json_patch(&current, patch)?;
            if t.subresource.as_deref() == Some("status") {
                next["status"] = patched["status"].clone();
            } else {
                next = patched;
            }
        } else if t.subresource.as_deref() == Some("status") {
            match kind {
                PatchKind::Strategic => strategic::apply(&mut next["status"], &patch["status"]),
                _ => merge(&mut next["status"], &patch["status"], apply),
            }
        } else {
            let mut patch = patch;
            if let Some(meta) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("resourceVersion");
            }
            match kind {
                PatchKind::Strategic => strategic::apply(&mut next, &patch),
                _ => merge(&mut next, &patch, apply),
            }
        }
        self.store_update(t, key, current, next, writer)
    }
}

/// What the API server itself fills in: a namespace's phase, a Secret's `stringData`
/// folded into `data`.
pub(super) fn normalize(t: &Target, body: &mut Value) {
    match (t.group.as_str(), t.plural.as_str()) {
        ("", "namespaces") => {
            body["spec"]["finalizers"] = json!(["kubernetes"]);
            body["status"]["phase"] = json!("Active");
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            // The apiextensions server accepts the names and establishes the CRD at once.
            let names = body["spec"]["names"].clone();
            let now = k8s_timestamp_now();
            body["status"] = json!({
                "acceptedNames": names, "storedVersions": [body["spec"]["versions"][0]["name"].clone()],
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
                ],
            });
        }
        ("", "secrets") => {
            if let Some(Value::Object(string_data)) =
                body.as_object_mut().and_then(|o| o.remove("stringData"))
            {
                let data = body["data"].as_object_mut().map(std::mem::take).unwrap_or_default();
                let mut data: Map<String, Value> = data;
                for (k, v) in string_data {
                    let text = v.as_str().unwrap_or_default().to_owned();
                    data.insert(k, json!(base64::engine::general_purpose::STANDARD.encode(text)));
                }
                body["data"] = Value::Object(data);
            }
            if body["type"].is_null() {
                body["type"] = json!("Opaque");
            }
        }
        _ => {}
    }
}

/// RFC 7386 merge; server-side apply keeps explicit nulls out instead of deleting.
pub(super) fn merge(target: &mut Value, patch: &Value, apply: bool) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("made an object above");
            for (k, v) in p {
                if v.is_null() {
                    if !apply {
                        t.remove(k);
                    }
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v, apply);
                }
            }
        }
        other => *target = other.clone(),
    }
}
