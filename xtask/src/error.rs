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

/// The exit code for an error: the first [`Coded`] in its chain, else 1.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<Coded>())
        .map_or(ExitCode::Failed as i32, |coded| coded.code as i32)
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
}
