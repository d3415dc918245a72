//! Repository steps (`[[workspace.metadata.bootstrap.steps]]`): scripts the bootstrap
//! runs at a named point (after the cluster, a layer, all layers, or the secrets), with
//! the log, summary, lock and skip-when-unchanged logic of every other stage.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, bad_input};

/// Where a step may run besides after a layer (named by its file stem).
pub const STAGE_ANCHORS: [&str; 3] = ["cluster", "layers", "secrets"];

/// One `[[workspace.metadata.bootstrap.steps]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSettings {
    /// Unique; shown in the plan, the summary and as the log tag `steps/<name>`.
    pub name: String,
    /// A layer name, or `cluster` / `layers` / `secrets`.
    pub after: String,
    /// The program and its arguments (no shell), run in the workspace root.
    pub run: Vec<String>,
    /// Glob patterns relative to the root: the step is skipped when these files are
    /// unchanged since its last success. Without them it runs every time.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Environment variables the step needs (checked in preflight; values never shown).
    #[serde(default)]
    pub requires_env: Vec<String>,
    /// Seconds.
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    /// The line of the table's `name` in the manifest, for messages (0: not known).
    #[serde(skip)]
    pub line: usize,
}

fn default_timeout() -> u64 {
    600
}

impl StepSettings {
    /// `Cargo.toml:LINE: step `name``, as messages start.
    pub fn at(&self, manifest: &Path) -> String {
        match self.line {
            0 => format!("{}: step `{}`", manifest.display(), self.name),
            line => format!("{}:{line}: step `{}`", manifest.display(), self.name),
        }
    }
}

/// Each step's line, the shape checks, unique names. `text` is the manifest's.
pub fn validate(manifest: &Path, text: &str, steps: &mut [StepSettings]) -> Result<()> {
    let table = "[[workspace.metadata.bootstrap.steps]]";
    let mut seen = std::collections::BTreeSet::new();
    let lines = name_lines(text);
    for (index, step) in steps.iter_mut().enumerate() {
        step.line = lines.get(index).copied().unwrap_or(0);
        let at = || match step.line {
            0 => format!("{}: {table} #{}", manifest.display(), index + 1),
            line => format!("{}:{line}: {table}", manifest.display()),
        };
        let valid_name = !step.name.is_empty()
            && step.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !valid_name {
            return Err(bad_input(format!(
                "{}: `name` = {:?}: expected letters, digits, `-`, `_` or `.` (it becomes the log tag steps/<name>)",
                at(),
                step.name
            )));
        }
        if !seen.insert(step.name.clone()) {
            return Err(bad_input(format!(
                "{}: `name` = \"{}\" is used by an earlier step: expected unique names",
                at(),
                step.name
            )));
        }
        if step.run.first().is_none_or(|program| program.trim().is_empty()) {
            return Err(bad_input(format!(
                "{}: `run` must name a program: expected an argv array like [\"pnpm\", \"run\", \"build\"]",
                at()
            )));
        }
        if step.after.trim().is_empty() {
            return Err(bad_input(format!(
                "{}: `after` must not be empty: expected a layer name or one of {}",
                at(),
                STAGE_ANCHORS.join(", ")
            )));
        }
        if step.timeout == 0 {
            return Err(bad_input(format!("{}: `timeout` must be at least 1 (seconds)", at())));
        }
        for pattern in &step.inputs {
            if let Err(e) = glob::Pattern::new(pattern) {
                return Err(bad_input(format!(
                    "{}: `inputs` pattern {pattern:?}: {e}: expected a glob relative to the root, like \"packages/proto/**\"",
                    at()
                )));
            }
            if Path::new(pattern).is_absolute() || pattern.split('/').any(|part| part == "..") {
                return Err(bad_input(format!(
                    "{}: `inputs` pattern {pattern:?}: expected a path inside the repository (relative, no `..`)",
                    at()
                )));
            }
        }
        if let Some(bad) = step.requires_env.iter().find(|name| !is_env_name(name)) {
            return Err(bad_input(format!(
                "{}: `requires_env` entry {bad:?}: expected a variable name (letters, digits, `_`)",
                at()
            )));
        }
    }
    Ok(())
}

/// `after` names a layer or a stage anchor: checked once the layers are known.
pub fn check_anchors(manifest: &Path, steps: &[StepSettings], layers: &[&str]) -> Result<()> {
    for step in steps {
        if !STAGE_ANCHORS.contains(&step.after.as_str()) && !layers.contains(&step.after.as_str()) {
            return Err(bad_input(format!(
                "{}: `after` = \"{}\": expected one of {} or a layer: {}",
                step.at(manifest),
                step.after,
                STAGE_ANCHORS.join(", "),
                layers.join(", ")
            )));
        }
    }
    Ok(())
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The 1-based line of each steps table's `name = …`, in order (tables are read in
/// order and each must have a name, so the n-th is step n's).
fn name_lines(text: &str) -> Vec<usize> {
    let mut in_steps = false;
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('[') {
            in_steps = line.starts_with("[[workspace.metadata.bootstrap.steps]]");
        } else if in_steps && line.split_once('=').is_some_and(|(key, _)| key.trim() == "name") {
            out.push(index + 1);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::error::ErrorKind;

    const MANIFEST: &str = "[workspace]\nmembers = [\"xtask\"]\n\n[workspace.metadata.bootstrap]\n";

    fn parse(table: &str) -> Result<Settings> {
        Settings::parse(Path::new("/repo/Cargo.toml"), &format!("{MANIFEST}{table}"))
    }

    const STEP: &str = "[[workspace.metadata.bootstrap.steps]]\nname = \"sdk-ts\"\nafter = \"50-product-services\"\nrun = [\"pnpm\", \"run\", \"build\"]\n";

    #[test]
    fn a_step_reads_with_defaults_and_its_line() {
        let settings = parse(&format!("{STEP}inputs = [\"packages/proto/**\"]\n")).unwrap();
        let step = &settings.steps[0];
        assert_eq!(step.run, ["pnpm", "run", "build"]);
        assert_eq!((step.timeout, step.line), (600, 6));
        assert!(step.requires_env.is_empty());
        assert_eq!(step.at(Path::new("Cargo.toml")), "Cargo.toml:6: step `sdk-ts`");
    }

    #[test]
    fn bad_steps_name_file_line_and_what_was_expected() {
        let cases = [
            (
                format!("{STEP}{STEP}"),
                "/repo/Cargo.toml:10: [[workspace.metadata.bootstrap.steps]]: `name` = \"sdk-ts\" is used by an earlier step",
            ),
            (
                STEP.replace("[\"pnpm\", \"run\", \"build\"]", "[]"),
                ":6: [[workspace.metadata.bootstrap.steps]]: `run` must name a program",
            ),
            (STEP.replace("sdk-ts", "sdk ts"), "expected letters, digits"),
            (format!("{STEP}timeout = 0\n"), "`timeout` must be at least 1"),
            (
                format!("{STEP}inputs = [\"../secrets/**\"]\n"),
                "expected a path inside the repository",
            ),
            (format!("{STEP}inputs = [\"a/[\"]\n"), "`inputs` pattern \"a/[\""),
            (
                format!("{STEP}requires_env = [\"BUF-TOKEN\"]\n"),
                "`requires_env` entry \"BUF-TOKEN\"",
            ),
            (format!("{STEP}shell = true\n"), "unknown field `shell`"),
        ];
        for (table, expected) in cases {
            let err = parse(&table).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::BadInput);
            assert!(err.to_string().contains(expected), "{expected:?} not in: {err}");
        }
    }

    #[test]
    fn after_must_name_a_layer_or_a_stage() {
        let settings = parse(STEP).unwrap();
        let manifest = Path::new("Cargo.toml");
        assert!(check_anchors(manifest, &settings.steps, &["50-product-services"]).is_ok());
        let err = check_anchors(manifest, &settings.steps, &["10-bootstrap"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput);
        assert!(
            err.to_string().contains("Cargo.toml:6: step `sdk-ts`: `after` = \"50-product-services\": expected one of cluster, layers, secrets or a layer: 10-bootstrap"),
            "{err}"
        );
    }
}
