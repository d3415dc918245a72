//! `cargo xtask tilt` against the testbed's fake tilt (Tilt's web API: token cookie,
//! `/api/view`, the `(Tiltfile)` UIResource).

mod support;

use support::Workspace;
use testbed::world::{World, WorldOptions, require_docker};

/// A workspace root and the Tilt port its settings name.
struct Platform {
    workspace: Workspace,
    port: u16,
}

impl Platform {
    fn new() -> Platform {
        let port = support::free_port();
        let tilt_port = format!("tilt_port = {port}");
        let workspace = Workspace::new(&[&tilt_port, "timeouts = { tilt_ready = 5 }"]);
        Platform { workspace, port }
    }
}

fn tilt_ups(world: &World) -> usize {
    world
        .calls()
        .iter()
        .filter(|c| c.tool == "tilt" && c.args.first().is_some_and(|a| a == "up"))
        .count()
}

fn probe(port: u16) -> xtask::tilt::Probe {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(xtask::tilt::probe(port))
}

#[test]
fn tilt_starts_detached_once_and_reports_a_tiltfile_that_is_not_ready() {
    if !require_docker() {
        return;
    }
    let world = World::up(WorldOptions::default()).unwrap();
    let platform = Platform::new();
    let port = platform.port.to_string();

    // Nothing runs: tilt up is started detached and awaited.
    let out = platform.workspace.xtask(&world, &["tilt"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("Tilt started on http://localhost:{port}/")), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("$ tilt up --port {port}")));
    let calls = world.calls();
    let up = calls.iter().find(|c| c.tool == "tilt").unwrap();
    assert_eq!(up.args, ["up", "--port", port.as_str()]);
    // It outlived our process and still answers.
    assert!(probe(platform.port).is_ready(), "{:?}", probe(platform.port));
    let tilt_log = std::fs::read_to_string(platform.workspace.path("logs/tilt.log")).unwrap();
    assert!(tilt_log.contains("Tilt started on"), "{tilt_log}");
    let log = std::fs::read_to_string(platform.workspace.log()).unwrap();
    assert!(log.contains(&format!("[tilt] $ tilt up --port {port}")), "{log}");

    // Ready already: nothing is started.
    let out = platform.workspace.xtask(&world, &["tilt"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("already answers"));
    assert_eq!(tilt_ups(&world), 1);

    // tilt-not-ready, from a fresh start: exit 1 with the reason and the tail of tilt.log.
    world.set("tilt-not-ready").unwrap();
    let down = world.command("tilt").arg("down").output().unwrap();
    assert!(down.status.success());
    // The failure is the command's result (on stdout): the finding and what to do.
    let out = platform.workspace.xtask(&world, &["tilt"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("tilt: FAILED: Tilt: expected (Tiltfile) Ready"), "{stdout}");
    assert!(stdout.contains("found not Ready within 5s"), "{stdout}");
    assert!(stdout.contains("(Tiltfile) is not Ready (reason UpdateError, updateStatus error)"));
    assert!(stdout.contains("tilt.log:\n  Tilt started on"), "the log tail: {stdout}");
    assert!(stdout.contains("what to do: Tilt failed to start"), "{stdout}");
    assert_eq!(tilt_ups(&world), 2);
}
