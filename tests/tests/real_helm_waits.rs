//! Real helm 3.15.3 (the one helmfile 0.166.0 ships with) installs the sample charts on
//! the testbed's API server as it would on k3s: `upgrade --install --wait` returns only
//! once a Deployment is rolled out (helm 3 checks it through its new ReplicaSet) and
//! times out on a database whose volume never comes; the gate releases' test hooks, created from
//! what helm stored, are run by the cluster and follow the per-layer scenarios, which
//! find the layer from the release helm wrote and the sample's helmfiles. Real helm
//! 3.17.2's strategic merge patches after a failed upgrade merge as on a real API server.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Bed, eventually, real_binary, real_tool, text, write};
use serde_json::Value;

fn sample(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../infra/kubernetes")
        .join(path)
        .to_string_lossy()
        .into_owned()
}

/// Real helm 3.15.3 and kubectl, or None (skipped; a failure under CI).
fn tools() -> Option<(PathBuf, PathBuf)> {
    Some((real_binary("helmfile-0.166.0/helm")?, real_tool("kubectl")?))
}

/// `helm upgrade --install <release> <sample chart> -n ameide -f <sample values> --wait`.
fn install(
    bed: &Bed,
    helm: &Path,
    release: &str,
    chart: &str,
    extra: &[&str],
) -> std::process::Output {
    let chart = sample(&format!("charts/{chart}"));
    let values = sample(&format!("environments/local/{release}.yaml"));
    let mut args =
        vec!["upgrade", "--install", release, &chart, "-n", "ameide", "--create-namespace"];
    args.extend(["-f", &values, "--wait", "--wait-for-jobs", "--timeout", "60s"]);
    args.extend(extra);
    bed.api.run(helm, &args)
}

#[test]
fn real_helm_waits_for_a_sample_deployment_through_its_replicaset() {
    let Some(bed) = Bed::new() else { return };
    let Some((helm, _)) = tools() else { return };
    bed.set(&["startup-ms=1500"]);
    let out = install(&bed, &helm, "keycloak", "placeholder-service", &[]);
    assert!(out.status.success(), "{}", text(&out));
    // helm returned: the Deployment is rolled out, through a ReplicaSet of its own.
    let deploy = bed.get("/apis/apps/v1/namespaces/ameide/deployments/keycloak").unwrap();
    assert_eq!(deploy["status"]["readyReplicas"], 1, "helm returned before readiness: {deploy}");
    assert_eq!(deploy["status"]["observedGeneration"], deploy["metadata"]["generation"]);
    let rs = bed.list("/apis/apps/v1/namespaces/ameide/replicasets", None);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0]["metadata"]["ownerReferences"][0]["uid"], deploy["metadata"]["uid"]);
    assert_eq!(rs[0]["status"]["readyReplicas"], 1);
    let service = bed.get("/api/v1/namespaces/ameide/services/keycloak").unwrap();
    assert!(service["spec"]["clusterIP"].as_str().is_some_and(|ip| ip.starts_with("10.43.")));
    let status: Value = serde_json::from_str(
        &bed.api.ok(&helm, &["status", "keycloak", "-n", "ameide", "-o", "json"]),
    )
    .unwrap();
    assert_eq!(status["info"]["status"], "deployed");

    // A database whose claim asks for a StorageClass k3s does not have: no volume, so its
    // Pod never starts, and helm's wait (on the StatefulSet) runs out.
    let out = install(
        &bed,
        &helm,
        "postgres",
        "postgres",
        &["--set", "storage.storageClassName=fast-ssd", "--timeout", "6s"],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("context deadline exceeded"), "{}", text(&out));
    let status: Value = serde_json::from_str(
        &bed.api.ok(&helm, &["status", "postgres", "-n", "ameide", "-o", "json"]),
    )
    .unwrap();
    assert_eq!(status["info"]["status"], "failed");
    let claim =
        bed.get("/api/v1/namespaces/ameide/persistentvolumeclaims/data-postgres-0").unwrap();
    assert_eq!(claim["status"]["phase"], "Pending");
    let pod = bed.get("/api/v1/namespaces/ameide/pods/postgres-0").unwrap();
    assert_eq!(pod["status"]["phase"], "Pending", "{pod}");
}

/// Create the test hook Pod of a gate release from what helm stored (`helm get hooks`),
/// as `helm test` would, replacing an earlier one; its phase once it ended.
fn run_hook(bed: &Bed, helm: &Path, kubectl: &Path, release: &str, pod: &str) -> String {
    let hooks = bed.api.ok(helm, &["get", "hooks", release, "-n", "ameide"]);
    let file = write(bed.dir(), &format!("{release}-hooks.yaml"), &hooks);
    bed.api.ok(kubectl, &["delete", "pod", pod, "-n", "ameide", "--ignore-not-found"]);
    bed.api.ok(kubectl, &["create", "-n", "ameide", "-f", file.to_str().unwrap()]);
    eventually(Duration::from_secs(60), "the test Pod ended", || {
        let p = bed.get(&format!("/api/v1/namespaces/ameide/pods/{pod}"))?;
        p["status"]["phase"]
            .as_str()
            .filter(|p| *p == "Succeeded" || *p == "Failed")
            .map(str::to_owned)
    })
}

#[test]
fn gate_hooks_of_real_helm_releases_follow_the_layer_scenarios() {
    let Some(bed) = Bed::new() else { return };
    let Some((helm, kubectl)) = tools() else { return };
    bed.set(&["startup-ms=300"]);
    for (release, chart) in [
        ("keycloak", "placeholder-service"),
        ("auth-smoke", "helm-test-jobs"),
        ("postgres", "postgres"),
        ("data-plane-smoke", "helm-test-jobs"),
    ] {
        let out = install(&bed, &helm, release, chart, &[]);
        assert!(out.status.success(), "{release}: {}", text(&out));
    }
    let log = |pod: &str| bed.api.ok(&kubectl, &["logs", "-n", "ameide", pod]);
    assert_eq!(run_hook(&bed, &helm, &kubectl, "auth-smoke", "auth-smoke-keycloak"), "Succeeded");

    // The release helm wrote names its layer in the sample's helmfiles: 24-auth.
    bed.set(&["gate-fail=24-auth"]);
    assert_eq!(run_hook(&bed, &helm, &kubectl, "auth-smoke", "auth-smoke-keycloak"), "Failed");
    assert_eq!(log("auth-smoke-keycloak"), "auth-smoke-keycloak: check failed: exit status 1\n");
    assert_eq!(
        run_hook(&bed, &helm, &kubectl, "data-plane-smoke", "data-plane-smoke-postgres-ready"),
        "Succeeded"
    );

    // gate-leak: the check prints the credentials the kubelet gave it from the Secret.
    bed.set(&["healthy", "gate-leak=40-data-plane"]);
    let pod = "data-plane-smoke-postgres-ready";
    assert_eq!(run_hook(&bed, &helm, &kubectl, "data-plane-smoke", pod), "Failed");
    let printed = log(pod);
    assert!(printed.contains("+ export PGPASSWORD=ameide-local-postgres\n"), "{printed}");
    assert!(printed.contains("-----BEGIN PRIVATE KEY-----"), "{printed}");
    assert_eq!(run_hook(&bed, &helm, &kubectl, "auth-smoke", "auth-smoke-keycloak"), "Succeeded");
}

/// The sample placeholder chart copied into `dir/<name>`, its Deployment's readiness
/// probe edited by `edit`.
fn placeholder_chart(dir: &Path, name: &str, edit: impl Fn(&str) -> String) -> String {
    let from = Path::new(&sample("charts/placeholder-service")).to_path_buf();
    let files = ["Chart.yaml", "values.yaml", "templates/_helpers.tpl", "templates/crds.yaml"];
    for file in files.into_iter().chain(["templates/service.yaml"]) {
        write(dir, &format!("{name}/{file}"), &std::fs::read_to_string(from.join(file)).unwrap());
    }
    let deployment = std::fs::read_to_string(from.join("templates/deployment.yaml")).unwrap();
    write(dir, &format!("{name}/templates/deployment.yaml"), &edit(&deployment));
    dir.join(name).to_string_lossy().into_owned()
}

/// helm 3.17.2 upgrades a failed release from the *deployed* revision's manifest
/// (`pkg/action/upgrade.go` `prepareUpgrade`), so its three-way strategic merge patch
/// keeps a field only the failed revision added (helm issues 10363, 12645): the fixed
/// chart still times out. `helm rollback` patches from the failed revision and removes
/// it; the template that came back reuses its ReplicaSet, which helm's wait then finds.
#[test]
fn a_field_only_a_failed_upgrade_added_survives_the_next_upgrade_until_a_rollback() {
    let Some(bed) = Bed::new() else { return };
    let Some(helm) = real_binary("helm-3.17.2/helm") else { return };
    bed.set(&["startup-ms=300"]);
    let fast = placeholder_chart(bed.dir(), "fast", str::to_owned);
    let slow = placeholder_chart(bed.dir(), "slow", |t| {
        t.replacen("periodSeconds: 5", "initialDelaySeconds: 600\n            periodSeconds: 5", 1)
    });
    let upgrade = |chart: &str, timeout: &str| {
        let args =
            ["upgrade", "--install", "probe-delay", chart, "-n", "ameide", "--create-namespace"];
        bed.api.run(&helm, &[&args[..], &["--wait", "--timeout", timeout]].concat())
    };
    let delay = || {
        let deploy = bed.get("/apis/apps/v1/namespaces/ameide/deployments/probe-delay").unwrap();
        let container = &deploy["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["image"], "busybox:1.37.0", "the container was merged: {deploy}");
        assert!(deploy["spec"]["template"]["spec"].get("$setElementOrder/containers").is_none());
        container["readinessProbe"]["initialDelaySeconds"].clone()
    };
    let out = upgrade(&fast, "60s");
    assert!(out.status.success(), "{}", text(&out));

    // A failed upgrade rolled back at once: the patch from its manifest removes the delay,
    // and the first template's ReplicaSet is reused, newest again, for helm's wait.
    let out = upgrade(&slow, "4s");
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(delay(), 600);
    let out = bed.api.run(&helm, &["rollback", "probe-delay", "1", "-n", "ameide"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(delay(), Value::Null);
    let out = upgrade(&fast, "60s");
    assert!(out.status.success(), "{}", text(&out));
    let replicasets = bed.list("/apis/apps/v1/namespaces/ameide/replicasets", None);
    assert_eq!(replicasets.len(), 2, "one per template");
    let revision = |rs: &Value| {
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
            .as_str()
            .map(str::to_owned)
    };
    let newest = replicasets.iter().max_by_key(|rs| revision(rs)).unwrap();
    assert_eq!(revision(newest).as_deref(), Some("3"), "{newest}");
    assert_eq!(newest["status"]["readyReplicas"], 1, "{newest}");

    // The same failure, then the fixed chart upgraded instead: nothing in helm's patch
    // removes the delay, and the wait times out again.
    let out = upgrade(&slow, "4s");
    assert!(!out.status.success(), "{}", text(&out));
    let out = upgrade(&fast, "4s");
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(delay(), 600, "helm 3 keeps what only the failed revision added");
}
