//! The platform bootstrap engine. `src/main.rs` is a thin clap CLI over this library;
//! the `smoke` test binary calls the same checks.

pub mod bootstrap;
pub mod cancel;
pub mod charts;
pub mod checks;
pub mod cluster;
pub mod config;
pub mod digest;
pub mod doctor;
pub mod error;
pub mod exec;
pub mod fsutil;
pub mod http;
pub mod k8s;
pub mod layers;
pub mod plan;
pub mod platform;
pub mod probe;
pub mod release;
pub mod report;
pub mod secrets;
pub mod tilt;
pub mod tools;
