//! The fake k3d against the real Docker engine: what `k3d cluster ...` leaves behind is
//! what a user (and the engine) would see with real k3d.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use testbed::{World, WorldOptions, docker, http, kubeconfig};

/// The platform's k3d.yaml made for the world's slot (its cluster, registry and ports).
fn platform_k3d_config(world: &World) -> PathBuf {
    let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/docker/local/k3d.yaml");
    world.k3d_config(&sample).unwrap()
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
    let config = platform_k3d_config(&world);
    let config = config.to_str().unwrap();
    let slot = world.slot();
    let cluster = slot.cluster();
    let (server, lb, registry_name) =
        (format!("k3d-{cluster}-server-0"), format!("k3d-{cluster}-serverlb"), slot.registry());
    let v2_url = format!("http://127.0.0.1:{}/v2/", slot.registry_port());

    // The config uses an image cache: k3d needs it to exist (`RegistryGet`).
    let create = [
        "cluster",
        "create",
        "--config",
        config,
        "--runtime-label",
        "bootstrap.hash=abc@server:*",
        "--wait",
    ];
    let out = k3d(&world, &create);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("Failed to find registry 'k3d-{}'", slot.cache())),
        "{}",
        text(&out)
    );
    let cache = [
        "registry",
        "create",
        &slot.cache(),
        "--proxy-remote-url",
        "https://registry-1.docker.io",
        "--no-help",
    ];
    let out = k3d(&world, &cache);
    assert!(out.status.success(), "registry create failed:\n{}", text(&out));
    let out = k3d(&world, &create);
    assert!(out.status.success(), "create failed:\n{}", text(&out));

    let containers = cluster_containers(&cluster);
    let names: Vec<&str> = containers.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(names, [&server, &lb, &registry_name]);
    for (name, _, running, labels) in &containers {
        assert!(running, "{name} is not running");
        assert_eq!(labels["app"], "k3d");
        assert_eq!(labels["k3d.cluster"], cluster);
        assert_eq!(labels[docker::LABEL_TESTBED_DIR], world.dir().to_str().unwrap());
    }
    let role = |name: &str| containers.iter().find(|c| c.0 == name).unwrap().3.clone();
    assert_eq!(role(&server)["k3d.role"], "server");
    assert_eq!(role(&server)["bootstrap.hash"], "abc");
    assert_eq!(role(&lb)["k3d.role"], "loadbalancer");
    assert!(!role(&lb).contains_key("bootstrap.hash"), "runtime label leaked past its node filter");
    let registry = role(&registry_name);
    assert_eq!(registry["k3d.role"], "registry");
    assert_eq!(registry["k3s.registry.port.external"], slot.registry_port().to_string());

    let v2 = http::get(&v2_url, &[]).unwrap();
    assert_eq!(v2.status, 200, "registry /v2/ answered {v2:?}");

    let ns = kubectl_namespaces(&world);
    assert!(ns.status.success(), "kubectl get ns failed:\n{}", text(&ns));
    assert!(String::from_utf8_lossy(&ns.stdout).contains("namespace/default"));

    let again = k3d(&world, &["cluster", "create", "--config", config]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again).contains(&format!("FATA[0000] Failed to create cluster '{cluster}' because a cluster with that name already exists")), "{}", text(&again));

    let list = k3d(&world, &["cluster", "list", &cluster, "-o", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list[0]["name"], cluster.as_str());
    assert_eq!(list[0]["serversRunning"], 1);

    let ids: Vec<String> = containers.iter().map(|c| c.1.clone()).collect();
    let out = k3d(&world, &["cluster", "stop", &cluster]);
    assert!(out.status.success(), "stop failed:\n{}", text(&out));
    assert!(cluster_containers(&cluster).iter().all(|c| !c.2), "a container still runs after stop");
    assert!(
        !kubectl_namespaces(&world).status.success(),
        "the API answers while the cluster is stopped"
    );

    let out = k3d(&world, &["cluster", "start", &cluster]);
    assert!(out.status.success(), "start failed:\n{}", text(&out));
    let after: Vec<String> = cluster_containers(&cluster).iter().map(|c| c.1.clone()).collect();
    assert_eq!(after, ids, "start must keep the same containers");
    let ns = kubectl_namespaces(&world);
    assert!(ns.status.success(), "kubectl after start:\n{}", text(&ns));

    let out = k3d(&world, &["cluster", "delete", &cluster]);
    assert!(out.status.success(), "delete failed:\n{}", text(&out));
    assert!(cluster_containers(&cluster).is_empty(), "containers left after delete");
    assert!(!world.dir().join("clusters").join(&cluster).exists(), "API state left after delete");
    let config = kubeconfig::read(&world.kubeconfig()).unwrap();
    assert!(kubeconfig::context_names(&config).is_empty(), "kubeconfig still has {config}");
    assert!(http::get(&v2_url, &[]).is_err(), "registry still answers");
    // The image cache is no node of the cluster: it stays.
    let left = docker_inspect_running(&format!("k3d-{}", slot.cache()));
    assert!(left, "the image cache went with the cluster");

    let calls: Vec<String> = world.calls().iter().map(|c| c.args.join(" ")).collect();
    let delete = format!("cluster delete {cluster}");
    assert!(calls.contains(&delete), "calls: {calls:?}");
}

#[test]
fn the_api_lives_with_the_server_container_over_tls() {
    if !testbed::require_docker() {
        return;
    }
    let world = World::up(WorldOptions::default()).unwrap();
    let config = world.dir().join("k3d.yaml");
    let reg_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // Names of the world's slot: several worlds run at once on one Docker.
    let (sample, sample_reg) = (world.slot().name("sample"), world.slot().name("sample-reg"));
    let sample_context = format!("k3d-{sample}");
    std::fs::write(
        &config,
        format!(
            "apiVersion: k3d.io/v1alpha5\nkind: Simple\nmetadata:\n  name: {sample}\nservers: 1\nagents: 0\n\
             registries:\n  create:\n    name: {sample_reg}\n    host: \"127.0.0.1\"\n    hostPort: \"{reg_port}\"\n"
        ),
    )
    .unwrap();
    // Created from its own session, as a terminal would; then that session is killed.
    let mut cmd = world.command("setsid");
    cmd.arg(world.dir().join("bin/k3d")).args([
        "cluster",
        "create",
        "--config",
        config.to_str().unwrap(),
    ]);
    let child = cmd.spawn().unwrap();
    let sid = child.id() as i32;
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "create failed:\n{}", text(&out));
    testbed::procs::kill_session(sid);

    // The registry is named exactly as configured and listens on 5000 inside.
    let containers = cluster_containers(&sample);
    let reg = containers.iter().find(|c| c.0 == sample_reg).expect("a container named sample-reg");
    assert_eq!(reg.3["k3s.registry.port.internal"], "5000");
    assert_eq!(reg.3["k3s.registry.port.external"], reg_port.to_string());
    let v2 = http::get(&format!("http://127.0.0.1:{reg_port}/v2/"), &[]).unwrap();
    assert_eq!(v2.status, 200);

    // The kubeconfig is k3d's: https, a CA, a client certificate; real kubectl uses it.
    let kc = kubeconfig::read(&world.kubeconfig()).unwrap();
    let cluster = &kc["clusters"][0]["cluster"];
    assert!(cluster["server"].as_str().unwrap().starts_with("https://"), "{kc}");
    assert!(cluster["certificate-authority-data"].is_string());
    assert!(kc["users"][0]["user"]["client-certificate-data"].is_string());
    assert!(kc["users"][0]["user"]["client-key-data"].is_string());
    let ns = kubectl_namespaces(&world);
    assert!(ns.status.success(), "after the creator's session was killed:\n{}", text(&ns));

    // `k3d kubeconfig merge` brings a lost context back without switching to it.
    kubeconfig::update(&world.kubeconfig(), |c| {
        kubeconfig::remove_cluster(c, &sample);
        c["current-context"] = serde_json::json!("elsewhere");
    })
    .unwrap();
    let out = k3d(
        &world,
        &[
            "kubeconfig",
            "merge",
            &sample,
            "--kubeconfig-merge-default",
            "--kubeconfig-switch-context=false",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let kc = kubeconfig::read(&world.kubeconfig()).unwrap();
    assert_eq!(kubeconfig::context_names(&kc), [sample_context.as_str()]);
    assert_eq!(kc["current-context"], "elsewhere");
    kubeconfig::update(&world.kubeconfig(), |c| {
        c["current-context"] = serde_json::json!(sample_context)
    })
    .unwrap();

    // docker stop of the server node takes the API down; docker start brings it back.
    let docker_cmd = |verb: &str| {
        let out = Command::new("docker")
            .args([verb, &format!("k3d-{sample}-server-0")])
            .output()
            .unwrap();
        assert!(out.status.success(), "docker {verb}: {}", text(&out));
    };
    docker_cmd("stop");
    wait_for(Duration::from_secs(30), || !kubectl_namespaces(&world).status.success());
    docker_cmd("start");
    wait_for(Duration::from_secs(30), || kubectl_namespaces(&world).status.success());
    let out = k3d(&world, &["cluster", "delete", &sample]);
    assert!(out.status.success(), "{}", text(&out));
}

/// Whether a container exists and runs (the real docker CLI).
fn docker_inspect_running(name: &str) -> bool {
    let out = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{.State.Running}}", name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "true"
}

/// Poll until `done`; panics after `limit` (a generous bound, not a timing assertion).
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "not within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The networks container `name` is on, sorted (empty when it does not exist).
fn networks_of(name: &str) -> Vec<String> {
    let rt = docker::runtime().unwrap();
    rt.block_on(async {
        let d = docker::connect().await.unwrap();
        docker::network::container_networks(&d, name).await.unwrap().unwrap_or_default().1
    })
}

#[test]
fn the_cluster_network_takes_the_used_registries_only_at_create() {
    if !testbed::require_docker() {
        return;
    }
    let world = World::up(WorldOptions::default()).unwrap();
    world.create_image_cache().unwrap();
    let config = platform_k3d_config(&world);
    let slot = world.slot();
    let (cluster, cache) = (slot.cluster(), format!("k3d-{}", slot.cache()));
    let (network, server) = (format!("k3d-{cluster}"), format!("k3d-{cluster}-server-0"));
    assert_eq!(networks_of(&cache), ["bridge"], "`k3d registry create` joins bridge alone");
    let out = k3d(&world, &["cluster", "create", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "create failed:\n{}", text(&out));
    assert!(text(&out).contains(&format!("Created network '{network}'")), "{}", text(&out));
    assert_eq!(networks_of(&server), [network.as_str()], "a node is on the cluster's network only");
    assert_eq!(networks_of(&cache), ["bridge".to_owned(), network.clone()]);
    assert_eq!(networks_of(&slot.registry()), ["bridge".to_owned(), network.clone()]);
    let list = k3d(&world, &["cluster", "list", &cluster, "-o", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list[0]["network"]["name"], network.as_str());
    assert_eq!(list[0]["network"]["isExternal"], false);

    // Who downloads an image a node pulls: the cache, or the node itself from upstream.
    let pulled_by = |image: &str| {
        let args = ["exec", &server, "crictl", "pull", image];
        let out = world.command("docker").args(args).output().unwrap();
        assert!(out.status.success(), "crictl pull {image}: {}", text(&out));
        let pulls = testbed::docker::node_images::pulls(world.dir()).unwrap();
        pulls.last().map(|p| p.by.clone()).unwrap_or_default()
    };
    let through_cache = format!("cache/{cache}");
    assert_eq!(pulled_by("busybox:1.37.0"), through_cache);
    // A cache made again while the cluster runs is on bridge alone: the node pulls past it.
    let rm = world.command("docker").args(["rm", "-f", &cache]).output().unwrap();
    assert!(rm.status.success(), "{}", text(&rm));
    world.create_image_cache().unwrap();
    assert_eq!(networks_of(&cache), ["bridge"]);
    assert_eq!(pulled_by("alpine:3.20"), format!("crictl/{server}"));
    let connect = ["network", "connect", &network, &cache];
    let out = world.command("docker").args(connect).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(pulled_by("alpine:3.21"), through_cache);
    // Stopped, it does not answer either.
    let stop = world.command("docker").args(["stop", &cache]).output().unwrap();
    assert!(stop.status.success(), "{}", text(&stop));
    assert_eq!(pulled_by("alpine:3.22"), format!("crictl/{server}"));
    let start = world.command("docker").args(["start", &cache]).output().unwrap();
    assert!(start.status.success(), "{}", text(&start));

    // Delete removes the network, only disconnecting the cache (no node of the cluster).
    let out = k3d(&world, &["cluster", "delete", &cluster]);
    assert!(out.status.success(), "delete failed:\n{}", text(&out));
    assert!(
        text(&out).contains(&format!("Deleting cluster network '{network}'")),
        "{}",
        text(&out)
    );
    assert_eq!(networks_of(&cache), ["bridge"], "the cache stays, off the gone network");
    let gone = Command::new("docker").args(["network", "inspect", &network]).output().unwrap();
    assert!(!gone.status.success(), "network {network} is left after delete");
}
