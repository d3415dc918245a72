//! OpenAPI v3 discovery, as much as `kubectl apply` needs for its default validation
//! (`--validate=strict`; kubernetes `staging/src/k8s.io/cli-runtime/pkg/resource/
//! query_param_verifier_v3.go`, `client-go/openapi3/root.go`): `GET /openapi/v3` lists a
//! document per group-version (`serverRelativeURL`), and each document has, for every
//! advertised resource, a PATCH operation tagged `x-kubernetes-group-version-kind` with
//! the `fieldValidation` query parameter. kubectl then leaves validation to the server
//! (it sends `fieldValidation=Strict`), which the testbed accepts without checking
//! fields. No component schemas are served, so kubectl's client-side patch builds on its
//! compiled-in types, as with a server whose v3 document lacks a kind. `/openapi/v2` is
//! not served (404), which kubectl tolerates once v3 answers. Custom resources appear
//! only while their CRD is stored (`discovery::served`).

use serde_json::{Map, Value, json};

use super::discovery::served;
use super::resources::RESOURCES;
use super::store::Store;

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

/// `GET /openapi/v3`.
pub fn root(store: &Store) -> Value {
    let mut paths = Map::new();
    for r in RESOURCES {
        for v in r.versions.iter().filter(|v| served(store, r.group, v, r.plural)) {
            let p = gv_path(r.group, v);
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash=testbed")}),
            );
        }
    }
    json!({ "paths": paths })
}

/// `GET /openapi/v3/<api/v1 | apis/G/V>`; None for an unknown group-version.
pub fn group_version(store: &Store, path: &str) -> Option<Value> {
    let mut paths = Map::new();
    for r in RESOURCES {
        let here = |v: &&&str| gv_path(r.group, v) == path && served(store, r.group, v, r.plural);
        for v in r.versions.iter().filter(here) {
            let gvk = json!({"group": r.group, "version": v, "kind": r.kind});
            let ns = if r.namespaced { "/namespaces/{namespace}" } else { "" };
            let p = format!("/{path}{ns}/{}/{{name}}", r.plural);
            let op = json!({
                "operationId": format!("patch{}", r.kind),
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [
                    {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
                    {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                    {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                    {"name": "force", "in": "query", "schema": {"type": "boolean"}},
                ],
                "responses": {"200": {"description": "OK"}},
            });
            paths.insert(p, json!({ "patch": op }));
        }
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0+testbed"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_version_has_patch_operations_with_field_validation() {
        let store = Store::in_memory();
        let root = root(&store);
        let url = root["paths"]["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1"));
        let doc = group_version(&store, "apis/apps/v1").unwrap();
        let op = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert!(
            op["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation")
        );
        assert!(group_version(&store, "apis/nope/v1").is_none());
        assert!(group_version(&store, "apis/external-secrets.io/v1").is_none(), "no CRD yet");
    }
}
