//! The `smoke` checklist binary (package `smoke`) run against testbed worlds: it must
//! pass every trial on a healthy platform, fail exactly the broken gate's trial with a
//! message a user can act on, and list its trials with no cluster and no Docker at all.
//! How the binary is built, run and judged: `support/smoke.rs`.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::smoke::{self, Run, TRIALS, smoke_binary};
use support::{Workspace, helm_tests};
use testbed::manifests;
use testbed::world::{World, WorldOptions, require_docker, testbed_bin};
use xtask::error::Exit;

/// A workspace root of our own holding a copy of the repository's infra/.
struct Platform(Workspace);

support::wraps_workspace!(Platform);

impl Platform {
    fn new() -> Platform {
        Platform(
            Workspace::new(&[
                // The smoke binary finds the log (and tilt.log beside it) through the settings:
                // the one every xtask run is given with `--log`.
                "log = \"logs/setup.log\"",
                "timeouts = { cluster_ready = 60, layer_sync = 120, gate = 60, vault_bootstrap = 30, tilt_ready = 30 }",
            ])
            .with_infra(),
        )
    }

    /// Made for `world`'s slot.
    fn for_world(self, world: &World) -> Platform {
        Platform(self.0.for_world(world))
    }

    /// Run in `world`; it must succeed.
    fn xtask(&self, world: &World, args: &[&str]) {
        let out = self.0.xtask(world, args);
        assert!(out.status.success(), "xtask {args:?}: {}", out.status);
    }

    /// A fake tool of the world (`helm`, `helmfile`), run from the platform root.
    fn tool(&self, world: &World, tool: &str, args: &[&str]) -> Output {
        let out = world.command(tool).args(args).current_dir(self.root()).output().unwrap();
        eprintln!(
            "{tool} {args:?}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Wait until the newest finished Job of the Vault bootstrap CronJob failed.
    fn until_newest_vault_job_failed(&self, world: &World) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let holds = |job: &Value, kind: &str| {
            job["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["type"] == kind && c["status"] == "True"))
        };
        loop {
            let args = ["get", "jobs", "-n", "vault", "-o", "json"];
            let out =
                world.command("kubectl").args(args).current_dir(self.root()).output().unwrap();
            let list: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let mut finished: Vec<(u64, bool)> = list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|j| holds(j, "Complete") || holds(j, "Failed"))
                .filter_map(|j| {
                    let name = j["metadata"]["name"].as_str()?;
                    let minute = name.strip_prefix("foundation-vault-bootstrap-")?.parse().ok()?;
                    Some((minute, holds(j, "Failed")))
                })
                .collect();
            finished.sort();
            if finished.last().is_some_and(|(_, failed)| *failed) {
                return;
            }
            assert!(Instant::now() < deadline, "no failed Vault bootstrap Job within 60 s");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn smoke(&self, world: &World, binary: &Path) -> Run {
        self.smoke_with(world, binary, &[], &[])
    }

    /// Smoke with these variables set, on the trials `filter` selects (all when empty).
    fn smoke_with(
        &self,
        world: &World,
        binary: &Path,
        env: &[(&str, &str)],
        filter: &[&str],
    ) -> Run {
        smoke::run(world, self.root(), binary, env, filter)
    }
}

#[test]
fn listing_needs_no_cluster_and_a_check_that_cannot_run_says_why() {
    let binary = smoke_binary();
    // Layer 45 is a Go template: smoke reads its releases with `helmfile build`. A PATH
    // with the testbed's helmfile and nothing else the machine happens to have.
    let tools = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(testbed_bin().unwrap(), tools.path().join("helmfile")).unwrap();
    let no_tools = tempfile::tempdir().unwrap();
    let run_with_path = |path: &Path, args: &[&str]| {
        Command::new(&binary)
            .args(args)
            .args(["--color", "never"])
            .env("PATH", path)
            .env("BOOTSTRAP_ROOT", support::repo_root())
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .output()
            .unwrap()
    };
    let offline = |args: &[&str]| run_with_path(tools.path(), args);
    let listed = |out: &Output| -> Vec<String> {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_suffix(": test").map(str::to_owned))
            .collect()
    };

    assert_eq!(listed(&offline(&["--list"])), TRIALS);

    // Without helmfile the template layer's gates cannot be known: one trial says so.
    let unread = "layers::45-data-plane-ext::releases";
    let without_helmfile = listed(&run_with_path(no_tools.path(), &["--list"]));
    assert!(without_helmfile.iter().any(|t| t == unread), "{without_helmfile:?}");
    let run = Run::new(run_with_path(no_tools.path(), &["--exact", unread]));
    let message = run.message(unread);
    assert!(message.contains("helmfile"), "{message}");

    // No cluster: each check fails, saying it could not check and why.
    let run = Run::new(offline(&["cluster::"]));
    assert_eq!(Exit::of(run.output.status), Exit::Other(Some(101)));
    assert_eq!(run.failed(), ["cluster::exists", "cluster::registry"]);
    let message = run.message("cluster::exists");
    assert!(message.starts_with("expected: k3d cluster `ameide` running"), "{message}");
    assert!(
        message.contains("found: could not check: the Docker daemon is unreachable"),
        "{message}"
    );
    assert!(message.contains("remediation: start Docker"), "{message}");

    let run = Run::new(offline(&["--exact", "layers::24-auth::auth-smoke"]));
    assert_eq!(run.failed(), ["layers::24-auth::auth-smoke"]);
    let message = run.message("layers::24-auth::auth-smoke");
    assert!(
        message.contains("found: could not check: kube context `k3d-ameide` is not usable"),
        "{message}"
    );
    assert!(message.contains("remediation: make sure the cluster runs"), "{message}");
}

#[test]
fn healthy_platform_passes_every_trial_and_broken_ones_fail_alone() {
    if !require_docker() {
        return;
    }
    let binary = smoke_binary();
    // CronJobs tick every 2 s (the Vault bootstrap re-runs that often), Pods start in 300 ms.
    let scenarios = vec!["cron-minute-ms=2000".to_owned(), "startup-ms=300".to_owned()];
    let world = World::up(WorldOptions { scenarios, ..WorldOptions::default() }).unwrap();
    let platform = Platform::new().for_world(&world);
    platform.xtask(&world, &["bootstrap"]);
    // Idempotent when bootstrap already ran these stages.
    platform.xtask(&world, &["secrets"]);
    platform.xtask(&world, &["tilt"]);

    // Healthy: every trial passes.
    let run = platform.smoke(&world, &binary);
    assert!(run.output.status.success());
    assert_eq!(run.outcomes, smoke::all_ok());

    // Layer 24's Helm test breaks after the bootstrap, with no re-sync. The recorded
    // verdict is still the bootstrap's (passed); a live run finds the break, and only it,
    // with its own `helm test` calls.
    world.set("gate-fail=24-auth").unwrap();
    let auth = "layers::24-auth::auth-smoke";
    let recorded = platform.smoke_with(&world, &binary, &[("SMOKE_GATES", "recorded")], &[]);
    assert!(recorded.output.status.success(), "{:?}", recorded.outcomes);
    let tests_before = helm_tests(&world.calls());
    let run = platform.smoke(&world, &binary);
    assert_eq!(Exit::of(run.output.status), Exit::Other(Some(101)));
    assert_eq!(run.failed(), [auth]);
    assert_eq!(helm_tests(&world.calls()) - tests_before, 9, "one fresh `helm test` per gate");
    let message = run.message(auth);
    assert!(message.starts_with("expected: every test hook Succeeded"), "{message}");
    assert!(message.contains("found: ") && message.contains("Failed"), "{message}");
    let remediation = message.lines().find(|l| l.starts_with("remediation: ")).unwrap_or_default();
    assert!(remediation.contains("test hook `auth-smoke-"), "{message}");
    assert!(remediation.contains("kubectl logs -n ameide"), "{message}");
    assert!(remediation.contains("helm test auth-smoke -n ameide"), "{message}");

    // Healthy again. A live gate never runs beside a command that changes the platform:
    // at once it refuses, naming it; given time it waits, says so, and runs when it ends.
    world.set("healthy").unwrap();
    let held = xtask::lock::RunLock::acquire(platform.root(), "bootstrap").unwrap();
    let refused =
        platform.smoke_with(&world, &binary, &[("SMOKE_LOCK_WAIT", "0")], &["--exact", auth]);
    assert_eq!(refused.failed(), [auth]);
    let message = refused.message(auth);
    assert!(
        message.contains("refused: pid ") && message.contains("`cargo xtask bootstrap`"),
        "{message}"
    );
    assert!(message.contains("SMOKE_GATES=recorded"), "{message}");
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        drop(held);
    });
    let waited =
        platform.smoke_with(&world, &binary, &[("SMOKE_LOCK_WAIT", "60")], &["--exact", auth]);
    release.join().unwrap();
    assert!(waited.output.status.success(), "{:?}", waited.outcomes);
    let stderr = String::from_utf8_lossy(&waited.output.stderr);
    assert!(stderr.contains("waiting up to 60s for pid "), "{stderr}");

    // The sample ships no ExternalSecret (no operator is installed). One applied with plain
    // kubectl (its CRD too) is never reconciled: the trial passes with a warning that names
    // the missing controller and the ExternalSecret, not a not-Ready failure.
    support::kubectl_apply(&world, manifests::ESO_CRDS);
    support::kubectl_apply(&world, &manifests::keycloak_external_secret("keycloak-admin", "admin"));
    let run = platform.smoke(&world, &binary);
    assert!(run.output.status.success(), "{:?}", run.outcomes);
    let stderr = String::from_utf8_lossy(&run.output.stderr);
    assert!(stderr.contains("no External Secrets Operator runs"), "{stderr}");
    assert!(stderr.contains("ameide/keycloak-admin"), "{stderr}");

    // db-migrations-local is gone: its trial fails, naming the Secret and the command.
    let deleted = platform.tool(
        &world,
        "kubectl",
        &["delete", "secret", "-n", "ameide", "db-migrations-local"],
    );
    assert!(deleted.status.success());
    let run = platform.smoke(&world, &binary);
    assert_eq!(run.failed(), ["secrets::db_migrations"]);
    let message = run.message("secrets::db_migrations");
    assert!(message.contains("found: Secret ameide/db-migrations-local not found"), "{message}");
    assert!(message.contains("remediation: `cargo xtask secrets`"), "{message}");

    // The Vault bootstrap CronJob's runs fail from now on: once the newest finished Job
    // failed, its trial names the Job, its pod's log tail, that the CronJob runs again
    // (smoke asks once, it does not wait) and what to do. Smoke only reads: the bootstrap
    // log is left as it was.
    world.set("vault-fail").unwrap();
    platform.until_newest_vault_job_failed(&world);
    let log = platform.path("logs/setup.log");
    let log_before = std::fs::read_to_string(&log).unwrap();
    let run = platform.smoke(&world, &binary);
    assert!(run.failed().contains(&"secrets::vault_bootstrap"), "{:?}", run.outcomes);
    let message = run.message("secrets::vault_bootstrap");
    assert!(message.contains("found: Job vault/foundation-vault-bootstrap-"), "{message}");
    assert!(message.contains("failed (BackoffLimitExceeded"), "{message}");
    assert!(message.contains("connection refused"), "the pod log tail: {message}");
    assert!(message.contains("system:auth-delegator"), "the remediation: {message}");
    assert!(
        message.contains("runs a new Job at its next schedule tick")
            || message.contains("is still running; the previous attempt Job vault/"),
        "a retry is pending: {message}"
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap(), log_before, "smoke wrote to the log");
}
