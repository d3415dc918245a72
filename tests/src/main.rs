//! The `testbed` binary: the CLI (`up`, `down`, `set`, internal servers) and, called
//! through a symlink named `k3d`, `helmfile`, `helm` or `tilt`, the fake tool of that name.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

/// The testbed: a simulated k3d / Helmfile / Helm / Tilt platform on a real Docker engine.
#[derive(Parser)]
#[command(name = "testbed")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prepare DIR (images, fake tools, scenario, kubeconfig); print `export` lines to eval.
    Up {
        #[arg(long)]
        dir: PathBuf,
        /// A scenario word (repeatable): gate-fail=<layer>, gate-leak=<layer>,
        /// log-race=<layer>, sync-fail=<layer>, vault-fail, vault-flaky, job-fail=<prefix>,
        /// secret-missing-key, tilt-not-ready, store-not-ready=<store>,
        /// image-unfetchable=<ref>, docker-containerd-store, healthy; knobs startup-ms=<n>,
        /// pull-ms=<n>, pull-mbps=<n>, k3d-create-ms=<n>, cron-minute-ms=<n>,
        /// helm-version=<x.y.z>, helmfile-version=<x.y.z>, helmfiles=<path>, latency-ms=<n>
        /// (tests/README.md, "Scenarios", says what each does).
        #[arg(long = "scenario")]
        scenarios: Vec<String>,
        /// Added to every fake tool call.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// `fake` helm and helmfile, or the real ones `.ci/install-real-tools` installs:
        /// `helm3` (helm 3.17.2 + helmfile 0.166.0) or `helm4` (helm 4.1.4 + the fake helmfile:
        /// helmfile drives helm 4 only from 1.2.0 on).
        #[arg(long, default_value = "fake", value_parser = testbed::real_tools::Toolset::parse)]
        tools: testbed::real_tools::Toolset,
    },
    /// Remove every container, process and file of DIR.
    Down {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Change DIR's scenario (`healthy` resets it); applies to the next tool call.
    Set {
        #[arg(long)]
        dir: PathBuf,
        #[arg(required = true)]
        scenarios: Vec<String>,
    },
    /// Internal: holds a world slot for DIR while it exists (started by `up`).
    LockHolder {
        #[arg(long)]
        dir: PathBuf,
        /// The `testbed up` process it holds the lock for.
        #[arg(long)]
        owner: Option<u32>,
    },
    /// Internal: the fake Kubernetes API server of one cluster (started by the fake k3d).
    Apiserver {
        #[arg(long)]
        state_dir: PathBuf,
        #[arg(long)]
        port_file: PathBuf,
        /// Listen on this port (else the port file's, else a free one).
        #[arg(long)]
        port: Option<u16>,
        /// The server node container: serve while it runs, exit when it is removed.
        #[arg(long)]
        container: Option<String>,
    },
}

fn main() {
    let mut args = std::env::args();
    let argv0 = args.next().unwrap_or_default();
    let tool = Path::new(&argv0).file_name().and_then(|n| n.to_str()).unwrap_or("").to_owned();
    let rest: Vec<String> = args.collect();
    let code = match tool.as_str() {
        "k3d" => testbed::k3d::fake::main(rest),
        "tilt" => testbed::tilt::fake::main(rest),
        "helmfile" => testbed::helmfile::fake::main(rest),
        "helm" => testbed::helm::fake::main(rest),
        "docker" => testbed::docker::fake::main(rest),
        _ => cli(Cli::parse()),
    };
    std::process::exit(code);
}

fn cli(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Up { dir, scenarios, latency_ms, tools } => std::env::current_exe()
            .map_err(anyhow::Error::from)
            .and_then(|exe| testbed::cli::up_locked(&dir, &scenarios, latency_ms, tools, &exe))
            .map(|env| print!("{}", testbed::cli::export_lines(&env))),
        Command::LockHolder { dir, owner } => testbed::lock::hold(&dir, owner),
        Command::Down { dir } => testbed::cli::down(&dir),
        Command::Set { dir, scenarios } => testbed::cli::set(&dir, &scenarios),
        Command::Apiserver { state_dir, port_file, port, container } => {
            testbed::apiserver::run(&testbed::apiserver::Options {
                state_dir,
                port_file,
                port,
                container,
            })
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("testbed: {e:#}");
            1
        }
    }
}
