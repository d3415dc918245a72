//! `$TESTBED_DIR/calls.jsonl`: one JSON line per fake tool call, so tests can assert
//! what the engine ran (and what it did not).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub const FILE: &str = "calls.jsonl";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// The tool as invoked (`k3d`, `helmfile`, `helm`, `tilt`).
    pub tool: String,
    /// Its arguments, without the tool name.
    pub args: Vec<String>,
}

/// Append one call. Lines are written with a single `write` of a short buffer in
/// append mode, so concurrent tools do not interleave.
pub fn record(testbed_dir: &Path, tool: &str, args: &[String]) -> Result<()> {
    append(&testbed_dir.join(FILE), &Call { tool: tool.to_owned(), args: args.to_vec() })
}

/// Append `item` as one JSON line to `path` (a single `write` in append mode).
pub(crate) fn append(path: &Path, item: &impl Serialize) -> Result<()> {
    let mut line = serde_json::to_vec(item)?;
    line.push(b'\n');
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(&line))
        .with_context(|| format!("appending to {}", path.display()))
}

/// Every call recorded so far, oldest first.
pub fn read(testbed_dir: &Path) -> Result<Vec<Call>> {
    read_lines(&testbed_dir.join(FILE))
}

/// Every JSON line of `path` (none when it does not exist).
pub(crate) fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    text.lines()
        .map(|l| {
            serde_json::from_str(l).with_context(|| format!("{}: bad line {l}", path.display()))
        })
        .collect()
}
