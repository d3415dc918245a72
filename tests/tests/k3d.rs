//! The fake k3d against the real Docker engine: what `k3d cluster ...` leaves behind is
//! what a user (and the engine) would see with real k3d.

use std::path::PathBuf;
use std::process::Output;

use testbed::{World, WorldOptions, docker, kubeconfig, probe};

fn platform_k3d_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/docker/local/k3d.yaml")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn k3d(world: &World, args: &[&str]) -> Output {
    world.command("k3d").args(args).output().expect("running the fake k3d")
}

fn kubectl_namespaces(world: &World) -> Output {
    world.command("kubectl").args(["get", "ns", "-o", "name"]).output().expect("running kubectl")
}

/// (name, id, running, labels) of the cluster's containers, sorted by name.
fn cluster_containers(
    cluster: &str,
) -> Vec<(String, String, bool, std::collections::HashMap<String, String>)> {
    let rt = docker::runtime().unwrap();
    rt.block_on(async {
        let d = docker::connect().await.unwrap();
        let mut found: Vec<_> =
            docker::containers_with_labels(&d, &[("app", "k3d"), ("k3d.cluster", cluster)])
                .await
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        docker::container_name(c),
                        c.id.clone().unwrap_or_default(),
                        docker::is_running(c),
                        c.labels.clone().unwrap_or_default(),
                    )
                })
                .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    })
}

#[test]
fn cluster_create_stop_start_delete_like_k3d() {
    if !testbed::require_docker() {
        return;
    }
    let world = World::up(WorldOptions::default()).unwrap();
    let config = platform_k3d_config();
    let config = config.to_str().unwrap();

    let out = k3d(
        &world,
        &[
            "cluster",
            "create",
            "--config",
            config,
            "--runtime-label",
            "bootstrap.hash=abc@server:*",
            "--wait",
        ],
    );
    assert!(out.status.success(), "create failed:\n{}", text(&out));

    let containers = cluster_containers("ameide");
    let names: Vec<&str> = containers.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(names, ["k3d-ameide-server-0", "k3d-ameide-serverlb", "k3d-dev-reg"]);
    for (name, _, running, labels) in &containers {
        assert!(running, "{name} is not running");
        assert_eq!(labels["app"], "k3d");
        assert_eq!(labels["k3d.cluster"], "ameide");
        assert_eq!(labels[docker::LABEL_TESTBED_DIR], world.dir().to_str().unwrap());
    }
    let role = |name: &str| containers.iter().find(|c| c.0 == name).unwrap().3.clone();
    assert_eq!(role("k3d-ameide-server-0")["k3d.role"], "server");
    assert_eq!(role("k3d-ameide-server-0")["bootstrap.hash"], "abc");
    assert_eq!(role("k3d-ameide-serverlb")["k3d.role"], "loadbalancer");
    assert!(
        !role("k3d-ameide-serverlb").contains_key("bootstrap.hash"),
        "runtime label leaked past its node filter"
    );
    let registry = role("k3d-dev-reg");
    assert_eq!(registry["k3d.role"], "registry");
    assert_eq!(registry["k3s.registry.port.external"], "5001");

    let v2 = probe::get("http://127.0.0.1:5001/v2/", &[]).unwrap();
    assert_eq!(v2.status, 200, "registry /v2/ answered {v2:?}");

    let ns = kubectl_namespaces(&world);
    assert!(ns.status.success(), "kubectl get ns failed:\n{}", text(&ns));
    assert!(String::from_utf8_lossy(&ns.stdout).contains("namespace/default"));

    let again = k3d(&world, &["cluster", "create", "--config", config]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again).contains("FATA[0000] Failed to create cluster 'ameide' because a cluster with that name already exists"), "{}", text(&again));

    let list = k3d(&world, &["cluster", "list", "ameide", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list[0]["name"], "ameide");
    assert_eq!(list[0]["serversRunning"], 1);

    let ids: Vec<String> = containers.iter().map(|c| c.1.clone()).collect();
    let out = k3d(&world, &["cluster", "stop", "ameide"]);
    assert!(out.status.success(), "stop failed:\n{}", text(&out));
    assert!(cluster_containers("ameide").iter().all(|c| !c.2), "a container still runs after stop");
    assert!(
        !kubectl_namespaces(&world).status.success(),
        "the API answers while the cluster is stopped"
    );

    let out = k3d(&world, &["cluster", "start", "ameide"]);
    assert!(out.status.success(), "start failed:\n{}", text(&out));
    let after: Vec<String> = cluster_containers("ameide").iter().map(|c| c.1.clone()).collect();
    assert_eq!(after, ids, "start must keep the same containers");
    let ns = kubectl_namespaces(&world);
    assert!(ns.status.success(), "kubectl after start:\n{}", text(&ns));

    let out = k3d(&world, &["cluster", "delete", "ameide"]);
    assert!(out.status.success(), "delete failed:\n{}", text(&out));
    assert!(cluster_containers("ameide").is_empty(), "containers left after delete");
    assert!(!world.dir().join("clusters/ameide").exists(), "API state left after delete");
    let config = kubeconfig::read(&world.kubeconfig()).unwrap();
    assert!(kubeconfig::context_names(&config).is_empty(), "kubeconfig still has {config}");
    assert!(probe::get("http://127.0.0.1:5001/v2/", &[]).is_err(), "registry still answers");

    let calls: Vec<String> = world.calls().iter().map(|c| c.args.join(" ")).collect();
    assert!(calls.iter().any(|c| c == "cluster delete ameide"), "calls: {calls:?}");
}
