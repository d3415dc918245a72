//! Repository steps: decide (the digest of a step's inputs against the one recorded
//! after its last success), check what a step needs before anything changes (its
//! program, its environment variables), and run it through the executor like every
//! tool (log tag `steps/<name>`, timeout, Ctrl-C).
//!
//! The record is local (`.tools/steps.json`): steps build things in this checkout
//! (SDKs, generated code), which a new cluster does not undo.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStringExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::config::{Context, StepSettings};
use crate::error::{Context as _, Result, bad_input, missing};
use crate::exec::{self, Cmd};
use crate::outcome::Finding;
use crate::spans::{SpanKind, SpanOutcome};

/// What a step needs this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepPlan {
    Run { reason: String },
    Unchanged,
}

impl std::fmt::Display for StepPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepPlan::Run { reason } => write!(f, "run: {reason}"),
            StepPlan::Unchanged => f.write_str("unchanged: inputs match its last success"),
        }
    }
}

/// Pure: a step without inputs always runs; one with inputs runs unless their digest
/// equals the one recorded after its last success.
pub fn plan(digest: Option<&str>, recorded: Option<&str>, force: bool) -> StepPlan {
    let run = |reason: &str| StepPlan::Run { reason: reason.into() };
    match (digest, recorded) {
        _ if force => run("--force"),
        (None, _) => run("no `inputs`: runs every time"),
        (Some(_), None) => run("no success recorded"),
        (Some(d), Some(r)) if d != r => run("its inputs changed since its last success"),
        _ => StepPlan::Unchanged,
    }
}

/// sha256 over the step's command, its patterns and every file they match (path and
/// content, sorted); `None` for a step without `inputs`.
pub fn digest(root: &Path, step: &StepSettings) -> Result<Option<String>> {
    if step.inputs.is_empty() {
        return Ok(None);
    }
    let mut files = std::collections::BTreeSet::new();
    for pattern in &step.inputs {
        // `dir/**` means every file beneath, as in .gitignore: glob's `**` alone yields
        // only directories below `dir`, so ask for `dir/**/*` (files at any depth).
        let pattern = match pattern.ends_with("**") {
            true => format!("{pattern}/*"),
            false => pattern.clone(),
        };
        let full = root.join(&pattern);
        let matches = glob::glob(&full.to_string_lossy())
            .map_err(|e| bad_input(format!("step `{}`: `inputs` {pattern:?}: {e}", step.name)))?;
        for path in matches.flatten() {
            match path.is_dir() {
                true => files.extend(crate::fsutil::files_under(&path)?),
                false => _ = files.insert(path),
            }
        }
    }
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    for part in step.run.iter().chain(&step.inputs) {
        field(part.as_bytes());
    }
    for file in &files {
        let bytes = std::fs::read(file)
            .with_context(|| format!("step `{}`: reading input {}", step.name, file.display()))?;
        field(file.strip_prefix(root).unwrap_or(file).to_string_lossy().as_bytes());
        field(&bytes);
    }
    Ok(Some(format!("sha256:{}", crate::digest::hex(&hasher.finalize()))))
}

fn record_file(root: &Path) -> PathBuf {
    root.join(".tools").join("steps.json")
}

/// The digests recorded after each step's last success (none yet: empty).
pub fn recorded(root: &Path) -> Result<BTreeMap<String, String>> {
    let file = record_file(root);
    match std::fs::read_to_string(&file) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| {
            bad_input(format!(
                "{}: {e}: expected {{\"<step>\": \"sha256:…\"}} (delete the file to run every step again)",
                file.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(failed_io(&file, e)),
    }
}

/// Record (`Some`) or forget (`None`) a step's digest.
pub fn record(root: &Path, name: &str, digest: Option<&str>) -> Result<()> {
    let mut all = recorded(root)?;
    match digest {
        Some(d) => all.insert(name.to_owned(), d.to_owned()),
        None => all.remove(name),
    };
    let file = record_file(root);
    std::fs::create_dir_all(file.parent().unwrap_or(root)).map_err(|e| failed_io(&file, e))?;
    let text = serde_json::to_string_pretty(&all).unwrap_or_default();
    crate::fsutil::write_atomically(&file, text.as_bytes(), 0o644)
}

fn failed_io(file: &Path, e: std::io::Error) -> crate::error::Error {
    crate::error::failed(format!("{}: {e}", file.display()))
}

/// The program a step runs: a path with a `/` is taken from the root; a bare name is
/// looked for in `.tools/bin`, then on `PATH`, as every tool.
pub fn program(root: &Path, step: &StepSettings) -> Option<PathBuf> {
    let name = step.run.first()?;
    if name.contains('/') {
        let path = root.join(name);
        return crate::probe::is_executable(&path).then_some(path);
    }
    crate::probe::find_tool(root, name)
}

/// What stops the step from running at all: its program not found, a required
/// variable unset or empty (named, never its value). Exit 3.
pub fn check_ready(
    root: &Path,
    manifest: &Path,
    step: &StepSettings,
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<()> {
    let at = step.at(manifest);
    if let Some(var) = step.requires_env.iter().find(|v| env(v).is_none_or(|x| x.is_empty())) {
        return Err(missing(format!(
            "{at}: environment variable {var} is not set (the step lists it in `requires_env`); nothing was changed"
        ))
        .with_remediation(format!("export {var}=… in this shell, then run again")));
    }
    if program(root, step).is_none() {
        return Err(missing(format!(
            "{at}: program `{}` not found ({}); nothing was changed",
            step.run[0],
            if step.run[0].contains('/') {
                "no executable at that path from the root"
            } else {
                "not in .tools/bin or on PATH"
            }
        ))
        .with_remediation(format!("install `{}` or fix the step's `run`", step.run[0])));
    }
    Ok(())
}

/// Run the step in the root; `Some(finding)` when it failed (its output tail is the
/// remediation). The record is forgotten first and written only on success.
pub async fn run(
    ctx: &Context,
    step: &StepSettings,
    digest: Option<&str>,
) -> Result<Option<Finding>> {
    let tag = format!("steps/{}", step.name);
    let program = program(&ctx.root, step).ok_or_else(|| {
        missing(format!("step `{}`: program `{}` not found", step.name, step.run[0]))
    })?;
    let cmd = Cmd::new(&tag, &program.to_string_lossy(), Duration::from_secs(step.timeout))
        .args(step.run[1..].iter().cloned())
        .current_dir(&ctx.root);
    record(&ctx.root, &step.name, None)?;
    // Its required variables hold tokens: redacted from all output, whatever it prints.
    let values: Vec<(String, Vec<u8>)> = step
        .requires_env
        .iter()
        .filter_map(|name| std::env::var_os(name).map(|value| (name.clone(), value.into_vec())))
        .collect();
    ctx.session.learn_secret(values.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
    let span = ctx.session.events.span(SpanKind::Step, &tag, &step.name);
    let output = {
        let _wait = ctx.session.events.wait(&tag, &format!("step {}", step.name));
        exec::run(&ctx.session, &cmd).await?
    };
    span.finish(SpanOutcome::of_exit(output.code));
    if output.success() {
        if let Some(digest) = digest {
            record(&ctx.root, &step.name, Some(digest))?;
        }
        return Ok(None);
    }
    let tail = output.tail(8);
    Ok(Some(Finding::new(
        format!("step {}", step.name),
        format!("`{}` to exit 0", step.run.join(" ")),
        format!("exit {}", output.code.map_or("by a signal".into(), |c| c.to_string())),
        format!(
            "the step printed (last lines):\n{}\nfix the cause, then run `cargo xtask bootstrap` again{}",
            if tail.trim().is_empty() { "(nothing)" } else { tail.as_str() },
            ctx.session.where_output_is(&format!(" (full output: tag [{tag}] in "), ")")
        ),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn step(inputs: &[&str]) -> StepSettings {
        StepSettings {
            name: "sdk".into(),
            after: "layers".into(),
            run: vec!["true".into()],
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            requires_env: vec!["BUF_TOKEN".into()],
            timeout: 60,
            line: 7,
        }
    }

    #[test]
    fn plan_runs_unless_the_inputs_match_the_last_success() {
        assert!(
            matches!(plan(None, Some("x"), false), StepPlan::Run { reason } if reason.contains("no `inputs`"))
        );
        assert!(
            matches!(plan(Some("a"), None, false), StepPlan::Run { reason } if reason == "no success recorded")
        );
        assert!(
            matches!(plan(Some("a"), Some("b"), false), StepPlan::Run { reason } if reason.contains("changed"))
        );
        assert_eq!(plan(Some("a"), Some("a"), false), StepPlan::Unchanged);
        assert!(matches!(plan(Some("a"), Some("a"), true), StepPlan::Run { .. }));
    }

    #[test]
    fn digest_follows_matched_files_and_the_command() {
        let root = tempfile::tempdir().unwrap();
        let proto = root.path().join("packages/proto");
        std::fs::create_dir_all(proto.join("v1")).unwrap();
        std::fs::write(proto.join("v1/a.proto"), "message A {}").unwrap();
        let s = step(&["packages/proto/**"]);
        let first = digest(root.path(), &s).unwrap().unwrap();
        assert_eq!(digest(root.path(), &s).unwrap().unwrap(), first, "stable");
        std::fs::write(proto.join("v1/a.proto"), "message B {}").unwrap();
        let changed = digest(root.path(), &s).unwrap().unwrap();
        assert_ne!(changed, first);
        std::fs::write(root.path().join("README"), "unrelated").unwrap();
        assert_eq!(digest(root.path(), &s).unwrap().unwrap(), changed, "only matched files count");
        let other = StepSettings { run: vec!["false".into()], ..s.clone() };
        assert_ne!(digest(root.path(), &other).unwrap().unwrap(), changed, "the command counts");
        assert_eq!(digest(root.path(), &step(&[])).unwrap(), None);
        std::fs::create_dir_all(root.path().join("proto")).unwrap();
        std::fs::write(root.path().join("proto/api.proto"), "message Ping {}\n").unwrap();
        let top = step(&["proto/**"]);
        let ping = digest(root.path(), &top).unwrap();
        std::fs::write(root.path().join("proto/api.proto"), "message Pong {}\n").unwrap();
        assert_ne!(digest(root.path(), &top).unwrap(), ping, "files right under the folder count");
    }

    #[test]
    fn records_round_trip_and_forget() {
        let root = tempfile::tempdir().unwrap();
        assert!(recorded(root.path()).unwrap().is_empty());
        record(root.path(), "sdk", Some("sha256:1")).unwrap();
        record(root.path(), "lint", Some("sha256:2")).unwrap();
        record(root.path(), "sdk", None).unwrap();
        let all = recorded(root.path()).unwrap();
        assert_eq!(all.into_iter().collect::<Vec<_>>(), [("lint".into(), "sha256:2".into())]);
    }

    #[test]
    fn a_missing_variable_or_program_is_named_without_any_value() {
        let root = tempfile::tempdir().unwrap();
        let manifest = Path::new("Cargo.toml");
        let err = check_ready(root.path(), manifest, &step(&[]), |_| None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Missing);
        assert!(
            err.to_string()
                .starts_with("Cargo.toml:7: step `sdk`: environment variable BUF_TOKEN is not set"),
            "{err}"
        );
        let set = |_: &str| Some(std::ffi::OsString::from("s3cr3t"));
        let nowhere = StepSettings { run: vec!["no-such-program-xyz".into()], ..step(&[]) };
        let err = check_ready(root.path(), manifest, &nowhere, set).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Missing);
        assert!(err.to_string().contains("program `no-such-program-xyz` not found"), "{err}");
        assert!(!format!("{err:?}").contains("s3cr3t"));
    }
}
