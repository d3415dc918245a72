//! The `smoke` checklist binary (package `smoke`) as the tests run it: built once per
//! test with `$CARGO test -p smoke --no-run --message-format=json` (the path comes from
//! the `compiler-artifact` line), executed with a world's environment and
//! `BOOTSTRAP_ROOT`, and judged by libtest-mimic's standard output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use testbed::world::World;

/// The fixture password of the sample platform's Postgres Secret
/// (infra/kubernetes/environments/local/postgres.yaml): never in smoke's output.
pub const POSTGRES_PASSWORD: &str = "ameide-local-postgres";

/// Every trial of the sample platform, as `--list` prints them.
pub const TRIALS: [&str; 16] = [
    "cluster::exists",
    "cluster::registry",
    "layers::10-bootstrap::bootstrap-smoke",
    "layers::15-secrets-certificates::secrets-certificates-smoke",
    "layers::20-core-operators::core-operators-smoke",
    "layers::22-control-plane::control-plane-smoke",
    "layers::24-auth::auth-smoke",
    "layers::40-data-plane::data-plane-smoke",
    "layers::45-data-plane-ext::data-plane-ext-smoke",
    "layers::50-product-services::product-services-smoke",
    "layers::60-qa::platform-smoke",
    "helm::releases_deployed",
    "secrets::external_secrets_ready",
    "secrets::vault_bootstrap",
    "secrets::db_migrations",
    "tilt::ready",
];

/// The smoke test executable, built (or found fresh) by cargo.
pub fn smoke_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["test", "-p", "smoke", "--no-run", "--message-format=json", "--manifest-path"])
        .arg(super::repo_root().join("Cargo.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building the smoke binary: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "smoke")
        .and_then(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo named no smoke test executable")
}

/// One run of the checklist: its exit status and, per trial, `ok`/`FAILED`/`ignored`
/// and the failure message.
pub struct Run {
    pub output: Output,
    pub outcomes: BTreeMap<String, String>,
    pub messages: BTreeMap<String, String>,
}

impl Run {
    pub fn new(output: Output) -> Run {
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        for stream in [&output.stdout, &output.stderr] {
            let text = String::from_utf8_lossy(stream);
            assert!(!text.contains(POSTGRES_PASSWORD), "smoke printed the Postgres password");
        }
        eprintln!(
            "smoke: {}\n--- stdout\n{stdout}--- stderr\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let mut outcomes = BTreeMap::new();
        let mut messages = BTreeMap::new();
        let mut lines = stdout.lines();
        while let Some(line) = lines.next() {
            if let Some(rest) = line.strip_prefix("test ")
                && let Some((name, outcome)) = rest.split_once(" ... ")
            {
                outcomes.insert(name.trim_end().to_owned(), outcome.trim().to_owned());
            } else if let Some(name) =
                line.strip_prefix("---- ").and_then(|l| l.strip_suffix(" ----"))
            {
                let message: Vec<&str> = lines.by_ref().take_while(|l| !l.is_empty()).collect();
                messages.insert(name.to_owned(), message.join("\n"));
            }
        }
        Run { output, outcomes, messages }
    }

    pub fn failed(&self) -> Vec<&str> {
        self.outcomes.iter().filter(|(_, o)| *o == "FAILED").map(|(n, _)| n.as_str()).collect()
    }

    pub fn message(&self, trial: &str) -> &str {
        self.messages.get(trial).map_or("", String::as_str)
    }
}

/// Smoke in `world` from the platform at `root`, with these variables set, on the trials
/// `filter` selects (all when empty).
pub fn run(
    world: &World,
    root: &Path,
    binary: &Path,
    env: &[(&str, &str)],
    filter: &[&str],
) -> Run {
    let out = world
        .command(binary)
        .args(["--color", "never"])
        .args(filter)
        .envs(env.iter().copied())
        .env("BOOTSTRAP_ROOT", root)
        .current_dir(root)
        .output()
        .unwrap();
    Run::new(out)
}

/// Every trial's outcome, all `ok`.
pub fn all_ok() -> BTreeMap<String, String> {
    TRIALS.iter().map(|t| (t.to_string(), "ok".to_owned())).collect()
}
