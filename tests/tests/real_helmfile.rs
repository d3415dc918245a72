//! Real helmfile 0.166.0 with its helm 3.15.3, first on a testbed world's `PATH`, syncs
//! all nine sample layers in order (`-e local sync --skip-deps --wait --wait-for-jobs`)
//! as on k3s: every wait is met by the cluster's controllers (Deployments through
//! ReplicaSets, the database's claim bound, Pods pulled and started), and a gate's test
//! hook, created from what helm stored, passes in the cluster.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{eventually, real_binary, real_tool};
use serde_json::Value;
use testbed::{World, WorldOptions, require_docker};

const LAYERS: [&str; 9] = [
    "10-bootstrap",
    "15-secrets-certificates",
    "20-core-operators",
    "22-control-plane",
    "24-auth",
    "40-data-plane",
    "45-data-plane-ext",
    "50-product-services",
    "60-qa",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap()
}

/// A command on the world with `first` ahead of everything on its `PATH`.
fn command(world: &World, first: &Path, program: &str) -> Command {
    let mut cmd = world.command(first.join(program));
    let path =
        world.env().into_iter().find(|(k, _)| k == "PATH").map(|(_, v)| v).unwrap_or_default();
    cmd.env("PATH", format!("{}:{path}", first.display())).current_dir(repo());
    cmd
}

fn run(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("$ {what}\n{text}");
    assert!(out.status.success(), "{what} failed:\n{text}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn real_helmfile_syncs_every_sample_layer_with_waits() {
    if !require_docker() {
        return;
    }
    let Some(helmfile) = real_binary("helmfile-0.166.0/helmfile") else { return };
    let Some(kubectl) = real_tool("kubectl") else { return };
    let tools = helmfile.parent().unwrap().to_path_buf();
    let scenarios = vec!["startup-ms=300".into(), "cron-minute-ms=2000".into()];
    let world = World::up(WorldOptions { scenarios, ..WorldOptions::default() }).unwrap();
    // The platform's cluster, named and ported for the world's slot.
    let config = world.k3d_config(&repo().join("infra/docker/local/k3d.yaml")).unwrap();
    world.create_image_cache().unwrap();
    let mut create = world.command("k3d");
    create.args(["cluster", "create", "--config"]).arg(&config).current_dir(repo());
    run(create, "k3d cluster create");

    for layer in LAYERS {
        let mut sync = command(&world, &tools, "helmfile");
        // A layer is `<layer>.yaml`, or `<layer>.yaml.gotmpl` when it is a Go template.
        let plain = format!("infra/kubernetes/helmfiles/{layer}.yaml");
        let file = if repo().join(&plain).exists() { plain } else { format!("{plain}.gotmpl") };
        sync.args(["-f", &file, "-e", "local", "sync", "--skip-deps", "--wait", "--wait-for-jobs"]);
        run(sync, &format!("helmfile sync {layer}"));
    }
    // The real helm recorded every release deployed (none was left pending by a wait).
    let mut list = command(&world, &tools, "helm");
    list.args(["list", "-A", "-o", "json"]);
    let releases: Value = serde_json::from_str(&run(list, "helm list")).unwrap();
    let releases = releases.as_array().unwrap();
    assert!(releases.len() >= 15, "{releases:?}");
    assert!(releases.iter().all(|r| r["status"] == "deployed"), "{releases:?}");

    // What the waits waited for is there: every Deployment rolled out through a
    // ReplicaSet, the database's Pod running on its bound claim.
    let mut get = world.command(&kubectl);
    get.args(["get", "deployments,statefulsets,pvc", "-A", "-o", "json"]);
    let items: Value = serde_json::from_str(&run(get, "kubectl get")).unwrap();
    for item in items["items"].as_array().unwrap() {
        let name = item["metadata"]["name"].as_str().unwrap();
        match item["kind"].as_str().unwrap() {
            "PersistentVolumeClaim" => assert_eq!(item["status"]["phase"], "Bound", "{name}"),
            _ => assert_eq!(item["status"]["readyReplicas"], item["spec"]["replicas"], "{name}"),
        }
    }

    // A gate's test hook, created from what helm stored, passes in the cluster.
    let mut hooks = command(&world, &tools, "helm");
    hooks.args(["get", "hooks", "auth-smoke", "-n", "ameide"]);
    let manifest = run(hooks, "helm get hooks");
    let file = world.dir().join("auth-smoke-hooks.yaml");
    std::fs::write(&file, manifest).unwrap();
    let mut apply = world.command(&kubectl);
    apply.args(["create", "-n", "ameide", "-f", file.to_str().unwrap()]);
    run(apply, "kubectl create (the test hook)");
    let phase = eventually(Duration::from_secs(60), "the test Pod ended", || {
        let mut get = world.command(&kubectl);
        get.args([
            "get",
            "pod",
            "auth-smoke-keycloak",
            "-n",
            "ameide",
            "-o",
            "jsonpath={.status.phase}",
        ]);
        let out = get.output().ok()?;
        let phase = String::from_utf8_lossy(&out.stdout).into_owned();
        (phase == "Succeeded" || phase == "Failed").then_some(phase)
    });
    assert_eq!(phase, "Succeeded");
}
