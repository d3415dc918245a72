//! The real-tools tier: the layer cycle carried out by real helm and real helmfile
//! (`testbed::real_tools`: helm 3.17.2 or 4.1.4 with helmfile 0.166.0, as
//! `.ci/install-real-tools` installs them) against the testbed's cluster. Syncs, waits,
//! `helm test` gates and release records are the real tools' own; the scenarios reach
//! them through the cluster (test Pods that fail), never through a fake binary.

mod support;

use serde_json::Value;
use support::{LAYERS, Workspace, layer};
use testbed::calls::mutating;
use testbed::real_tools::{self, Toolset};
use testbed::world::{World, WorldOptions, require_docker};

fn world(tools: Toolset, extra: &[&str]) -> Option<World> {
    if !require_docker() || !real_tools::require(tools) {
        return None;
    }
    let mut scenarios = vec!["startup-ms=500".to_string(), "cron-minute-ms=2000".to_string()];
    scenarios.extend(extra.iter().map(|s| s.to_string()));
    Some(World::up(WorldOptions { scenarios, tools, ..WorldOptions::default() }).unwrap())
}

fn platform() -> Workspace {
    let tilt_port = support::free_port();
    let timeouts = "timeouts = { cluster_ready = 60, layer_sync = 120, gate = 60, vault_bootstrap = 60, tilt_ready = 60 }";
    Workspace::new(&[timeouts, &format!("tilt_port = {tilt_port}")]).with_infra()
}

fn bootstrap(platform: &Workspace, world: &World) -> (Option<i32>, Value) {
    platform.json(world, &["bootstrap", "--no-install", "--no-tilt"])
}

fn assert_every_gate_passed(tools: Toolset, summary: &Value) {
    for name in LAYERS {
        let row = layer(summary, name);
        assert_eq!(row["gate"], "passed", "{tools:?}: {row}");
    }
}

fn helm_calls(world: &World, verb: &str) -> usize {
    world.calls().iter().filter(|c| c.tool == "helm" && c.args.iter().any(|a| a == verb)).count()
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

#[test]
fn helm_3_bootstrap_converges_and_a_rerun_changes_nothing() {
    let Some(world) = world(Toolset::Helm3, &[]) else { return };
    let platform = platform();
    let (code, summary) = bootstrap(&platform, &world);
    assert_eq!(code, Some(0), "{summary}");
    assert_every_gate_passed(Toolset::Helm3, &summary);
    assert_real_tools_ran(&world, true);

    let before = world.calls().len();
    let (code, summary) = bootstrap(&platform, &world);
    assert_eq!(code, Some(0), "{summary}");
    let again = mutating(&world.calls()[before..]);
    assert!(again.is_empty(), "a converged re-run changed something: {again:?}");
}

#[test]
fn helm_4_bootstrap_converges_with_real_helm_gates() {
    let Some(world) = world(Toolset::Helm4, &[]) else { return };
    let platform = platform();
    let (code, summary) = bootstrap(&platform, &world);
    assert_eq!(code, Some(0), "{summary}");
    assert_every_gate_passed(Toolset::Helm4, &summary);
    assert_real_tools_ran(&world, false);
}

#[test]
fn a_failing_gate_under_real_helm_names_the_gate_and_quotes_its_pod_log() {
    let Some(world) = world(Toolset::Helm3, &["gate-fail=24-auth"]) else { return };
    let platform = platform();
    let (code, summary) = bootstrap(&platform, &world);
    assert_eq!(code, Some(1), "{summary}");
    assert_eq!(summary["failure"]["layer"], "24-auth", "{summary}");
    assert_eq!(layer(&summary, "24-auth")["gate"], "failed", "{summary}");
    assert_eq!(layer(&summary, "40-data-plane")["status"], "skipped", "{summary}");
    let failure = summary["failure"].to_string();
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
    let platform = platform();
    let (code, summary) = bootstrap(&platform, &world);
    assert_eq!(code, Some(3), "{summary}");
    let message = summary["failure"]["message"].as_str().unwrap();
    assert!(message.contains("helmfile 0.166.0 cannot drive helm 4.1.4"), "{message}");
    let changed = mutating(&world.calls());
    assert!(changed.is_empty(), "a refused run changed something: {changed:?}");
}
