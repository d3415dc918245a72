//! Cold and converged `cargo xtask bootstrap` in one testbed world where every fake tool
//! call sleeps 200 ms (real tools are slow; the engine's own work should not be). Run:
//!
//! ```text
//! cargo bench -p xtask --bench bootstrap --profile dev [-- LATENCY_MS]
//! ```
//!
//! `--profile dev` measures the binary `cargo xtask` runs. The cold "overhead" also holds the testbed's own real work that is not latency:
//! Docker containers for the k3d nodes, `helm template` inside the fake helmfile.
//!
//! Prints the cold wall time, the tool latency on its path (calls in `calls.jsonl` x
//! latency), the overhead ratio (wall / tool latency: 1.0 would be a free engine), the
//! converged run's wall time and tool calls, and the converged/cold ratio.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use testbed::world::{World, WorldOptions, require_docker};

fn main() {
    let latency_ms: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(200);
    if !require_docker() {
        return;
    }
    let world = World::up(WorldOptions { latency_ms, ..WorldOptions::default() }).expect("world");
    let root = tempfile::tempdir().unwrap();
    std::fs::write(
        root.path().join("Cargo.toml"),
        "[workspace]\nmembers = []\n\n[workspace.metadata.bootstrap]\n",
    )
    .unwrap();
    let infra = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra");
    let copied = Command::new("cp").arg("-a").arg(&infra).arg(root.path()).status().unwrap();
    assert!(copied.success(), "copying infra/");
    // The world's slot names the cluster, registry, ports and images (tests/README.md).
    world.slot().make_platform(root.path()).unwrap();
    let log = root.path().join("bench.log");
    let bootstrap = || {
        let before = world.calls().len();
        let mut cmd = world.command(env!("CARGO_BIN_EXE_xtask"));
        cmd.args(["bootstrap", "--format", "json", "--log"])
            .arg(&log)
            .env("BOOTSTRAP_ROOT", root.path());
        let started = Instant::now();
        let out = cmd.output().expect("spawn xtask");
        let wall = started.elapsed();
        assert!(
            out.status.success(),
            "bootstrap failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (wall, world.calls().len() - before)
    };

    let (cold, cold_calls) = bootstrap();
    let (converged, converged_calls) = bootstrap();
    let tool = Duration::from_millis(latency_ms * cold_calls as u64);
    println!("tool latency per call:     {latency_ms} ms");
    println!("cold bootstrap:            {:>8.2} s ({cold_calls} tool calls)", cold.as_secs_f64());
    println!("tool latency on its path:  {:>8.2} s", tool.as_secs_f64());
    println!("engine overhead:           {:>8.2} s", cold.saturating_sub(tool).as_secs_f64());
    println!(
        "overhead ratio (wall/tool):{:>8.2}x",
        cold.as_secs_f64() / tool.as_secs_f64().max(1e-9)
    );
    println!(
        "converged re-run:          {:>8.2} s ({converged_calls} tool calls)",
        converged.as_secs_f64()
    );
    println!("converged/cold:            {:>8.3}", converged.as_secs_f64() / cold.as_secs_f64());
}
