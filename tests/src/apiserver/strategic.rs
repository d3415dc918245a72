//! `application/strategic-merge-patch+json` as the API server applies it
//! (apimachinery `pkg/util/strategicpatch/patch.go`, `StrategicMergePatch` ->
//! `mergeMap`/`mergeSlice`): maps merge, `null` deletes, lists the built-in types tag
//! `patchStrategy:"merge"` merge item by item on their `patchMergeKey` (a container by
//! `name`), other lists are replaced, and the directives (`$patch`, `$retainKeys`,
//! `$setElementOrder/<list>`, `$deleteFromPrimitiveList/<list>`) steer the merge and are
//! never stored. helm 3 sends its three-way patches this way (`pkg/kube/client.go`
//! `createPatch`), so a probe field in a container is changed or kept, not the whole
//! container list replaced.

use serde_json::{Map, Value};

use super::fieldset;

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVES: &str = "$deleteFromPrimitiveList/";

/// The `patchMergeKey` of list `field` (k8s `api/core/v1/types.go`, `apps/v1`,
/// `meta/v1`): the first of the keys server-side apply merges it by, and two lists that
/// only a strategic merge patch merges; None: replaced whole. Every item must carry it.
fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    let has = |k: &str| items.iter().all(|i| i.get(k).is_some());
    match field {
        "hostAliases" if has("ip") => Some("ip"),
        "topologySpreadConstraints" if has("topologyKey") => Some("topologyKey"),
        _ => fieldset::list_keys(field, items).map(|keys| keys[0]),
    }
}

/// Lists of scalars tagged `patchStrategy:"merge"`: a patch adds to them.
fn merged_primitives(field: &str) -> bool {
    field == "finalizers"
}

/// Apply `patch` to `target` as a strategic merge patch.
pub fn apply(target: &mut Value, patch: &Value) {
    if let Some(merged) = merge_map(Some(target.clone()), patch) {
        *target = merged;
    } else {
        *target = Value::Object(Map::new());
    }
}

/// `mergeMap`: `None` when the patch deletes the map (`$patch: delete`).
fn merge_map(original: Option<Value>, patch: &Value) -> Option<Value> {
    let Some(p) = patch.as_object() else { return Some(patch.clone()) };
    match p.get(PATCH).and_then(Value::as_str) {
        Some("delete") => return None,
        Some("replace") => return Some(without_directives(patch)),
        _ => {}
    }
    let mut out = match original {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    if let Some(Value::Array(retain)) = p.get(RETAIN_KEYS) {
        let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
        out.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, v) in p {
        if let Some(field) = k.strip_prefix(DELETE_PRIMITIVES) {
            if let (Some(Value::Array(list)), Value::Array(gone)) = (out.get_mut(field), v) {
                list.retain(|item| !gone.contains(item));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        match v {
            Value::Null => {
                out.remove(k);
            }
            Value::Object(_) => {
                if let Some(merged) = merge_map(out.remove(k), v) {
                    out.insert(k.clone(), merged);
                }
            }
            Value::Array(items) => {
                let merged = merge_list(k, out.remove(k), items);
                out.insert(k.clone(), Value::Array(merged));
            }
            scalar => {
                out.insert(k.clone(), scalar.clone());
            }
        }
    }
    for (k, order) in p {
        if let (Some(field), Value::Array(order)) = (k.strip_prefix(ELEMENT_ORDER), order)
            && let Some(Value::Array(list)) = out.get_mut(field)
        {
            set_element_order(field, list, order);
        }
    }
    Some(Value::Object(out))
}

/// `mergeSlice`: keyed lists merge item by item, `$patch: delete` items remove theirs,
/// a `{"$patch": "replace"}` item replaces the list with the others; primitive merge
/// lists gain the patch's new values; any other list is the patch's.
fn merge_list(field: &str, original: Option<Value>, items: &[Value]) -> Vec<Value> {
    let mut list = match original {
        Some(Value::Array(list)) => list,
        _ => Vec::new(),
    };
    let replace = items.iter().any(|i| i.get(PATCH).and_then(Value::as_str) == Some("replace"));
    if replace {
        return items.iter().filter(|i| i.get(PATCH).is_none()).map(without_directives).collect();
    }
    if merged_primitives(field) && !items.iter().any(Value::is_object) {
        for item in items {
            if !list.contains(item) {
                list.push(item.clone());
            }
        }
        return list;
    }
    let Some(key) = merge_key(field, items) else {
        return items.iter().map(without_directives).collect();
    };
    for item in items {
        let at = list.iter().position(|l| l.get(key).is_some() && l.get(key) == item.get(key));
        match (at, merge_map(at.map(|i| list[i].clone()), item)) {
            (Some(i), Some(merged)) => list[i] = merged,
            (Some(i), None) => {
                list.remove(i);
            }
            (None, Some(merged)) => list.push(merged),
            (None, None) => {}
        }
    }
    list
}

/// `$setElementOrder/<field>`: the items the order names come in its order; the ones it
/// does not name (the server's own) keep their place after them.
fn set_element_order(field: &str, list: &mut Vec<Value>, order: &[Value]) {
    let key = merge_key(field, order);
    let rank = |item: &Value| {
        order.iter().position(|o| match key {
            Some(key) => o.get(key).is_some() && o.get(key) == item.get(key),
            None => o == item,
        })
    };
    let mut ranked: Vec<(usize, Value)> = list
        .drain(..)
        .enumerate()
        .map(|(i, item)| (rank(&item).unwrap_or(order.len() + i), item))
        .collect();
    ranked.sort_by_key(|(rank, _)| *rank);
    list.extend(ranked.into_iter().map(|(_, item)| item));
}

/// A patch value with every directive left out (what `$patch: replace` stores).
fn without_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), without_directives(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_directives).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(probe: Value) -> Value {
        json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "busybox", "readinessProbe": probe},
            {"name": "sidecar", "image": "pause"},
        ]}}}})
    }

    fn patched(mut target: Value, patch: Value) -> Value {
        apply(&mut target, &patch);
        target
    }

    /// helm 3's patch for a probe field added to one container (what
    /// `CreateThreeWayMergePatch` sends): the container merges by name, the other stays.
    #[test]
    fn a_container_merges_by_name_and_directives_are_not_stored() {
        let live = deployment(json!({"periodSeconds": 5}));
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
            "containers": [{"name": "app", "readinessProbe": {"initialDelaySeconds": 600}}],
        }}}});
        let want = deployment(json!({"periodSeconds": 5, "initialDelaySeconds": 600}));
        assert_eq!(patched(live, patch), want);
    }

    /// A field the patch does not name is kept (helm's patch after a failed upgrade
    /// names no deletion of a field only the failed revision added); `null` deletes.
    #[test]
    fn unnamed_fields_stay_and_null_deletes() {
        let live = deployment(json!({"periodSeconds": 5, "initialDelaySeconds": 600}));
        let keep = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "busybox"}]}}}});
        assert_eq!(patched(live.clone(), keep), live);
        let delete = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "readinessProbe": {"initialDelaySeconds": null}}]}}}});
        assert_eq!(patched(live, delete), deployment(json!({"periodSeconds": 5})));
    }

    #[test]
    fn delete_replace_order_and_plain_lists() {
        let live = deployment(json!({}));
        let delete = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "sidecar", "$patch": "delete"}]}}}});
        let out = patched(live.clone(), delete);
        assert_eq!(out["spec"]["template"]["spec"]["containers"].as_array().unwrap().len(), 1);

        let replace = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "only"}, {"$patch": "replace"}]}}}});
        let out = patched(live.clone(), replace);
        assert_eq!(out["spec"]["template"]["spec"]["containers"], json!([{"name": "only"}]));

        let order = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}]}}}});
        let out = patched(live.clone(), order);
        assert_eq!(out["spec"]["template"]["spec"]["containers"][0]["name"], "sidecar");

        // `args` has no merge strategy: replaced; finalizers merge as a set.
        let target = json!({"args": ["a", "b"], "metadata": {"finalizers": ["x"]}});
        let patch = json!({"args": ["c"], "metadata": {"finalizers": ["y", "x"]}});
        let out = patched(target, patch);
        assert_eq!(out, json!({"args": ["c"], "metadata": {"finalizers": ["x", "y"]}}));

        let target = json!({"metadata": {"finalizers": ["x", "y"]}});
        let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}});
        assert_eq!(patched(target, patch), json!({"metadata": {"finalizers": ["y"]}}));
    }

    #[test]
    fn retain_keys_and_map_replace() {
        let target =
            json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}});
        let patch = json!({"strategy": {"$retainKeys": ["type"], "type": "Recreate"}});
        assert_eq!(patched(target, patch), json!({"strategy": {"type": "Recreate"}}));
        let target = json!({"data": {"a": "1", "b": "2"}});
        let patch = json!({"data": {"$patch": "replace", "c": "3"}});
        assert_eq!(patched(target, patch), json!({"data": {"c": "3"}}));
    }
}
