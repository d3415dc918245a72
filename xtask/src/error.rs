//! Exit codes (DESIGN.md) carried through `anyhow` chains.
//!
//! An error that must end the process with a specific code wraps a [`Coded`] somewhere
//! in its chain; [`exit_code`] finds it however much context was added on top.

use std::fmt;

/// Process exit codes shared by `bootstrap` and every subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// A stage or gate failed.
    Failed = 1,
    /// Configuration or arguments invalid; nothing was changed.
    BadInput = 2,
    /// A prerequisite is missing: a tool, the Docker daemon, a kube context.
    Missing = 3,
    /// Interrupted; child processes were stopped.
    Interrupted = 130,
}

/// An error that decides the exit code.
#[derive(Debug)]
pub struct Coded {
    pub code: ExitCode,
    pub message: String,
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

/// Bad input (exit 2): say which file or argument and what was expected.
pub fn bad_input(message: impl Into<String>) -> anyhow::Error {
    Coded { code: ExitCode::BadInput, message: message.into() }.into()
}

/// A missing prerequisite (exit 3): say what is missing and how to get it.
pub fn missing(message: impl Into<String>) -> anyhow::Error {
    Coded { code: ExitCode::Missing, message: message.into() }.into()
}

/// A failed stage or gate (exit 1).
pub fn failed(message: impl Into<String>) -> anyhow::Error {
    Coded { code: ExitCode::Failed, message: message.into() }.into()
}

/// The code an error decides: the first [`Coded`] in its chain, else `Failed`.
pub fn code_of(err: &anyhow::Error) -> ExitCode {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<Coded>())
        .map_or(ExitCode::Failed, |coded| coded.code)
}

/// The process exit code for an error (see [`code_of`]).
pub fn exit_code(err: &anyhow::Error) -> i32 {
    code_of(err) as i32
}

impl ExitCode {
    /// Rank for [`combine`]: the higher decides. Interrupted (the user stopped the run)
    /// beats everything; a failure (a checksum mismatch, a broken download) needs a
    /// person and beats bad input, which needs an edit; missing (unreachable, not
    /// installed) is what retrying or installing may fix, so it only decides when every
    /// error is missing.
    fn severity(self) -> u8 {
        match self {
            ExitCode::Missing => 0,
            ExitCode::BadInput => 1,
            ExitCode::Failed => 2,
            ExitCode::Interrupted => 3,
        }
    }
}

/// Several independent errors (one per chart, one per tool) as one, `Ok` when there are
/// none. The exit code does not depend on the order the errors arrived in: it is the
/// most severe of their codes, interrupted (130) > failed (1) > bad input (2) > missing
/// (3). So any mismatch or failure exits 1, and 3 means every error was a missing
/// prerequisite. A single error is returned unchanged; several are listed, in the
/// given order, under `"{count} {what}:"`, their further lines indented beneath.
pub fn combine(what: &str, mut errors: Vec<anyhow::Error>) -> anyhow::Result<()> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        count => {
            let code = errors.iter().map(code_of).max_by_key(|code| code.severity());
            let lines: Vec<String> = errors.iter().map(|e| bullet(&format!("{e:#}"))).collect();
            Err(Coded {
                code: code.unwrap_or(ExitCode::Failed),
                message: format!("{count} {what}:\n{}", lines.join("\n")),
            }
            .into())
        }
    }
}

/// `  - first line`, further lines (hints) indented under it.
fn bullet(text: &str) -> String {
    let mut lines = text.lines();
    let first = format!("  - {}", lines.next().unwrap_or_default());
    std::iter::once(first)
        .chain(lines.map(|line| format!("    {}", line.trim_start())))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn code_survives_added_context() {
        let err = Err::<(), _>(bad_input("k3d.yaml: expected a mapping"))
            .context("reading the platform")
            .unwrap_err();
        assert_eq!(exit_code(&err), 2);
        assert_eq!(exit_code(&anyhow::anyhow!("plain")), 1);
        assert_eq!(exit_code(&missing("no k3d")), 3);
    }

    fn combined(errors: Vec<anyhow::Error>) -> (i32, String) {
        let err = combine("charts could not be vendored", errors).unwrap_err();
        (exit_code(&err), err.to_string())
    }

    #[test]
    fn combined_code_is_the_most_severe_in_any_order() {
        assert!(combine("charts could not be vendored", Vec::new()).is_ok());
        let unreachable = || missing("repository unreachable: GET https://h/index.yaml");
        let mismatch = || failed("chart `a` 1.0.0: digest differs from the lock");
        let unknown = || bad_input("chart `b`: no version 9.9.9");
        assert_eq!(combined(vec![unreachable(), unreachable()]).0, 3, "all missing");
        assert_eq!(combined(vec![unreachable(), mismatch()]).0, 1);
        assert_eq!(combined(vec![mismatch(), unreachable()]).0, 1);
        assert_eq!(combined(vec![unreachable(), unknown()]).0, 2);
        assert_eq!(combined(vec![unknown(), mismatch(), unreachable()]).0, 1);
        assert_eq!(combined(vec![anyhow::anyhow!("uncoded"), unreachable()]).0, 1);
        let stopped = Coded { code: ExitCode::Interrupted, message: "stopped".into() };
        assert_eq!(combined(vec![mismatch(), stopped.into()]).0, 130);
    }

    #[test]
    fn combined_message_lists_every_error_with_its_context() {
        let (code, text) = combined(vec![
            missing("unreachable").context("chart `a` 1.0.0"),
            failed("digest differs\n  remove the file"),
        ]);
        assert_eq!(code, 1);
        assert_eq!(
            text,
            "2 charts could not be vendored:\n  - chart `a` 1.0.0: unreachable\n  - digest differs\n    remove the file"
        );
        let single = combine("charts could not be vendored", vec![missing("only one")]);
        let err = single.unwrap_err();
        assert_eq!((exit_code(&err), err.to_string()), (3, "only one".to_string()));
    }
}
