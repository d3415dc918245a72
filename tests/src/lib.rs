//! The testbed: a simulated platform on a real Docker engine (see `tests/README.md`).
//!
//! One binary, `testbed`, is both the CLI (`up`, `down`, `set`, and the internal
//! `apiserver` / `tilt-server` processes) and, called through a symlink named `k3d`,
//! `helmfile`, `helm` or `tilt`, the fake tool of that name. Tests use [`world::World`].

pub mod apiserver;
pub mod calls;
pub mod cli;
pub mod docker;
pub mod helm;
pub mod helmfile;
pub mod k3d;
pub mod kube_api;
pub mod kubeconfig;
pub mod leaks;
pub mod lock;
pub mod manifests;
pub mod probe;
pub mod procs;
pub mod real_tools;
pub mod release;
pub mod scenario;
pub mod slot;
pub mod tilt;
pub mod tls;
pub mod world;

pub use slot::Slot;
pub use world::{World, WorldOptions, require_docker};
