//! `cargo xtask status`: is the platform healthy right now? A read-only view, quick on
//! a converged platform: observe ([`observe`]: the cluster stage's own observe and
//! decision, `/readyz`, the layers' recorded digests and Helm records, the secrets
//! checks, Tilt's API, all read at once) -> judge ([`judge`], pure) -> one result with
//! every problem and what to do. Exit 0 when all is well, 1 otherwise. It runs no tool
//! that changes anything, installs nothing and takes no lock.

pub mod judge;
mod observe;
mod view;

use std::time::Instant;

pub use judge::{GateState, LayerState, LayerView};
pub use view::{Item, StatusView};

use crate::config::Context;
use crate::error::{Result, failed};
use crate::events::Event;

/// How `cargo xtask status` was asked to run (the CLI's flags, `xtask/src/flags.rs`).
#[derive(Debug, Default)]
pub struct Args {
    /// Leave Tilt out (for a platform brought up with `bootstrap --no-tilt`).
    pub no_tilt: bool,
}

pub async fn run(ctx: &Context, args: &Args) -> Result<()> {
    let started = Instant::now();
    // The model as bootstrap reads it; bad input is exit 2 here too.
    let platform = crate::helmfile_list::read_platform(&Context {
        session: ctx.session.quiet(),
        ..ctx.clone()
    })
    .await?;
    let facts = observe::observe(ctx, &platform, !args.no_tilt).await?;
    let layer_names: Vec<String> = platform.layers.iter().map(|l| l.name.clone()).collect();
    let mut view = view::judge(ctx, &layer_names, facts);
    view.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    ctx.session.events.emit(Event::Result { result: &view });
    match view.problems.len() {
        0 => Ok(()),
        n => Err(failed(format!("{n} problem(s) found; see above"))),
    }
}
