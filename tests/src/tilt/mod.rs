//! The simulated Tilt: `tilt up`/`down` and its web server (`fake`).

pub mod fake;
