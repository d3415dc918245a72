//! Converged `cargo xtask cluster` against one bare `k3d cluster list`, in the same
//! testbed world (real Docker, fake k3d). Run with:
//!
//! ```text
//! cargo bench -p xtask --bench cluster [-- RUNS]
//! ```
//!
//! Prints the median wall time of each and their ratio: how much a converged reconcile
//! (settings, config hash, one Docker listing, plan) costs over the cheapest k3d call.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use testbed::world::{World, WorldOptions, require_docker};

fn main() {
    let runs: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(10);
    if !require_docker() {
        return;
    }
    let world = World::up(WorldOptions::default()).expect("testbed world");
    let root = tempfile::tempdir().unwrap();
    std::fs::write(
        root.path().join("Cargo.toml"),
        "[workspace]\nmembers = []\n\n[workspace.metadata.bootstrap]\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.path().join("infra/docker/local")).unwrap();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/docker/local/k3d.yaml");
    std::fs::copy(config, root.path().join("infra/docker/local/k3d.yaml")).unwrap();
    // The world's slot names the cluster, registry and ports (tests/README.md).
    world.slot().make_platform(root.path()).unwrap();
    let log = root.path().join("bench.log");

    let xtask = || {
        let mut cmd = world.command(env!("CARGO_BIN_EXE_xtask"));
        cmd.arg("cluster").arg("--log").arg(&log).env("BOOTSTRAP_ROOT", root.path());
        cmd
    };
    run(&mut xtask()); // create: not measured
    let converged = median(runs, || run(&mut xtask()));
    let list = median(runs, || run(world.command("k3d").args(["cluster", "list", "-o", "json"])));
    println!("runs:                     {runs}");
    println!("converged `xtask cluster`: {:>8.1} ms (median)", ms(converged));
    println!("bare `k3d cluster list`:   {:>8.1} ms (median)", ms(list));
    println!("ratio:                     {:>8.2}x", converged.as_secs_f64() / list.as_secs_f64());
}

fn run(cmd: &mut Command) -> Duration {
    let started = Instant::now();
    let out = cmd.output().expect("spawn");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    started.elapsed()
}

fn median(runs: usize, mut once: impl FnMut() -> Duration) -> Duration {
    let mut times: Vec<Duration> = (0..runs.max(1)).map(|_| once()).collect();
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
