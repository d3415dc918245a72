//! The simulated k3d v5.7.5: its CLI (`fake`) and its commands (`cluster` in `fake`,
//! `image import`, `registry create`, `kubeconfig`, `cluster list`), the cluster's
//! containers and API server (`api`), its config file and flags. `common` is what the
//! commands share, below them all.

pub mod api;
pub mod common;
pub mod config;
pub mod fake;
pub mod flags;
pub mod image;
pub mod kubeconfig;
pub mod list;
pub mod registry;
