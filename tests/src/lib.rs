//! The testbed: a simulated platform on a real Docker engine (see `tests/README.md`).
//!
//! One binary, `testbed`, is both the CLI (`up`, `down`, `set`, and the internal
//! `apiserver` / `tilt-server` processes) and, called through a symlink named `k3d`,
//! `helmfile`, `helm`, `tilt` or `docker`, the fake tool of that name. Tests use
//! [`world::World`].
//!
//! Laid out like the engine: a folder per simulated part, each tool's CLI in its
//! `fake.rs`: `k3d/`, `helm/`, `helmfile/`, `tilt/`, `docker/` (with the simulated image
//! stores) and `apiserver/` (the cluster: its API and controllers). A module uses only
//! those below it: the tools over `kube_api` (the client of the fake API) over
//! `apiserver/` over `docker/`; `world` and `cli` (the testbed's own commands) over
//! `docker/`; under them all the leaves: `scenario`, `calls`, `release` (helm's release
//! encoding, which the cluster's controllers read too), `kubeconfig`, `tls`, `http`,
//! `procs`, `real_tools`, ... `xtask/tests/tidy.rs` fails on an import cycle.

pub mod apiserver;
pub mod calls;
pub mod cli;
pub mod docker;
pub mod helm;
pub mod helmfile;
pub mod http;
pub mod k3d;
pub mod kube_api;
pub mod kubeconfig;
pub mod leaks;
pub mod lock;
pub mod manifests;
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
