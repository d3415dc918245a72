//! The simulated helm: its CLI (`fake`), its release records in the fake API (`records`;
//! their encoding is `crate::release`, which the cluster's controllers read too), test
//! hooks, rollback and the version it claims.

pub mod fake;
pub mod hooks;
pub mod records;
pub mod rollback;
pub mod version;
