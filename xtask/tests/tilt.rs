//! `cargo xtask tilt` against the testbed's fake tilt (Tilt's web API: token cookie,
//! `/api/view`, the `(Tiltfile)` UIResource).

mod support;

use support::Workspace;
use testbed::world::{World, WorldOptions, require_docker};
use xtask::error::Exit;

/// A workspace root and the Tilt port its settings name.
struct Platform {
    workspace: Workspace,
    port: u16,
}

impl Platform {
    /// Tilt must be Ready within `tilt_ready` seconds; made for `world`'s slot.
    fn new(world: &World, tilt_ready: u64) -> Platform {
        let port = support::free_port();
        let tilt_port = format!("tilt_port = {port}");
        let timeouts = format!("timeouts = {{ tilt_ready = {tilt_ready} }}");
        let workspace = Workspace::new(&[&tilt_port, &timeouts]).for_world(world);
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
fn tilt_starts_detached_once_and_is_left_alone_when_ready() {
    if !require_docker() {
        return;
    }
    let world = World::up(WorldOptions::default()).unwrap();
    let platform = Platform::new(&world, 5);
    let port = platform.port.to_string();
    let context = world.slot().context();

    // Nothing runs: tilt up is started detached and awaited.
    let out = platform.workspace.xtask(&world, &["tilt"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("Tilt started on http://localhost:{port}/")), "{stdout}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("$ tilt up --port {port} --context {context}"))
    );
    let calls = world.calls();
    let up = calls.iter().find(|c| c.tool == "tilt").unwrap();
    assert_eq!(up.args, ["up", "--port", port.as_str(), "--context", context.as_str()]);
    // It outlived our process and still answers.
    assert!(probe(platform.port).is_ready(), "{:?}", probe(platform.port));
    let tilt_log = std::fs::read_to_string(platform.workspace.path("logs/tilt.log")).unwrap();
    assert!(tilt_log.contains("Tilt started on"), "{tilt_log}");
    let log = std::fs::read_to_string(platform.workspace.log()).unwrap();
    assert!(log.contains(&format!("[tilt] $ tilt up --port {port} --context {context}")), "{log}");

    // Ready already: nothing is started.
    let out = platform.workspace.xtask(&world, &["tilt"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("already answers"));
    assert_eq!(tilt_ups(&world), 1);
}

#[test]
fn a_tiltfile_that_fails_to_load_ends_the_wait_at_once_with_tilts_error() {
    if !require_docker() {
        return;
    }
    // The fake's `tilt-not-ready`: the Tiltfile fails to load (as one calling `fail()`).
    let world = World::up(WorldOptions {
        scenarios: vec!["tilt-not-ready".into()],
        latency_ms: 0,
        ..WorldOptions::default()
    })
    .unwrap();
    let platform = Platform::new(&world, 120);
    let tiltfile = platform.workspace.path("Tiltfile");

    let started = std::time::Instant::now();
    let out = platform.workspace.xtask(&world, &["tilt"]);
    let took = started.elapsed();
    assert_eq!(Exit::of(out.status), Exit::Failed);
    assert!(took < std::time::Duration::from_secs(30), "took {took:?}, the wait is 120 s");
    // The failure is the command's result (on stdout): Tilt's own error, and what to do.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("tilt: FAILED: Tilt: expected (Tiltfile) Ready"), "{stdout}");
    assert!(stdout.contains("found the Tiltfile failed to load; Tilt says:"), "{stdout}");
    assert!(stdout.contains("  Traceback (most recent call last):"), "{stdout}");
    assert!(stdout.contains(&format!("    {}:1:5: in <toplevel>", tiltfile.display())));
    assert!(stdout.contains("  Error in fail: fail: testbed scenario tilt-not-ready"), "{stdout}");
    assert!(stdout.contains("what to do: fix the Tiltfile"), "{stdout}");
    assert!(stdout.contains("`tilt logs`"), "{stdout}");
    assert!(!stdout.contains("not Ready within"), "no timeout: {stdout}");
    // Tilt printed the same error into tilt.log, and it is still up (it reloads the
    // Tiltfile when it is saved), answering with the error.
    let tilt_log = std::fs::read_to_string(platform.workspace.path("logs/tilt.log")).unwrap();
    assert!(tilt_log.contains("Loading Tiltfile at:"), "{tilt_log}");
    assert!(tilt_log.contains("Error in fail: fail: testbed scenario"), "{tilt_log}");
    let now = probe(platform.port);
    assert!(now.load_error().is_some_and(|e| e.contains("Traceback")), "{now:?}");
    assert_eq!(tilt_ups(&world), 1);

    // The same Tilt, already running: no new `tilt up`, the same quick failure.
    let started = std::time::Instant::now();
    let out = platform.workspace.xtask(&world, &["tilt"]);
    assert_eq!(Exit::of(out.status), Exit::Failed);
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Error in fail: fail: testbed scenario"), "{stdout}");
    assert_eq!(tilt_ups(&world), 1);

    // Fixed (the scenario gone, as if the Tiltfile were saved fixed): Ready, nothing started.
    world.set("healthy").unwrap();
    let down = world.command("tilt").arg("down").output().unwrap();
    assert!(down.status.success());
    let out = platform.workspace.xtask(&world, &["tilt"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(tilt_ups(&world), 2);
}
