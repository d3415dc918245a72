//! The real-tools tier: the layer cycle carried out by real helm and real helmfile
//! (`testbed::real_tools`: helm 3.17.2 or 4.1.4 with helmfile 0.166.0, as
//! `.ci/install-real-tools` installs them) against the testbed's cluster. Syncs, waits,
//! `helm test` gates and release records are the real tools' own; the scenarios reach
//! them through the cluster (test Pods that fail, a database slow to turn Ready), never
//! through a fake binary. Here: a full bootstrap per helm major, a converged re-run, the
//! live smoke checklist, a timed passing `helm test`, a bundle on and off (the real
//! helmfile renders the `.gotmpl` layer), a failing gate, a session `kill -9`ed mid-install
//! and recovered, and helm 4 with helmfile 0.166 refused. Other files run their own walks
//! with `Toolset::Helm3` beside the fakes (see tests/README.md).

mod support;

use std::time::Instant;

use serde_json::Value;
use support::{LAYERS, Workspace, failure, helm_list, layer, smoke, synced_layers};
use testbed::calls::mutating;
use testbed::procs;
use testbed::real_tools::{self, Toolset};
use testbed::world::{World, WorldOptions, require_docker};
use xtask::bootstrap::summary::LayerStatus;
use xtask::bootstrap::summary_json::SummaryDoc;
use xtask::error::Exit;
use xtask::layers::GateStatus;

fn world(tools: Toolset, extra: &[&str]) -> Option<World> {
    if !require_docker() || !real_tools::require(tools) {
        return None;
    }
    let mut scenarios = vec!["startup-ms=500".to_string(), "cron-minute-ms=2000".to_string()];
    scenarios.extend(extra.iter().map(|s| s.to_string()));
    Some(World::up(WorldOptions { scenarios, tools, ..WorldOptions::default() }).unwrap())
}

fn platform(world: &World) -> Workspace {
    let tilt_port = support::free_port();
    let timeouts = "timeouts = { cluster_ready = 60, layer_sync = 120, gate = 60, vault_bootstrap = 60, tilt_ready = 60 }";
    // Smoke finds the log (and tilt.log beside it) through the settings.
    let log = "log = \"logs/setup.log\"";
    Workspace::new(&[timeouts, log, &format!("tilt_port = {tilt_port}")])
        .with_infra()
        .for_world(world)
}

fn bootstrap(platform: &Workspace, world: &World) -> (Exit, SummaryDoc) {
    platform.summary(world, &["bootstrap", "--no-install", "--no-tilt"])
}

fn assert_every_gate_passed(tools: Toolset, summary: &SummaryDoc) {
    for name in LAYERS {
        let row = layer(summary, name);
        assert_eq!(row.gate, GateStatus::Passed, "{tools:?}: {row:?}");
    }
}

/// `helm` calls with `word` among their arguments.
fn helm_calls_in(calls: &[testbed::calls::Call], word: &str) -> usize {
    calls.iter().filter(|c| c.tool == "helm" && c.args.iter().any(|a| a == word)).count()
}

fn helm_calls(world: &World, word: &str) -> usize {
    helm_calls_in(&world.calls(), word)
}

/// Every gate was a real `helm test`; with real helmfile, every release a real helm upgrade.
fn assert_real_tools_ran(world: &World, helmfile_is_real: bool) {
    assert!(
        helm_calls(world, "test") >= LAYERS.len(),
        "no helm test per gate: {:?}",
        world.calls()
    );
    if helmfile_is_real {
        let upgrades = helm_calls(world, "upgrade");
        assert!(upgrades >= LAYERS.len(), "helmfile ran {upgrades} helm upgrades");
    }
}

/// `cargo xtask tilt`, then the smoke checklist with live gates: every trial passes, and
/// each gate is a fresh `helm test` by the world's real helm.
fn live_smoke_passes(platform: &Workspace, world: &World) {
    let binary = smoke::smoke_binary();
    assert!(platform.xtask(world, &["tilt"]).status.success());
    let before = helm_calls(world, "test");
    let run = smoke::run(world, platform.root(), &binary, &[], &[]);
    assert!(run.output.status.success(), "{:?}", run.outcomes);
    assert_eq!(run.outcomes, smoke::all_ok());
    assert_eq!(helm_calls(world, "test") - before, LAYERS.len(), "one live `helm test` per gate");
}

/// A real `helm test` of a passing gate, as the engine runs it, timed: printed (a
/// measurement, not an assertion), and it must pass.
fn time_a_passing_gate(tools: Toolset, world: &World) {
    let started = Instant::now();
    let out = world
        .command("helm")
        .args(["test", "auth-smoke", "-n", "ameide", "--timeout", "60s"])
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(out.status.success(), "{}", support::text(&out.stderr));
    eprintln!("measured: {tools:?}: real `helm test auth-smoke` (passing) took {took:.2?}");
}

/// Release names helm has in namespace `ameide`.
/// The optional bundle on, then off again: the real helmfile renders the `.gotmpl` layer
/// with the bundles the engine passes, so it decides what is installed and uninstalled.
fn bundle_on_and_off(platform: &Workspace, world: &World) {
    let before = world.calls().len();
    let (code, summary) = platform
        .summary(world, &["bootstrap", "--no-install", "--no-tilt", "--bundle", "observability"]);
    assert_eq!(code, Exit::Ok, "{summary:?}");
    assert_eq!(synced_layers(&world.calls()[before..]), ["45-data-plane-ext"]);
    assert_eq!(layer(&summary, "45-data-plane-ext").gate, GateStatus::Passed, "{summary:?}");
    let releases = helm_list(world);
    assert!(
        releases.iter().any(|r| r == "metrics") && releases.iter().any(|r| r == "metrics-smoke"),
        "{releases:?}"
    );
    assert!(helm_calls_in(&world.calls()[before..], "metrics-smoke") > 0, "the bundle's gate ran");

    let before = world.calls().len();
    let (code, summary) = bootstrap(platform, world);
    assert_eq!(code, Exit::Ok, "{summary:?}");
    let destroys: Vec<String> = mutating(&world.calls()[before..])
        .into_iter()
        .filter(|c| c.starts_with("helmfile") && c.contains("destroy"))
        .collect();
    assert_eq!(destroys.len(), 1, "{destroys:?}");
    assert!(destroys[0].contains("bundle=observability"), "{destroys:?}");
    let releases = helm_list(world);
    assert!(!releases.iter().any(|r| r.starts_with("metrics")), "{releases:?}");
    assert!(releases.iter().any(|r| r == "object-storage"), "{releases:?}");
}

/// One world walked through: a cold bootstrap, a converged re-run, a timed gate, the
/// live smoke checklist, and the optional bundle on and off.
#[test]
fn helm_3_bootstrap_converges_and_a_rerun_changes_nothing() {
    let Some(world) = world(Toolset::Helm3, &[]) else { return };
    let platform = platform(&world);
    let (code, summary) = bootstrap(&platform, &world);
    assert_eq!(code, Exit::Ok, "{summary:?}");
    assert_every_gate_passed(Toolset::Helm3, &summary);
    assert_real_tools_ran(&world, true);

    let before = world.calls().len();
    let (code, summary) = bootstrap(&platform, &world);
    assert_eq!(code, Exit::Ok, "{summary:?}");
    let again = mutating(&world.calls()[before..]);
    assert!(again.is_empty(), "a converged re-run changed something: {again:?}");

    time_a_passing_gate(Toolset::Helm3, &world);
    live_smoke_passes(&platform, &world);
    bundle_on_and_off(&platform, &world);
}

#[test]
fn helm_4_bootstrap_converges_with_real_helm_gates() {
    let Some(world) = world(Toolset::Helm4, &[]) else { return };
    let platform = platform(&world);
    let (code, summary) = bootstrap(&platform, &world);
    assert_eq!(code, Exit::Ok, "{summary:?}");
    assert_every_gate_passed(Toolset::Helm4, &summary);
    assert_real_tools_ran(&world, false);
    time_a_passing_gate(Toolset::Helm4, &world);
    live_smoke_passes(&platform, &world);
}

#[test]
fn a_failing_gate_under_real_helm_names_the_gate_and_quotes_its_pod_log() {
    let Some(world) = world(Toolset::Helm3, &["gate-fail=24-auth"]) else { return };
    let platform = platform(&world);
    let (code, summary) = bootstrap(&platform, &world);
    assert_eq!(code, Exit::Failed, "{summary:?}");
    let failure = failure(&summary);
    assert_eq!(failure.layer.as_deref(), Some("24-auth"), "{summary:?}");
    assert_eq!(layer(&summary, "24-auth").gate, GateStatus::Failed, "{summary:?}");
    assert_eq!(layer(&summary, "40-data-plane").status, LayerStatus::Skipped, "{summary:?}");
    let failure = format!("{}\n{}", failure.message, failure.remediation);
    assert!(failure.contains("auth-smoke"), "the finding names the gate: {failure}");
    assert!(failure.contains("check failed"), "the finding quotes the pod's log: {failure}");
}

#[test]
fn helmfile_0_166_with_helm_4_is_refused_before_any_change() {
    let Some(world) = world(Toolset::Helm3, &[]) else { return };
    let dir = real_tools::tools_dir();
    let helm_4 = real_tools::RealTools {
        helm: dir.join("helm-4.1.4/helm"),
        helmfile: Some(dir.join("helmfile-0.166.0/helmfile")),
    };
    helm_4.save(world.dir()).unwrap();
    let platform = platform(&world);
    let (code, summary) = bootstrap(&platform, &world);
    assert_eq!(code, Exit::Missing, "{summary:?}");
    let message = &failure(&summary).message;
    assert!(message.contains("helmfile 0.166.0 cannot drive helm 4.1.4"), "{message}");
    let changed = mutating(&world.calls());
    assert!(changed.is_empty(), "a refused run changed something: {changed:?}");
}

/// `kill -9` every process of the session led by `leader` (a closed terminal's job, a
/// lost CI runner), until none is left.
fn kill_session(leader: &mut std::process::Child) {
    let sid = leader.id() as i32;
    assert!(procs::session_members(sid).contains(&sid), "pid {sid} leads no session");
    for _ in 0..50 {
        if procs::kill_session(sid) == 0 {
            break;
        }
        let _ = leader.try_wait();
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    leader.wait().unwrap();
}

/// The newest revision's status of release `name` in `ameide`, as real helm reads it.
fn release_status(world: &World, name: &str) -> String {
    let out = world
        .command("helm")
        .args(["status", name, "-n", "ameide", "-o", "json"])
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    status["info"]["status"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_session_killed_while_real_helm_installs_layer_40_recovers_on_a_plain_rerun() {
    let Some(world) = world(Toolset::Helm3, &[]) else { return };
    let platform = platform(&world);
    // A database slow to start (its readiness probe waits 30 s first): helm's `--wait`
    // holds layer 40's first install that long, from the cluster's side.
    platform.edit("infra/kubernetes/charts/postgres/templates/statefulset.yaml", |t| {
        t.replacen("periodSeconds: 5", "initialDelaySeconds: 30\n            periodSeconds: 5", 1)
    });

    // The bootstrap leads a session of its own, as in a terminal (util-linux `setsid`
    // execs it: a spawned child is no group leader, so it does not fork).
    let mut session = world
        .command("setsid")
        .arg(env!("CARGO_BIN_EXE_xtask"))
        .args(["bootstrap", "--no-install", "--no-tilt", "--log"])
        .arg(platform.log())
        .env("BOOTSTRAP_ROOT", platform.root())
        .current_dir(platform.root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + std::time::Duration::from_secs(300);
    while release_status(&world, "postgres") != "pending-install" {
        assert!(session.try_wait().unwrap().is_none(), "the bootstrap ended before layer 40");
        assert!(Instant::now() < deadline, "layer 40 never started installing");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let installing = world.calls().iter().any(|c| {
        c.tool == "helm"
            && c.args.iter().any(|a| a == "upgrade")
            && c.args.iter().any(|a| a == "postgres")
    });
    assert!(installing, "real helm installs postgres");
    kill_session(&mut session);
    assert_eq!(release_status(&world, "postgres"), "pending-install", "left by the killed helm");

    let before = world.calls().len();
    let (code, summary) = bootstrap(&platform, &world);
    assert_eq!(code, Exit::Ok, "{summary:?}");
    let warnings = layer(&summary, "40-data-plane").warnings.join("\n");
    assert!(warnings.contains("release postgres was left pending-install"), "{summary:?}");
    let calls = mutating(&world.calls()[before..]);
    assert!(calls.iter().any(|c| c.starts_with("helm uninstall postgres ")), "{calls:?}");
    assert_eq!(release_status(&world, "postgres"), "deployed");
    // The layers the killed run finished are left alone; the rest sync and pass.
    for (i, name) in LAYERS.iter().enumerate() {
        let row = layer(&summary, name);
        match i < LAYERS.iter().position(|l| *l == "40-data-plane").unwrap() {
            true => assert_eq!(row.status, LayerStatus::Unchanged, "{row:?}"),
            false => assert_eq!(row.gate, GateStatus::Passed, "{row:?}"),
        }
    }
}
