//! Unit tests of the object store.
use super::*;

fn secrets(ns: Option<&str>, name: Option<&str>) -> Target {
    Target {
        group: String::new(),
        version: "v1".into(),
        plural: "secrets".into(),
        namespace: ns.map(str::to_owned),
        name: name.map(str::to_owned),
        subresource: None,
    }
}

#[test]
fn create_get_conflict_and_not_found() {
    let mut s = Store::in_memory();
    let t = secrets(Some("default"), None);
    let body = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "stringData": {"k": "v"}});
    let created = s.create(&t, body.clone()).unwrap();
    assert_eq!(created["data"]["k"], "dg==");
    assert_eq!(created["kind"], "Secret");
    assert!(created["metadata"]["uid"].as_str().unwrap().len() == 36);
    let err = s.create(&t, body).unwrap_err();
    assert_eq!((err.code, err.reason), (409, "AlreadyExists"));
    assert_eq!(err.message, "secrets \"a\" already exists");
    let err = s.get(&secrets(Some("default"), Some("b"))).unwrap_err();
    assert_eq!(err.to_status()["code"], 404);
    assert_eq!(err.to_status()["details"]["kind"], "secrets");
    let err =
        s.create(&secrets(Some("nope"), None), json!({"metadata": {"name": "a"}})).unwrap_err();
    assert_eq!(err.message, "namespaces \"nope\" not found");
}

#[test]
fn list_across_namespaces_with_selectors() {
    let mut s = Store::in_memory();
    s.create(&ns_target(None), json!({"metadata": {"name": "ameide"}})).unwrap();
    for (ns, name, owner) in
        [("default", "a", "helm"), ("ameide", "b", "helm"), ("ameide", "c", "me")]
    {
        s.create(
            &secrets(Some(ns), None),
            json!({"metadata": {"name": name, "labels": {"owner": owner}}}),
        )
        .unwrap();
    }
    let names = |v: Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(s.list(&secrets(None, None), Some("owner=helm"), None).unwrap()), ["b", "a"]);
    assert_eq!(names(s.list(&secrets(Some("ameide"), None), None, None).unwrap()), ["b", "c"]);
    assert_eq!(s.list(&secrets(None, None), None, None).unwrap()["kind"], "SecretList");
    let gone =
        s.delete_collection(&secrets(Some("ameide"), None), Some("owner!=helm"), None).unwrap();
    assert_eq!(names(gone), ["c"]);
    let gone = s.delete(&ns_target(Some("ameide"))).unwrap();
    assert_eq!(gone["status"]["phase"], "Terminating");
    let err = s
        .create(&secrets(Some("ameide"), None), json!({"metadata": {"name": "late"}}))
        .unwrap_err();
    assert_eq!((err.code, err.reason), (403, "Forbidden"));
    assert!(err.message.ends_with("because it is being terminated"), "{}", err.message);
    s.finish_namespace("ameide");
    assert_eq!(names(s.list(&secrets(None, None), None, None).unwrap()), ["a"]);
}

#[test]
fn apply_upserts_and_merge_patch_needs_an_object() {
    let mut s = Store::in_memory();
    let t = secrets(Some("default"), Some("x"));
    let err = s.patch(&t, json!({"data": {}}), false).unwrap_err();
    assert_eq!(err.code, 404);
    let a = s.patch(&t, json!({"metadata": {"name": "x"}, "data": {"a": "YQ=="}}), true).unwrap();
    let b = s.patch(&t, json!({"data": {"b": "Yg=="}}), true).unwrap();
    assert_eq!(a["metadata"]["uid"], b["metadata"]["uid"]);
    assert_eq!(b["data"], json!({"a": "YQ==", "b": "Yg=="}));
    assert_ne!(a["metadata"]["resourceVersion"], b["metadata"]["resourceVersion"]);
    let c = s.patch(&t, json!({"data": {"a": null}}), false).unwrap();
    assert_eq!(c["data"], json!({"b": "Yg=="}));
    let mut stale = c.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    assert_eq!(s.replace(&t, stale).unwrap_err().reason, "Conflict");
}

#[test]
fn status_is_the_controllers_when_it_is_a_subresource() {
    let mut s = Store::in_memory();
    let t = Target::collection("apps", "v1", "deployments", Some("default"));
    let body = json!({"metadata": {"name": "web"}, "spec": {"replicas": 1},
                      "status": {"readyReplicas": 1}});
    let created = s.create(&t, body).unwrap();
    assert!(created["status"].is_null(), "create kept a client's status: {created}");
    let obj = Target::object("apps", "v1", "deployments", "default", "web");
    let status = Target { subresource: Some("status".into()), ..obj.clone() };
    s.patch(&status, json!({"status": {"readyReplicas": 0}}), false).unwrap();
    let updated = s.patch(&obj, json!({"status": {"readyReplicas": 1}}), false).unwrap();
    assert_eq!(updated["status"]["readyReplicas"], 0);
}

#[test]
fn services_get_defaults_and_a_cluster_ip_that_updates_keep() {
    let mut s = Store::in_memory();
    let t = Target::collection("", "v1", "services", Some("default"));
    let svc = |name: &str| json!({"metadata": {"name": name}, "spec": {"ports": [{"port": 80}]}});
    let a = s.create(&t, svc("a")).unwrap();
    let b = s.create(&t, svc("b")).unwrap();
    let ip = a["spec"]["clusterIP"].as_str().unwrap().to_owned();
    assert!(ip.starts_with("10.43."), "{a}");
    assert_ne!(b["spec"]["clusterIP"], a["spec"]["clusterIP"]);
    assert_eq!(a["spec"]["clusterIPs"], json!([ip]));
    assert_eq!(a["spec"]["type"], "ClusterIP");
    assert_eq!(a["spec"]["ports"][0], json!({"port": 80, "protocol": "TCP", "targetPort": 80}));
    let obj = Target::object("", "v1", "services", "default", "a");
    let replaced = s.replace(&obj, svc("a")).unwrap();
    assert_eq!(replaced["spec"]["clusterIP"], json!(ip), "kept across a PUT without it");
    let external = json!({"metadata": {"name": "x"}, "spec": {"type": "ExternalName", "externalName": "example.com"}});
    assert!(s.create(&t, external).unwrap()["spec"].get("clusterIP").is_none());
}
