//! Images fetched ahead, as a user sees them: `plan` lists each layer's images; a cold
//! bootstrap fetches them while the layers sync and says how many and how long; a
//! recreated cluster gets them again without a download; an image the registry does
//! not have is a warning naming it, and the failure of the layer that needs it.

mod support;

use serde_json::Value;
use support::{Workspace, layer};
use testbed::node_images;
use testbed::world::{World, WorldOptions, require_docker};

const K3D_CONFIG: &str = support::K3D_CONFIG;

/// `pull_ms`: how long one download takes. Long enough that a recreated cluster's
/// imports (local copies) land before any Pod's own pull could finish, as they do on a
/// real network.
fn world(pull_ms: u64, extra: &[&str]) -> World {
    let mut scenarios: Vec<String> =
        ["startup-ms=300", "cron-minute-ms=2000"].map(String::from).to_vec();
    scenarios.push(format!("pull-ms={pull_ms}"));
    scenarios.extend(extra.iter().map(|s| s.to_string()));
    World::up(WorldOptions { scenarios, ..WorldOptions::default() }).unwrap()
}

fn platform(world: &World) -> Workspace {
    Workspace::new(&[
        "timeouts = { cluster_ready = 60, layer_sync = 20, gate = 60, vault_bootstrap = 20 }",
    ])
    .with_infra()
    .for_world(world)
}

fn images(summary: &Value) -> &Value {
    &summary["images"]
}

fn downloads(world: &World) -> Vec<String> {
    node_images::pulls(world.dir())
        .unwrap()
        .into_iter()
        .map(|p| format!("{} {}", p.by, p.image))
        .collect()
}

#[test]
fn plan_lists_images_and_a_recreated_cluster_downloads_none() {
    if !require_docker() {
        return;
    }
    let world = world(3000, &[]);
    let ws = platform(&world);
    let slot = world.slot();

    let (code, plan) = ws.json(&world, &["plan"]);
    assert_eq!(code, Some(0), "{plan}");
    // The slot's names of the sample's images (the host's image store is the machine's).
    let [busybox, vault, postgres] =
        ["busybox:1.37.0", "hashicorp/vault:1.17.6", "postgres:16.4-alpine"].map(|i| slot.image(i));
    assert_eq!(layer(&plan, "10-bootstrap")["images"], serde_json::json!([busybox]));
    assert_eq!(
        layer(&plan, "15-secrets-certificates")["images"],
        serde_json::json!([busybox, vault])
    );
    assert_eq!(layer(&plan, "40-data-plane")["images"], serde_json::json!([postgres]));

    let (code, cold) = ws.json(&world, &["bootstrap", "--no-tilt"]);
    assert_eq!(code, Some(0), "{cold}");
    assert_eq!(images(&cold)["fetched"], 3, "{}", images(&cold));
    assert_eq!(images(&cold)["failed"], serde_json::json!([]));
    assert!(images(&cold)["duration_ms"].as_u64().is_some());
    let store = node_images::pod_node_store(world.dir(), &slot.cluster());
    assert_eq!(node_images::node_images(&store).len(), 3);
    let log = std::fs::read_to_string(ws.log()).unwrap();
    assert!(log.contains("images: 3 fetched, 0 already present, 0 failed in "), "{log}");

    // Drift: the cluster is recreated with empty nodes; the host still has every image.
    ws.edit(K3D_CONFIG, |t| t.replace("agents: 0", "agents: 1"));
    let before = downloads(&world);
    let (code, recreated) = ws.json(&world, &["bootstrap", "--no-tilt"]);
    assert_eq!(code, Some(0), "{recreated}");
    assert_eq!(images(&recreated)["present"], 3, "{}", images(&recreated));
    assert_eq!(images(&recreated)["fetched"], 0);
    assert_eq!(downloads(&world), before, "a recreation downloaded an image again");
    // Every node of the new cluster has them (k3d imports into servers and agents).
    let cluster = slot.cluster();
    let agent = node_images::node_store(world.dir(), &cluster, &format!("k3d-{cluster}-agent-0"));
    assert_eq!(node_images::node_images(&agent).len(), 3);
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
    let (code, summary) = ws.json(&world, &["bootstrap", "--no-tilt"]);
    assert_eq!(code, Some(1), "{summary}");

    let failed = &images(&summary)["failed"];
    assert_eq!(failed[0]["image"], vault, "{failed}");
    assert!(failed[0]["reason"].as_str().unwrap().contains("manifest unknown"), "{failed}");
    assert_eq!(images(&summary)["fetched"], 2);

    // Its layer cannot start without it: the failure names the image.
    assert_eq!(summary["failure"]["layer"], "15-secrets-certificates", "{summary}");
    let message = summary["failure"]["message"].as_str().unwrap();
    assert!(message.contains(&format!("image {vault} could not be fetched")), "{message}");
    assert!(
        summary["failure"]["remediation"]
            .as_str()
            .unwrap()
            .starts_with("make the image(s) pullable")
    );
    // The warning, in the log (and on the terminal) as the fetch ends.
    let log = std::fs::read_to_string(ws.log()).unwrap();
    let warning = format!(
        "image {vault} was not fetched ahead: docker pull: Error response from daemon: manifest for {vault} not found"
    );
    assert!(log.lines().any(|l| l.contains("warning") && l.contains(&warning)), "{log}");
}
