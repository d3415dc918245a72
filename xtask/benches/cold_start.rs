//! Cold start at network speed: a cold `cargo xtask bootstrap` of the sample platform in
//! a fresh testbed world whose images have their real compressed sizes and come over a
//! 50 Mbit/s link (`pull-mbps=50`, plus `pull-ms=200` of round trips per download),
//! first with `images.fetch_ahead = false` (each layer's Pods pull on demand when the
//! layer syncs: the baseline), then in another fresh world with fetch-ahead, then, in
//! that second world, a recreation of the cluster after a drift edit of the k3d config.
//! Run:
//!
//! ```text
//! cargo bench -p xtask --bench cold_start --profile dev [-- SCENARIO_WORD...]
//! ```
//!
//! Extra words are testbed scenario words added for both worlds (a later word wins).
//! Prints one line:
//! `cold_start on_demand_ms=<n> ahead_ms=<n> image_wait_on_demand_ms=<n> image_wait_ahead_ms=<n> recreate_ms=<n> recreate_upstream_pulls=<n>`
//! where image wait is the sum over Pods of the time from the Pod's creation until every
//! image it needs is on its node (the testbed kubelet records it), and
//! `recreate_upstream_pulls` counts downloads from the simulated upstream registry (by
//! the image cache, `docker pull` or a kubelet) during the recreation run; the scenario
//! it ran with on the line before.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use testbed::docker::node_images;
use testbed::world::{World, WorldOptions, require_docker};

fn main() {
    if !require_docker() {
        return;
    }
    // The Vault bootstrap CronJob's first Job waits for the next schedule minute: scaled
    // to 2 s, as the e2e tests do, so a random wait of up to 60 s does not drown the
    // difference. Pod start-up stays the testbed's default.
    let mut words: Vec<String> =
        ["pull-mbps=50", "pull-ms=200", "cron-minute-ms=2000"].map(String::from).to_vec();
    words.extend(std::env::args().skip(1).filter(|a| a.contains('=') && !a.starts_with('-')));
    println!("scenario: {}", words.join(" "));

    let (on_demand, wait_on_demand) = {
        let world = World::up(WorldOptions {
            scenarios: words.clone(),
            latency_ms: 0,
            ..WorldOptions::default()
        })
        .unwrap();
        let root = workspace(&world, false);
        let wall = bootstrap(&world, root.path()).0;
        println!("on demand, per Pod: {}", per_pod(&world));
        (wall, node_images::image_waits(world.dir()))
    };
    let world =
        World::up(WorldOptions { scenarios: words, latency_ms: 0, ..WorldOptions::default() })
            .unwrap();
    let root = workspace(&world, true);
    let (ahead, _) = bootstrap(&world, root.path());
    let wait_ahead = node_images::image_waits(world.dir());
    println!("ahead, per Pod: {}", per_pod(&world));
    drift(root.path());
    let before = node_images::pulls(world.dir()).unwrap().len();
    let (recreate, summary) = bootstrap(&world, root.path());
    let recreate_pulls = node_images::pulls(world.dir()).unwrap().len() - before;
    assert!(
        summary["stages"].as_array().into_iter().flatten().any(|s| s["name"] == "cluster"),
        "no cluster stage in {summary}"
    );
    println!(
        "pods waited for images: {} on demand, {} ahead; recreation images: {}",
        wait_on_demand.1, wait_ahead.1, summary["images"]
    );
    println!(
        "cold_start on_demand_ms={} ahead_ms={} image_wait_on_demand_ms={} image_wait_ahead_ms={} recreate_ms={} recreate_upstream_pulls={}",
        on_demand.as_millis(),
        ahead.as_millis(),
        wait_on_demand.0,
        wait_ahead.0,
        recreate.as_millis(),
        recreate_pulls
    );
}

/// `pod=<ms>` for each Pod that waited for its images, as the kubelet recorded them.
fn per_pod(world: &World) -> String {
    let text = std::fs::read_to_string(world.dir().join(node_images::IMAGE_WAITS_FILE));
    let lines = text.unwrap_or_default();
    let waits = lines.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok());
    let waits = waits.filter(|w| w["waited_ms"].as_u64().is_some_and(|ms| ms > 0));
    waits
        .map(|w| format!("{}={}", w["pod"].as_str().unwrap_or("?"), w["waited_ms"]))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A workspace root with a copy of `infra/` made for `world`'s slot, and fetch-ahead on
/// or off.
fn workspace(world: &World, fetch_ahead: bool) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(
        root.path().join("Cargo.toml"),
        format!(
            "[workspace]\nmembers = []\n\n[workspace.metadata.bootstrap]\n\n\
             [workspace.metadata.bootstrap.images]\nfetch_ahead = {fetch_ahead}\n"
        ),
    )
    .unwrap();
    let infra = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra");
    let copied = Command::new("cp").arg("-a").arg(&infra).arg(root.path()).status().unwrap();
    assert!(copied.success(), "copying infra/");
    world.slot().make_platform(root.path()).unwrap();
    root
}

/// A drift edit of the k3d config: one more k3s argument, so the cluster is recreated.
fn drift(root: &Path) {
    let config = root.join("infra/docker/local/k3d.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    let edited = text.replace(
        "      - arg: --disable=traefik\n",
        "      - arg: --disable=traefik\n        nodeFilters:\n          - server:*\n      - arg: --disable=metrics-server\n",
    );
    assert_ne!(text, edited, "the drift edit did not apply to {}", config.display());
    std::fs::write(&config, edited).unwrap();
}

/// One `cargo xtask bootstrap`: its wall time and JSON summary; it must succeed.
fn bootstrap(world: &World, root: &Path) -> (Duration, serde_json::Value) {
    let mut cmd = world.command(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(["bootstrap", "--no-install", "--format", "json", "--log"])
        .arg(root.join("bench.log"))
        .env("BOOTSTRAP_ROOT", root);
    let started = Instant::now();
    let out = cmd.output().expect("spawn xtask");
    let wall = started.elapsed();
    assert!(
        out.status.success(),
        "bootstrap failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (wall, serde_json::from_slice(&out.stdout).unwrap_or_default())
}
