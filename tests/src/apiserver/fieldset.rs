//! Sets of field paths, as structured-merge-diff keeps them for `metadata.managedFields`
//! (`FieldsV1`: `f:<field>`, `k:<key object>` for an item of a keyed list, `v:<value>` for
//! an item of a set list, `.` when a node is in the set besides its children).
//!
//! The testbed has no OpenAPI schemas, so what a typed object's schema would say is
//! approximated from the JSON: every object is a struct (its scalars, empty objects and
//! nulls are leaves), a list is keyed only where Kubernetes' types key it
//! (`list_keys`), `metadata.finalizers` is a set, and every other list is atomic (one
//! leaf).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// One path: its elements in `FieldsV1` spelling (`f:data`, `k:{"name":"app"}`).
pub type Path = Vec<String>;

/// A set of paths, shaped like `FieldsV1`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    /// The path ending here is in the set.
    member: bool,
    children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    pub fn from_fields_v1(v: &Value) -> FieldSet {
        let mut set = FieldSet::default();
        if let Value::Object(m) = v {
            for (k, child) in m {
                if k == "." {
                    set.member = true;
                } else {
                    let mut c = FieldSet::from_fields_v1(child);
                    c.member |= child.as_object().is_none_or(Map::is_empty);
                    set.children.insert(k.clone(), c);
                }
            }
        }
        set
    }

    pub fn to_fields_v1(&self) -> Value {
        let mut m = Map::new();
        if self.member && !self.children.is_empty() {
            m.insert(".".into(), json!({}));
        }
        for (k, c) in &self.children {
            m.insert(k.clone(), c.to_fields_v1());
        }
        Value::Object(m)
    }

    pub fn insert(&mut self, path: &[String]) {
        match path.split_first() {
            None => self.member = true,
            Some((head, rest)) => self.children.entry(head.clone()).or_default().insert(rest),
        }
    }

    pub fn contains(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => self.member,
            Some((head, rest)) => self.children.get(head).is_some_and(|c| c.contains(rest)),
        }
    }

    pub fn remove(&mut self, path: &[String]) {
        match path.split_first() {
            None => self.member = false,
            Some((head, rest)) => {
                if let Some(c) = self.children.get_mut(head) {
                    c.remove(rest);
                    if c.is_empty() {
                        self.children.remove(head);
                    }
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    /// Whether the path is in the set and nothing below it is (a scalar, an atomic list).
    pub fn is_leaf(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => self.member && self.children.is_empty(),
            Some((head, rest)) => self.children.get(head).is_some_and(|c| c.is_leaf(rest)),
        }
    }

    /// Every path in the set, in order.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        if self.member {
            out.push(prefix.clone());
        }
        for (k, c) in &self.children {
            prefix.push(k.clone());
            c.collect(prefix, out);
            prefix.pop();
        }
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        for p in other.paths() {
            out.insert(&p);
        }
        out
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::default();
        for p in self.paths().into_iter().filter(|p| other.contains(p)) {
            out.insert(&p);
        }
        out
    }

    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::default();
        for p in self.paths().into_iter().filter(|p| !other.contains(p)) {
            out.insert(&p);
        }
        out
    }
}

/// The keys of a list Kubernetes' types declare `listType=map`, by the field's name and
/// what its items hold; None: atomic (or a set, see `set_list`).
pub fn list_keys(field: &str, items: &[Value]) -> Option<&'static [&'static str]> {
    let has = |k: &str| items.iter().all(|i| i.get(k).is_some());
    let keys: &'static [&'static str] = match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "hostAliases"
        | "resourceClaims" => &["name"],
        "volumeMounts" => &["mountPath"],
        "volumeDevices" => &["devicePath"],
        "ports" if has("containerPort") => &["containerPort", "protocol"],
        "ports" if has("port") => &["port", "protocol"],
        "conditions" => &["type"],
        "ownerReferences" => &["uid"],
        _ => return None,
    };
    // Every item must be an object carrying the first key (`protocol` defaults to TCP).
    (items.iter().all(Value::is_object) && has(keys[0])).then_some(keys)
}

fn set_list(field: &str) -> bool {
    field == "finalizers"
}

/// The `k:` element of a keyed list's item: its key fields, sorted, as JSON.
pub fn key_element(keys: &[&str], item: &Value) -> String {
    let mut m = Map::new();
    let mut sorted = keys.to_vec();
    sorted.sort_unstable();
    for k in sorted {
        if let Some(v) = item.get(k) {
            m.insert(k.to_owned(), v.clone());
        }
    }
    format!("k:{}", Value::Object(m))
}

fn field_element(name: &str) -> String {
    format!("f:{name}")
}

/// The fields an object sets: its leaves, keyed-list items and set items.
pub fn fields_of(object: &Value) -> FieldSet {
    let mut set = FieldSet::default();
    walk(object, &mut Vec::new(), "", &mut set);
    set
}

fn walk(v: &Value, path: &mut Path, field: &str, set: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                path.push(field_element(k));
                walk(child, path, k, set);
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => {
            if let Some(keys) = list_keys(field, items) {
                for item in items {
                    path.push(key_element(keys, item));
                    set.insert(path);
                    walk(item, path, "", set);
                    path.pop();
                }
            } else if set_list(field) {
                for item in items {
                    path.push(format!("v:{item}"));
                    set.insert(path);
                    path.pop();
                }
            } else {
                set.insert(path);
            }
        }
        _ => {
            if !path.is_empty() {
                set.insert(path);
            }
        }
    }
}

/// What an element of a path selects in a list: the item with these key fields, or
/// equal to this value.
fn list_match(element: &str, items: &[Value]) -> Option<usize> {
    if let Some(key) = element.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(key).ok()?;
        items.iter().position(|i| key.iter().all(|(k, v)| i.get(k) == Some(v)))
    } else if let Some(value) = element.strip_prefix("v:") {
        let value: Value = serde_json::from_str(value).ok()?;
        items.iter().position(|i| *i == value)
    } else {
        element.strip_prefix("i:")?.parse().ok()
    }
}

/// The value at `path`, if the object has it.
pub fn value_at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut v = object;
    for e in path {
        v = match (e.strip_prefix("f:"), v) {
            (Some(name), Value::Object(m)) => m.get(name)?,
            (None, Value::Array(items)) => &items[list_match(e, items)?],
            _ => return None,
        };
    }
    Some(v)
}

/// Remove the value at `path`; then any object the removal left empty, as Go's
/// `omitempty` drops an emptied map.
pub fn remove_at(object: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut v = &mut *object;
    for e in parents {
        let next = match (e.strip_prefix("f:"), v) {
            (Some(name), Value::Object(m)) => m.get_mut(name),
            (None, Value::Array(items)) => match list_match(e, items) {
                Some(i) => items.get_mut(i),
                None => None,
            },
            _ => None,
        };
        let Some(next) = next else { return };
        v = next;
    }
    match (last.strip_prefix("f:"), &mut *v) {
        (Some(name), Value::Object(m)) => {
            m.remove(name);
        }
        (None, Value::Array(items)) => {
            if let Some(i) = list_match(last, items) {
                items.remove(i);
            }
        }
        _ => return,
    }
    if v.as_object().is_some_and(Map::is_empty) || v.as_array().is_some_and(Vec::is_empty) {
        remove_at(object, parents);
    }
}

/// A path as Kubernetes prints it in conflict messages (`fieldpath.Path.String`):
/// `.spec.replicas`, `.spec.containers[name="app"].image`, `.metadata.finalizers[="x"]`.
pub fn display(path: &[String]) -> String {
    let mut out = String::new();
    for e in path {
        if let Some(name) = e.strip_prefix("f:") {
            out.push('.');
            out.push_str(name);
        } else if let Some(key) = e.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
            let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(value) = e.strip_prefix("v:") {
            out.push_str(&format!("[={value}]"));
        } else if let Some(index) = e.strip_prefix("i:") {
            out.push_str(&format!("[{index}]"));
        }
    }
    out
}

#[cfg(test)]
#[path = "fieldset_tests.rs"]
mod tests;
