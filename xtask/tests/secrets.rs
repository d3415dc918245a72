//! `cargo xtask secrets` against the testbed: a real fake-k3d cluster, the sample
//! platform's layers synced with the fake helmfile, the engine reading and writing the
//! simulated API with kube.

mod support;

use std::process::Output;

use base64::Engine as _;
use serde_json::Value;
use support::{Workspace, layer, show, synced_layers, text};
use testbed::world::{World, WorldOptions, require_docker};

/// The fixture password the sample platform's Postgres Secret holds
/// (infra/kubernetes/environments/local/postgres.yaml).
const POSTGRES_PASSWORD: &str = "ameide-local-postgres";

/// A workspace root of our own holding a copy of the sample platform.
struct Platform(Workspace);

support::wraps_workspace!(Platform);

impl Platform {
    fn new() -> Platform {
        let settings = "timeouts = { cluster_ready = 60, vault_bootstrap = 10 }";
        Platform(Workspace::new(&[settings]).with_infra())
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

    fn sync(&self, world: &World, layer: &str) {
        let file = self.path(&format!("infra/kubernetes/helmfiles/{layer}.yaml"));
        let out = world
            .command("helmfile")
            .arg("-f")
            .arg(file)
            .args(["-e", "local", "sync"])
            .current_dir(self.root())
            .output()
            .unwrap();
        assert!(out.status.success(), "helmfile sync {layer}: {}", text(&out.stderr));
    }
}

/// The object as JSON from the real kubectl (never printed: it may hold secret data).
fn kubectl_get(world: &World, args: &[&str]) -> Option<Value> {
    let out = world.command("kubectl").arg("get").args(args).args(["-o", "json"]).output().unwrap();
    out.status.success().then(|| serde_json::from_slice(&out.stdout).unwrap())
}

fn decoded(secret: &Value, key: &str) -> String {
    let encoded = secret["data"][key].as_str().unwrap_or_else(|| panic!("no key {key}"));
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()).unwrap()
}

#[test]
fn secrets_stage_writes_db_migrations_once_and_names_what_fails() {
    if !require_docker() {
        return;
    }
    let world = World::up(WorldOptions::default()).unwrap();
    let platform = Platform::new();
    assert!(platform.xtask(&world, &["cluster"]).status.success());

    // Before the layers: the CronJob is not there, and the message says which layer to sync.
    // A failed stage is the command's result (on stdout): the finding and what to do.
    let out = platform.xtask(&world, &["secrets"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("CronJob vault/foundation-vault-bootstrap not found"), "{stdout}");
    assert!(stdout.contains("what to do: sync layer 15-secrets-certificates first"), "{stdout}");
    assert!(stdout.contains("cargo xtask sync 15-secrets-certificates"), "{stdout}");

    for layer in ["10-bootstrap", "15-secrets-certificates", "24-auth", "40-data-plane"] {
        platform.sync(&world, layer);
    }

    // Healthy: Vault bootstrapped, db-migrations-local created with the Flyway keys,
    // every ExternalSecret Ready.
    let out = platform.xtask(&world, &["secrets"]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(stdout.contains("Vault bootstrap Job vault/foundation-vault-bootstrap-"), "{stdout}");
    assert!(stdout.contains("Secret ameide/db-migrations-local created"), "{stdout}");
    assert!(stdout.contains("2 ExternalSecrets Ready"), "{stdout}");
    let secret = kubectl_get(&world, &["secret", "-n", "ameide", "db-migrations-local"]).unwrap();
    let keys: Vec<&String> = secret["data"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["password", "url", "user"]);
    assert_eq!(
        decoded(&secret, "url"),
        "jdbc:postgresql://postgres.ameide.svc.cluster.local:5432/ameide"
    );
    assert_eq!(decoded(&secret, "user"), "ameide");
    assert!(decoded(&secret, "password") == POSTGRES_PASSWORD, "password differs");
    let managers: Vec<&str> = secret["metadata"]["managedFields"]
        .as_array()
        .map(|m| m.iter().filter_map(|f| f["manager"].as_str()).collect())
        .unwrap_or_default();
    assert!(managers.is_empty() || managers.contains(&"cargo-xtask-bootstrap"), "{managers:?}");

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

    // vault-fail: a new run of the CronJob fails; the error names the Job and its log.
    world.set("vault-fail").unwrap();
    platform.sync(&world, "15-secrets-certificates");
    let out = platform.xtask(&world, &["secrets"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("Vault bootstrap Job vault/foundation-vault-bootstrap-"), "{stdout}");
    assert!(stdout.contains("failed (BackoffLimitExceeded"), "{stdout}");
    assert!(stdout.contains("connection refused"), "the pod log tail: {stdout}");
    assert!(stdout.contains("system:auth-delegator"), "the remediation: {stdout}");

    // The bootstrap awaits Vault right after its layer: that layer fails, nothing later
    // is synced.
    let before = world.calls().len();
    let out = platform.xtask(&world, &["bootstrap", "--format", "json", "--no-tilt"]);
    assert_eq!(out.status.code(), Some(1));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let failure = &summary["failure"];
    assert_eq!(failure["stage"], "layers", "{summary}");
    assert_eq!(failure["layer"], "15-secrets-certificates", "{summary}");
    let message = failure["message"].as_str().unwrap();
    assert!(message.contains("Vault bootstrap Job vault/foundation-vault-bootstrap-"), "{message}");
    assert!(message.contains("connection refused"), "the pod log tail: {message}");
    assert!(failure["remediation"].as_str().unwrap().contains("system:auth-delegator"));
    assert_eq!(layer(&summary, "15-secrets-certificates")["status"], "failed");
    assert_eq!(layer(&summary, "20-core-operators")["status"], "skipped");
    assert_eq!(
        synced_layers(&world.calls()[before..]),
        ["10-bootstrap", "15-secrets-certificates"]
    );

    // secret-missing-key: the next run of the CronJob succeeds, one ExternalSecret does not.
    world.set("healthy").unwrap();
    world.set("secret-missing-key").unwrap();
    platform.sync(&world, "15-secrets-certificates");
    platform.sync(&world, "24-auth");
    let out = platform.xtask(&world, &["secrets", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["status"], "failed", "{result}");
    assert_eq!(result["failure"]["subject"], "ExternalSecrets", "{result}");
    let found = result["failure"]["found"].as_str().unwrap();
    assert!(found.contains("1 of 2 ExternalSecrets not Ready"), "{found}");
    assert!(found.contains("ExternalSecret ameide/keycloak-"), "{found}");
    assert!(found.contains("SecretSyncedError"), "{found}");
    assert!(found.contains("missing remote key(s): keycloak/"), "{found}");
    let remediation = result["failure"]["remediation"].as_str().unwrap();
    assert!(remediation.contains("kubectl describe externalsecret -n ameide keycloak-"));
}

#[test]
fn healthy_bootstrap_runs_secrets_and_tilt_stages_last() {
    if !require_docker() {
        return;
    }
    let world = World::up(WorldOptions::default()).unwrap();
    let platform = Platform::new();
    let port = support::free_port();
    let manifest = platform.path("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let text = text.replace(
        "[workspace.metadata.bootstrap]\n",
        &format!("[workspace.metadata.bootstrap]\ntilt_port = {port}\n"),
    );
    std::fs::write(
        &manifest,
        text.replace("vault_bootstrap = 10", "vault_bootstrap = 10, tilt_ready = 10"),
    )
    .unwrap();

    // The plan names the secrets steps after their layers.
    let out = platform.xtask(&world, &["bootstrap", "--plan", "--format", "json"]);
    assert!(out.status.success());
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let then = |name: &str| layer(&summary, name)["then"].clone();
    assert_eq!(
        then("15-secrets-certificates"),
        serde_json::json!(["await the Vault bootstrap Job"])
    );
    assert_eq!(
        then("40-data-plane"),
        serde_json::json!(["write Secret ameide/db-migrations-local"])
    );
    assert!(then("24-auth").is_null(), "{}", layer(&summary, "24-auth"));
    // Vault's layer not selected: the secrets stage would await it instead.
    let out = platform.xtask(&world, &["bootstrap", "--plan", "--from", "24-auth"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("would await the Vault bootstrap Job, check ExternalSecrets"),
        "{table}"
    );

    // `sync` up to the data plane (no secrets stage): the Vault bootstrap is awaited after
    // its layer and db-migrations-local exists once 40-data-plane is done.
    assert!(platform.xtask(&world, &["cluster"]).status.success());
    let upto = ["10-bootstrap", "15-secrets-certificates", "20-core-operators"];
    let upto = [&upto[..], &["22-control-plane", "24-auth", "40-data-plane"]].concat();
    let out = platform.xtask(&world, &[&["sync"], &upto[..], &["--format", "json"]].concat());
    assert!(out.status.success());
    let written = kubectl_get(&world, &["secret", "-n", "ameide", "db-migrations-local"])
        .expect("db-migrations-local written after 40-data-plane");
    assert_eq!(decoded(&written, "user"), "ameide");

    // The full bootstrap runs both steps once, after their (now unchanged) layers; the
    // secrets stage does not redo them.
    let out = platform.xtask(&world, &["bootstrap", "--format", "json"]);
    assert!(out.status.success());
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let stages: Vec<(&str, &str)> = summary["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    for name in ["cluster", "charts", "layers", "secrets", "tilt"] {
        assert!(stages.contains(&(name, "ok")), "{name} not ok: {stages:?}");
    }
    assert_eq!(stages.last().unwrap().0, "tilt");
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
    assert!(log.contains("[gaps] "), "no gap log block: {log}");

    // --no-tilt leaves the stage out.
    let out = platform.xtask(&world, &["bootstrap", "--format", "json", "--no-tilt"]);
    assert!(out.status.success());
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!summary["stages"].as_array().unwrap().iter().any(|s| s["name"] == "tilt"));
}
