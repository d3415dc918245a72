//! The fake API server against real clients: kubectl, helm (reading release Secrets
//! written with the testbed's codec) and kube-rs.

mod common;

use common::{Api, real_tool};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api as KubeApi, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use testbed::release::{Hook, Info, LastRun, Release};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn demo_release(version: u32, status: &str, phase: &str) -> Release {
    Release {
        name: "demo".into(),
        namespace: "ameide".into(),
        version,
        info: Info {
            first_deployed: "2026-01-02T03:04:05.000000001Z".into(),
            last_deployed: "2026-01-02T03:04:05.000000001Z".into(),
            description: "Install complete".into(),
            status: status.into(),
            ..Info::default()
        },
        chart: json!({"metadata": {"name": "demo", "version": "0.1.0", "appVersion": "1.16.0", "apiVersion": "v2"}}),
        manifest: "---\n# Source: demo/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\n".into(),
        hooks: vec![Hook {
            name: "demo-test-connection".into(),
            kind: "Pod".into(),
            path: "demo/templates/tests/test-connection.yaml".into(),
            events: vec!["test".into()],
            last_run: LastRun { phase: phase.into(), ..LastRun::default() },
            ..Hook::default()
        }],
        apply_method: "ssa".into(),
        ..Release::default()
    }
}

#[test]
fn kubectl_lists_namespaces_and_secrets() {
    let Some(kubectl) = real_tool("kubectl") else { return };
    let api = Api::start();
    let ns = api.ok(&kubectl, &["get", "ns"]);
    for name in ["default", "kube-system", "kube-public"] {
        assert!(ns.lines().any(|l| l.starts_with(name)), "{name} missing from:\n{ns}");
    }
    rt().block_on(async {
        let c = api.client();
        c.ensure_namespace("ameide").await.unwrap();
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "ameide"},
                            "stringData": {"user": "flyway"}});
        c.create("/api/v1/namespaces/ameide/secrets", &secret).await.unwrap();
    });
    let all = api.ok(&kubectl, &["get", "secrets", "-A"]);
    assert!(all.lines().any(|l| l.starts_with("ameide") && l.contains(" db ")), "{all}");
    let one: Value = serde_json::from_str(
        &api.ok(&kubectl, &["get", "secret", "-n", "ameide", "db", "-o", "json"]),
    )
    .unwrap();
    assert_eq!(one["data"]["user"], "Zmx5d2F5");
    let missing = api.run(&kubectl, &["get", "secret", "-n", "ameide", "nope"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("secrets \"nope\" not found"));
}

#[test]
fn helm_list_and_status_decode_release_secrets() {
    let Some(helm) = real_tool("helm") else { return };
    let api = Api::start();
    rt().block_on(async {
        let c = api.client();
        c.ensure_namespace("ameide").await.unwrap();
        for release in [demo_release(1, "superseded", ""), demo_release(2, "deployed", "Succeeded")]
        {
            let secret = release.to_secret().unwrap();
            c.create("/api/v1/namespaces/ameide/secrets", &secret).await.unwrap();
        }
    });
    let list: Value = serde_json::from_str(&api.ok(&helm, &["list", "-A", "-o", "json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["name"], "demo");
    assert_eq!(list[0]["namespace"], "ameide");
    assert_eq!(list[0]["status"], "deployed");
    assert_eq!(list[0]["revision"], "2");
    assert_eq!(list[0]["chart"], "demo-0.1.0");

    let status: Value =
        serde_json::from_str(&api.ok(&helm, &["status", "demo", "-n", "ameide", "-o", "json"]))
            .unwrap();
    assert_eq!(status["info"]["status"], "deployed");
    assert_eq!(status["version"], 2);
    assert_eq!(status["hooks"][0]["events"], json!(["test"]));
    assert_eq!(status["hooks"][0]["last_run"]["phase"], "Succeeded");

    let missing = api.run(&helm, &["status", "nope", "-n", "ameide"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("release: not found"));
}

#[test]
fn kube_rs_lists_applies_and_reads_custom_resources() {
    let api = Api::start();
    rt().block_on(async {
        let client = api.kube_client().await;

        let namespaces: KubeApi<Namespace> = KubeApi::all(client.clone());
        let names: Vec<String> = namespaces
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect();
        assert!(names.contains(&"kube-system".to_owned()), "{names:?}");

        let secrets: KubeApi<Secret> = KubeApi::namespaced(client.clone(), "default");
        let patch = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-migrations-local"},
                           "stringData": {"FLYWAY_USER": "u"}});
        let pp = PatchParams::apply("xtask").force();
        let first = secrets.patch("db-migrations-local", &pp, &Patch::Apply(&patch)).await.unwrap();
        let again = secrets.patch("db-migrations-local", &pp, &Patch::Apply(&patch)).await.unwrap();
        assert_eq!(first.metadata.uid, again.metadata.uid);
        assert!(again.data.unwrap().contains_key("FLYWAY_USER"));

        let err = secrets.get("nope").await.unwrap_err();
        match err {
            kube::Error::Api(status) => assert!(status.is_not_found(), "{status:?}"),
            other => panic!("expected a 404 Status, got {other}"),
        }
        let dup = Secret {
            metadata: kube::api::ObjectMeta { name: Some("db-migrations-local".into()), ..Default::default() },
            ..Default::default()
        };
        match secrets.create(&PostParams::default(), &dup).await.unwrap_err() {
            kube::Error::Api(status) => assert!(status.is_already_exists(), "{status:?}"),
            other => panic!("expected a 409 Status, got {other}"),
        }

        // No CRD, no resource: the custom resource 404s until its CRD is stored.
        let gvk = GroupVersionKind::gvk("external-secrets.io", "v1", "ExternalSecret");
        let ar = ApiResource::from_gvk_with_plural(&gvk, "externalsecrets");
        let es: KubeApi<DynamicObject> = KubeApi::namespaced_with(client.clone(), "default", &ar);
        match es.list(&ListParams::default()).await.unwrap_err() {
            kube::Error::Api(status) => assert!(status.is_not_found(), "{status:?}"),
            other => panic!("expected a 404 without the CRD, got {other}"),
        }
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "externalsecrets.external-secrets.io"},
            "spec": {"group": "external-secrets.io", "scope": "Namespaced",
                     "names": {"plural": "externalsecrets", "singular": "externalsecret", "kind": "ExternalSecret"},
                     "versions": [{"name": "v1", "served": true, "storage": true},
                                  {"name": "v1beta1", "served": true, "storage": false}]}});
        let crd = api
            .client()
            .create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", &crd)
            .await
            .unwrap();
        assert!(crd["status"]["conditions"].as_array().unwrap().iter().any(|c| c["type"] == "Established"));

        for version in ["v1", "v1beta1"] {
            let gvk = GroupVersionKind::gvk("external-secrets.io", version, "ExternalSecret");
            let ar = ApiResource::from_gvk_with_plural(&gvk, "externalsecrets");
            let es: KubeApi<DynamicObject> = KubeApi::namespaced_with(client.clone(), "default", &ar);
            if version == "v1" {
                let obj: DynamicObject = serde_json::from_value(json!({
                    "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                    "metadata": {"name": "db"}, "spec": {"data": [{"secretKey": "pw", "remoteRef": {"key": "db"}}]},
                    "status": {"conditions": [{"type": "Ready", "status": "True"}]},
                }))
                .unwrap();
                es.create(&PostParams::default(), &obj).await.unwrap();
            }
            let all: KubeApi<DynamicObject> = KubeApi::all_with(client.clone(), &ar);
            let items = all.list(&ListParams::default()).await.unwrap().items;
            assert_eq!(items.len(), 1, "{version}");
            assert_eq!(items[0].data["status"]["conditions"][0]["status"], "True");
        }
    });
}

#[test]
fn state_survives_a_restart_and_selectors_filter() {
    let mut api = Api::start();
    let rt = rt();
    rt.block_on(async {
        let c = api.client();
        for (name, owner) in [("a", "helm"), ("b", "me")] {
            let s = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default", "labels": {"owner": owner}}});
            c.apply_object(&s).await.unwrap();
        }
    });
    api.restart();
    rt.block_on(async {
        let c = api.client();
        let helm = c.list("/api/v1/configmaps", Some("owner in (helm),!missing")).await.unwrap();
        assert_eq!(helm.len(), 1);
        assert_eq!(helm[0]["metadata"]["name"], "a");
        let gone = c
            .delete_collection("/api/v1/namespaces/default/configmaps", Some("owner!=helm"))
            .await
            .unwrap();
        assert_eq!(gone.len(), 1);
        assert!(!c.delete("/api/v1/namespaces/default/configmaps/b").await.unwrap());
        let ready =
            testbed::kube_api::wait_ready(&api.client(), std::time::Duration::from_secs(30)).await;
        assert!(ready.is_ok());
    });
}
