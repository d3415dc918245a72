//! `cargo xtask secrets` against the faithful testbed: a real fake-k3d cluster, the sample
//! platform's layers synced with the fake helmfile, the API server's controllers (Jobs,
//! the Vault bootstrap CronJob, the External Secrets operator only when installed), the
//! engine reading and writing the simulated API with kube.
//!
//! Worlds scale the cron minute to 2 s and the startup delay to 300 ms, so a CronJob
//! ticks every 2 s and each Vault bootstrap attempt takes about that long.

mod support;

use std::process::Output;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use support::{Workspace, failure, layer, show, synced_layers, text};
use testbed::manifests;
use testbed::real_tools::Toolset;
use testbed::world::{World, require_docker};
use xtask::bootstrap::run_plan::RunPlan;
use xtask::bootstrap::summary::LayerStatus;
use xtask::bootstrap::summary_json::SummaryDoc;
use xtask::error::Exit;
use xtask::outcome::Status;

/// The fixture password the sample platform's Postgres Secret holds
/// (infra/kubernetes/environments/local/postgres.yaml).
const POSTGRES_PASSWORD: &str = "ameide-local-postgres";
const CRONJOB: &str = "foundation-vault-bootstrap";

/// A world whose CronJobs tick every 2 s and whose Pods start in 300 ms, plus `scenarios`.
/// A workspace root of our own holding a copy of the sample platform.
struct Platform(Workspace);

support::wraps_workspace!(Platform);

impl Platform {
    /// Made for `world`'s slot.
    fn new(world: &World) -> Platform {
        let settings = "timeouts = { cluster_ready = 60, vault_bootstrap = 10, tilt_ready = 10 }";
        Platform(Workspace::new(&[settings]).with_infra().for_world(world))
    }

    fn xtask(&self, world: &World, args: &[&str]) -> Output {
        let out = self.command(world, args).output().unwrap();
        // What a user sees; safe to print only because the test asserts no secret is in it.
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(
            !stdout.contains(POSTGRES_PASSWORD) && !stderr.contains(POSTGRES_PASSWORD),
            "xtask {args:?} printed the Postgres password"
        );
        show(args, &out);
        out
    }

    fn json(&self, world: &World, args: &[&str]) -> (Exit, Value) {
        let out = self.xtask(world, &[args, &["--format", "json"]].concat());
        support::checked_json(args, &out)
    }

    /// [`Platform::json`] of `bootstrap` or `sync`, read as the summary (the shared
    /// `Workspace::summary` would run it without the password check).
    fn summary(&self, world: &World, args: &[&str]) -> (Exit, SummaryDoc) {
        let (code, json) = self.json(world, args);
        (code, support::typed(&json))
    }

    fn sync_file(&self, world: &World, file: &std::path::Path) {
        let out = world
            .command("helmfile")
            .arg("-f")
            .arg(file)
            .args(["-e", "local", "sync"])
            .current_dir(self.root())
            .output()
            .unwrap();
        assert!(out.status.success(), "helmfile sync {}: {}", file.display(), text(&out.stderr));
    }

    fn sync(&self, world: &World, layer: &str) {
        self.sync_file(world, &self.path(&format!("infra/kubernetes/helmfiles/{layer}.yaml")));
    }
}

/// The object as JSON from the real kubectl (never printed: it may hold secret data).
fn kubectl_get(world: &World, args: &[&str]) -> Option<Value> {
    let out = world.command("kubectl").arg("get").args(args).args(["-o", "json"]).output().unwrap();
    out.status.success().then(|| serde_json::from_slice(&out.stdout).unwrap())
}

fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "not within 60 s: {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The Vault bootstrap CronJob's Jobs, oldest first (by the scheduled minute in the name).
fn vault_jobs(world: &World) -> Vec<Value> {
    let list = kubectl_get(world, &["jobs", "-n", "vault"]).unwrap_or_default();
    let mut jobs: Vec<Value> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|j| j["metadata"]["ownerReferences"][0]["name"] == CRONJOB)
        .cloned()
        .collect();
    let minute = |j: &Value| {
        let name = j["metadata"]["name"].as_str().unwrap_or_default();
        name.rsplit('-').next().and_then(|m| m.parse::<u64>().ok()).unwrap_or(0)
    };
    jobs.sort_by_key(minute);
    jobs
}

fn job_condition(job: &Value, kind: &str) -> bool {
    job["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == kind && c["status"] == "True"))
}

/// Wait until the newest finished Vault bootstrap Job failed (`vault-fail` took over).
fn until_newest_vault_job_failed(world: &World) {
    eventually("a failed Vault bootstrap Job after the last success", || {
        let jobs = vault_jobs(world);
        let finished: Vec<&Value> = jobs
            .iter()
            .filter(|j| job_condition(j, "Complete") || job_condition(j, "Failed"))
            .collect();
        finished.last().is_some_and(|j| job_condition(j, "Failed")).then_some(())
    })
}

fn decoded(secret: &Value, key: &str) -> String {
    let encoded = secret["data"][key].as_str().unwrap_or_else(|| panic!("no key {key}"));
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()).unwrap()
}

/// The lines of `text` naming a failed attempt (`- Job vault/<cronjob>-N failed (...)`).
fn attempts_named(remediation: &str) -> Vec<String> {
    remediation
        .lines()
        .filter_map(|l| l.strip_prefix("- Job vault/"))
        .filter_map(|l| l.split_once(" failed (").map(|(job, _)| job.to_owned()))
        .collect()
}

#[test]
fn secrets_stage_writes_db_migrations_once_and_waits_through_failed_attempts() {
    if !require_docker() {
        return;
    }
    let world = support::fast_world(&[]);
    let platform = Platform::new(&world);
    assert!(platform.xtask(&world, &["cluster"]).status.success());

    // Before the layers: the CronJob is not there, and the message says which layer to sync.
    // A failed stage is the command's result (on stdout): the finding and what to do.
    let out = platform.xtask(&world, &["secrets"]);
    assert_eq!(Exit::of(out.status), Exit::Failed);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("CronJob vault/foundation-vault-bootstrap not found"), "{stdout}");
    assert!(stdout.contains("what to do: sync layer 15-secrets-certificates first"), "{stdout}");
    assert!(stdout.contains("cargo xtask sync 15-secrets-certificates"), "{stdout}");

    for layer in ["10-bootstrap", "15-secrets-certificates", "24-auth", "40-data-plane"] {
        platform.sync(&world, layer);
    }

    // Right after the sync no Job exists (the first comes at the next tick): the wait
    // covers it. Then: Vault bootstrapped, db-migrations-local created with the Flyway
    // keys, and the sample ships no ExternalSecret (said with a count).
    let out = platform.xtask(&world, &["secrets"]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(stdout.contains("Vault bootstrap Job vault/foundation-vault-bootstrap-"), "{stdout}");
    assert!(stdout.contains("Secret ameide/db-migrations-local created"), "{stdout}");
    assert!(stdout.contains("warning: 0 ExternalSecrets"), "{stdout}");
    let secret = kubectl_get(&world, &["secret", "-n", "ameide", "db-migrations-local"]).unwrap();
    let keys: Vec<&String> = secret["data"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["password", "url", "user"]);
    assert_eq!(
        decoded(&secret, "url"),
        "jdbc:postgresql://postgres.ameide.svc.cluster.local:5432/ameide"
    );
    assert_eq!(decoded(&secret, "user"), "ameide");
    assert!(decoded(&secret, "password") == POSTGRES_PASSWORD, "password differs");

    // Converged: nothing written, resourceVersion unchanged.
    let out = platform.xtask(&world, &["secrets"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("Secret ameide/db-migrations-local unchanged"));
    let again = kubectl_get(&world, &["secret", "-n", "ameide", "db-migrations-local"]).unwrap();
    assert_eq!(again["metadata"]["resourceVersion"], secret["metadata"]["resourceVersion"]);

    // The password is nowhere in the log either (plain or base64).
    let log = std::fs::read_to_string(platform.log()).unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(POSTGRES_PASSWORD);
    assert!(
        !log.contains(POSTGRES_PASSWORD) && !log.contains(&encoded),
        "the log holds the password"
    );
    assert!(log.contains("[secrets] Secret ameide/db-migrations-local unchanged"), "{log}");

    // vault-fail: every run of the CronJob fails. The wait goes on through the attempts
    // (the CronJob runs again at each tick) until the timeout, then the finding names the
    // newest failed Job with its log, and the remediation every attempt with its log.
    world.set("vault-fail").unwrap();
    until_newest_vault_job_failed(&world);
    let started = Instant::now();
    let (code, result) = platform.json(&world, &["secrets"]);
    assert_eq!(code, Exit::Failed);
    assert!(started.elapsed() >= Duration::from_secs(10), "gave up before the timeout");
    assert_eq!(result["status"], "failed", "{result}");
    let found = result["failure"]["found"].as_str().unwrap();
    assert!(found.starts_with("the Vault bootstrap did not succeed within 10s: "), "{found}");
    assert!(found.contains("Job vault/foundation-vault-bootstrap-"), "{found}");
    assert!(found.contains("failed (BackoffLimitExceeded"), "{found}");
    assert!(found.contains("connection refused"), "the pod log tail: {found}");
    let remediation = result["failure"]["remediation"].as_str().unwrap();
    assert!(remediation.contains("system:auth-delegator"), "{remediation}");
    let attempts = attempts_named(remediation);
    assert!(attempts.len() >= 2, "every attempt within 10 s (one per 2 s tick): {remediation}");
    let mut unique = attempts.clone();
    unique.dedup();
    assert_eq!(unique, attempts, "each attempt once, oldest first");
    assert_eq!(remediation.matches("connection refused").count(), attempts.len());

    // The bootstrap awaits Vault right after its layer: that layer fails, nothing later
    // is synced, and the failure names every attempt's Job.
    let before = world.calls().len();
    let (code, summary) = platform.summary(&world, &["bootstrap", "--no-tilt"]);
    assert_eq!(code, Exit::Failed);
    let failure = failure(&summary);
    assert_eq!(failure.stage, "layers", "{summary:?}");
    assert_eq!(failure.layer.as_deref(), Some("15-secrets-certificates"), "{summary:?}");
    let message = &failure.message;
    // At the timeout the newest attempt may have failed or still run: either way the
    // message names a Job of the CronJob and a failed attempt's log.
    assert!(message.contains("Job vault/foundation-vault-bootstrap-"), "{message}");
    assert!(message.contains("connection refused"), "the pod log tail: {message}");
    let remediation = &failure.remediation;
    assert!(remediation.contains("system:auth-delegator"), "{remediation}");
    assert!(attempts_named(remediation).len() >= 2, "{remediation}");
    assert_eq!(layer(&summary, "15-secrets-certificates").status, LayerStatus::Failed);
    assert_eq!(layer(&summary, "20-core-operators").status, LayerStatus::Skipped);
    assert_eq!(
        synced_layers(&world.calls()[before..]),
        ["10-bootstrap", "15-secrets-certificates"]
    );

    // Healthy again: the next tick's Job succeeds and the wait ends green, the failed
    // attempts it saw named as warnings.
    world.set("healthy").unwrap();
    let (code, result) = platform.json(&world, &["secrets"]);
    assert_eq!(code, Exit::Ok, "{result}");
}

#[test]
fn vault_flaky_bootstrap_converges_with_a_warning_naming_the_failed_attempt() {
    vault_flaky_bootstrap_converges(Toolset::Fake);
}

/// The same with real helm 3.17.2 and helmfile 0.166.0: the failed Job is the cluster's.
#[test]
fn vault_flaky_bootstrap_under_real_tools_converges_with_a_warning() {
    vault_flaky_bootstrap_converges(Toolset::Helm3);
}

fn vault_flaky_bootstrap_converges(tools: Toolset) {
    let Some(world) = support::tools_world(tools, &["vault-flaky"]) else { return };
    let platform = Platform::new(&world);
    let (code, summary) = platform.summary(&world, &support::bootstrap_args(tools));
    assert_eq!(code, Exit::Ok, "{summary:?}");
    let warnings = layer(&summary, "15-secrets-certificates").warnings.join("\n");
    // What came after depends on whether the wait's first look was before the retry
    // succeeded (a slow layer gate lets it come after): either is said.
    assert!(
        warnings.contains("Vault bootstrap attempt Job vault/foundation-vault-bootstrap-")
            && warnings.contains("failed (BackoffLimitExceeded")
            && (warnings.contains("runs a new Job at its next schedule tick")
                || warnings
                    .contains("a later Job of CronJob vault/foundation-vault-bootstrap succeeded")),
        "{warnings}"
    );
    let jobs = vault_jobs(&world);
    assert!(jobs.iter().any(|j| job_condition(j, "Failed")), "the first attempt failed");
    assert!(jobs.iter().any(|j| job_condition(j, "Complete")), "a later one succeeded");
}

/// A layer installing a chart named `external-secrets` whose Deployment carries the
/// upstream chart's selector label: the operator.
fn write_operator_layer(platform: &Platform) -> std::path::PathBuf {
    platform.write(
        "eso/charts/external-secrets/Chart.yaml",
        "apiVersion: v2\nname: external-secrets\nversion: 0.19.2\n",
    );
    platform.write(
        "eso/charts/external-secrets/templates/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: external-secrets\n  labels:\n    \
         app.kubernetes.io/name: external-secrets\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      \
         app.kubernetes.io/name: external-secrets\n  template:\n    metadata:\n      labels:\n        \
         app.kubernetes.io/name: external-secrets\n    spec:\n      containers: [{name: eso, image: eso}]\n",
    );
    platform.write(
        "eso/operator.yaml",
        "environments:\n  local: {}\n---\nreleases:\n  - name: external-secrets\n    namespace: external-secrets\n    \
         chart: ./charts/external-secrets\n",
    );
    platform.path("eso/operator.yaml")
}

#[test]
fn healthy_bootstrap_runs_secrets_and_tilt_stages_last() {
    if !require_docker() {
        return;
    }
    let world = support::fast_world(&[]);
    let platform = Platform::new(&world);
    // The slot's own Tilt port (the platform's `tilt_port`).
    let port = world.slot().tilt_port();

    // The plan names the secrets steps after their layers.
    let (code, printed) = platform.json(&world, &["bootstrap", "--plan"]);
    assert_eq!(code, Exit::Ok);
    let plan: RunPlan = support::typed(&printed);
    let then = |name: &str| layer(&plan, name).decision.as_ref().map(|d| d.then.clone());
    assert_eq!(then("15-secrets-certificates"), Some(vec!["await the Vault bootstrap Job".into()]));
    assert_eq!(then("40-data-plane"), Some(vec!["write Secret ameide/db-migrations-local".into()]));
    // Nothing follows it: no `then` at all (`typed` fails on a `then: []` the type omits).
    assert_eq!(then("24-auth"), Some(vec![]), "{:?}", layer(&plan, "24-auth"));

    // `sync` up to the data plane (no secrets stage): the Vault bootstrap is awaited after
    // its layer and db-migrations-local exists once 40-data-plane is done.
    assert!(platform.xtask(&world, &["cluster"]).status.success());
    let upto = ["10-bootstrap", "15-secrets-certificates", "20-core-operators"];
    let upto = [&upto[..], &["22-control-plane", "24-auth", "40-data-plane"]].concat();
    let (code, _) = platform.summary(&world, &[&["sync"], &upto[..]].concat());
    assert_eq!(code, Exit::Ok);
    let written = kubectl_get(&world, &["secret", "-n", "ameide", "db-migrations-local"])
        .expect("db-migrations-local written after 40-data-plane");
    assert_eq!(decoded(&written, "user"), "ameide");

    // An ExternalSecret applied with plain kubectl (its CRDs too), no operator installed.
    support::kubectl_apply(&world, manifests::ESO_CRDS);
    let keycloak_admin = manifests::keycloak_external_secret("keycloak-admin", "admin");
    support::kubectl_apply(&world, &format!("{}---\n{keycloak_admin}", manifests::VAULT_STORE));

    // The full bootstrap runs both steps once, after their (now unchanged) layers; the
    // secrets stage does not redo them, and it passes with a warning naming the missing
    // controller and the ExternalSecret it cannot check.
    let (code, summary) = platform.summary(&world, &["bootstrap"]);
    assert_eq!(code, Exit::Ok, "{summary:?}");
    let stages: Vec<(&str, Status)> =
        summary.stages.iter().map(|s| (s.name.as_str(), s.status)).collect();
    for name in ["cluster", "charts", "layers", "secrets", "tilt"] {
        assert!(stages.contains(&(name, Status::Ok)), "{name} not ok: {stages:?}");
    }
    assert_eq!(stages.last().unwrap().0, "tilt");
    let secrets = summary.stages.iter().find(|s| s.name == "secrets");
    let warnings = secrets.unwrap().warnings.join("\n");
    assert!(warnings.contains("no External Secrets Operator runs"), "{warnings}");
    assert!(warnings.contains("ameide/keycloak-admin"), "{warnings}");
    assert!(warnings.contains("cargo xtask vendor add external-secrets"), "{warnings}");
    assert!(xtask::tilt::probe_blocking(port).is_ready());
    let secret = kubectl_get(&world, &["secret", "-n", "ameide", "db-migrations-local"]).unwrap();
    assert_eq!(decoded(&secret, "user"), "ameide");
    assert_eq!(secret["metadata"]["resourceVersion"], written["metadata"]["resourceVersion"]);
    let log = std::fs::read_to_string(platform.log()).unwrap();
    assert!(!log.contains(POSTGRES_PASSWORD), "the log holds the password");
    // Once by `sync`, once by the bootstrap (after the unchanged layer), not by the stage.
    let lines = |text: &str| log.lines().filter(|l| l.contains(text)).count();
    assert_eq!(lines("[secrets] Secret ameide/db-migrations-local created"), 1, "{log}");
    assert_eq!(lines("[secrets] Secret ameide/db-migrations-local unchanged"), 1, "{log}");
    assert_eq!(lines("[secrets] Vault bootstrap Job vault/"), 2, "{log}");
    // Nothing reconciles it: never a Ready condition.
    let es = kubectl_get(&world, &["externalsecret", "-n", "ameide", "keycloak-admin"]).unwrap();
    assert!(es["status"]["conditions"].is_null(), "no operator, yet a status: {es}");

    // With the operator installed and the provider missing the key: the ExternalSecret
    // fails, and the key comes from ESO's Warning Event (its condition message is generic).
    world.set("secret-missing-key").unwrap();
    platform.sync_file(&world, &write_operator_layer(&platform));
    eventually("the operator reconciled the ExternalSecret", || {
        let es = kubectl_get(&world, &["externalsecret", "-n", "ameide", "keycloak-admin"])?;
        es["status"]["conditions"].is_array().then_some(())
    });
    let (code, result) = platform.json(&world, &["secrets"]);
    assert_eq!(code, Exit::Failed, "{result}");
    assert_eq!(result["failure"]["subject"], "ExternalSecrets", "{result}");
    let found = result["failure"]["found"].as_str().unwrap();
    assert!(found.contains("1 of 1 ExternalSecrets not Ready"), "{found}");
    assert!(found.contains("ExternalSecret ameide/keycloak-admin is not Ready"), "{found}");
    assert!(found.contains("could not get secret data from provider"), "{found}");
    assert!(found.contains("event UpdateFailed: error processing spec.data[0]"), "{found}");
    assert!(found.contains("missing remote key(s): keycloak/admin"), "{found}");
    let remediation = result["failure"]["remediation"].as_str().unwrap();
    assert!(remediation.contains("seed keycloak/admin"), "{remediation}");
    assert!(remediation.contains("kubectl describe externalsecret -n ameide keycloak-admin"));

    // --no-tilt leaves the stage out (and the failing ExternalSecret fails the bootstrap:
    // the key is still missing; ESO retries, so once it exists the ExternalSecret syncs).
    let (code, summary) = platform.summary(&world, &["bootstrap", "--no-tilt"]);
    assert_eq!(code, Exit::Failed, "{summary:?}");
    assert!(!summary.stages.iter().any(|s| s.name == "tilt"), "{summary:?}");
}

/// ESO's flood gate: a store that stays not Ready fails the secrets stage, after its
/// bounded wait, naming the store and its condition's message; made Ready within the
/// wait, the stage waits for it and then for the ExternalSecret, and passes.
#[test]
fn a_store_held_not_ready_fails_the_secrets_stage_and_one_made_ready_passes() {
    if !require_docker() {
        return;
    }
    let world = support::fast_world(&["store-not-ready=vault-local"]);
    let platform = Platform::new(&world);
    // The platform's timeouts are an inline table: `external_secrets` goes last in it.
    let timeout = |secs: u32| {
        move |text: String| {
            let text = text
                .replace(", external_secrets = 6 }", " }")
                .replace(", external_secrets = 60 }", " }");
            assert!(text.contains("tilt_ready = 10 }"), "{text}");
            text.replace(
                "tilt_ready = 10 }",
                &format!("tilt_ready = 10, external_secrets = {secs} }}"),
            )
        }
    };
    platform.edit("Cargo.toml", timeout(6));
    assert!(platform.xtask(&world, &["cluster"]).status.success());
    let upto = ["10-bootstrap", "15-secrets-certificates", "20-core-operators"];
    let upto = [&upto[..], &["22-control-plane", "24-auth", "40-data-plane"]].concat();
    let (code, _) = platform.summary(&world, &[&["sync"], &upto[..]].concat());
    assert_eq!(code, Exit::Ok);
    support::kubectl_apply(&world, manifests::ESO_CRDS);
    let keycloak_admin = manifests::keycloak_external_secret("keycloak-admin", "admin");
    support::kubectl_apply(&world, &format!("{}---\n{keycloak_admin}", manifests::VAULT_STORE));
    platform.sync_file(&world, &write_operator_layer(&platform));
    eventually("the operator judged the store", || {
        let store = kubectl_get(&world, &["clustersecretstore", "vault-local"])?;
        store["status"]["conditions"].is_array().then_some(())
    });

    let started = Instant::now();
    let (code, result) = platform.json(&world, &["secrets"]);
    assert_eq!(code, Exit::Failed, "{result}");
    assert!(started.elapsed() >= Duration::from_secs(6), "the wait is bounded, not skipped");
    assert_eq!(result["failure"]["subject"], "secret stores", "{result}");
    let found = result["failure"]["found"].as_str().unwrap();
    assert!(
        found.contains(
            "ClusterSecretStore vault-local is not Ready: InvalidProviderConfig: unable to validate store"
        ),
        "{found}"
    );
    let remediation = result["failure"]["remediation"].as_str().unwrap();
    assert!(
        remediation.contains("kubectl describe clustersecretstore vault-local"),
        "{remediation}"
    );
    let log = std::fs::read_to_string(platform.log()).unwrap();
    assert!(log.contains("waiting for 1 secret store(s) to be Ready"), "the wait is visible");

    // Made Ready while the stage waits: it waits for the store, then the ExternalSecret.
    platform
        .edit("Cargo.toml", |text| text.replace("external_secrets = 6", "external_secrets = 60"));
    let fix = {
        let world_dir = world.dir().to_owned();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(3));
            let mut s = testbed::scenario::Scenario::load(&world_dir).unwrap();
            s.store_not_ready.clear();
            s.save(&world_dir).unwrap();
        })
    };
    let (code, result) = platform.json(&world, &["secrets"]);
    fix.join().unwrap();
    assert_eq!(code, Exit::Ok, "{result}");
    let es = kubectl_get(&world, &["externalsecret", "-n", "ameide", "keycloak-admin"]).unwrap();
    assert_eq!(es["status"]["conditions"][0]["status"], "True", "{es}");
}
