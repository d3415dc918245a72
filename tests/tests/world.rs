//! `testbed up` / `down` and `World`: everything a world made goes away with it.

use std::path::Path;
use std::process::Command;

use testbed::{World, WorldOptions, docker};

fn containers_of(dir: &Path) -> Vec<String> {
    let rt = docker::runtime().unwrap();
    rt.block_on(async {
        let d = docker::connect().await.unwrap();
        docker::containers_with_labels(&d, &[(docker::LABEL_TESTBED_DIR, dir.to_str().unwrap())])
            .await
            .unwrap()
            .iter()
            .map(docker::container_name)
            .collect()
    })
}

fn process_with(marker: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(marker))
            .unwrap_or(false)
    })
}

#[test]
fn dropping_a_world_removes_its_cluster_processes_and_dir() {
    if !testbed::require_docker() {
        return;
    }
    let world = World::up(WorldOptions {
        scenarios: vec!["tilt-not-ready".into()],
        latency_ms: 1,
        ..WorldOptions::default()
    })
    .unwrap();
    let dir = world.dir().to_path_buf();
    assert!(dir.join("bin/k3d").exists() && dir.join("kubeconfig").exists());
    let scenario = std::fs::read_to_string(dir.join("scenario.json")).unwrap();
    assert!(scenario.contains("\"tilt_not_ready\": true"), "{scenario}");
    let dropped = world.slot().name("dropped");
    let out = world.command("k3d").args(["cluster", "create", &dropped]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(containers_of(&dir).len(), 2, "server and load balancer");
    let api_marker = format!("{}/clusters/{dropped}/api", dir.display());
    assert!(process_with(&api_marker), "no API server process");

    drop(world);
    assert!(containers_of(&dir).is_empty(), "containers left: {:?}", containers_of(&dir));
    assert!(!process_with(&api_marker), "API server still running");
    assert!(!dir.exists(), "{} still exists", dir.display());
}

/// The sample's k3d.yaml made for `world`'s slot, created with the world's fake k3d.
fn create_platform_cluster(world: &World) {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/docker/local/k3d.yaml");
    let config = world.k3d_config(&sample).unwrap();
    world.create_image_cache().unwrap();
    let out = world.command("k3d").args(["cluster", "create", "--config"]).arg(&config).output();
    let out = out.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn registry_answers(port: u16) -> bool {
    testbed::http::get(&format!("http://127.0.0.1:{port}/v2/"), &[]).is_ok_and(|r| r.status == 200)
}

#[test]
fn two_worlds_at_once_run_the_platform_in_their_own_slots() {
    if !testbed::require_docker() {
        return;
    }
    if testbed::slot::count() < 2 {
        eprintln!("skipped: TESTBED_SLOTS allows one world at a time");
        return;
    }
    let first = World::up(WorldOptions::default()).unwrap();
    let second = World::up(WorldOptions::default()).unwrap();
    let (a, b) = (first.slot(), second.slot());
    assert_ne!(a, b, "two live worlds share a slot");
    for slot in [a, b] {
        let lock = std::fs::File::options().write(true).open(slot.lock_file()).unwrap();
        assert!(
            matches!(lock.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
            "{} is not held",
            slot.lock_file().display()
        );
    }
    // The same platform config, made for each slot: both clusters and registries run.
    create_platform_cluster(&first);
    create_platform_cluster(&second);
    assert!(registry_answers(a.registry_port()) && registry_answers(b.registry_port()));
    let names = |world: &World| {
        let mut names = containers_of(world.dir());
        names.sort();
        names
    };
    let cluster = |slot: testbed::Slot| slot.cluster();
    assert_eq!(
        names(&second),
        [
            format!("k3d-{}", b.cache()),
            format!("k3d-{}-server-0", cluster(b)),
            format!("k3d-{}-serverlb", cluster(b)),
            b.registry(),
        ]
    );

    // One world going leaves the other's cluster, registry and slot alone.
    let first_dir = first.dir().to_path_buf();
    drop(first);
    assert!(containers_of(&first_dir).is_empty());
    assert_eq!(names(&second).len(), 4, "{:?}", names(&second));
    assert!(registry_answers(b.registry_port()) && !registry_answers(a.registry_port()));
    let ns = second.command("kubectl").args(["get", "ns", "-o", "name"]).output().unwrap();
    assert!(ns.status.success(), "{}", String::from_utf8_lossy(&ns.stderr));
}

#[test]
fn cli_up_prints_exports_and_down_removes_the_dir() {
    if !testbed::require_docker() {
        return;
    }
    let bin = env!("CARGO_BIN_EXE_testbed");
    let dir = std::env::temp_dir().join(format!("testbed-cli-{}", std::process::id()));
    // Whatever happens below, `down` runs: a leaked `up` would hold a world slot.
    struct Down(std::path::PathBuf);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = Command::new(env!("CARGO_BIN_EXE_testbed"))
                .args(["down", "--dir"])
                .arg(&self.0)
                .output();
        }
    }
    let _down = Down(dir.clone());
    let out = Command::new(bin)
        .args([
            "up",
            "--dir",
            dir.to_str().unwrap(),
            "--scenario",
            "gate-fail=24-auth",
            "--latency-ms",
            "3",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let exports = String::from_utf8(out.stdout).unwrap();
    let dir = dir.canonicalize().unwrap();
    for line in ["export TESTBED_DIR='", "export KUBECONFIG='", "export PATH='"] {
        assert!(exports.contains(line), "missing {line} in:\n{exports}");
    }
    assert!(exports.contains(&format!("export PATH='{}/bin:", dir.display())), "{exports}");
    // While it is up, its world slot is held (a test's World takes another one).
    let slot = exports
        .lines()
        .find_map(|l| l.strip_prefix("export TESTBED_SLOT='"))
        .and_then(|v| v.trim_end_matches('\'').parse().ok())
        .map(testbed::Slot::new)
        .unwrap_or_else(|| panic!("no TESTBED_SLOT in:\n{exports}"));
    let lock = std::fs::File::options().write(true).open(slot.lock_file()).unwrap();
    assert!(
        matches!(lock.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
        "`testbed up` does not hold {}",
        slot.lock_file().display()
    );

    let out = Command::new(bin)
        .args(["set", "--dir", dir.to_str().unwrap(), "healthy"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let scenario = std::fs::read_to_string(dir.join("scenario.json")).unwrap();
    assert!(
        scenario.contains("\"gate_fail\": []") && scenario.contains("\"latency_ms\": 3"),
        "{scenario}"
    );

    // `up` again on the same dir does not wait for its own lock.
    let again = Command::new(bin).args(["up", "--dir", dir.to_str().unwrap()]).output().unwrap();
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));

    let out = Command::new(bin).args(["down", "--dir", dir.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.exists());
}

#[test]
fn a_real_tools_world_runs_real_helm_and_helmfile_and_records_their_calls() {
    use testbed::real_tools::{self, Toolset};
    if !testbed::require_docker() || !real_tools::require(Toolset::Helm3) {
        return;
    }
    let world =
        World::up(WorldOptions { tools: Toolset::Helm3, ..WorldOptions::default() }).unwrap();
    let helm = world.command("helm").args(["version", "--short"]).output().unwrap();
    assert!(String::from_utf8_lossy(&helm.stdout).starts_with("v3.17.2"), "{helm:?}");
    let helmfile = world.command("helmfile").arg("--version").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&helmfile.stdout).trim(), "helmfile version 0.166.0");
    let tools: Vec<String> = world.calls().into_iter().map(|c| c.tool).collect();
    assert_eq!(tools, ["helm", "helmfile"]);
    let real_helm = world.env().into_iter().find(|(k, _)| k == "TESTBED_REAL_HELM").unwrap().1;
    assert!(real_helm.ends_with("helm-3.17.2/helm"), "{real_helm}");
}
