//! The API server's controllers act on every write, whoever makes it: workloads turn
//! Ready after the startup delay, Jobs run and retry, CronJobs schedule Jobs, and the
//! External Secrets operator acts only when its chart is installed.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Bed, eventually, real_tool};
use serde_json::Value;
use testbed::manifests;

fn sample_layer(name: &str) -> Option<PathBuf> {
    let layer = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../infra/kubernetes/helmfiles/{name}.yaml"));
    if !layer.is_file() {
        eprintln!("skipped: {} not found", layer.display());
        return None;
    }
    Some(layer)
}

fn sync(bed: &Bed, layer: &Path) {
    let out = bed.fake("helmfile", &["-f", layer.to_str().unwrap(), "-e", "local", "sync"]);
    assert!(out.status.success(), "sync {}", layer.display());
}

fn jobs_of(bed: &Bed, cronjob: &str) -> Vec<Value> {
    bed.list("/apis/batch/v1/namespaces/vault/jobs", None)
        .into_iter()
        .filter(|j| j["metadata"]["ownerReferences"][0]["name"] == cronjob)
        .collect()
}

fn condition(job: &Value, kind: &str) -> bool {
    job["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == kind && c["status"] == "True"))
}

#[test]
fn a_deployment_applied_with_kubectl_turns_ready_after_the_startup_delay() {
    let Some(bed) = Bed::new() else { return };
    let Some(kubectl) = real_tool("kubectl") else { return };
    let file = bed.dir().join("web.yaml");
    std::fs::write(
        &file,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: default\nspec:\n  replicas: 2\n  \
         selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      \
         containers: [{name: web, image: nginx}]\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: solo\n  namespace: default\n\
         spec:\n  containers: [{name: c, image: busybox}]\n",
    )
    .unwrap();
    bed.api.ok(&kubectl, &["apply", "-f", file.to_str().unwrap()]);
    let web = bed.get("/apis/apps/v1/namespaces/default/deployments/web").unwrap();
    assert!(web["status"]["readyReplicas"].as_i64().unwrap_or(0) == 0, "Ready at once: {web}");
    eventually(Duration::from_secs(30), "web Ready", || {
        let web = bed.get("/apis/apps/v1/namespaces/default/deployments/web")?;
        (web["status"]["readyReplicas"] == 2).then_some(())
    });
    let out = bed.api.ok(&kubectl, &["rollout", "status", "deployment/web", "--timeout=30s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let out = bed.api.ok(&kubectl, &["wait", "--for=condition=Ready", "pod/solo", "--timeout=30s"]);
    assert!(out.contains("condition met"), "{out}");
}

#[test]
fn vault_fail_runs_through_the_cronjob_and_job_controllers() {
    let Some(bed) = Bed::new() else { return };
    let (Some(l10), Some(l15), Some(l24)) = (
        sample_layer("10-bootstrap"),
        sample_layer("15-secrets-certificates"),
        sample_layer("24-auth"),
    ) else {
        return;
    };
    bed.set(&["vault-fail", "cron-minute-ms=1000", "startup-ms=200"]);
    for l in [&l10, &l15, &l24] {
        sync(&bed, l);
    }
    // The first Job comes at the next minute boundary, not with the CronJob.
    let job = eventually(Duration::from_secs(60), "the Vault bootstrap Job failed", || {
        jobs_of(&bed, "foundation-vault-bootstrap").into_iter().find(|j| condition(j, "Failed"))
    });
    let name = job["metadata"]["name"].as_str().unwrap();
    let minute = name.strip_prefix("foundation-vault-bootstrap-").unwrap();
    assert!(minute.parse::<u64>().is_ok(), "{name}");
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    // backoffLimit 2: three Pods failed, each with the log of a refused connection.
    assert_eq!(job["status"]["failed"], 3);
    let pods = bed.list("/api/v1/namespaces/vault/pods", Some(&format!("job-name={name}")));
    assert_eq!(pods.len(), 3);
    let log = common::rt()
        .block_on(bed.api.client().pod_log("vault", pods[0]["metadata"]["name"].as_str().unwrap()))
        .unwrap();
    assert!(log.contains("connection refused"), "{log}");
}

#[test]
fn vault_flaky_fails_once_then_the_next_tick_succeeds() {
    let Some(bed) = Bed::new() else { return };
    let (Some(l10), Some(l15)) =
        (sample_layer("10-bootstrap"), sample_layer("15-secrets-certificates"))
    else {
        return;
    };
    bed.set(&["vault-flaky", "cron-minute-ms=1500", "startup-ms=100"]);
    sync(&bed, &l10);
    sync(&bed, &l15);
    eventually(Duration::from_secs(60), "a failed, then a complete bootstrap Job", || {
        let jobs = jobs_of(&bed, "foundation-vault-bootstrap");
        let failed = jobs.iter().position(|j| condition(j, "Failed"))?;
        let complete = jobs.iter().position(|j| condition(j, "Complete"))?;
        (failed < complete).then_some(())
    });
    let cj = eventually(Duration::from_secs(10), "lastSuccessfulTime", || {
        let cj = bed.get("/apis/batch/v1/namespaces/vault/cronjobs/foundation-vault-bootstrap")?;
        cj["status"]["lastSuccessfulTime"].is_string().then_some(cj)
    });
    assert!(cj["status"]["lastScheduleTime"].is_string());
}

/// A layer installing a chart named `external-secrets` (one Deployment): the operator.
fn write_operator_layer(dir: &Path) -> PathBuf {
    let chart = dir.join("charts/external-secrets");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: external-secrets\nversion: 0.19.2\n",
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/deploy.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: external-secrets\nspec:\n  replicas: 1\n  \
         selector: {matchLabels: {app: eso}}\n  template:\n    metadata: {labels: {app: eso}}\n    spec:\n      \
         containers: [{name: eso, image: eso}]\n",
    )
    .unwrap();
    let layer = dir.join("15-eso.yaml");
    std::fs::write(
        &layer,
        "environments:\n  local: {}\n---\nreleases:\n  - name: external-secrets\n    namespace: external-secrets\n    chart: ./charts/external-secrets\n",
    )
    .unwrap();
    layer
}

#[test]
fn external_secrets_are_reconciled_only_with_the_operator_chart() {
    let Some(bed) = Bed::new() else { return };
    let (Some(l10), Some(l15), Some(l24)) = (
        sample_layer("10-bootstrap"),
        sample_layer("15-secrets-certificates"),
        sample_layer("24-auth"),
    ) else {
        return;
    };
    bed.set(&["secret-missing-key", "startup-ms=300"]);
    for l in [&l10, &l15, &l24] {
        sync(&bed, l);
    }
    // The CRDs, a store and two ExternalSecrets, applied with plain kubectl: no operator.
    let Some(kubectl) = real_tool("kubectl") else { return };
    let secrets = [
        manifests::VAULT_STORE.to_owned(),
        manifests::keycloak_external_secret("keycloak-admin", "admin"),
        manifests::keycloak_external_secret("keycloak-db", "db"),
    ];
    for (file, manifest) in
        [("eso-crds.yaml", manifests::ESO_CRDS.to_owned()), ("eso.yaml", secrets.join("---\n"))]
    {
        let path = bed.dir().join(file);
        std::fs::write(&path, &manifest).unwrap();
        bed.api.ok(&kubectl, &["apply", "-f", path.to_str().unwrap()]);
    }
    // An ExternalSecret naming a store that does not exist.
    let lost = bed.dir().join("lost.yaml");
    std::fs::write(
        &lost,
        "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata:\n  name: zz-lost\n  namespace: ameide\n\
         spec:\n  secretStoreRef: {kind: ClusterSecretStore, name: missing-store}\n  target: {name: zz-lost}\n  \
         data: [{secretKey: a, remoteRef: {key: x/y}}]\n",
    )
    .unwrap();
    bed.api.ok(&kubectl, &["apply", "-f", lost.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(1500));
    let es = bed.list("/apis/external-secrets.io/v1/externalsecrets", None);
    assert!(
        es.iter().all(|e| e["status"]["conditions"].is_null()),
        "no operator, yet a status: {es:?}"
    );

    let operator = write_operator_layer(bed.dir());
    sync(&bed, &operator);
    // The flood gate: the store turns Ready only once the operator validated it; until
    // then its ExternalSecrets fail, and ESO retries them.
    let ready = |e: &Value| e["status"]["conditions"][0]["status"] == "True";
    let es = eventually(Duration::from_secs(30), "every ExternalSecret reconciled", || {
        let es = bed.list("/apis/external-secrets.io/v1/externalsecrets", None);
        let settled = es.iter().all(|e| e["status"]["conditions"].is_array())
            && es.iter().filter(|e| ready(e)).count() + 2 == es.len();
        settled.then_some(es)
    });
    let failed: Vec<&Value> = es.iter().filter(|e| !ready(e)).collect();
    assert_eq!(failed.len(), 2, "{es:?}");
    for e in &failed {
        assert_eq!(e["status"]["conditions"][0]["reason"], "SecretSyncedError");
        assert_eq!(
            e["status"]["conditions"][0]["message"],
            "could not get secret data from provider"
        );
    }
    let events = bed.list("/api/v1/namespaces/ameide/events", None);
    let warnings: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "Warning" && e["reason"] == "UpdateFailed")
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        warnings.iter().any(|m| m.contains("(key: ") && m.ends_with("Secret does not exist")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|m| m.contains("could not get ClusterSecretStore \"missing-store\"")),
        "{warnings:?}"
    );
    assert!(warnings.iter().any(|m| m.ends_with("\" is not ready")), "{warnings:?}");
    for e in es.iter().filter(|e| ready(e)) {
        let target = e["spec"]["target"]["name"].as_str().unwrap();
        assert!(
            bed.get(&format!("/api/v1/namespaces/ameide/secrets/{target}")).is_some(),
            "{target}"
        );
    }
}
