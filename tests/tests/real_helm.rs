//! Real helm (3.15.3, 3.17.2, 4.1.4) against a standalone testbed API server: the
//! sample's charts installed, upgraded, rolled back and uninstalled with both storage
//! drivers, as a user sees it (`helm list`, `status`, `history`), and helm 4's
//! server-side apply meeting another field manager. helm 3.17+ and 4 store releases
//! through typed clients, in protobuf; charts' objects go as JSON (helm 4: apply
//! patches). No `--wait`: waiting needs watch.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{Api, real_binary, rt, text};
use serde_json::{Value, json};

fn infra() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/kubernetes")
}

/// One helm binary with one storage driver, against one API.
struct Helm<'a> {
    api: &'a Api,
    bin: PathBuf,
    driver: &'a str,
}

impl Helm<'_> {
    fn run(&self, args: &[&str]) -> Output {
        let out = self.api.command(&self.bin).args(args).env("HELM_DRIVER", self.driver).output();
        let out = out.unwrap();
        eprintln!("$ helm {} [HELM_DRIVER={}]\n{}", args.join(" "), self.driver, text(&out));
        out
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "helm {args:?} failed:\n{}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    /// `helm upgrade --install` of a sample chart with its local values.
    fn install(&self, release: &str, namespace: &str, chart: &str, values: &[&Path]) -> String {
        let chart = infra().join("charts").join(chart);
        let mut args =
            vec!["upgrade", "--install", release, chart.to_str().unwrap(), "-n", namespace];
        for v in values {
            args.extend(["-f", v.to_str().unwrap()]);
        }
        self.ok(&args)
    }

    fn release(&self, name: &str) -> Value {
        let list = self.json(&["list", "-A", "-o", "json"]);
        list.as_array().unwrap().iter().find(|r| r["name"] == name).cloned().unwrap_or(Value::Null)
    }
}

fn local(values: &str) -> PathBuf {
    infra().join("environments/local").join(values)
}

/// The sample's charts, as the layers install them (plus the External Secrets CRDs from a
/// placeholder release, so `external-secrets-config` has its kinds).
fn install_sample(helm: &Helm, work: &Path) {
    helm.install("namespaces", "default", "namespaces", &[&local("namespaces.yaml")]);
    helm.install("bootstrap-smoke", "ameide", "helm-test-jobs", &[&local("bootstrap-smoke.yaml")]);
    helm.install(
        "foundation-vault-core",
        "vault",
        "vault-core",
        &[&local("foundation-vault-core.yaml")],
    );
    helm.install(
        "foundation-vault-bootstrap",
        "vault",
        "vault-bootstrap",
        &[&local("foundation-vault-bootstrap.yaml")],
    );
    helm.install("gateway", "ameide", "placeholder-service", &[&local("gateway.yaml")]);
    helm.install("postgres", "ameide", "postgres", &[&local("postgres.yaml")]);
    let crds = work.join("eso-crds.yaml");
    std::fs::write(
        &crds,
        "crds:\n\
         - {group: external-secrets.io, kind: ExternalSecret, plural: externalsecrets, versions: [v1]}\n\
         - {group: external-secrets.io, kind: ClusterSecretStore, plural: clustersecretstores, scope: Cluster, versions: [v1]}\n",
    )
    .unwrap();
    helm.install("external-secrets", "external-secrets", "placeholder-service", &[&crds]);
    let secrets = work.join("external-secrets-config.yaml");
    std::fs::write(
        &secrets,
        "externalSecrets:\n- name: keycloak-admin\n  data:\n  - {secretKey: username, remoteKey: keycloak/admin, property: username}\n",
    )
    .unwrap();
    helm.install("external-secrets-config", "ameide", "external-secrets-config", &[&secrets]);
}

/// The whole user cycle with one helm and one driver.
fn helm_cycle(bin: &str, driver: &str) {
    let Some(bin) = real_binary(bin) else { return };
    let api = Api::start();
    let helm = Helm { api: &api, bin, driver };
    install_sample(&helm, api.dir.path());

    let list = helm.json(&["list", "-A", "-o", "json"]);
    let names: Vec<&str> =
        list.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 8, "{list}");
    for r in list.as_array().unwrap() {
        assert_eq!(
            (r["status"].as_str(), r["revision"].as_str()),
            (Some("deployed"), Some("1")),
            "{r}"
        );
    }
    let secret = rt()
        .block_on(api.client().get("/api/v1/namespaces/ameide/secrets/postgres-credentials"))
        .unwrap();
    assert_eq!(secret["data"]["username"], "YW1laWRl", "the chart's Secret: {secret}");
    let es = rt()
        .block_on(
            api.client().get(
                "/apis/external-secrets.io/v1/namespaces/ameide/externalsecrets/keycloak-admin",
            ),
        )
        .unwrap();
    assert_eq!(es["spec"]["data"][0]["remoteRef"]["key"], "keycloak/admin");

    // Upgrade with a changed value, then roll back to the first revision.
    let postgres = infra().join("charts/postgres");
    helm.ok(&[
        "upgrade",
        "postgres",
        postgres.to_str().unwrap(),
        "-n",
        "ameide",
        "-f",
        local("postgres.yaml").to_str().unwrap(),
        "--set",
        "credentials.username=changed",
    ]);
    let status = helm.json(&["status", "postgres", "-n", "ameide", "-o", "json"]);
    assert_eq!(
        (status["info"]["status"].as_str(), status["version"].as_i64()),
        (Some("deployed"), Some(2))
    );
    helm.ok(&["rollback", "postgres", "1", "-n", "ameide"]);
    let history = helm.json(&["history", "postgres", "-n", "ameide", "-o", "json"]);
    let states: Vec<(i64, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["revision"].as_i64().unwrap(), h["status"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [(1, "superseded"), (2, "superseded"), (3, "deployed")]);
    let secret = rt()
        .block_on(api.client().get("/api/v1/namespaces/ameide/secrets/postgres-credentials"))
        .unwrap();
    assert_eq!(secret["data"]["username"], "YW1laWRl", "rolled back: {secret}");

    // Uninstall: the release and its objects are gone.
    helm.ok(&["uninstall", "gateway", "-n", "ameide"]);
    assert!(helm.release("gateway").is_null());
    let gone = rt()
        .block_on(api.client().get_opt("/apis/apps/v1/namespaces/ameide/deployments/gateway"))
        .unwrap();
    assert!(gone.is_none(), "{gone:?}");

    // Where the driver keeps releases.
    let kind = if driver == "configmap" { "configmaps" } else { "secrets" };
    let other = if driver == "configmap" { "secrets" } else { "configmaps" };
    let stored =
        rt().block_on(api.client().list(&format!("/api/v1/{kind}"), Some("owner=helm"))).unwrap();
    assert_eq!(stored.len(), 7 + 2, "7 releases left at revision 1, postgres up to 3");
    let elsewhere =
        rt().block_on(api.client().list(&format!("/api/v1/{other}"), Some("owner=helm"))).unwrap();
    assert!(elsewhere.is_empty());
}

#[test]
fn helm_4_1_4_secret_driver() {
    helm_cycle("helm-4.1.4/helm", "secret");
}

#[test]
fn helm_4_1_4_configmap_driver() {
    helm_cycle("helm-4.1.4/helm", "configmap");
}

#[test]
fn helm_3_17_2_secret_driver() {
    helm_cycle("helm-3.17.2/helm", "secret");
}

#[test]
fn helm_3_17_2_configmap_driver() {
    helm_cycle("helm-3.17.2/helm", "configmap");
}

#[test]
fn helm_3_15_3_secret_driver() {
    helm_cycle("helmfile-0.166.0/helm", "secret");
}

#[test]
fn helm_3_15_3_configmap_driver() {
    helm_cycle("helmfile-0.166.0/helm", "configmap");
}

/// helm 4 installs with server-side apply: a field another manager changed since is a
/// conflict, the upgrade fails and names it; `--force-conflicts` takes it back.
#[test]
fn helm_4_server_side_apply_conflicts_until_forced() {
    let (Some(bin), Some(kubectl)) =
        (real_binary("helm-4.1.4/helm"), real_binary("helm-4.1.4/kubectl"))
    else {
        return;
    };
    let api = Api::start();
    let helm = Helm { api: &api, bin, driver: "secret" };
    helm.install("namespaces", "default", "namespaces", &[&local("namespaces.yaml")]);
    helm.install("gateway", "ameide", "placeholder-service", &[&local("gateway.yaml")]);
    let deployment = "/apis/apps/v1/namespaces/ameide/deployments/gateway";
    let managed =
        rt().block_on(api.client().get(deployment)).unwrap()["metadata"]["managedFields"].clone();
    assert_eq!(
        (managed[0]["manager"].as_str(), managed[0]["operation"].as_str()),
        (Some("helm"), Some("Apply"))
    );

    api.ok(
        &kubectl,
        &[
            "patch",
            "deployment",
            "gateway",
            "-n",
            "ameide",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"replicas":3}}"#,
        ],
    );
    let chart = infra().join("charts/placeholder-service");
    let values = local("gateway.yaml");
    let upgrade = [
        "upgrade",
        "gateway",
        chart.to_str().unwrap(),
        "-n",
        "ameide",
        "-f",
        values.to_str().unwrap(),
    ];
    let failed = helm.run(&upgrade);
    assert!(!failed.status.success());
    let said = text(&failed);
    assert!(
        said.contains(r#"Error: UPGRADE FAILED: conflict occurred while applying object ameide/gateway apps/v1, Kind=Deployment: Apply failed with 1 conflict: conflict with "kubectl-patch" using apps/v1: .spec.replicas"#),
        "{said}"
    );
    assert_eq!(helm.release("gateway")["status"], "failed");
    assert_eq!(rt().block_on(api.client().get(deployment)).unwrap()["spec"]["replicas"], 3);

    helm.ok(&[&upgrade[..], &["--force-conflicts"]].concat());
    assert_eq!(helm.release("gateway")["status"], "deployed");
    let after = rt().block_on(api.client().get(deployment)).unwrap();
    assert_eq!(after["spec"]["replicas"], 1, "helm's value is back");
    let owners: Vec<&str> = after["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["fieldsV1"]["f:spec"]["f:replicas"].is_object())
        .map(|e| e["manager"].as_str().unwrap())
        .collect();
    assert_eq!(owners, ["helm"], "{after}");
}

/// A release installed by helm 3 (client-side apply) upgraded by helm 4 with
/// `--server-side`: helm first moves its managed fields from Update to Apply with a JSON
/// patch (`csaupgrade`), then applies.
#[test]
fn helm_4_takes_over_a_helm_3_release_with_server_side_apply() {
    let (Some(helm3), Some(helm4)) =
        (real_binary("helm-3.17.2/helm"), real_binary("helm-4.1.4/helm"))
    else {
        return;
    };
    let api = Api::start();
    let old = Helm { api: &api, bin: helm3, driver: "secret" };
    old.install("namespaces", "default", "namespaces", &[&local("namespaces.yaml")]);
    old.install("gateway", "ameide", "placeholder-service", &[&local("gateway.yaml")]);
    let new = Helm { api: &api, bin: helm4, driver: "secret" };
    let chart = infra().join("charts/placeholder-service");
    let values = local("gateway.yaml");
    new.ok(&[
        "upgrade",
        "gateway",
        chart.to_str().unwrap(),
        "-n",
        "ameide",
        "-f",
        values.to_str().unwrap(),
        "--server-side=true",
    ]);
    assert_eq!(new.release("gateway")["revision"], "2");
    let managed = rt()
        .block_on(api.client().get("/apis/apps/v1/namespaces/ameide/deployments/gateway"))
        .unwrap()["metadata"]["managedFields"]
        .clone();
    let entries: Vec<Value> =
        managed.as_array().unwrap().iter().map(|e| json!([e["manager"], e["operation"]])).collect();
    assert_eq!(entries, [json!(["helm", "Apply"])]);
}
