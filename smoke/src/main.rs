//! The verification checklist: every health gate of the platform as one libtest-mimic
//! trial, so `cargo test -p smoke` and `cargo nextest run -p smoke [--profile ci]` verify
//! a running platform with ordinary test output (and JUnit with nextest's `ci` profile).
//!
//! Trials come from the platform model (settings, k3d config, Helmfile layers) only;
//! nothing contacts Docker or the cluster until a trial runs, so `--list` works anywhere.
//! Each check is the xtask library's own (`xtask::checks`, `xtask::cluster`,
//! `xtask::secrets`, `xtask::tilt`); this binary only names, runs and words them.
//! Nothing is printed on stdout but libtest-mimic's protocol; warnings go to stderr.

mod runs;
mod trials;

use libtest_mimic::{Arguments, Trial};

fn main() {
    let args = Arguments::from_args();
    let plan = trials::Plan::load();
    let trials: Vec<Trial> = plan.checks().into_iter().map(runs::trial).collect();
    libtest_mimic::run(&args, trials).exit();
}
