//! The fake `helmfile`'s command line, as helmfile 1.x and 0.x parse it: global flags,
//! `-f`, `-e`, `-l` selectors (any of them; within one, every term), the verb and its
//! flags, `--args`/`--sync-args` passed to helm, and which flags the claimed version has.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::helmfile::state::ReleaseSpec;
use crate::helmfile::version::HelmfileVersion;

#[derive(Debug, Default, PartialEq)]
pub(crate) struct Command {
    pub(crate) verb: String,
    pub(crate) file: Option<PathBuf>,
    pub(crate) environment: String,
    pub(crate) output: Option<String>,
    /// `-l key=value[,key!=value]` (repeatable: any of them).
    pub(crate) selectors: Vec<Vec<Term>>,
    /// `--kube-context`: passed on to every helm call (else helm's own default).
    pub(crate) kube_context: Option<String>,
    /// `--wait`, `--wait-for-jobs`: override every release's `wait` / `waitForJobs`.
    pub(crate) wait: bool,
    pub(crate) wait_for_jobs: bool,
    /// `--timeout N` (seconds): overrides `helmDefaults.timeout` and release `timeout`.
    pub(crate) timeout: Option<u64>,
    /// `--allow-no-matching-release`: no releases is exit 0 instead of 3.
    pub(crate) allow_no_match: bool,
    /// `--state-values-file` (repeatable, merged in order).
    pub(crate) state_values_files: Vec<PathBuf>,
    /// `--sync-args`: extra helm flags for `helm upgrade` (only `--timeout` is read).
    pub(crate) sync_args: Option<String>,
}

/// Flags taken (and ignored) with a value, and without, so the engine's command lines
/// parse as with the real helmfile.
const VALUE_FLAGS: &[&str] = &[
    "--log-level",
    "--kube-context",
    "--namespace",
    "-n",
    "--chart",
    "-c",
    "--helm-binary",
    "-b",
    "--state-values-set",
    "--args",
    "--concurrency",
    "--set",
    "--values",
    "--kubeconfig",
];
const BOOL_FLAGS: &[&str] = &[
    "--quiet",
    "-q",
    "--debug",
    "--skip-deps",
    "--sequential-helmfiles",
    "--no-color",
    "--color",
    "--interactive",
    "-i",
    "--enable-live-output",
    "--skip-needs",
    "--include-needs",
    "--include-transitive-needs",
    "--skip-diff-on-install",
    "--suppress-diff",
    "--include-tests",
    "--skip-tests",
    "--skip-crds",
    "--skip-refresh",
    "--reset-values",
    "--reuse-values",
    "--suppress-secrets",
    "--strip-args-values-on-exit-error",
    "--skip-charts",
    "--include-crds",
    "--skip-cleanup",
];

/// One term of a selector: `key=value`, or `key!=value` (`negative`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Term {
    pub(crate) key: String,
    pub(crate) value: String,
    pub(crate) negative: bool,
}

/// helmfile `pkg/state/release_filters.go` ParseLabels: comma-separated `k=v` / `k!=v`.
fn parse_selector(sel: &str) -> Result<Vec<Term>> {
    sel.split(',')
        .map(|t| {
            let (key, value, negative) = match t.split_once("!=") {
                Some((k, v)) => (k, v, true),
                None => {
                    let (k, v) = t.split_once('=').with_context(|| {
                        format!("malformed label: {t}. Expected label in form k=v or k!=v")
                    })?;
                    (k, v, false)
                }
            };
            Ok(Term { key: key.to_owned(), value: value.to_owned(), negative })
        })
        .collect()
}

/// helmfile LabelFilter.Match: every positive term's label is present and equal; no
/// negative term's label is present with that value (an absent label matches `!=`).
/// `name` and `namespace` are labels of every release (helmfile adds them).
pub(crate) fn matches(sel: &[Term], r: &ReleaseSpec) -> bool {
    sel.iter().all(|t| {
        let value = match t.key.as_str() {
            "name" => Some(&r.name),
            "namespace" => Some(&r.namespace),
            key => r.labels.get(key),
        };
        match t.negative {
            false => value == Some(&t.value),
            true => value != Some(&t.value),
        }
    })
}

pub(crate) fn parse_args(args: &[String]) -> Result<Command> {
    let mut c = Command { environment: "default".into(), ..Command::default() };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with('-') => (f, Some(v.to_owned())),
            _ => (a.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .with_context(|| format!("flag needs an argument: {flag}"))
        };
        match flag {
            "-f" | "--file" => c.file = Some(PathBuf::from(value()?)),
            "-e" | "--environment" => c.environment = value()?,
            "--output" | "-o" => c.output = Some(value()?),
            "-l" | "--selector" => {
                let sel = value()?;
                c.selectors.push(parse_selector(&sel)?);
            }
            "--kube-context" => c.kube_context = Some(value()?),
            "--wait" => c.wait = true,
            "--wait-for-jobs" => c.wait_for_jobs = true,
            "--allow-no-matching-release" => c.allow_no_match = true,
            "--state-values-file" => c.state_values_files.push(PathBuf::from(value()?)),
            "--sync-args" => c.sync_args = Some(value()?),
            "--timeout" => {
                let v = value()?;
                c.timeout = Some(v.parse().with_context(|| {
                    format!("invalid argument {v:?} for \"--timeout\" flag: expected seconds")
                })?);
            }
            f if VALUE_FLAGS.contains(&f) => {
                value()?;
            }
            f if BOOL_FLAGS.contains(&f) => {}
            f if f.starts_with('-') => bail!("Error: unknown flag: {f}"),
            verb if c.verb.is_empty() => c.verb = verb.to_owned(),
            other => bail!("Error: unexpected argument {other:?} after {}", c.verb),
        }
    }
    if !["sync", "apply", "list", "status", "destroy", "template", "build"]
        .contains(&c.verb.as_str())
    {
        bail!(
            "Error: unknown command {:?} for \"helmfile\" (the testbed's helmfile knows sync, apply, list, status, destroy, template, build)",
            c.verb
        );
    }
    Ok(c)
}

/// The flags the claimed version does not have are refused as cobra refuses them.
pub(crate) fn check_flags(c: &Command, version: HelmfileVersion) -> Result<()> {
    if c.timeout.is_some() && c.verb == "sync" && !version.has_sync_timeout() {
        bail!("Error: unknown flag: --timeout");
    }
    if c.sync_args.is_some() && !version.has_sync_args() {
        bail!("Error: unknown flag: --sync-args");
    }
    Ok(())
}

/// helm's `--timeout` among `--sync-args` (`--timeout=900s` or `--timeout 15m`), in
/// seconds (Go durations of whole seconds, minutes or hours).
pub(crate) fn helm_timeout(sync_args: &str) -> Result<Option<u64>> {
    let words: Vec<&str> = sync_args.split_whitespace().collect();
    let value = words.iter().enumerate().find_map(|(i, w)| match w.split_once('=') {
        Some(("--timeout", v)) => Some(v.to_owned()),
        None if *w == "--timeout" => words.get(i + 1).map(|v| (*v).to_owned()),
        _ => None,
    });
    let Some(value) = value else { return Ok(None) };
    let (number, unit) =
        value.split_at(value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len()));
    let number: u64 = number.parse().with_context(|| format!("invalid duration {value:?}"))?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => bail!(
            "Error: invalid argument {value:?} for \"--timeout\" flag: time: missing unit in duration"
        ),
    };
    Ok(Some(number * factor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn command_lines_parse_like_helmfile() {
        let c = parse_args(&args(
            "--quiet -f layer.yaml --environment local --skip-deps sync --sequential-helmfiles",
        ))
        .unwrap();
        assert_eq!((c.verb.as_str(), c.environment.as_str()), ("sync", "local"));
        assert_eq!(c.file.as_deref(), Some(Path::new("layer.yaml")));
        let c = parse_args(&args("-f x.yaml -e local list --output json -l gate=true")).unwrap();
        assert_eq!(c.output.as_deref(), Some("json"));
        let term = |key: &str, value: &str, negative| Term {
            key: key.into(),
            value: value.into(),
            negative,
        };
        assert_eq!(c.selectors, vec![vec![term("gate", "true", false)]]);
        let c = parse_args(&args("-f x.yaml -l bundle!=obs,gate=true sync")).unwrap();
        assert_eq!(
            c.selectors,
            vec![vec![term("bundle", "obs", true), term("gate", "true", false)]]
        );
        assert!(
            parse_args(&args("-f x.yaml --bogus sync"))
                .unwrap_err()
                .to_string()
                .contains("unknown flag: --bogus")
        );
        assert!(parse_args(&args("-f x.yaml")).is_err());
    }
}
