//! Field management: `metadata.managedFields` on every write through the API, and
//! server-side apply, after k8s.io/apiserver `pkg/endpoints/handlers/fieldmanager` and
//! structured-merge-diff `merge/update.go` (`Updater.Apply`, `Updater.Update`):
//!
//! - An update (create, PUT, merge patch) gives its manager (`fieldManager`, else the
//!   User-Agent up to its first `/`) the fields it added or changed, and takes them
//!   from every other manager. An update of an object that has no managed fields
//!   records nothing (`ProbabilisticSkipNonAppliedManager`).
//! - An apply makes its manager own exactly the fields of its configuration. A field
//!   another manager owns whose value the apply would change is a conflict: 409 with
//!   the API server's message, unless `force`, which takes the field over. Fields the
//!   manager applied before and no longer applies are removed, unless another manager
//!   owns them. An object that exists without managed fields first gives all its fields
//!   to `before-first-apply`.
//! - `apiVersion`, `kind`, `metadata.{name, namespace, uid, resourceVersion,
//!   generation, creationTimestamp, selfLink, managedFields}` are never owned
//!   (`stripmeta.go`); for resources with a status subresource, the main resource's
//!   managers never own `status` and `/status` writers own only `status`.

use serde_json::{Map, Value, json};

use super::fieldset::{self, FieldSet, Path};
use super::target::ApiError;
use crate::release::k8s_timestamp_now;

/// Who writes, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writer {
    pub manager: String,
    /// Server-side apply's `force`.
    pub force: bool,
}

impl Writer {
    /// `fieldManager` from the query, else what the API server derives from the
    /// User-Agent (`prefixFromUserAgent`: up to the first `/`, printable, 128 bytes).
    pub fn from_request(field_manager: Option<&str>, user_agent: &str, force: bool) -> Writer {
        let manager = match field_manager.filter(|m| !m.is_empty()) {
            Some(m) => m.to_owned(),
            None => user_agent
                .split('/')
                .next()
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_control())
                .scan(0, |len, c| {
                    *len += c.len_utf8();
                    (*len <= 128).then_some(c)
                })
                .collect(),
        };
        Writer { manager, force }
    }
}

/// `ValidatePatchOptions`: apply needs a field manager; `force` is for apply only.
pub fn patch_options_error(
    apply: bool,
    field_manager: Option<&str>,
    force: Option<bool>,
) -> Option<ApiError> {
    let (field, reason, what) = match (apply, field_manager.unwrap_or(""), force) {
        (true, "", _) => {
            ("fieldManager", "FieldValueRequired", "Required value: is required for apply patch")
        }
        (false, _, Some(_)) => {
            ("force", "FieldValueForbidden", "Forbidden: may not be specified for non-apply patch")
        }
        _ => return None,
    };
    let mut e = ApiError::new(
        422,
        "Invalid",
        format!("PatchOptions.meta.k8s.io \"\" is invalid: {field}: {what}"),
    );
    e.details = json!({"name": "", "group": "meta.k8s.io", "kind": "PatchOptions",
        "causes": [{"reason": reason, "message": what, "field": field}]});
    Some(e)
}

/// Which fields of the object a write may own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything but the stripped metadata.
    Whole,
    /// The main resource of a kind with a status subresource: not `status`.
    MainResource,
    /// `/status`: only `status`.
    Status,
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: Option<String>,
    subresource: String,
    fields: FieldSet,
}

impl Entry {
    fn parse(v: &Value) -> Entry {
        let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
        Entry {
            manager: s("manager"),
            operation: s("operation"),
            api_version: s("apiVersion"),
            time: v["time"].as_str().map(str::to_owned),
            subresource: s("subresource"),
            fields: FieldSet::from_fields_v1(&v["fieldsV1"]),
        }
    }

    fn to_json(&self) -> Value {
        let mut e = json!({
            "manager": self.manager, "operation": self.operation, "apiVersion": self.api_version,
            "fieldsType": "FieldsV1", "fieldsV1": self.fields.to_fields_v1(),
        });
        if let Some(t) = &self.time {
            e["time"] = json!(t);
        }
        if !self.subresource.is_empty() {
            e["subresource"] = json!(self.subresource);
        }
        e
    }

    /// The same manager (`BuildManagerIdentifier`: appliers regardless of apiVersion).
    fn is(&self, manager: &str, operation: &str, api_version: &str, subresource: &str) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource == subresource
            && (operation == "Apply" || self.api_version == api_version)
    }

    /// How conflict messages name the manager (`printManager`).
    fn printed(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s = format!("{s} with subresource {:?}", self.subresource);
        }
        if self.operation == "Update" {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }
}

fn entries_of(object: &Value) -> Vec<Entry> {
    object["metadata"]["managedFields"]
        .as_array()
        .map_or_else(Vec::new, |a| a.iter().map(Entry::parse).collect())
}

/// Write the entries into the object, sorted as the API server sorts them (operation,
/// then time, manager, apiVersion, subresource), without empty ones.
fn store_entries(object: &mut Value, mut entries: Vec<Entry>) {
    entries.retain(|e| !e.fields.is_empty());
    entries.sort_by(|a, b| {
        (&a.operation, &a.time, &a.manager, &a.api_version, &a.subresource).cmp(&(
            &b.operation,
            &b.time,
            &b.manager,
            &b.api_version,
            &b.subresource,
        ))
    });
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    if entries.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), entries.iter().map(Entry::to_json).collect());
    }
}

const STRIPPED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "clusterName",
    "generation",
    "managedFields",
    "resourceVersion",
];

/// The fields of `object` a writer in `scope` can own.
fn owned_fields(object: &Value, scope: Scope) -> FieldSet {
    let mut set = fieldset::fields_of(object);
    for top in ["apiVersion", "kind"] {
        set.remove(&[format!("f:{top}")]);
    }
    for p in set.paths() {
        let stripped = p.len() >= 2
            && p[0] == "f:metadata"
            && STRIPPED_METADATA.iter().any(|m| p[1] == format!("f:{m}"));
        let in_status = p.first().is_some_and(|e| e == "f:status");
        let out_of_scope = match scope {
            Scope::Whole => false,
            Scope::MainResource => in_status,
            Scope::Status => !in_status,
        };
        if stripped || out_of_scope {
            set.remove(&p);
        }
    }
    set
}

/// What changed from `old` to `new`, among the fields a writer in `scope` can own.
struct Comparison {
    /// Added, or a leaf with another value.
    changed: FieldSet,
    removed: FieldSet,
}

fn compare(old: &Value, new: &Value, scope: Scope) -> Comparison {
    let before = owned_fields(old, scope);
    let after = owned_fields(new, scope);
    let all = before.union(&after);
    let mut changed = FieldSet::default();
    let mut removed = FieldSet::default();
    for p in all.paths() {
        match (fieldset::value_at(old, &p), fieldset::value_at(new, &p)) {
            (None, Some(_)) => changed.insert(&p),
            (Some(_), None) => removed.insert(&p),
            (Some(a), Some(b)) if a != b && all.is_leaf(&p) => changed.insert(&p),
            _ => {}
        }
    }
    Comparison { changed, removed }
}

fn subresource_of(scope: Scope) -> &'static str {
    if scope == Scope::Status { "status" } else { "" }
}

/// Record an update by `writer` that turns `old` (None: a create) into `new`; `new`'s
/// own `managedFields`, when it has some, replace the stored ones (clients may edit
/// them).
pub fn track_update(
    old: Option<&Value>,
    new: &mut Value,
    writer: &Writer,
    api_version: &str,
    scope: Scope,
) {
    let mut entries = entries_of(new);
    if entries.is_empty() {
        entries = old.map(entries_of).unwrap_or_default();
        if old.is_some() && entries.is_empty() {
            return; // not tracked before: not tracked now
        }
    }
    let empty = json!({});
    let cmp = compare(old.unwrap_or(&empty), new, scope);
    let subresource = subresource_of(scope);
    for e in &mut entries {
        e.fields = e.fields.difference(&cmp.removed).difference(&cmp.changed);
    }
    let now = k8s_timestamp_now();
    match entries.iter_mut().find(|e| e.is(&writer.manager, "Update", api_version, subresource)) {
        Some(mine) => {
            mine.fields = mine.fields.difference(&cmp.removed).union(&cmp.changed);
            if !cmp.changed.is_empty() || !cmp.removed.is_empty() {
                mine.time = Some(now);
            }
        }
        None => entries.push(Entry {
            manager: writer.manager.clone(),
            operation: "Update".into(),
            api_version: api_version.to_owned(),
            time: Some(now),
            subresource: subresource.to_owned(),
            fields: cmp.changed,
        }),
    }
    store_entries(new, entries);
}

/// Server-side apply of `config` by `writer` to `live` (None: the object is created).
/// The object to store, its `managedFields` written; or the 409 of a conflict.
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    writer: &Writer,
    api_version: &str,
    scope: Scope,
) -> Result<Value, ApiError> {
    if config["metadata"]["managedFields"].as_array().is_some_and(|a| !a.is_empty()) {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    let empty = json!({});
    let live_object = live.unwrap_or(&empty);
    let subresource = subresource_of(scope);
    let mut entries = entries_of(live_object);
    if live.is_some() && entries.is_empty() {
        let fields = owned_fields(live_object, scope);
        entries.push(Entry {
            manager: "before-first-apply".into(),
            operation: "Update".into(),
            api_version: api_version.to_owned(),
            time: None,
            subresource: subresource.to_owned(),
            fields,
        });
    }
    let applied = owned_fields(config, scope);
    let mine =
        entries.iter().position(|e| e.is(&writer.manager, "Apply", api_version, subresource));
    let previous = mine.map(|i| entries[i].fields.clone()).unwrap_or_default();
    let others = entries
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != mine)
        .fold(FieldSet::default(), |acc, (_, e)| acc.union(&e.fields));

    let mut merged = live_object.clone();
    merge_applied(&mut merged, config, "");
    for p in previous.difference(&applied).paths() {
        if !others.contains(&p) && !applied_below(&applied, &p) {
            fieldset::remove_at(&mut merged, &p);
        }
    }
    let cmp = compare(live_object, &merged, scope);

    let conflicts: Vec<(usize, Vec<Path>)> = entries
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != mine)
        .map(|(i, e)| (i, e.fields.intersection(&cmp.changed).paths()))
        .filter(|(_, paths)| !paths.is_empty())
        .collect();
    if !conflicts.is_empty() && !writer.force {
        return Err(conflict_error(&entries, &conflicts));
    }
    for e in entries.iter_mut() {
        e.fields = e.fields.difference(&cmp.removed);
    }
    for (i, paths) in &conflicts {
        for p in paths {
            entries[*i].fields.remove(p);
        }
    }
    let now = Some(k8s_timestamp_now());
    match mine {
        Some(i) => {
            if entries[i].fields != applied || !cmp.changed.is_empty() {
                entries[i].time = now;
            }
            entries[i].fields = applied;
            entries[i].api_version = api_version.to_owned();
        }
        None => entries.push(Entry {
            manager: writer.manager.clone(),
            operation: "Apply".into(),
            api_version: api_version.to_owned(),
            time: now,
            subresource: subresource.to_owned(),
            fields: applied,
        }),
    }
    store_entries(&mut merged, entries);
    Ok(merged)
}

/// Whether the applied set still has something below `path` (then `path` itself stays).
fn applied_below(applied: &FieldSet, path: &[String]) -> bool {
    applied.paths().iter().any(|p| p.len() > path.len() && p.starts_with(path))
}

/// Merge an applied configuration into the live object: objects field by field, keyed
/// lists item by item (by key), everything else replaced; `null` removes the field.
fn merge_applied(live: &mut Value, config: &Value, field: &str) {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) => {
            for (k, v) in c {
                if v.is_null() {
                    l.remove(k);
                } else if let Some(existing) = l.get_mut(k) {
                    merge_applied(existing, v, k);
                } else {
                    l.insert(k.clone(), without_nulls(v));
                }
            }
        }
        (Value::Array(l), Value::Array(c))
            if fieldset::list_keys(field, &[l.as_slice(), c.as_slice()].concat()).is_some() =>
        {
            let all = [l.as_slice(), c.as_slice()].concat();
            let keys = fieldset::list_keys(field, &all).unwrap_or_default();
            for item in c {
                let key = fieldset::key_element(keys, item);
                match l.iter().position(|i| fieldset::key_element(keys, i) == key) {
                    Some(i) => merge_applied(&mut l[i], item, ""),
                    None => l.push(without_nulls(item)),
                }
            }
        }
        (live, config) => *live = without_nulls(config),
    }
}

fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect::<Map<_, _>>(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// The API server's 409 for apply conflicts (`fieldmanager/internal/conflict.go`,
/// `NewConflictError`, `getConflictMessage`).
fn conflict_error(entries: &[Entry], conflicts: &[(usize, Vec<Path>)]) -> ApiError {
    let total: usize = conflicts.iter().map(|(_, p)| p.len()).sum();
    let mut causes = Vec::new();
    for (i, paths) in conflicts {
        for p in paths {
            causes.push(json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with {}", entries[*i].printed()),
                "field": fieldset::display(p),
            }));
        }
    }
    let message = if total == 1 {
        let (i, paths) = &conflicts[0];
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            entries[*i].printed(),
            fieldset::display(&paths[0])
        )
    } else {
        let mut by_manager: Vec<(String, &Vec<Path>)> =
            conflicts.iter().map(|(i, p)| (entries[*i].printed(), p)).collect();
        by_manager.sort_by(|a, b| a.0.cmp(&b.0));
        let mut lines = Vec::new();
        for (manager, paths) in by_manager {
            lines.push(format!("conflicts with {manager}:"));
            lines.extend(paths.iter().map(|p| format!("- {}", fieldset::display(p))));
        }
        format!("Apply failed with {total} conflicts: {}", lines.join("\n"))
    };
    let mut e = ApiError::new(409, "Conflict", message);
    e.details = json!({ "causes": causes });
    e
}

#[cfg(test)]
#[path = "ssa_tests.rs"]
mod tests;
