//! Images fetched ahead, as a user sees them: `plan` lists each layer's images; a cold
//! bootstrap fetches them while the layers sync and says how many and how long; a
//! recreated cluster gets them again without a download; an image the registry does
//! not have is a warning naming it, and the failure of the layer that needs it.

mod support;

use serde_json::Value;
use support::{Workspace, failure, layer, typed};
use testbed::docker::node_images;
use testbed::world::{World, require_docker};
use xtask::bootstrap::summary_json::SummaryDoc;
use xtask::error::Exit;

const K3D_CONFIG: &str = support::K3D_CONFIG;

/// `pull_ms`: how long one download takes. Long enough that a recreated cluster's
/// imports (local copies) land before any Pod's own pull could finish, as they do on a
/// real network.
fn world(pull_ms: u64, extra: &[&str]) -> World {
    let pull = format!("pull-ms={pull_ms}");
    support::fast_world(&[&[pull.as_str()][..], extra].concat())
}

fn platform(world: &World) -> Workspace {
    Workspace::new(&[
        "timeouts = { cluster_ready = 60, layer_sync = 20, gate = 60, vault_bootstrap = 20 }",
    ])
    .with_infra()
    .for_world(world)
}

/// The summary's `images` (the fetch report, not typed in the summary's type).
fn images(summary: &SummaryDoc) -> &Value {
    summary.images.as_ref().unwrap_or_else(|| panic!("no images in {summary:?}"))
}

fn downloads(world: &World) -> Vec<String> {
    node_images::pulls(world.dir())
        .unwrap()
        .into_iter()
        .map(|p| format!("{} {}", p.by, p.image))
        .collect()
}

/// A digest-pinned reference, as a layer may run it.
const PINNED: &str =
    "busybox@sha256:37f7b378a29ceb4c551b1b5582e27747b855bbfaa73fa11914fe0df028dc581f";

/// On Docker's containerd image store (where `docker save | ctr import` fails), a cold
/// bootstrap fetches every image ahead through the image cache, each downloaded from
/// upstream once, a digest-pinned one too, with no warning; a recreated cluster
/// downloads nothing.
#[test]
fn images_come_through_the_cache_once_on_any_docker_and_survive_recreation() {
    if !require_docker() {
        return;
    }
    let world = world(3000, &["docker-containerd-store"]);
    let ws = platform(&world);
    let slot = world.slot();
    ws.edit("infra/kubernetes/environments/local/bootstrap-smoke.yaml", |text| {
        text.replace(
            "  - name: cluster-dns\n",
            &format!("  - name: cluster-dns\n    image: {PINNED}\n"),
        )
    });

    let (code, plan) = ws.plan(&world, &["plan"]);
    assert_eq!(code, Exit::Ok, "{plan:?}");
    assert_eq!(layer(&plan, "10-bootstrap").images, [PINNED]);
    // The slot's names of the sample's images (a digest-pinned one stays as it is).
    let [busybox, vault, postgres] =
        ["busybox:1.37.0", "hashicorp/vault:1.17.6", "postgres:16.4-alpine"].map(|i| slot.image(i));
    assert_eq!(layer(&plan, "15-secrets-certificates").images, [busybox.as_str(), vault.as_str()]);
    assert_eq!(layer(&plan, "40-data-plane").images, [postgres.as_str()]);

    let (code, printed) = ws.json(&world, &["bootstrap", "--no-tilt"]);
    let cold: SummaryDoc = typed(&printed);
    assert_eq!(code, Exit::Ok, "{printed}");
    assert_eq!(images(&cold)["fetched"], 4, "{}", images(&cold));
    assert_eq!(images(&cold)["failed"], serde_json::json!([]));
    // Anywhere in the summary (a stage's or a layer's warnings).
    assert!(!printed.to_string().contains("not fetched ahead"), "an image warning: {printed}");
    let cache = format!("cache/k3d-{}", slot.cache());
    let mut fetched = downloads(&world);
    fetched.sort();
    assert_eq!(
        fetched,
        [
            format!("{cache} docker.io/{vault}"),
            format!("{cache} docker.io/library/{busybox}"),
            format!("{cache} docker.io/library/{PINNED}"),
            format!("{cache} docker.io/library/{postgres}"),
        ],
        "each image downloaded from upstream once, by the cache"
    );
    let store = node_images::pod_node_store(world.dir(), &slot.cluster());
    assert_eq!(node_images::node_images(&store).len(), 4);
    let log = std::fs::read_to_string(ws.log()).unwrap();
    assert!(log.contains("images: 4 fetched, 0 already present, 0 failed in "), "{log}");
    assert!(
        log.contains(&format!(
            "k3d registry create {} --image docker.io/library/registry:3.0.0 --proxy-remote-url https://registry-1.docker.io",
            slot.cache()
        )),
        "{log}"
    );
    // The cache was warmed from the host while k3d made the cluster, each image once.
    for image in [&busybox, &vault, &postgres, &PINNED.to_owned()] {
        let warmed = format!("{image}: in cache k3d-{}", slot.cache());
        assert!(log.contains(&warmed), "no `{warmed}` in {log}");
    }

    // Drift: the cluster is recreated with empty nodes; the cache outlives it.
    ws.edit(K3D_CONFIG, |t| t.replace("agents: 0", "agents: 1"));
    let before = downloads(&world);
    let (code, recreated) = ws.summary(&world, &["bootstrap", "--no-tilt"]);
    assert_eq!(code, Exit::Ok, "{recreated:?}");
    assert_eq!(images(&recreated)["fetched"], 4, "{}", images(&recreated));
    assert_eq!(downloads(&world), before, "a recreation downloaded an image again");
    // Every node of the new cluster has them (each node's containerd pulled).
    let cluster = slot.cluster();
    let agent = node_images::node_store(world.dir(), &cluster, &format!("k3d-{cluster}-agent-0"));
    assert_eq!(node_images::node_images(&agent).len(), 4);
}

#[test]
fn an_unfetchable_image_is_a_warning_and_the_failure_of_its_layer() {
    if !require_docker() {
        return;
    }
    let world = world(500, &[]);
    let ws = platform(&world);
    let slot = world.slot();
    let vault = slot.image("hashicorp/vault:1.17.6");
    world.set(&format!("image-unfetchable={vault}")).unwrap();
    let (code, summary) = ws.summary(&world, &["bootstrap", "--no-tilt"]);
    assert_eq!(code, Exit::Failed, "{summary:?}");

    let failed = &images(&summary)["failed"];
    assert_eq!(failed[0]["image"], vault, "{failed}");
    assert!(failed[0]["reason"].as_str().unwrap().contains(": not found"), "{failed}");
    assert_eq!(images(&summary)["fetched"], 2);

    // Its layer cannot start without it: the failure names the image.
    let failure = failure(&summary);
    assert_eq!(failure.layer.as_deref(), Some("15-secrets-certificates"), "{summary:?}");
    let message = &failure.message;
    assert!(message.contains(&format!("image {vault} could not be fetched")), "{message}");
    assert!(failure.remediation.starts_with("make the image(s) pullable"), "{failure:?}");
    // The warning, in the log (and on the terminal) as the fetch ends.
    let log = std::fs::read_to_string(ws.log()).unwrap();
    let node = format!("k3d-{}-server-0", slot.cluster());
    let warning = format!(
        "image {vault} was not fetched ahead: crictl pull in {node}: FATA[0000] pulling image: rpc error: code = NotFound"
    );
    assert!(log.lines().any(|l| l.contains("warning") && l.contains(&warning)), "{log}");
}

/// A gate whose test Pod cannot pull its image fails as soon as the kubelet says why,
/// not at the gate's timeout: the finding names the image and the kubelet's reason.
#[test]
fn a_gate_whose_image_cannot_be_pulled_fails_at_once_naming_it() {
    if !require_docker() {
        return;
    }
    const GATE_IMAGE: &str = "busybox:1.37.0-gate";
    let world = world(500, &[&format!("image-unfetchable={GATE_IMAGE}")]);
    let ws = platform(&world);
    ws.edit("infra/kubernetes/environments/local/bootstrap-smoke.yaml", |text| {
        let edited = text.replace(
            "  - name: cluster-dns\n",
            &format!("  - name: cluster-dns\n    image: {GATE_IMAGE}\n"),
        );
        assert_ne!(edited, text);
        edited
    });
    let (code, summary) = ws.summary(&world, &["bootstrap", "--no-tilt"]);
    assert_eq!(code, Exit::Failed, "{summary:?}");
    let failure = failure(&summary);
    assert_eq!(failure.layer.as_deref(), Some("10-bootstrap"), "{summary:?}");
    let failure = format!("{}\n{}", failure.message, failure.remediation);
    // Stopped as soon as the reason was hopeless, not by the gate's timeout.
    assert!(failure.contains("waiting cannot help, `helm test` was stopped"), "{failure}");
    assert!(failure.contains(&format!("cannot pull image {GATE_IMAGE}")), "{failure}");
    assert!(failure.contains("ErrImagePull") || failure.contains("ImagePullBackOff"), "{failure}");
    assert!(failure.contains(&format!("Failed to pull image \"{GATE_IMAGE}\"")), "{failure}");
    assert!(failure.contains("not found"), "{failure}");
}

/// A cache removed while the cluster runs is made again by the next run, which connects
/// it to the cluster's network (k3d connects `registries.use` only at `cluster create`;
/// `k3d registry create` joins `bridge` alone): the next pull in the cluster comes
/// through the cache, with no download of its own from upstream.
#[test]
fn a_cache_removed_while_the_cluster_runs_is_made_again_on_the_clusters_network() {
    if !require_docker() {
        return;
    }
    let world = world(500, &[]);
    let ws = platform(&world);
    let slot = world.slot();
    let (cache, network) = (format!("k3d-{}", slot.cache()), format!("k3d-{}", slot.cluster()));
    let (code, first) = ws.summary(&world, &["bootstrap", "--no-tilt"]);
    assert_eq!(code, Exit::Ok, "{first:?}");
    let removed = world.command("docker").args(["rm", "-f", &cache]).output().unwrap();
    assert!(removed.status.success(), "{}", support::text(&removed.stderr));

    let (code, plan) = ws.plan(&world, &["plan"]);
    assert_eq!(code, Exit::Ok, "{plan:?}");
    let decision = plan.platform.cluster.decision.as_ref().expect("a cluster decision");
    let planned: Vec<(&str, &str)> =
        decision.connect_caches.iter().map(|c| (c.cache.as_str(), c.network.as_str())).collect();
    assert_eq!(planned, [(cache.as_str(), network.as_str())], "{decision:?}");

    let (code, again) = ws.summary(&world, &["bootstrap", "--no-tilt"]);
    assert_eq!(code, Exit::Ok, "{again:?}");
    let log = std::fs::read_to_string(ws.log()).unwrap();
    let made = format!("$ k3d registry create {} ", slot.cache());
    let connected = format!("$ docker network connect {network} {cache}");
    let (made_at, connected_at) = (log.find(&made), log.find(&connected));
    assert!(made_at.is_some() && made_at < connected_at, "made, then connected: {log}");
    let inspect = world
        .command("docker")
        .args([
            "inspect",
            "--format",
            "{{range $n, $_ := .NetworkSettings.Networks}}{{$n}} {{end}}",
        ])
        .arg(&cache)
        .output()
        .unwrap();
    let networks = support::text(&inspect.stdout);
    assert!(networks.split_whitespace().any(|n| n == network), "{cache} is on {networks}");

    // The next image a node pulls comes through the new cache.
    let before = downloads(&world).len();
    let node = format!("k3d-{}-server-0", slot.cluster());
    let pulled = world
        .command("docker")
        .args(["exec", &node, "crictl", "pull", "alpine:3.20"])
        .output()
        .unwrap();
    assert!(pulled.status.success(), "{}", support::text(&pulled.stderr));
    assert_eq!(
        downloads(&world)[before..],
        [format!("cache/{cache} docker.io/library/alpine:3.20")],
        "downloaded by the cache, not by the node from upstream"
    );
}
