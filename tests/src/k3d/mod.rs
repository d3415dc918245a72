//! The simulated k3d (v5, read at v5.7.5): its CLI and `cluster` commands (`fake`),
//! `image import` (`image`), `registry create` (`registry`), the cluster's network
//! (`network`), `kubeconfig merge|get` (`kubeconfig`), `cluster list`/`registry list`
//! (`list`), the cluster's API server (`api`), its config file (`config`) and flags
//! (`flags`). `common` is what the
//! commands share, below them all.

pub mod api;
pub mod common;
pub mod config;
pub mod fake;
pub mod flags;
pub mod image;
pub mod kubeconfig;
pub mod list;
pub mod network;
pub mod registry;
