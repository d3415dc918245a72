//! Cold start at network speed: a cold `cargo xtask bootstrap` of the sample platform in
//! a fresh testbed world where every image download takes `pull-ms` (default 3000),
//! first with `images.fetch_ahead = false` (each layer's Pods pull on demand when the
//! layer syncs: the baseline), then in another fresh world with fetch-ahead, then, in
//! that second world, a recreation of the cluster after a drift edit of the k3d config.
//! Run:
//!
//! ```text
//! cargo bench -p xtask --bench cold_start --profile dev [-- SCENARIO_WORD...]
//! ```
//!
//! Both worlds run with `pull-ms=3000 cron-minute-ms=2000`; extra words are testbed
//! scenario words added for both (`startup-ms=500`, `pull-ms=20000`, ...; a later word
//! wins). Prints one line:
//! `cold_start on_demand_ms=<n> ahead_ms=<n> speedup=<x> recreate_ms=<n> recreate_pulls=<n>`
//! where `recreate_pulls` counts downloads from the simulated registry (by `docker pull`
//! or a kubelet) during the recreation run, and the scenario it ran with on the line
//! before.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use testbed::node_images;
use testbed::world::{World, WorldOptions, require_docker};

fn main() {
    if !require_docker() {
        return;
    }
    // The Vault bootstrap CronJob's first Job waits for the next schedule minute: scaled
    // to 2 s, as the e2e tests do, so a random wait of up to 60 s does not drown the
    // difference. Pod start-up stays the testbed's default.
    let mut words = vec!["pull-ms=3000".to_owned(), "cron-minute-ms=2000".to_owned()];
    words.extend(std::env::args().skip(1).filter(|a| a.contains('=') && !a.starts_with('-')));
    println!("scenario: {}", words.join(" "));

    let on_demand = {
        let world = World::up(WorldOptions {
            scenarios: words.clone(),
            latency_ms: 0,
            ..WorldOptions::default()
        })
        .unwrap();
        let root = workspace(&world, false);
        bootstrap(&world, root.path()).0
    };
    let world =
        World::up(WorldOptions { scenarios: words, latency_ms: 0, ..WorldOptions::default() })
            .unwrap();
    let root = workspace(&world, true);
    let (ahead, _) = bootstrap(&world, root.path());
    drift(root.path());
    let before = node_images::pulls(world.dir()).unwrap().len();
    let (recreate, summary) = bootstrap(&world, root.path());
    let recreate_pulls = node_images::pulls(world.dir()).unwrap().len() - before;
    assert!(
        summary["stages"].as_array().into_iter().flatten().any(|s| s["name"] == "cluster"),
        "no cluster stage in {summary}"
    );
    println!("recreation images: {}", summary["images"]);
    println!(
        "cold_start on_demand_ms={} ahead_ms={} speedup={:.2} recreate_ms={} recreate_pulls={}",
        on_demand.as_millis(),
        ahead.as_millis(),
        on_demand.as_secs_f64() / ahead.as_secs_f64().max(1e-9),
        recreate.as_millis(),
        recreate_pulls
    );
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
