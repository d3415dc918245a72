//! The context every command gets, resolved once by the CLI: settings, the Helmfile
//! environment, the kube context (one rule for every command), the log file, and the
//! session (events, cancellation, tool path).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{Settings, find_root, resolve_home};
use crate::error::{Result, bad_input};
use crate::session::Session;

/// How a command prints its result (`--format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// Readable text (a table where it fits).
    #[default]
    Human,
    /// One JSON document on stdout, for scripts.
    Json,
}

/// The kube context a command uses when none is named: the k3d cluster's own. One rule
/// for every command and for smoke, so no command ever follows a current context that
/// someone switched to a shared cluster.
pub fn default_kube_context(settings: &Settings) -> String {
    format!("k3d-{}", settings.cluster)
}

/// What the command line may override, resolved once by the CLI.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--log PATH` (relative to the current directory).
    pub log: Option<PathBuf>,
    /// `--env ENV` (default: the `environment` setting).
    pub environment: Option<String>,
    /// `--context CONTEXT` (default: [`default_kube_context`]).
    pub kube_context: Option<String>,
    /// `--bundle NAME` (repeatable): optional bundles on besides the `bundles` setting.
    pub bundles: Vec<String>,
}

/// What every command gets, resolved once: the workspace root, its settings, the
/// Helmfile environment, the kube context, the log file, and the session (events,
/// cancellation, tool path).
#[derive(Debug, Clone)]
pub struct Context {
    pub root: PathBuf,
    pub settings: Settings,
    /// `--log PATH` when given, else the `log` setting.
    pub log_path: PathBuf,
    pub environment: String,
    pub kube_context: String,
    /// The optional bundles that are on: the `bundles` setting and every `--bundle`.
    pub bundles: BTreeSet<String>,
    pub session: Session,
    /// When this command started: a Job created since is this run's.
    pub started_at: jiff::Timestamp,
}

impl Context {
    /// Find the root from the current directory and load its settings.
    pub fn load(overrides: &Overrides) -> Result<Context> {
        let cwd = std::env::current_dir()
            .map_err(|e| bad_input(format!("cannot read the current directory: {e}")))?;
        Context::new(&find_root(&cwd)?, &cwd, overrides)
    }

    /// The context of the workspace at `root`; a relative `--log` is taken from `cwd`.
    /// The session is silent until the CLI gives it sinks ([`Context::with_session`]).
    pub fn new(root: &Path, cwd: &Path, overrides: &Overrides) -> Result<Context> {
        let home = home_dir();
        let settings = Settings::load(root, home.as_deref())?;
        let log_path = match &overrides.log {
            Some(path) => resolve_home(path, cwd, home.as_deref(), "--log")?,
            None => settings.log.clone(),
        };
        let environment =
            overrides.environment.clone().unwrap_or_else(|| settings.environment.clone());
        let kube_context =
            overrides.kube_context.clone().unwrap_or_else(|| default_kube_context(&settings));
        let bundles = settings.bundles.iter().chain(&overrides.bundles).cloned().collect();
        let session = Session {
            tool_path: Some(crate::pins::path_with_tools(root)),
            log_path: Some(log_path.clone()),
            ..Session::silent()
        };
        Ok(Context {
            root: root.to_path_buf(),
            settings,
            log_path,
            environment,
            kube_context,
            bundles,
            session,
            started_at: jiff::Timestamp::now(),
        })
    }

    /// A silent context in the temp dir for unit tests: the sample's cluster, `local`.
    #[cfg(test)]
    pub fn for_tests(settings: Settings) -> Context {
        let dir = std::env::temp_dir();
        Context {
            root: dir.clone(),
            kube_context: default_kube_context(&settings),
            environment: "local".into(),
            log_path: dir.join("setup.log"),
            settings,
            bundles: Default::default(),
            session: Session::silent(),
            started_at: jiff::Timestamp::now(),
        }
    }

    pub fn with_session(mut self, session: Session) -> Context {
        self.session = session;
        self
    }

    /// Mutating commands act only on `k3d-<cluster>` or a context listed in
    /// `allowed_contexts`; anything else is refused before any tool call, so a
    /// kubeconfig switched to a shared cluster never gets the platform synced into it.
    pub fn check_context_allowed(&self) -> Result<()> {
        if self.targets_own_cluster() || self.settings.allowed_contexts.contains(&self.kube_context)
        {
            return Ok(());
        }
        Err(bad_input(format!(
            "kube context `{}` is not the k3d cluster's (`{}`) and not listed in `allowed_contexts` ([workspace.metadata.bootstrap] in {}); nothing was changed",
            self.kube_context,
            default_kube_context(&self.settings),
            self.root.join("Cargo.toml").display()
        ))
        .with_remediation(format!(
            "drop --context to use `{}`, or add `{}` to `allowed_contexts` if this cluster is meant for the platform",
            default_kube_context(&self.settings),
            self.kube_context
        )))
    }

    /// Whether the kube context is the k3d cluster's own (the cluster stage applies).
    pub fn targets_own_cluster(&self) -> bool {
        self.kube_context == default_kube_context(&self.settings)
    }

    /// A path shown relative to the root when it lies inside it.
    pub fn display_path(&self, path: &Path) -> String {
        path.strip_prefix(&self.root).unwrap_or(path).display().to_string()
    }
}

/// The home directory: `$HOME`, else the account's home from the system's user
/// database (a service or `env -i` may run us without `HOME`).
fn home_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(home));
    }
    let user = nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten()?;
    Some(user.dir).filter(|dir| !dir.as_os_str().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    const MANIFEST: &str = "[workspace]\nmembers = [\"xtask\"]\n\n[workspace.metadata.bootstrap]\n";

    #[test]
    fn log_flag_overrides_the_setting() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("Cargo.toml"), MANIFEST).unwrap();
        let cwd = Path::new("/work/here");
        let overrides = Overrides { log: Some("logs/run.log".into()), ..Overrides::default() };
        let ctx = Context::new(root.path(), cwd, &overrides).unwrap();
        assert_eq!(ctx.log_path, Path::new("/work/here/logs/run.log"));
        let ctx = Context::new(root.path(), cwd, &Overrides::default()).unwrap();
        assert_eq!(ctx.log_path, ctx.settings.log);
        assert_eq!(ctx.display_path(&ctx.settings.helmfile), "infra/kubernetes/helmfile.yaml");
    }

    #[test]
    fn one_kube_context_rule_and_only_allowed_contexts_change() {
        let root = tempfile::tempdir().unwrap();
        let manifest = format!("{MANIFEST}allowed_contexts = [\"staging\"]\n");
        std::fs::write(root.path().join("Cargo.toml"), manifest).unwrap();
        let cwd = Path::new("/work/here");
        let ctx = Context::new(root.path(), cwd, &Overrides::default()).unwrap();
        assert_eq!(ctx.kube_context, "k3d-ameide", "never the kubeconfig's current context");
        assert!(ctx.targets_own_cluster() && ctx.check_context_allowed().is_ok());
        let to = |name: &str| Overrides { kube_context: Some(name.into()), ..Overrides::default() };
        let staging = Context::new(root.path(), cwd, &to("staging")).unwrap();
        assert!(!staging.targets_own_cluster() && staging.check_context_allowed().is_ok());
        let prod = Context::new(root.path(), cwd, &to("prod")).unwrap();
        let err = prod.check_context_allowed().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput);
        assert!(err.to_string().contains("`prod`") && err.to_string().contains("allowed_contexts"));
    }
}
