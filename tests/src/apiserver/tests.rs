//! Unit tests of the API server's routing and query parsing.
use super::*;

#[test]
fn paths_map_to_targets() {
    let t = target("", "v1", &["namespaces", "ameide", "secrets", "x"]).unwrap();
    assert_eq!(
        (t.namespace.as_deref(), t.plural.as_str(), t.name.as_deref()),
        (Some("ameide"), "secrets", Some("x"))
    );
    let t = target("", "v1", &["namespaces", "ameide"]).unwrap();
    assert_eq!(
        (t.namespace, t.plural.as_str(), t.name.as_deref()),
        (None, "namespaces", Some("ameide"))
    );
    let t = target("", "v1", &["namespaces", "ameide", "status"]).unwrap();
    assert_eq!((t.plural.as_str(), t.subresource.as_deref()), ("namespaces", Some("status")));
    let t = target("", "v1", &["namespaces", "a", "pods", "p", "log"]).unwrap();
    assert_eq!(t.subresource.as_deref(), Some("log"));
    let t = target("batch", "v1", &["jobs"]).unwrap();
    assert_eq!((t.namespace, t.name), (None, None));
}

#[test]
fn queries_are_decoded() {
    assert_eq!(
        parse_query("labelSelector=name%3Dx%2Cowner%3Dhelm&limit=500"),
        [
            ("labelSelector".to_owned(), "name=x,owner=helm".to_owned()),
            ("limit".to_owned(), "500".to_owned())
        ]
    );
    assert_eq!(percent_decode("a%2"), "a%2");
}

#[test]
fn custom_resources_are_served_only_with_their_crd() {
    let mut store = Store::in_memory();
    let es = |s: &Store| {
        discovery::resource_list(s, "external-secrets.io", "v1")["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "externalsecrets" && r["namespaced"] == true)
    };
    assert!(!es(&store));
    assert!(!discovery::served(&store, "external-secrets.io", "v1", "externalsecrets"));
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "externalsecrets.external-secrets.io"},
        "spec": {"group": "external-secrets.io", "scope": "Namespaced",
                 "names": {"plural": "externalsecrets", "singular": "externalsecret", "kind": "ExternalSecret"},
                 "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}}]}});
    let t = Target::collection("apiextensions.k8s.io", "v1", "customresourcedefinitions", None);
    store.create(&t, crd).unwrap();
    assert!(es(&store));
    assert!(discovery::served(&store, "external-secrets.io", "v1", "externalsecrets"));
    assert!(!discovery::served(&store, "external-secrets.io", "v1beta1", "externalsecrets"));
    let groups = discovery::group_list(&store);
    assert!(groups["groups"].as_array().unwrap().iter().any(|g| g["name"] == "batch"));
    assert!(
        groups["groups"].as_array().unwrap().iter().any(|g| g["name"] == "external-secrets.io")
    );
}
