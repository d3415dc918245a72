//! The engine's one error type: a kind that decides the exit code (the README's table), the
//! message with the context added on the way up, and an optional remediation.
//!
//! This is the one place exit codes are written as numbers. Code that must tell errors
//! apart matches on [`ErrorKind`]; nothing downcasts.

use std::fmt;

/// What went wrong, and so how the process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A stage or gate failed (exit 1).
    Failed,
    /// Configuration or arguments invalid; nothing was changed (exit 2).
    BadInput,
    /// A prerequisite is missing: a tool, the Docker daemon, a kube context (exit 3).
    Missing,
    /// Interrupted (Ctrl-C, SIGTERM, SIGHUP); child processes were stopped.
    Interrupted(Signal),
}

/// The signal that interrupted a run: exit 128 + its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Hangup,
    Interrupt,
    Terminate,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Hangup => "SIGHUP",
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }

    fn number(self) -> u8 {
        match self {
            Signal::Hangup => 1,
            Signal::Interrupt => 2,
            Signal::Terminate => 15,
        }
    }
}

/// The version of [`ErrorDoc`]'s shape (`schemas/error.schema.json`).
pub const SCHEMA_VERSION: u32 = 1;

/// With `--format json`, an error no result carried, as the one JSON object on stdout
/// (redacted by the caller).
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct ErrorDoc {
    /// `failed` or `interrupted`.
    pub status: crate::outcome::Status,
    pub exit_code: u8,
    pub error: String,
    pub remediation: Option<String>,
}

/// How a command ended, as its exit code says (the README's "Exit codes" table): what
/// tests compare instead of bare numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Converged, every gate green (warnings allowed).
    Ok,
    /// A stage or gate failed.
    Failed,
    /// Bad input: nothing was changed.
    BadInput,
    /// A prerequisite is missing.
    Missing,
    Interrupted(Signal),
    /// A code this table does not have (a crash), or none (killed by a signal).
    Other(Option<i32>),
}

impl Exit {
    /// The exit of a finished process.
    pub fn of(status: std::process::ExitStatus) -> Exit {
        Exit::from_code(status.code())
    }

    pub fn from_code(code: Option<i32>) -> Exit {
        let kinds = [ErrorKind::Failed, ErrorKind::BadInput, ErrorKind::Missing];
        let signals = [Signal::Hangup, Signal::Interrupt, Signal::Terminate];
        match code {
            Some(0) => Exit::Ok,
            Some(c) => kinds
                .into_iter()
                .find(|k| i32::from(k.exit_code()) == c)
                .map(Exit::from)
                .or_else(|| {
                    signals
                        .into_iter()
                        .find(|s| i32::from(128 + s.number()) == c)
                        .map(Exit::Interrupted)
                })
                .unwrap_or(Exit::Other(code)),
            None => Exit::Other(None),
        }
    }
}

impl From<ErrorKind> for Exit {
    fn from(kind: ErrorKind) -> Exit {
        match kind {
            ErrorKind::Failed => Exit::Failed,
            ErrorKind::BadInput => Exit::BadInput,
            ErrorKind::Missing => Exit::Missing,
            ErrorKind::Interrupted(signal) => Exit::Interrupted(signal),
        }
    }
}

impl ErrorKind {
    /// The process exit code (the README's "Exit codes" table).
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Failed => 1,
            ErrorKind::BadInput => 2,
            ErrorKind::Missing => 3,
            ErrorKind::Interrupted(signal) => 128 + signal.number(),
        }
    }

    pub fn is_interrupted(self) -> bool {
        matches!(self, ErrorKind::Interrupted(_))
    }

    /// Rank for [`combine`]: the higher decides. Interrupted (the user stopped the run)
    /// beats everything; a failure (a checksum mismatch, a broken download) needs a
    /// person and beats bad input, which needs an edit; missing (unreachable, not
    /// installed) is what retrying or installing may fix, so it only decides when every
    /// error is missing.
    fn severity(self) -> u8 {
        match self {
            ErrorKind::Missing => 0,
            ErrorKind::BadInput => 1,
            ErrorKind::Failed => 2,
            ErrorKind::Interrupted(_) => 3,
        }
    }
}

/// An error that ends a command: its kind, its messages (outermost context first) and,
/// when the place that failed knows it, what the user should do.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    /// Outermost first; `{}` shows the first, `{:#}` all of them joined by `: `.
    messages: Vec<String>,
    remediation: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, messages: vec![message.into()], remediation: None }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// What to do about it, when the failing step knows better than its stage.
    pub fn remediation(&self) -> Option<&str> {
        self.remediation.as_deref()
    }

    pub fn with_remediation(mut self, remediation: impl Into<String>) -> Error {
        self.remediation = Some(remediation.into());
        self
    }

    /// Add context on top (`context: message`), keeping the kind.
    pub fn context(mut self, context: impl fmt::Display) -> Error {
        self.messages.insert(0, context.to_string());
        self
    }

    /// The innermost message: what actually failed, without the context above it.
    pub fn root_message(&self) -> &str {
        self.messages.last().map_or("", String::as_str)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            f.write_str(&self.messages.join(": "))
        } else {
            f.write_str(self.messages.first().map_or("", String::as_str))
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {:#}", self.kind, self)
    }
}

/// Any library error (I/O, YAML, kube, Docker) is a failure unless the caller says more;
/// its source chain becomes the message, as `anyhow`'s `{:#}` would show it.
impl<E: std::error::Error + Send + Sync + 'static> From<E> for Error {
    fn from(err: E) -> Error {
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        Error::new(ErrorKind::Failed, message)
    }
}

/// `.context(..)` / `.with_context(|| ..)` on results and options, as with `anyhow`.
pub trait Context<T> {
    fn context(self, context: impl fmt::Display) -> Result<T>;
    fn with_context<C: fmt::Display>(self, context: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.into().context(context))
    }

    fn with_context<C: fmt::Display>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| e.into().context(context()))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, context: impl fmt::Display) -> Result<T> {
        self.ok_or_else(|| failed(context.to_string()))
    }

    fn with_context<C: fmt::Display>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.ok_or_else(|| failed(context().to_string()))
    }
}

/// Bad input (exit 2): say which file or argument and what was expected.
pub fn bad_input(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::BadInput, message)
}

/// A missing prerequisite (exit 3): say what is missing and how to get it.
pub fn missing(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Missing, message)
}

/// A failed stage or gate (exit 1).
pub fn failed(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Failed, message)
}

/// Interrupted by `signal`.
pub fn interrupted(signal: Signal, message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Interrupted(signal), message)
}

/// Several independent errors (one per chart, one per tool) as one, `Ok` when there are
/// none. The kind does not depend on the order the errors arrived in: it is the most
/// severe, interrupted > failed > bad input > missing. So any mismatch or failure is
/// `Failed`, and `Missing` means every error was a missing prerequisite. A single error
/// is returned unchanged; several are listed, in the given order, under
/// `"{count} {what}:"`, their further lines indented beneath.
pub fn combine(what: &str, mut errors: Vec<Error>) -> Result<()> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        count => {
            let kind = errors.iter().map(Error::kind).max_by_key(|kind| kind.severity());
            let lines: Vec<String> = errors.iter().map(|e| bullet(&format!("{e:#}"))).collect();
            Err(Error::new(
                kind.unwrap_or(ErrorKind::Failed),
                format!("{count} {what}:\n{}", lines.join("\n")),
            ))
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

    #[test]
    fn kind_survives_added_context() {
        let err = Err::<(), _>(bad_input("k3d.yaml: expected a mapping"))
            .context("reading the platform")
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput);
        assert_eq!(err.to_string(), "reading the platform");
        assert_eq!(format!("{err:#}"), "reading the platform: k3d.yaml: expected a mapping");
        assert_eq!(err.root_message(), "k3d.yaml: expected a mapping");
        let io = std::io::Error::other("disk full");
        assert_eq!(Error::from(io).kind(), ErrorKind::Failed);
    }

    #[test]
    fn an_exit_code_reads_back_as_its_kind() {
        assert_eq!(Exit::from_code(Some(0)), Exit::Ok);
        assert_eq!(Exit::from_code(Some(2)), Exit::BadInput);
        assert_eq!(Exit::from_code(Some(3)), Exit::Missing);
        assert_eq!(Exit::from_code(Some(130)), Exit::Interrupted(Signal::Interrupt));
        assert_eq!(Exit::from_code(Some(101)), Exit::Other(Some(101)));
        assert_eq!(Exit::from_code(None), Exit::Other(None));
    }

    #[test]
    fn exit_codes_follow_the_design() {
        let codes = [
            ErrorKind::Failed,
            ErrorKind::BadInput,
            ErrorKind::Missing,
            ErrorKind::Interrupted(Signal::Interrupt),
            ErrorKind::Interrupted(Signal::Terminate),
            ErrorKind::Interrupted(Signal::Hangup),
        ]
        .map(ErrorKind::exit_code);
        assert_eq!(codes, [1, 2, 3, 130, 143, 129]);
    }

    fn combined(errors: Vec<Error>) -> (ErrorKind, String) {
        let err = combine("charts could not be vendored", errors).unwrap_err();
        (err.kind(), err.to_string())
    }

    #[test]
    fn combined_kind_is_the_most_severe_in_any_order() {
        use ErrorKind::*;
        assert!(combine("charts could not be vendored", Vec::new()).is_ok());
        let unreachable = || missing("repository unreachable: GET https://h/index.yaml");
        let mismatch = || failed("chart `a` 1.0.0: digest differs from the lock");
        let unknown = || bad_input("chart `b`: no version 9.9.9");
        assert_eq!(combined(vec![unreachable(), unreachable()]).0, Missing, "all missing");
        assert_eq!(combined(vec![unreachable(), mismatch()]).0, Failed);
        assert_eq!(combined(vec![mismatch(), unreachable()]).0, Failed);
        assert_eq!(combined(vec![unreachable(), unknown()]).0, BadInput);
        assert_eq!(combined(vec![unknown(), mismatch(), unreachable()]).0, Failed);
        let stopped = interrupted(Signal::Interrupt, "stopped");
        assert_eq!(combined(vec![mismatch(), stopped]).0, Interrupted(Signal::Interrupt));
    }

    #[test]
    fn combined_message_lists_every_error_with_its_context() {
        let (kind, text) = combined(vec![
            missing("unreachable").context("chart `a` 1.0.0"),
            failed("digest differs\n  remove the file"),
        ]);
        assert_eq!(kind, ErrorKind::Failed);
        assert_eq!(
            text,
            "2 charts could not be vendored:\n  - chart `a` 1.0.0: unreachable\n  - digest differs\n    remove the file"
        );
        let err = combine("charts could not be vendored", vec![missing("only one")]).unwrap_err();
        assert_eq!((err.kind(), err.to_string()), (ErrorKind::Missing, "only one".to_string()));
    }
}
