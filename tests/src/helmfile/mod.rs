//! The simulated helmfile: its CLI (`fake`), the flags each version has, state files
//! and their Go templates, and installs (through the fake API, as the fake helm keeps
//! releases).

pub mod fake;
pub mod flags;
pub mod install;
pub mod state;
pub mod template;
pub mod version;
