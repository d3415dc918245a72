//! Discovery: the built-in API groups always, a custom resource's group only while its
//! CustomResourceDefinition is stored (as the real apiextensions server: no CRD, no
//! resource; `kubectl apply` then says "no matches for kind", a request gets 404).
//! Built-in resources come from `resources::RESOURCES`; custom ones from the CRDs'
//! `spec.group`, `spec.names`, `spec.scope`, `spec.versions[].served`.

use serde_json::{Value, json};

use super::resources::{self, RESOURCES};
use super::store::Store;

/// Groups Kubernetes serves itself (everything else needs a CRD).
pub fn builtin_group(group: &str) -> bool {
    group.is_empty()
        || group.ends_with(".k8s.io")
        || matches!(group, "apps" | "batch" | "policy" | "autoscaling")
}

/// One served custom resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Crd {
    pub group: String,
    pub versions: Vec<String>,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub status: bool,
}

pub fn crds(store: &Store) -> Vec<Crd> {
    store
        .objects_of("apiextensions.k8s.io", "customresourcedefinitions")
        .into_iter()
        .map(|(_, c)| {
            let spec = &c["spec"];
            let names = &spec["names"];
            let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
            let versions = spec["versions"].as_array().cloned().unwrap_or_default();
            Crd {
                group: s(&spec["group"]),
                versions: versions
                    .iter()
                    .filter(|v| v["served"] != false)
                    .map(|v| s(&v["name"]))
                    .collect(),
                plural: s(&names["plural"]),
                singular: s(&names["singular"]),
                kind: s(&names["kind"]),
                namespaced: spec["scope"] != "Cluster",
                short_names: names["shortNames"]
                    .as_array()
                    .map(|a| a.iter().map(s).collect())
                    .unwrap_or_default(),
                status: versions.iter().any(|v| v["subresources"]["status"].is_object()),
            }
        })
        .collect()
}

/// Whether `/apis/<group>/<version>/.../<plural>` is served.
pub fn served(store: &Store, group: &str, version: &str, plural: &str) -> bool {
    builtin_group(group)
        || crds(store).iter().any(|c| {
            c.group == group && c.plural == plural && c.versions.iter().any(|v| v == version)
        })
}

pub fn group_list(store: &Store) -> Value {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    let mut add = |g: &str, vs: &[String]| match groups.iter_mut().find(|(n, _)| n == g) {
        Some((_, have)) => {
            for v in vs {
                if !have.contains(v) {
                    have.push(v.clone());
                }
            }
        }
        None => groups.push((g.to_owned(), vs.to_vec())),
    };
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty() && builtin_group(r.group)) {
        add(r.group, &r.versions.iter().map(|v| (*v).to_owned()).collect::<Vec<_>>());
    }
    for c in crds(store) {
        add(&c.group, &c.versions);
    }
    let groups: Vec<Value> = groups
        .iter()
        .filter(|(_, vs)| !vs.is_empty())
        .map(|(g, vs)| {
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            json!({"name": g, "versions": versions, "preferredVersion": versions[0]})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `APIResourceList` of a group-version; no resources when it is not served.
pub fn resource_list(store: &Store, group: &str, version: &str) -> Value {
    let mut out = Vec::new();
    let mut push = |plural: &str,
                    singular: &str,
                    namespaced: bool,
                    kind: &str,
                    short: Value,
                    subs: &[&str]| {
        out.push(json!({
            "name": plural, "singularName": singular, "namespaced": namespaced,
            "kind": kind, "verbs": resources::VERBS, "shortNames": short,
        }));
        for sub in subs {
            let (kind, verbs) = if *sub == "log" {
                ("Pod", vec!["get"])
            } else {
                (kind, vec!["get", "patch", "update"])
            };
            out.push(json!({"name": format!("{plural}/{sub}"), "singularName": "", "namespaced": namespaced,
                            "kind": kind, "verbs": verbs}));
        }
    };
    if builtin_group(group) {
        for r in RESOURCES.iter().filter(|r| r.group == group && r.versions.contains(&version)) {
            push(r.plural, r.singular, r.namespaced, r.kind, json!(r.short_names), r.subresources);
        }
    } else {
        for c in crds(store)
            .iter()
            .filter(|c| c.group == group && c.versions.iter().any(|v| v == version))
        {
            let subs: &[&str] = if c.status { &["status"] } else { &[] };
            push(&c.plural, &c.singular, c.namespaced, &c.kind, json!(c.short_names), subs);
        }
    }
    let group_version =
        if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": out})
}
