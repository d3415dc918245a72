//! Secrets never leave the cluster: what the tools and pods print is redacted in every
//! output of the real binaries, on the testbed. `vault-fail`'s Job echoes `vault
//! operator init` (unseal keys, root token) before failing; `gate-leak` test Pods print
//! the Postgres password (read from the cluster) and a private key; smoke runs under
//! nextest with a JUnit report. Each test asserts that none of the secrets appears in
//! stdout, stderr, the JSON summary, the log or the JUnit file, and that the words
//! around them do. A canary corpus of every secret shape, printed by a fake `tilt`, is
//! checked the same way without any cluster.

mod support;

use std::path::Path;
use std::process::Output;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use support::{Workspace, failure, layer, show, text};
use testbed::leaks::{GATE_LEAK_KEY, VAULT_ROOT_TOKEN, VAULT_UNSEAL_KEYS};
use testbed::real_tools::Toolset;
use testbed::world::World;
use xtask::bootstrap::summary::LayerStatus;
use xtask::error::Exit;

fn platform(world: &World) -> Workspace {
    Workspace::new(&[
        "timeouts = { cluster_ready = 60, layer_sync = 120, gate = 60, vault_bootstrap = 10, tilt_ready = 10 }",
    ])
    .with_infra()
    .for_world(world)
}

/// Fail naming the output and the secret's position, never printing the secret.
fn assert_absent(what: &str, output: &str, secrets: &[&str]) {
    for (i, secret) in secrets.iter().enumerate() {
        assert!(!output.contains(secret), "{what} holds secret #{i} (of {})", secrets.len());
    }
}

/// The body lines of the private key the `gate-leak` Pods print.
fn key_body() -> Vec<&'static str> {
    GATE_LEAK_KEY.lines().filter(|l| !l.starts_with("-----")).collect()
}

/// Run xtask in `world`; its output is shown only after it was checked for `secrets`.
fn xtask(ws: &Workspace, world: &World, args: &[&str], secrets: &[&str]) -> Output {
    let out = ws.command(world, args).output().unwrap();
    assert_absent(&format!("stdout of xtask {args:?}"), &text(&out.stdout), secrets);
    assert_absent(&format!("stderr of xtask {args:?}"), &text(&out.stderr), secrets);
    show(args, &out);
    out
}

#[test]
fn vault_init_output_of_a_failed_bootstrap_job_is_redacted_in_every_output() {
    vault_init_output_is_redacted(Toolset::Fake);
}

/// Real helm 3.17.2 and helmfile 0.166.0 carry the layers; the failing Job is the cluster's.
#[test]
fn vault_init_output_under_real_tools_is_redacted_in_every_output() {
    vault_init_output_is_redacted(Toolset::Helm3);
}

fn vault_init_output_is_redacted(tools: Toolset) {
    let Some(world) = support::tools_world(tools, &["vault-fail"]) else { return };
    let ws = platform(&world);
    let bootstrap = support::bootstrap_args(tools);
    let mut secrets: Vec<&str> = VAULT_UNSEAL_KEYS.to_vec();
    secrets.push(VAULT_ROOT_TOKEN);
    // The Vault token Secret's value, learned from the Job's env (`secretKeyRef`).
    secrets.push("ameide-local-root");

    let out = xtask(&ws, &world, &[&bootstrap[..], &["--format", "json"]].concat(), &secrets);
    assert_eq!(Exit::of(out.status), Exit::Failed);
    let summary = support::summary_of(&out);
    let failure = failure(&summary);
    assert_eq!(failure.layer.as_deref(), Some("15-secrets-certificates"), "{summary:?}");
    assert_eq!(layer(&summary, "15-secrets-certificates").status, LayerStatus::Failed);
    // The Job's log tail is there, with the words around the secrets.
    let message = &failure.message;
    assert!(message.contains("last lines of pod foundation-vault-bootstrap-"), "{message}");
    assert!(message.contains("Unseal Key 1: [redacted]"), "{message}");
    assert!(message.contains("Initial Root Token: [redacted]"), "{message}");
    let remediation = &failure.remediation;
    assert!(remediation.contains("Every failed attempt"), "{remediation}");
    assert!(remediation.contains("connection refused"), "the log tail: {remediation}");

    // The same on a terminal: the table on stdout, progress on stderr.
    let out = xtask(&ws, &world, &bootstrap, &secrets);
    assert_eq!(Exit::of(out.status), Exit::Failed);
    let table = text(&out.stdout);
    assert!(table.contains("Unseal Key 1: [redacted]"), "{table}");

    let log = std::fs::read_to_string(ws.log()).unwrap();
    assert_absent("the log", &log, &secrets);
    assert!(log.contains("Unseal Key 1: [redacted]"), "the log names the key line");
}

/// Every secret shape as a tool prints it: (line, the secret in it, what must stay).
const CANARY: &[(&str, &str, &str)] = &[
    (
        "Unseal Key 1: c4n4ryUnse4lK3yB4se64AAAAAAAAAAAAAAAAAAAAAAA=",
        "c4n4ryUnse4lK3y",
        "Unseal Key 1: [redacted]",
    ),
    (
        "Initial Root Token: hvs.c4n4ryR00tT0k3nAAAAAAA",
        "c4n4ryR00tT0k3n",
        "Initial Root Token: [redacted]",
    ),
    ("vault login s.c4n4ryL3g4cyT0k3nAAAAAAA", "c4n4ryL3g4cyT0k3n", "vault login [redacted]"),
    (
        "Authorization: Bearer c4n4ry_b34r3r_t0k3n_AAAA",
        "c4n4ry_b34r3r",
        "Authorization: Bearer [redacted]",
    ),
    (
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJjNG40cnkiOiJqd3QifQ.c4n4ryJwtS1gn4tur3",
        "c4n4ryJwtS1gn",
        "jwt [redacted]",
    ),
    ("PGPASSWORD=c4n4ry-pgpass psql", "c4n4ry-pgpass", "PGPASSWORD=[redacted] psql"),
    ("password: c4n4ry-yaml-pass", "c4n4ry-yaml-pass", "password: [redacted]"),
    ("token: c4n4ry-t0k3n-value", "c4n4ry-t0k3n-value", "token: [redacted]"),
    (
        "dial postgres://app:c4n4ry-urlpass@db:5432/app",
        "c4n4ry-urlpass",
        "postgres://app:[redacted]@db:5432/app",
    ),
    ("-----BEGIN RSA PRIVATE KEY-----", "", "-----BEGIN RSA PRIVATE KEY-----"),
    ("MIIEowIBAAKCAQEAc4n4ryPr1v4t3K3yL1n3AAAAAAAAAAAAAAAAAAAAAAAAAAAA", "c4n4ryPr1v4t3K3y", ""),
    ("AAAAAAAAAAAAAAAAAAAAc4n4ryS3c0ndL1n3AAAAAAAAAAAAAAAAAAAAAAAAAAAA", "c4n4ryS3c0ndL1n3", ""),
    ("-----END RSA PRIVATE KEY-----", "", "-----END RSA PRIVATE KEY-----"),
];

#[test]
fn a_canary_corpus_a_tool_prints_reaches_no_output() {
    // A `tilt` that prints every shape and exits: `cargo xtask tilt` shows the tail of
    // its log in the finding (table, JSON) and logs the finding.
    let bin = tempfile::tempdir().unwrap();
    let corpus: Vec<&str> = CANARY.iter().map(|(line, ..)| *line).collect();
    let script = format!("#!/bin/sh\ncat <<'EOF'\n{}\nEOF\nexit 1\n", corpus.join("\n"));
    let tilt = bin.path().join("tilt");
    std::fs::write(&tilt, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tilt, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = std::env::join_paths(
        std::iter::once(bin.path().to_path_buf())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    let port = format!("tilt_port = {}", support::free_port());
    let ws = Workspace::new(&[&port, "timeouts = { tilt_ready = 5 }"]);
    let secrets: Vec<&str> = CANARY.iter().map(|(_, s, _)| *s).filter(|s| !s.is_empty()).collect();
    let mut outputs = Vec::new();
    for format in ["human", "json"] {
        let out = ws
            .bare_command(&["tilt", "--format", format, "--log"])
            .arg(ws.log())
            .env("PATH", &path)
            .output()
            .unwrap();
        assert_eq!(Exit::of(out.status), Exit::Failed, "{}", text(&out.stderr));
        outputs.push((format!("stdout ({format})"), text(&out.stdout)));
        outputs.push((format!("stderr ({format})"), text(&out.stderr)));
    }
    outputs.push(("the log".into(), std::fs::read_to_string(ws.log()).unwrap()));
    for (what, output) in &outputs {
        assert_absent(what, output, &secrets);
    }
    let kept = |what: &str| outputs.iter().find(|(w, _)| w == what).map(|(_, o)| o).unwrap();
    for what in ["stdout (human)", "stdout (json)", "the log"] {
        for (line, _, stays) in CANARY {
            assert!(
                kept(what).contains(stays),
                "{what} lost {stays:?} of {line:?}: {}",
                kept(what)
            );
        }
    }
}

/// `cargo nextest run -p smoke` in `world` with a JUnit report (every trial's output
/// stored) under `dir`; its output and the report's text.
fn smoke_junit(ws: &Workspace, world: &World, dir: &Path) -> (Output, String) {
    let config = dir.join("nextest.toml");
    let store = dir.join("nextest");
    let toml = format!(
        "[store]\ndir = {store:?}\n\n[profile.redaction]\nfail-fast = false\n\n\
         [profile.redaction.junit]\npath = \"junit.xml\"\nstore-success-output = true\n\
         store-failure-output = true\n"
    );
    std::fs::write(&config, toml).unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = world.command(&cargo);
    cmd.args(["nextest", "run", "-p", "smoke", "--profile", "redaction", "--config-file"])
        .arg(&config)
        .arg("--manifest-path")
        .arg(support::repo_root().join("Cargo.toml"))
        .env("BOOTSTRAP_ROOT", ws.root())
        .env_remove("NEXTEST_PROFILE")
        .current_dir(ws.root());
    let out = cmd.output().unwrap();
    let junit = std::fs::read_to_string(store.join("redaction/junit.xml"))
        .unwrap_or_else(|e| panic!("no JUnit report ({e}): {}", text(&out.stderr)));
    (out, junit)
}

#[test]
fn the_postgres_password_is_in_no_output_log_or_junit_even_when_a_gate_prints_it() {
    postgres_password_is_in_no_output(Toolset::Fake);
}

/// Real helm 3.17.2 runs the leaking gate (and smoke's live gates): whatever it prints of
/// the Pod's log is redacted the same way.
#[test]
fn the_postgres_password_under_real_tools_is_in_no_output_log_or_junit() {
    postgres_password_is_in_no_output(Toolset::Helm3);
}

fn postgres_password_is_in_no_output(tools: Toolset) {
    let Some(world) = support::tools_world(tools, &[]) else { return };
    let ws = platform(&world);
    let out = xtask(&ws, &world, &support::bootstrap_args(tools), &[]);
    assert_eq!(Exit::of(out.status), Exit::Ok);

    // The password as the cluster holds it, and its base64 form.
    let kubectl = |args: &[&str]| -> Output {
        let out = world.command("kubectl").args(args).output().unwrap();
        assert!(out.status.success(), "kubectl {args:?}: {}", text(&out.stderr));
        out
    };
    let encoded = kubectl(&[
        "get",
        "secret",
        "-n",
        "ameide",
        "postgres-credentials",
        "-o",
        "jsonpath={.data.password}",
    ]);
    let encoded = text(&encoded.stdout).trim().to_owned();
    let password = String::from_utf8(STANDARD.decode(&encoded).unwrap()).unwrap();
    assert!(password.len() >= 8, "a password the redactor learns");
    let secrets = [password.as_str(), encoded.as_str()];
    let log = std::fs::read_to_string(ws.log()).unwrap();
    assert_absent("the log of a healthy bootstrap", &log, &secrets);

    let dir = tempfile::tempdir().unwrap();
    let (out, junit) = smoke_junit(&ws, &world, dir.path());
    assert_absent("smoke's stdout", &text(&out.stdout), &secrets);
    assert_absent("smoke's stderr", &text(&out.stderr), &secrets);
    assert_absent("smoke's JUnit report", &junit, &secrets);
    assert!(junit.contains("secrets::db_migrations"), "the trial that reads the password ran");

    // A gate whose test Pod prints the password and a private key: the bootstrap's
    // finding and log keep the words and lose the secrets.
    world.set("gate-leak=40-data-plane").unwrap();
    let mut leaked: Vec<&str> = secrets.to_vec();
    leaked.extend(key_body());
    let out = xtask(&ws, &world, &["sync", "40-data-plane", "--format", "json"], &leaked);
    assert_eq!(Exit::of(out.status), Exit::Failed);
    let summary = text(&out.stdout);
    assert!(summary.contains("`data-plane-smoke-postgres-ready` printed:"), "{summary}");
    assert!(summary.contains("tried password [redacted] from the environment"), "{summary}");
    let log = std::fs::read_to_string(ws.log()).unwrap();
    assert_absent("the log of the leaking gate", &log, &leaked);
    assert!(log.contains("PGPASSWORD=[redacted]"), "the shape is redacted in place");
    assert!(log.contains("tried password [redacted] from the environment"), "learned value");
    assert!(log.contains("-----BEGIN PRIVATE KEY-----[redacted]-----END PRIVATE KEY-----"));

    let (out, junit) = smoke_junit(&ws, &world, dir.path());
    assert_absent("smoke's stdout after the leak", &text(&out.stdout), &leaked);
    assert_absent("smoke's stderr after the leak", &text(&out.stderr), &leaked);
    assert_absent("smoke's JUnit report after the leak", &junit, &leaked);
    // Smoke's live gate ran the leaking test again; its message quotes the Pod's last lines.
    assert!(junit.contains("tried password [redacted] from the environment"), "{junit}");
}
