//! The engine on the faithful testbed, with no knob turned down but speed: workloads
//! Ready only after a startup delay, helm versions with their own hook order, the
//! registry named as k3d names it, a cluster API that outlives the run that made it.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{LAYERS, Workspace, layer, show, synced_layers};
use testbed::calls::Call;
use testbed::world::{World, WorldOptions, require_docker};
use xtask::error::Exit;
use xtask::layers::GateStatus;

fn world(extra: &[&str]) -> World {
    let mut scenarios = vec!["startup-ms=500".to_string(), "cron-minute-ms=2000".to_string()];
    scenarios.extend(extra.iter().map(|s| s.to_string()));
    World::up(WorldOptions { scenarios, ..WorldOptions::default() }).unwrap()
}

fn platform(world: &World) -> Workspace {
    let tilt_port = support::free_port();
    let timeouts = "timeouts = { cluster_ready = 60, layer_sync = 120, gate = 120, vault_bootstrap = 60, tilt_ready = 60 }";
    Workspace::new(&[timeouts, &format!("tilt_port = {tilt_port}")]).with_infra().for_world(world)
}

fn cluster_calls(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.tool == "k3d" && c.args.iter().any(|a| a == "create" || a == "delete"))
        .map(|c| c.args.join(" "))
        .collect()
}

#[test]
fn every_gate_passes_under_helm_3_and_helm_4() {
    if !require_docker() {
        return;
    }
    for version in ["3.18.4", "4.1.4"] {
        let world = world(&[&format!("helm-version={version}")]);
        let platform = platform(&world);
        let (code, summary) = platform.summary(&world, &["bootstrap"]);
        assert_eq!(code, Exit::Ok, "helm {version}: {summary:?}");
        for name in LAYERS {
            let row = layer(&summary, name);
            assert_eq!(row.gate, GateStatus::Passed, "helm {version}: {row:?}");
            assert_eq!(row.warnings, Vec::<String>::new(), "helm {version}: {row:?}");
        }
        drop(world);
    }
}

#[test]
fn a_flaky_vault_bootstrap_is_waited_for_as_the_cronjob_retries() {
    if !require_docker() {
        return;
    }
    let world = world(&["vault-flaky"]);
    let platform = platform(&world);
    let (code, summary) = platform.summary(&world, &["bootstrap", "--no-tilt"]);
    assert_eq!(code, Exit::Ok, "{summary:?}");
}

#[test]
fn the_registry_is_named_as_k3d_names_it_and_a_rerun_keeps_the_cluster() {
    if !require_docker() {
        return;
    }
    let world = world(&[]);
    let platform = platform(&world);
    let (registry, renamed) = (world.slot().registry(), world.slot().name("sample-reg"));
    platform.edit(support::K3D_CONFIG, |t| {
        t.replace(&format!("name: {registry}\n"), &format!("name: {renamed}\n"))
    });
    let bootstrap = ["bootstrap", "--no-tilt"];
    assert!(platform.xtask(&world, &bootstrap).status.success());
    let port = docker_label(&renamed, "k3s.registry.port.external");
    let url = format!("http://127.0.0.1:{port}/v2/");
    let answer = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &url])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&answer.stdout), "200", "GET {url}");
    let before = world.calls().len();
    let out = platform.xtask(&world, &bootstrap);
    assert!(out.status.success());
    assert_eq!(cluster_calls(&world.calls()[before..]), Vec::<String>::new(), "recreated");
}

/// A label of a container, read with the real docker CLI.
fn docker_label(container: &str, label: &str) -> String {
    let format = format!("{{{{index .Config.Labels \"{label}\"}}}}");
    let out = std::process::Command::new("docker")
        .args(["inspect", "--format", &format, container])
        .output()
        .unwrap();
    assert!(out.status.success(), "no container {container}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn killing_the_whole_session_mid_run_leaves_the_cluster_and_a_rerun_is_green() {
    if !require_docker() {
        return;
    }
    let world = world(&["latency-ms=1500"]);
    let platform = platform(&world);
    // Started in its own session, as a terminal runs it; then the whole session dies.
    let before = world.calls().len();
    let log = platform.log().display().to_string();
    let child = world
        .command("setsid")
        .arg(env!("CARGO_BIN_EXE_xtask"))
        .args(["bootstrap", "--no-tilt", "--log", &log])
        .env("BOOTSTRAP_ROOT", platform.root())
        .current_dir(platform.root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while synced_layers(&world.calls()[before..]).len() < 2 {
        assert!(Instant::now() < deadline, "no layer synced");
        std::thread::sleep(Duration::from_millis(100));
    }
    let killed = testbed::procs::kill_session(child.id() as i32);
    assert!(killed > 1, "the session held the bootstrap and its tools");
    let _ = child.wait_with_output();

    // The cluster's API still answers through the k3d context.
    let context = world.slot().context();
    let out = world.command("kubectl").args(["--context", &context, "get", "ns"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    world.set("latency-ms=0").unwrap();
    let out = platform.xtask(&world, &["bootstrap", "--no-tilt", "--format", "json"]);
    show(&["bootstrap", "(after kill -9)"], &out);
    assert_eq!(Exit::of(out.status), Exit::Ok);
}
