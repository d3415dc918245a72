//! Reading `infra/`: the k3d config, the Helmfile layers and the charts lock.

pub mod bundles;
pub mod charts_lock;
pub mod helmfile;
pub mod images;
pub mod k3d;

use std::path::Path;

use crate::error::Result;
use serde::de::DeserializeOwned;

use crate::error::bad_input;

/// Parse a YAML file into `T`. Any failure is bad input (exit 2) naming the file, the
/// line and column where the parser gives one, and what it expected.
pub fn read_yaml<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad_input(format!("{}: cannot read: {e}", path.display())))?;
    parse_yaml(path, &text)
}

/// Parse YAML text that came from `path` (used for messages only).
pub fn parse_yaml<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T> {
    serde_saphyr::from_str(text).map_err(|e| {
        let at =
            e.location().map(|loc| format!(":{}:{}", loc.line(), loc.column())).unwrap_or_default();
        bad_input(format!("{}{at}: invalid YAML: {}", path.display(), first_line(&e.to_string())))
    })
}

fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or(message)
}
