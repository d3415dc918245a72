//! The testbed: a simulated platform on a real Docker engine (see `tests/README.md`).
//!
//! One binary, `testbed`, is both the CLI (`up`, `down`, `set`, and the internal
//! `apiserver` / `tilt-server` processes) and, called through a symlink named `k3d`,
//! `helmfile`, `helm` or `tilt`, the fake tool of that name. Tests use [`world::World`].

pub mod apiserver;
pub mod calls;
pub mod cli;
pub mod docker;
pub mod fake_docker;
pub mod fake_helm;
pub mod fake_helmfile;
pub mod fake_k3d;
pub mod fake_tilt;
pub mod helm_hooks;
pub mod helm_records;
pub mod helm_rollback;
pub mod helm_version;
pub mod helmfile_flags;
pub mod helmfile_install;
pub mod helmfile_state;
pub mod helmfile_template;
pub mod helmfile_version;
pub mod images;
pub mod k3d_api;
pub mod k3d_common;
pub mod k3d_config;
pub mod k3d_flags;
pub mod k3d_image;
pub mod k3d_kubeconfig;
pub mod k3d_list;
pub mod k3d_registry;
pub mod kube_api;
pub mod kubeconfig;
pub mod leaks;
pub mod lock;
pub mod manifests;
pub mod node_images;
pub mod probe;
pub mod procs;
pub mod real_tools;
pub mod release;
pub mod scenario;
pub mod slot;
pub mod tls;
pub mod world;

pub use slot::Slot;
pub use world::{World, WorldOptions, require_docker};
