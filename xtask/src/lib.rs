//! The platform bootstrap engine. `src/main.rs` is a thin clap CLI over this library;
//! the `smoke` test binary calls the same checks.
//!
//! Dependencies point one way (the README's "Architecture"):
//! - leaf types: [`error`], [`outcome`], [`digest`], [`redact`], [`events`], [`cancel`], [`version`],
//!   [`session`], [`table`], [`spans`], [`wait`] (the one bounded, cancellable wait)
//! - model, pure readers of settings and `infra/`: [`config`], [`pins`], [`platform`]
//! - adapters to the outside: [`exec`], [`http`], [`k8s`], [`learn`] (Secret values for
//!   redaction), [`release`], [`probe`], [`fsutil`],
//!   [`helmfile_cli`] (helmfile's flags by version), [`helmfile_list`] (the platform model
//!   with Go-template layers rendered by helmfile)
//! - stages and commands: [`cluster`], [`charts`], [`images`], [`layers`], [`checks`],
//!   [`secrets`], [`tilt`], [`tools`], [`doctor`], [`plan`], [`steps`] (repository steps),
//!   [`down`], [`status`] (read-only health view)
//! - the run: [`runner`] (the stage pipeline), [`bootstrap`], [`lock`], [`timings`]
//! - output: [`sinks`] (with `main.rs`, the only code that prints)

// House rule: the engine emits events and never prints; only the sinks (`sinks.rs`, which
// allows these) and `main.rs` (another crate root) write to the terminal. `std::io::stdout`
// and `stderr` are disallowed in `xtask/clippy.toml` so `writeln!` cannot slip past.
#![deny(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_methods)]

pub mod bootstrap;
pub mod cancel;
pub mod charts;
pub mod checks;
pub mod cluster;
pub mod config;
pub mod digest;
pub mod doctor;
pub mod down;
pub mod error;
pub mod events;
pub mod exec;
pub mod fsutil;
pub mod helmfile_cli;
pub mod helmfile_list;
pub mod http;
pub mod images;
pub mod k8s;
pub mod layers;
pub mod learn;
pub mod lock;
pub mod outcome;
pub mod pins;
pub mod plan;
pub mod platform;
pub mod probe;
pub mod pull_failures;
pub mod redact;
pub mod release;
pub mod runner;
pub mod schemas;
pub mod secrets;
pub mod session;
pub mod sinks;
pub mod spans;
pub mod stage_result;
pub mod status;
pub mod steps;
pub mod table;
pub mod tilt;
pub mod timings;
pub mod tools;
pub mod version;
pub mod wait;
