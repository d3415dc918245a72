//! `$TESTBED_DIR/calls.jsonl`: one JSON line per fake tool call, so tests can assert
//! what the engine ran (and what it did not). Every fake tool starts with
//! [`fake_tool_start`], which records its call.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::scenario::Scenario;

pub const FILE: &str = "calls.jsonl";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// The tool as invoked (`k3d`, `helmfile`, `helm`, `tilt`, `docker`).
    pub tool: String,
    /// Its arguments, without the tool name.
    pub args: Vec<String>,
}

impl Call {
    /// Whether this call changes something (what a plan, a converged re-run or a
    /// read-only command must never do): k3d's cluster, node, image and kubeconfig
    /// verbs; helmfile's sync, apply and destroy; helm beyond its read verbs (`helm test`
    /// included: it runs pods and records a verdict); `tilt up`/`down`; docker's verbs
    /// that change containers or images (`docker pull` included).
    pub fn mutates(&self) -> bool {
        let first = self.args.first().map(String::as_str).unwrap_or("");
        let any = |verbs: &[&str]| self.args.iter().any(|a| verbs.contains(&a.as_str()));
        match self.tool.as_str() {
            "k3d" => any(&["create", "delete", "start", "stop", "edit", "merge", "import"]),
            "helmfile" => any(&["sync", "apply", "destroy", "delete"]),
            "helm" => !["version", "list", "status", "template", "show", "lint", "get", "history"]
                .contains(&first),
            "tilt" => ["up", "down"].contains(&first),
            "docker" => {
                let changes =
                    ["pull", "push", "run", "create", "rm", "rmi", "start", "stop", "kill"];
                let second = self.args.get(1).map(String::as_str).unwrap_or("");
                [&changes[..], &["load", "import", "tag", "exec"]].concat().contains(&first)
                    || (["image", "container"].contains(&first)
                        && [&changes[..], &["prune", "load", "import", "tag"]]
                            .concat()
                            .contains(&second))
            }
            _ => false,
        }
    }
}

/// The calls that change something ([`Call::mutates`]), as `tool args...` lines for
/// messages: the one filter every test uses to say "nothing was changed".
pub fn mutating(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.mutates())
        .map(|c| format!("{} {}", c.tool, c.args.join(" ")))
        .collect()
}

/// Common start of every fake tool: find the testbed dir, record the call, add latency.
pub fn fake_tool_start(tool: &str, args: &[String]) -> Result<PathBuf> {
    let dir = std::env::var_os("TESTBED_DIR")
        .map(PathBuf::from)
        .context("TESTBED_DIR is not set: run `eval \"$(testbed up --dir DIR)\"` first")?;
    record(&dir, tool, args)?;
    let latency = Scenario::load(&dir)?.latency_ms;
    if latency > 0 {
        std::thread::sleep(Duration::from_millis(latency));
    }
    Ok(dir)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn call(line: &str) -> Call {
        let mut words = line.split_whitespace().map(str::to_owned);
        Call { tool: words.next().unwrap(), args: words.collect() }
    }

    #[test]
    fn only_calls_that_change_something_are_mutating() {
        let changes = [
            "k3d cluster create --config k3d.yaml",
            "k3d kubeconfig merge ameide --kubeconfig-switch-context=false",
            "k3d image import -m direct -c ameide busybox:1.37.0",
            "helmfile -f 24-auth.yaml -e local sync",
            "helmfile -f 24-auth.yaml destroy",
            "helm test auth-smoke -n ameide --logs",
            "helm uninstall metrics -n ameide",
            "helm rollback auth 2",
            "tilt up --port 10350",
            "docker pull busybox:1.37.0",
            "docker image rm busybox:1.37.0",
        ];
        let reads = [
            "k3d cluster list -o json",
            "k3d version",
            "helmfile -f 24-auth.yaml -e local list --output json",
            "helmfile -f 24-auth.yaml build",
            "helm version --short",
            "helm status auth -n ameide",
            "helm template auth ./charts/auth",
            "tilt version",
            "docker image inspect busybox:1.37.0",
            "docker version",
        ];
        let calls: Vec<Call> = changes.iter().chain(&reads).map(|l| call(l)).collect();
        assert_eq!(mutating(&calls), changes);
    }
}
