//! Real kubectl (1.32 and 1.35) against a standalone testbed API server: the typed
//! generators that send protobuf (`create namespace|secret|configmap|serviceaccount`),
//! reads, and server-side apply with its field managers and conflicts, as a user sees
//! them. Plus what a client that accepts only protobuf gets.

mod common;

use std::path::Path;

use common::{Api, real_binary, rt, text};
use http_body_util::BodyExt;
use serde_json::Value;

fn json_of(api: &Api, kubectl: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&api.ok(kubectl, args)).unwrap()
}

fn typed_generators_and_reads(kubectl: &str) {
    let Some(kubectl) = real_binary(kubectl) else { return };
    let api = Api::start();
    assert!(api.ok(&kubectl, &["create", "namespace", "demo"]).contains("namespace/demo created"));
    api.ok(
        &kubectl,
        &["create", "secret", "generic", "db", "-n", "demo", "--from-literal=user=flyway"],
    );
    api.ok(&kubectl, &["create", "configmap", "cfg", "-n", "demo", "--from-literal=a=1"]);
    api.ok(&kubectl, &["create", "serviceaccount", "robot", "-n", "demo"]);

    let secret = json_of(&api, &kubectl, &["get", "secret", "db", "-n", "demo", "-o", "json"]);
    assert_eq!(secret["data"]["user"], "Zmx5d2F5");
    assert_eq!(secret["type"], "Opaque");
    let cm = json_of(&api, &kubectl, &["get", "configmap", "cfg", "-n", "demo", "-o", "json"]);
    assert_eq!(cm["data"]["a"], "1");
    let table = api.ok(&kubectl, &["get", "secrets,configmaps,serviceaccounts", "-n", "demo"]);
    for name in ["secret/db", "configmap/cfg", "serviceaccount/robot"] {
        assert!(table.contains(name), "{name} missing from:\n{table}");
    }
    let ns = json_of(&api, &kubectl, &["get", "namespace", "demo", "-o", "json"]);
    assert_eq!(ns["status"]["phase"], "Active");
    let managers = json_of(
        &api,
        &kubectl,
        &["get", "secret", "db", "-n", "demo", "-o", "json", "--show-managed-fields"],
    );
    assert_eq!(managers["metadata"]["managedFields"][0]["manager"], "kubectl-create");

    let dup = api.run(&kubectl, &["create", "configmap", "cfg", "-n", "demo"]);
    assert!(!dup.status.success());
    assert!(text(&dup).contains(r#"configmaps "cfg" already exists"#), "{}", text(&dup));
}

#[test]
fn kubectl_1_35_typed_generators_and_reads() {
    typed_generators_and_reads("helm-4.1.4/kubectl");
}

#[test]
fn kubectl_1_32_typed_generators_and_reads() {
    typed_generators_and_reads("helm-3.17.2/kubectl");
}

fn server_side_apply(kubectl: &str) {
    let Some(kubectl) = real_binary(kubectl) else { return };
    let api = Api::start();
    let file = api.dir.path().join("cm.yaml");
    let write = |a: &str| {
        std::fs::write(
            &file,
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: ssa, namespace: default}}\ndata: {{a: \"{a}\", b: \"2\"}}\n"),
        )
        .unwrap()
    };
    let f = file.to_str().unwrap();
    write("1");
    assert!(api.ok(&kubectl, &["apply", "--server-side", "-f", f]).contains("serverside-applied"));
    // The same values from another manager: shared, no conflict.
    api.ok(&kubectl, &["apply", "--server-side", "-f", f, "--field-manager=other"]);

    write("9");
    let conflict = api.run(&kubectl, &["apply", "--server-side", "-f", f, "--field-manager=other"]);
    assert_eq!(conflict.status.code(), Some(1));
    let said = text(&conflict);
    assert!(
        said.contains(r#"error: Apply failed with 1 conflict: conflict with "kubectl": .data.a"#),
        "{said}"
    );
    assert!(said.contains("--force-conflicts"), "kubectl's advice: {said}");
    let cm = json_of(&api, &kubectl, &["get", "configmap", "ssa", "-o", "json"]);
    assert_eq!(cm["data"]["a"], "1", "a conflict changes nothing");

    api.ok(
        &kubectl,
        &["apply", "--server-side", "-f", f, "--field-manager=other", "--force-conflicts"],
    );
    let cm = json_of(
        &api,
        &kubectl,
        &["get", "configmap", "ssa", "-o", "json", "--show-managed-fields"],
    );
    assert_eq!(cm["data"]["a"], "9", "the forced apply wins");
    let owners = |field: &str| -> Vec<String> {
        cm["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["fieldsV1"]["f:data"][field].is_object())
            .map(|e| {
                format!("{}/{}", e["manager"].as_str().unwrap(), e["operation"].as_str().unwrap())
            })
            .collect()
    };
    assert_eq!(owners("f:a"), ["other/Apply"]);
    assert_eq!(owners("f:b"), ["kubectl/Apply", "other/Apply"]);

    // A client-side edit is an Update that takes the field from the appliers.
    api.ok(
        &kubectl,
        &["patch", "configmap", "ssa", "--type", "merge", "-p", r#"{"data":{"b":"3"}}"#],
    );
    write("9");
    let again = api.run(&kubectl, &["apply", "--server-side", "-f", f, "--field-manager=other"]);
    assert!(
        text(&again).contains(
            r#"Apply failed with 1 conflict: conflict with "kubectl-patch" using v1: .data.b"#
        ),
        "{}",
        text(&again)
    );
}

#[test]
fn kubectl_1_35_server_side_apply() {
    server_side_apply("helm-4.1.4/kubectl");
}

#[test]
fn kubectl_1_32_server_side_apply() {
    server_side_apply("helm-3.17.2/kubectl");
}

/// GET with one `Accept`; the status, `Content-Type` and body.
fn get_as(api: &Api, path: &str, accept: &str) -> (u16, String, Vec<u8>) {
    rt().block_on(async {
        let client = api.kube_client().await;
        let request = http::Request::get(path).header("Accept", accept).body(Vec::new()).unwrap();
        let response = client.send(request.map(kube::client::Body::from)).await.unwrap();
        let status = response.status().as_u16();
        let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
        let body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
        (status, content_type, body)
    })
}

#[test]
fn a_protobuf_only_client_gets_protobuf_or_406() {
    let api = Api::start();
    let (code, content_type, body) =
        get_as(&api, "/api/v1/namespaces/default", "application/vnd.kubernetes.protobuf");
    assert_eq!((code, content_type.as_str()), (200, "application/vnd.kubernetes.protobuf"));
    assert!(body.starts_with(b"k8s\0"), "the magic, then runtime.Unknown");
    assert_eq!(testbed::apiserver::protobuf::decode(&body).unwrap()["metadata"]["name"], "default");

    let (code, _, body) = get_as(
        &api,
        "/apis/batch/v1/namespaces/default/jobs",
        "application/vnd.kubernetes.protobuf",
    );
    assert_eq!(code, 406, "{}", String::from_utf8_lossy(&body));

    let (code, content_type, _) = get_as(
        &api,
        "/api/v1/namespaces/default",
        "application/vnd.kubernetes.protobuf,application/json",
    );
    assert_eq!(
        (code, content_type.as_str()),
        (200, "application/vnd.kubernetes.protobuf"),
        "protobuf first"
    );
    let (_, content_type, _) = get_as(&api, "/api/v1/namespaces/default", "application/json, */*");
    assert_eq!(content_type, "application/json");
}
