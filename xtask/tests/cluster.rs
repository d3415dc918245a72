//! `cargo xtask cluster` against the testbed: real Docker containers made by the fake
//! k3d, the real engine observing them with bollard.

mod support;

use std::collections::BTreeMap;

use support::{K3D_CONFIG, Workspace, stdout};
use testbed::world::{World, WorldOptions, require_docker};
use xtask::error::{Exit, Signal};

/// A workspace root of our own, so the test may edit its k3d.yaml freely.
fn platform() -> Workspace {
    Workspace::new(&["timeouts = { cluster_ready = 30 }"]).with_k3d_config()
}

/// Container name -> id for everything this world made, plus `extra` names.
fn container_ids(world: &World) -> BTreeMap<String, String> {
    let rt = testbed::docker::runtime().unwrap();
    rt.block_on(async {
        let docker = testbed::docker::connect().await.unwrap();
        let dir = world.dir().display().to_string();
        testbed::docker::containers_with_labels(
            &docker,
            &[(testbed::docker::LABEL_TESTBED_DIR, dir.as_str())],
        )
        .await
        .unwrap()
        .iter()
        .map(|c| (testbed::docker::container_name(c), c.id.clone().unwrap_or_default()))
        .collect()
    })
}

fn k3d_mutations_since(world: &World, since: usize) -> Vec<Vec<String>> {
    world.calls()[since..]
        .iter()
        .filter(|c| {
            c.tool == "k3d"
                && matches!(c.args.get(1).map(String::as_str), Some("create" | "delete" | "start"))
        })
        .map(|c| c.args.clone())
        .collect()
}

fn docker_cli(world: &World, args: &[&str]) {
    let status = world.command("docker").args(args).status().unwrap();
    assert!(status.success(), "docker {args:?}");
}

#[test]
fn cluster_reconciles_only_when_it_must() {
    if !require_docker() {
        return;
    }
    let world = World::up(WorldOptions::default()).unwrap();
    let platform = platform().for_world(&world);
    let slot = world.slot();
    let (cluster, registry) = (slot.cluster(), slot.registry());

    // Fresh: created, and the API answers.
    let out = platform.xtask(&world, &["cluster"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("create: no cluster exists"), "{}", stdout(&out));
    let ids = container_ids(&world);
    let server = |n: u32| format!("k3d-{cluster}-server-{n}");
    assert!(ids.contains_key(&server(0)) && ids.contains_key(&registry), "{ids:?}");
    let log = std::fs::read_to_string(platform.log()).unwrap();
    assert!(log.contains(&format!("[cluster] $ k3d cluster create {cluster} --config")), "{log}");

    // Converged: nothing recreated, same containers, no k3d mutation.
    let calls = world.calls().len();
    let out = platform.xtask(&world, &["cluster"]);
    assert!(out.status.success() && stdout(&out).contains("nothing to do"), "{}", stdout(&out));
    assert_eq!(container_ids(&world), ids);
    assert_eq!(k3d_mutations_since(&world, calls), Vec::<Vec<String>>::new());

    // A comment is not drift.
    platform.edit(K3D_CONFIG, |t| format!("# a comment that changes nothing\n{t}"));
    let out = platform.xtask(&world, &["cluster"]);
    assert!(stdout(&out).contains("nothing to do"), "{}", stdout(&out));
    // The same as JSON, as its committed schema says (`json` checks it).
    let (code, json) = platform.json(&world, &["cluster"]);
    assert_eq!((code, &json["action"], &json["status"]), (Exit::Ok, &"noop".into(), &"ok".into()));

    // `--plan` on drift says so and changes nothing.
    platform.edit(K3D_CONFIG, |t| t.replace("servers: 1", "servers: 2"));
    let calls = world.calls().len();
    let out = platform.xtask(&world, &["cluster", "--plan"]);
    assert!(
        out.status.success() && stdout(&out).contains("plan: recreate: config drift"),
        "{}",
        stdout(&out)
    );
    let (code, json) = platform.json(&world, &["cluster", "--plan"]);
    assert_eq!(
        (code, &json["action"], &json["status"]),
        (Exit::Ok, &"recreate".into(), &"planned".into())
    );
    assert_eq!(container_ids(&world), ids);
    assert!(k3d_mutations_since(&world, calls).is_empty());

    // servers 1 -> 2: recreated, naming drift.
    let out = platform.xtask(&world, &["cluster"]);
    assert!(
        out.status.success() && stdout(&out).contains("recreate: config drift"),
        "{}",
        stdout(&out)
    );
    let ids = container_ids(&world);
    assert!(ids.contains_key(&server(1)), "{ids:?}");

    // Registry removed by hand: recreated, naming the registry.
    docker_cli(&world, &["rm", "-f", &registry]);
    let out = platform.xtask(&world, &["cluster"]);
    assert!(
        stdout(&out).contains(&format!("registry container `{registry}` is missing")),
        "{}",
        stdout(&out)
    );
    assert!(container_ids(&world).contains_key(&registry));

    // Stopped: started, not recreated (same container IDs).
    let ids = container_ids(&world);
    assert!(world.command("k3d").args(["cluster", "stop", &cluster]).status().unwrap().success());
    let calls = world.calls().len();
    let out = platform.xtask(&world, &["cluster"]);
    assert!(
        out.status.success() && stdout(&out).contains("start: stopped containers"),
        "{}",
        stdout(&out)
    );
    assert_eq!(container_ids(&world), ids);
    assert_eq!(k3d_mutations_since(&world, calls), [["cluster", "start", cluster.as_str()]]);

    // A legacy registry is removed; an unrelated container is not.
    let testbed_label = format!("{}={}", testbed::docker::LABEL_TESTBED_DIR, world.dir().display());
    let (legacy, unrelated) = (slot.name("dev-reg"), slot.name("unrelated-app"));
    for name in [&legacy, &unrelated] {
        docker_cli(
            &world,
            &[
                "run",
                "-d",
                "--name",
                name,
                "--label",
                &testbed_label,
                testbed::docker::images::NODE_IMAGE,
                "sleep",
                "600",
            ],
        );
    }
    let out = platform.xtask(&world, &["cluster"]);
    assert!(
        stdout(&out).contains(&format!("removed legacy registry container `{legacy}`")),
        "{}",
        stdout(&out)
    );
    let after = container_ids(&world);
    assert!(!after.contains_key(&legacy) && after.contains_key(&unrelated), "{after:?}");

    // Malformed config: exit 2 naming the file, nothing touched.
    let before = container_ids(&world);
    platform.edit(K3D_CONFIG, |t| t.replace("servers: 2", "servers: [2"));
    let out = platform.xtask(&world, &["cluster"]);
    assert_eq!(Exit::of(out.status), Exit::BadInput);
    assert!(String::from_utf8_lossy(&out.stderr).contains("k3d.yaml"));
    assert_eq!(container_ids(&world), before);
}

#[test]
fn docker_unreachable_is_exit_3_naming_docker_host() {
    let platform = platform();
    let out = platform
        .bare_command(&["cluster", "--log"])
        .arg(platform.log())
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(Exit::of(out.status), Exit::Missing, "{stderr}");
    assert!(stderr.contains("DOCKER_HOST=unix:///nonexistent/docker.sock"), "{stderr}");
}

/// Ctrl-C while `cluster` waits for the API: exit 130 with the wait stopped, not a wait
/// until `cluster_ready` (300 s here). A `k3d` in the workspace's .tools/bin (found
/// first) runs the fake k3d, then freezes the API server it started (SIGSTOP), so
/// `/readyz` never answers and the readiness wait can only end by Ctrl-C.
#[test]
fn ctrl_c_stops_the_readiness_wait_with_130() {
    use std::os::unix::fs::PermissionsExt;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    if !require_docker() {
        return;
    }
    let world = World::up(WorldOptions::default()).unwrap();
    let platform =
        Workspace::new(&["timeouts = { cluster_ready = 300 }"]).with_k3d_config().for_world(&world);
    let path = world.env().into_iter().find(|(k, _)| k == "PATH").unwrap().1;
    let fake_k3d = std::env::split_paths(&path).map(|d| d.join("k3d")).find(|p| p.is_file());
    let cluster = world.slot().cluster();
    let pid_file = world.dir().join(format!("clusters/{cluster}/apiserver.pid"));
    let frozen = world.dir().join("apiserver-frozen");
    let wrapper = format!(
        "#!/bin/sh\n'{}' \"$@\" || exit $?\n\
         if [ \"$1 $2\" = 'cluster create' ]; then kill -STOP \"$(cat '{}')\" && touch '{}'; fi\n",
        fake_k3d.unwrap().display(),
        pid_file.display(),
        frozen.display()
    );
    let bin = platform.path(".tools/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("k3d"), wrapper).unwrap();
    std::fs::set_permissions(bin.join("k3d"), std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut child = platform
        .command(&world, &["cluster"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A bound on a hang, not a timing assertion: without the fix this takes 300 s.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !frozen.exists() {
        assert!(child.try_wait().unwrap().is_none(), "cluster ended before the wait");
        assert!(Instant::now() < deadline, "the cluster was not created");
        std::thread::sleep(Duration::from_millis(100));
    }
    let xtask = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(xtask, nix::sys::signal::Signal::SIGINT).unwrap();
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let still_running = child.try_wait().unwrap().is_none();
    if still_running {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    // Thaw the API server so the world's teardown stops it normally.
    let apiserver = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(apiserver),
        nix::sys::signal::Signal::SIGCONT,
    );
    support::show(&["cluster", "(interrupted)"], &out);
    assert!(!still_running, "`cargo xtask cluster` ignored Ctrl-C during the readiness wait");
    assert_eq!(Exit::of(out.status), Exit::Interrupted(Signal::Interrupt));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("interrupted"), "{stderr}");
    let log = std::fs::read_to_string(platform.log()).unwrap();
    let interrupted = format!("k3d-{cluster}: interrupted while waiting for /readyz");
    assert!(log.contains(&interrupted), "{log}");
}
