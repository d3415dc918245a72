//! The fake helmfile and helm against the fake API, checked with the real helm and
//! kubectl: a tiny chart synced, listed deployed, tested per scenario.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{Api, real_tool};
use serde_json::Value;
use testbed::scenario::Scenario;

/// An API plus a TESTBED_DIR with `helmfile`/`helm` symlinks to the testbed binary.
struct Bed {
    api: Api,
    real_helm: PathBuf,
}

impl Bed {
    fn new() -> Option<Bed> {
        let real_helm = real_tool("helm")?;
        let api = Api::start();
        let bin = api.dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for tool in ["helmfile", "helm"] {
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_testbed"), bin.join(tool)).unwrap();
        }
        Some(Bed { api, real_helm })
    }

    fn dir(&self) -> &Path {
        self.api.dir.path()
    }

    fn set(&self, scenario: Scenario) {
        scenario.save(self.dir()).unwrap();
    }

    fn fake(&self, tool: &str, args: &[&str]) -> Output {
        let mut cmd = self.api.command(&self.dir().join("bin").join(tool));
        let out = cmd
            .args(args)
            .env("TESTBED_DIR", self.dir())
            .env("TESTBED_REAL_HELM", &self.real_helm)
            .output()
            .unwrap();
        eprintln!(
            "$ {tool} {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn releases(&self) -> Value {
        serde_json::from_str(&self.api.ok(&self.real_helm, &["list", "-A", "-o", "json"])).unwrap()
    }
}

/// A layer `30-demo.yaml` with one chart: a ConfigMap, a Deployment and a test Pod.
fn write_layer(dir: &Path) -> PathBuf {
    let chart = dir.join("charts/demo");
    std::fs::create_dir_all(chart.join("templates/tests")).unwrap();
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: demo\nversion: 0.2.0\nappVersion: \"1.0\"\n",
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/app.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  greeting: {{ .Values.greeting }}\n\
         ---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n  replicas: 2\n  \
         selector: {matchLabels: {app: demo}}\n  template:\n    metadata: {labels: {app: demo}}\n    spec:\n      \
         containers: [{name: c, image: busybox}]\n",
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/tests/check.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {{ .Release.Name }}-check\n  annotations:\n    \
         \"helm.sh/hook\": test\n    \"helm.sh/hook-delete-policy\": before-hook-creation,hook-succeeded\n\
         spec:\n  restartPolicy: Never\n  containers: [{name: check, image: busybox, command: [\"true\"]}]\n",
    )
    .unwrap();
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

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn sync_installs_and_helm_test_passes_or_fails_per_scenario() {
    let Some(bed) = Bed::new() else { return };
    let layer = write_layer(bed.dir());
    let layer = layer.to_str().unwrap();

    let out = bed.fake("helmfile", &["--quiet", "-f", layer, "-e", "local", "sync"]);
    assert!(out.status.success());
    assert!(text(&out).contains("UPDATED RELEASES:"));
    let list = bed.releases();
    assert_eq!(list[0]["name"], "demo");
    assert_eq!(list[0]["status"], "deployed");
    assert_eq!(list[0]["chart"], "demo-0.2.0");

    let Some(kubectl) = real_tool("kubectl") else { return };
    let cm: Value = serde_json::from_str(
        &bed.api.ok(&kubectl, &["get", "cm", "demo", "-n", "ameide", "-o", "json"]),
    )
    .unwrap();
    assert_eq!(cm["data"]["greeting"], "hello");
    let deploy: Value = serde_json::from_str(
        &bed.api.ok(&kubectl, &["get", "deploy", "demo", "-n", "ameide", "-o", "json"]),
    )
    .unwrap();
    assert_eq!(deploy["status"]["readyReplicas"], 2);

    // Healthy: passes, logs printed, the passing Pod removed (hook-succeeded).
    let out = bed.fake("helm", &["test", "demo", "-n", "ameide", "--logs"]);
    assert!(out.status.success());
    assert!(text(&out).contains("Phase:          Succeeded"));
    assert!(text(&out).contains("POD LOGS: demo-check"));

    // Gate fails: exit 1, phase Failed recorded, the failed Pod stays.
    bed.set(Scenario { gate_fail: vec!["30-demo".into()], ..Scenario::default() });
    let out = bed.fake("helm", &["test", "demo", "-n", "ameide"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("pod demo-check failed"));
    let status: Value = serde_json::from_str(
        &bed.api.ok(&bed.real_helm, &["status", "demo", "-n", "ameide", "-o", "json"]),
    )
    .unwrap();
    assert_eq!(status["hooks"][0]["last_run"]["phase"], "Failed");
    bed.api.ok(&kubectl, &["get", "pod", "demo-check", "-n", "ameide"]);

    // Log race: Succeeded recorded, then "unable to get pod logs".
    bed.set(Scenario { log_race: vec!["30-demo".into()], ..Scenario::default() });
    let out = bed.fake("helm", &["test", "demo", "-n", "ameide", "--logs"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("unable to get pod logs for demo-check: pods \"demo-check\" not found"),
        "{}",
        text(&out)
    );
    let status: Value = serde_json::from_str(
        &bed.api.ok(&bed.real_helm, &["status", "demo", "-n", "ameide", "-o", "json"]),
    )
    .unwrap();
    assert_eq!(status["hooks"][0]["last_run"]["phase"], "Succeeded");

    // Sync fails: non-zero, helm-like text, the release left failed at revision 2.
    bed.set(Scenario { sync_fail: vec!["30-demo".into()], ..Scenario::default() });
    let out = bed.fake("helmfile", &["-f", layer, "-e", "local", "sync"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("UPGRADE FAILED"));
    let list = bed.releases();
    assert_eq!(
        (list[0]["status"].as_str(), list[0]["revision"].as_str()),
        (Some("failed"), Some("2"))
    );

    // Healthy again: revision 3 deployed, list/destroy.
    bed.set(Scenario::default());
    assert!(bed.fake("helmfile", &["-f", layer, "-e", "local", "apply"]).status.success());
    assert_eq!(bed.releases()[0]["revision"], "3");
    let out = bed.fake("helmfile", &["-f", layer, "-e", "local", "list", "--output", "json"]);
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["labels"], "gate:true");
    assert_eq!(rows[0]["installed"], true);
    assert!(bed.fake("helmfile", &["-f", layer, "-e", "local", "status"]).status.success());
    let out = bed.fake("helmfile", &["-f", layer, "-e", "staging", "sync"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("environment \"staging\" is not defined"));
    assert!(bed.fake("helmfile", &["-f", layer, "-e", "local", "destroy"]).status.success());
    assert_eq!(bed.releases(), serde_json::json!([]));
    let out = bed.fake("helmfile", &["-f", layer, "-e", "local", "status"]);
    assert!(!out.status.success(), "status fails on a missing release");

    let calls = testbed::calls::read(bed.dir()).unwrap();
    assert!(calls.iter().any(|c| c.tool == "helm" && c.args.first().is_some_and(|a| a == "test")));
}

#[test]
fn vault_and_external_secret_scenarios_on_the_sample_layer() {
    let Some(bed) = Bed::new() else { return };
    let layers = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/kubernetes/helmfiles");
    let layer = layers.join("15-secrets-certificates.yaml");
    if !layer.is_file() {
        eprintln!("skipped: {} not found", layer.display());
        return;
    }
    bed.set(Scenario { vault_fail: true, secret_missing_key: true, ..Scenario::default() });
    for l in ["10-bootstrap", "15-secrets-certificates", "24-auth"] {
        let file = layers.join(format!("{l}.yaml"));
        let out = bed.fake("helmfile", &["-f", file.to_str().unwrap(), "-e", "local", "sync"]);
        assert!(out.status.success(), "{l}");
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let c = bed.api.client();
        let jobs = c.list("/apis/batch/v1/namespaces/vault/jobs", None).await.unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0]["metadata"]["name"], "foundation-vault-bootstrap-1");
        assert_eq!(jobs[0]["metadata"]["ownerReferences"][0]["kind"], "CronJob");
        assert_eq!(jobs[0]["status"]["failed"], 1);
        let pods = c
            .list("/api/v1/namespaces/vault/pods", Some("job-name=foundation-vault-bootstrap-1"))
            .await
            .unwrap();
        let log = c.pod_log("vault", pods[0]["metadata"]["name"].as_str().unwrap()).await.unwrap();
        assert!(log.contains("connection refused"), "{log}");
        let es = c.list("/apis/external-secrets.io/v1/externalsecrets", None).await.unwrap();
        assert!(!es.is_empty());
        let not_ready: Vec<&Value> =
            es.iter().filter(|e| e["status"]["conditions"][0]["status"] == "False").collect();
        assert_eq!(not_ready.len(), 1);
        assert_eq!(not_ready[0]["status"]["conditions"][0]["reason"], "SecretSyncedError");
        assert!(
            not_ready[0]["status"]["conditions"][0]["message"].as_str().unwrap().contains("key: ")
        );
    });
}
