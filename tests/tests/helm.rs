//! The fake helmfile and helm against the fake API (with its controllers), checked with
//! the real helm and kubectl: a tiny chart synced (with and without waiting), listed,
//! tested per scenario and per claimed helm version.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Bed, eventually, real_tool, text};
use serde_json::Value;

/// A layer `30-demo.yaml` with one chart: a ConfigMap, a Deployment, a StatefulSet of
/// `sts_replicas` behind Service `demo-db`, and test Pods: `check` (runs `true`) and,
/// with `probe_db`, `db` (wget on the Service; then the database's readiness probe
/// waits 3 s before it first succeeds).
fn write_layer(dir: &Path, sts_replicas: u32, probe_db: bool) -> PathBuf {
    let probe_delay = if probe_db { 3 } else { 0 };
    let chart = dir.join("charts/demo");
    std::fs::create_dir_all(chart.join("templates/tests")).unwrap();
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: demo\nversion: 0.2.0\nappVersion: \"1.0\"\n",
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/app.yaml"),
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{{{ .Release.Name }}}}\ndata:\n  greeting: {{{{ .Values.greeting }}}}\n\
         ---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{{{ .Release.Name }}}}\nspec:\n  replicas: 2\n  \
         selector: {{matchLabels: {{app: demo}}}}\n  template:\n    metadata: {{labels: {{app: demo}}}}\n    spec:\n      \
         containers: [{{name: c, image: busybox}}]\n\
         ---\napiVersion: v1\nkind: Service\nmetadata:\n  name: demo-db\nspec:\n  selector: {{app: demo-db}}\n  ports: [{{port: 5432}}]\n\
         ---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: demo-db\nspec:\n  replicas: {sts_replicas}\n  serviceName: demo-db\n  \
         selector: {{matchLabels: {{app: demo-db}}}}\n  template:\n    metadata: {{labels: {{app: demo-db}}}}\n    spec:\n      \
         containers: [{{name: db, image: postgres, readinessProbe: {{initialDelaySeconds: {probe_delay}, tcpSocket: {{port: 5432}}}}}}]\n"),
    )
    .unwrap();
    let hook = |name: &str, cmd: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {{{{ .Release.Name }}}}-{name}\n  annotations:\n    \
         \"helm.sh/hook\": test\n    \"helm.sh/hook-delete-policy\": before-hook-creation,hook-succeeded\n\
         spec:\n  restartPolicy: Never\n  containers: [{{name: check, image: busybox, command: {cmd}}}]\n"
        )
    };
    std::fs::write(chart.join("templates/tests/check.yaml"), hook("check", "[\"true\"]")).unwrap();
    let db = chart.join("templates/tests/db.yaml");
    if probe_db {
        let cmd = "[wget, -q, -O, /dev/null, \"http://demo-db.ameide.svc.cluster.local:5432/\"]";
        std::fs::write(db, hook("db", cmd)).unwrap();
    } else {
        let _ = std::fs::remove_file(db);
    }
    std::fs::write(dir.join("values.yaml"), "greeting: hello\n").unwrap();
    let layer = dir.join("30-demo.yaml");
    std::fs::write(
        &layer,
        "environments:\n  local: {}\n---\nreleases:\n  - name: demo\n    namespace: ameide\n    chart: ./charts/demo\n    \
         labels: {gate: \"true\"}\n    values: [values.yaml]\n",
    )
    .unwrap();
    layer
}

const DEPLOY: &str = "/apis/apps/v1/namespaces/ameide/deployments/demo";

fn ready_replicas(bed: &Bed) -> i64 {
    bed.get(DEPLOY).unwrap()["status"]["readyReplicas"].as_i64().unwrap_or(0)
}

fn hook_phase(bed: &Bed) -> Value {
    let status: Value = serde_json::from_str(
        &bed.api.ok(&bed.real_helm, &["status", "demo", "-n", "ameide", "-o", "json"]),
    )
    .unwrap();
    status["hooks"].as_array().unwrap().iter().map(|h| h["last_run"]["phase"].clone()).collect()
}

#[test]
fn sync_returns_before_readiness_unless_asked_to_wait() {
    let Some(bed) = Bed::new() else { return };
    let layer = write_layer(bed.dir(), 1, false);
    let layer = layer.to_str().unwrap();

    let out = bed.fake("helmfile", &["--quiet", "-f", layer, "-e", "local", "sync"]);
    assert!(out.status.success());
    assert!(text(&out).contains("UPDATED RELEASES:"));
    assert_eq!(bed.releases()[0]["status"], "deployed");
    assert_eq!(bed.releases()[0]["chart"], "demo-0.2.0");
    // No wait: the Deployment is there but not Ready yet ...
    let deploy = bed.get(DEPLOY).unwrap();
    assert_eq!(deploy["status"]["readyReplicas"].as_i64().unwrap_or(0), 0, "{deploy}");
    // ... and Ready a little later, as the controller writes it.
    eventually(Duration::from_secs(30), "Deployment Ready", || {
        (ready_replicas(&bed) == 2).then_some(())
    });
    let deploy = bed.get(DEPLOY).unwrap();
    assert_eq!(deploy["status"]["availableReplicas"], 2);
    assert!(
        deploy["status"]["conditions"].as_array().unwrap().iter().any(|c| c["type"] == "Available"
            && c["status"] == "True"
            && c["reason"] == "MinimumReplicasAvailable")
    );

    let Some(kubectl) = real_tool("kubectl") else { return };
    let cm: Value = serde_json::from_str(
        &bed.api.ok(&kubectl, &["get", "cm", "demo", "-n", "ameide", "-o", "json"]),
    )
    .unwrap();
    assert_eq!(cm["data"]["greeting"], "hello");

    // A new generation (the spec changed) is not Ready until its Pods started; --wait
    // returns only once it is.
    std::fs::write(bed.dir().join("values.yaml"), "greeting: hi\n").unwrap();
    std::fs::write(
        bed.dir().join("charts/demo/templates/extra.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: extra\nspec:\n  replicas: 1\n  \
         selector: {matchLabels: {app: x}}\n  template:\n    metadata: {labels: {app: x}}\n    spec:\n      \
         containers: [{name: c, image: busybox}]\n",
    )
    .unwrap();
    let out =
        bed.fake("helmfile", &["-f", layer, "-e", "local", "sync", "--wait", "--timeout", "60"]);
    assert!(out.status.success());
    let extra = bed.get("/apis/apps/v1/namespaces/ameide/deployments/extra").unwrap();
    assert_eq!(extra["status"]["readyReplicas"], 1, "--wait returned before readiness: {extra}");
    assert_eq!(bed.releases()[0]["status"], "deployed");
    assert_eq!(bed.releases()[0]["revision"], "2");

    // A helmfile selecting no release exits 3 with helmfile's message.
    let out = bed.fake("helmfile", &["-f", layer, "-e", "local", "-l", "name=nope", "sync"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out).contains(
        "err: no releases found that matches specified selector(name=nope) and environment(local), in any helmfile"
    ));

    // Sync fails: non-zero, helm-like text, the release left failed at revision 3.
    bed.set(&["sync-fail=30-demo"]);
    let out = bed.fake("helmfile", &["-f", layer, "-e", "local", "sync"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("UPGRADE FAILED"));
    let list = bed.releases();
    assert_eq!(
        (list[0]["status"].as_str(), list[0]["revision"].as_str()),
        (Some("failed"), Some("3"))
    );

    bed.set(&["healthy"]);
    assert!(bed.fake("helmfile", &["-f", layer, "-e", "local", "apply"]).status.success());
    let out = bed.fake("helmfile", &["-f", layer, "-e", "local", "list", "--output", "json"]);
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (rows[0]["labels"].as_str(), rows[0]["installed"].as_bool()),
        (Some("gate:true"), Some(true))
    );
    assert!(bed.fake("helmfile", &["-f", layer, "-e", "local", "status"]).status.success());
    let out = bed.fake("helmfile", &["-f", layer, "-e", "staging", "sync"]);
    assert!(text(&out).contains("environment \"staging\" is not defined"));
    assert!(bed.fake("helmfile", &["-f", layer, "-e", "local", "destroy"]).status.success());
    assert_eq!(bed.releases(), serde_json::json!([]));
    assert!(!bed.fake("helmfile", &["-f", layer, "-e", "local", "status"]).status.success());
}

#[test]
fn helm_test_follows_the_claimed_helm_version() {
    let Some(bed) = Bed::new() else { return };
    bed.set(&["startup-ms=300"]);
    let layer = write_layer(bed.dir(), 1, false);
    let layer = layer.to_str().unwrap();
    // Per-layer scenarios find the release's layer in these layer files.
    bed.set(&[&format!("helmfiles={layer}")]);
    assert!(bed.fake("helmfile", &["-f", layer, "-e", "local", "sync", "--wait"]).status.success());

    // Default: the pinned helm (3.18.4) deletes the passing hook-succeeded Pod before
    // --logs reads it: the phase is Succeeded, the command fails.
    let out = bed.fake("helm", &["version", "--short"]);
    assert!(text(&out).starts_with("v3.18.4"), "{}", text(&out));
    let out = bed.fake("helm", &["test", "demo", "-n", "ameide", "--logs"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("Phase:          Succeeded"));
    assert!(
        text(&out).contains(
            "Error: unable to get pod logs for demo-check: pods \"demo-check\" not found"
        ),
        "{}",
        text(&out)
    );
    assert_eq!(hook_phase(&bed), serde_json::json!(["Succeeded"]));

    // 4.1: logs first, then the Pod is deleted.
    bed.set(&["helm-version=4.1.4"]);
    let out = bed.fake("helm", &["test", "demo", "-n", "ameide", "--logs"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("POD LOGS: demo-check\n"));
    assert!(bed.get("/api/v1/namespaces/ameide/pods/demo-check").is_none());

    // 4.2.4 reads per container and words a missing Pod differently.
    bed.set(&["helm-version=4.2.4", "log-race=30-demo"]);
    let out = bed.fake("helm", &["test", "demo", "-n", "ameide", "--logs"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("Error: unable to get pod demo-check: pods \"demo-check\" not found"),
        "{}",
        text(&out)
    );

    // A failing gate: phase Failed recorded, the failed Pod kept, helm 4's wording.
    bed.set(&["healthy", "helm-version=4.1.4", "gate-fail=30-demo"]);
    let out = bed.fake("helm", &["test", "demo", "-n", "ameide"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("resource Pod/ameide/demo-check not ready. status: Failed, message: pod demo-check failed"), "{}", text(&out));
    assert_eq!(hook_phase(&bed), serde_json::json!(["Failed"]));
    assert!(bed.get("/api/v1/namespaces/ameide/pods/demo-check").is_some());
    bed.set(&["helm-version=3.18.4"]);
    let out = bed.fake("helm", &["test", "demo", "-n", "ameide"]);
    assert!(text(&out).contains("Error: pod demo-check failed"), "{}", text(&out));
}

#[test]
fn a_gate_pod_fails_while_its_target_is_not_ready() {
    let Some(bed) = Bed::new() else { return };
    bed.set(&["startup-ms=500", "helm-version=4.1.4"]);
    // The database's readiness probe starts after 3 s; the test Pods run at once.
    let layer = write_layer(bed.dir(), 3, true);
    let layer = layer.to_str().unwrap();
    assert!(bed.fake("helmfile", &["-f", layer, "-e", "local", "sync"]).status.success());
    let out = bed.fake("helm", &["test", "demo", "-n", "ameide", "--logs"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("pod demo-db failed"), "{}", text(&out));
    let log = common::rt().block_on(bed.api.client().pod_log("ameide", "demo-db")).unwrap();
    assert!(log.contains("can't connect to remote host"), "{log}");
    // Once the StatefulSet is Ready, the same gate passes.
    eventually(Duration::from_secs(30), "StatefulSet Ready", || {
        let sts = bed.get("/apis/apps/v1/namespaces/ameide/statefulsets/demo-db")?;
        (sts["status"]["readyReplicas"] == 3).then_some(())
    });
    let out = bed.fake("helm", &["test", "demo", "-n", "ameide", "--logs"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_test_hook_that_cannot_start_times_out_and_is_recorded_failed() {
    let Some(bed) = Bed::new() else { return };
    bed.set(&["startup-ms=200"]);
    let chart = bed.dir().join("charts/stuck");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(chart.join("Chart.yaml"), "apiVersion: v2\nname: stuck\nversion: 0.1.0\n")
        .unwrap();
    // Its test Pod needs a Secret nobody writes: the kubelet cannot make its environment.
    std::fs::write(
        chart.join("templates/test.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: stuck-check\n  annotations: {\"helm.sh/hook\": test}\n\
         spec:\n  restartPolicy: Never\n  containers:\n  - name: check\n    image: \"busybox:1.37.0\"\n    \
         envFrom: [{secretRef: {name: absent}}]\n",
    )
    .unwrap();
    let layer = bed.dir().join("70-stuck.yaml");
    std::fs::write(
        &layer,
        "environments:\n  local: {}\n---\nreleases:\n  - name: stuck\n    namespace: ameide\n    chart: ./charts/stuck\n",
    )
    .unwrap();
    let layer = layer.to_str().unwrap();
    assert!(bed.fake("helmfile", &["-f", layer, "-e", "local", "sync"]).status.success());
    let out = bed.fake("helm", &["test", "stuck", "-n", "ameide", "--timeout", "2s"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("Error: timed out waiting for the condition"), "{}", text(&out));
    let status: Value = serde_json::from_str(
        &bed.api.ok(&bed.real_helm, &["status", "stuck", "-n", "ameide", "-o", "json"]),
    )
    .unwrap();
    assert_eq!(status["hooks"][0]["last_run"]["phase"], "Failed");
    let pod = bed.get("/api/v1/namespaces/ameide/pods/stuck-check").unwrap();
    let waiting = &pod["status"]["containerStatuses"][0]["state"]["waiting"];
    assert_eq!(waiting["reason"], "CreateContainerConfigError", "{pod}");
    assert_eq!(waiting["message"], "secret \"absent\" not found");
}
