//! Settings from `[workspace.metadata.bootstrap]` of the workspace root `Cargo.toml`.
//!
//! Every key is optional; the defaults are those of the original bash bootstrap. An
//! unknown key is bad input (exit 2) naming the key and the file, so a typo never
//! silently falls back to a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::Result;
use serde::{Deserialize, Serialize};

use crate::error::bad_input;

mod context;
mod images;
mod steps;
mod timeouts;
use crate::pins::ToolPin;
pub use context::{Context, Format, Overrides, default_kube_context};
pub use images::ImagesSettings;
pub use steps::{STAGE_ANCHORS, StepSettings, check_anchors};
pub use timeouts::Timeouts;

/// Environment variable that names the workspace root (tests point it at a fixture).
pub const ROOT_ENV: &str = "BOOTSTRAP_ROOT";

/// The bootstrap settings, with every path resolved against the workspace root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// k3d cluster name.
    pub cluster: String,
    /// k3d config file (`k3d.io/v1alpha5`, `kind: Simple`).
    pub k3d_config: PathBuf,
    /// Root Helmfile listing the layers.
    pub helmfile: PathBuf,
    /// Helmfile environment (`-e`).
    pub environment: String,
    /// Kube contexts besides `k3d-<cluster>` that mutating commands may act on (a
    /// shared or production cluster is refused unless listed here).
    pub allowed_contexts: Vec<String>,
    /// Registry containers of older setups, removed by the cluster stage.
    pub legacy_registries: Vec<String>,
    /// Vendored charts lock.
    pub charts_lock: PathBuf,
    /// Log file holding everything every tool printed (`~` is the home directory).
    pub log: PathBuf,
    /// Port of Tilt's web/API server.
    pub tilt_port: u16,
    /// Per-stage timeouts, in seconds.
    pub timeouts: Timeouts,
    /// Pinned tools for `cargo xtask tools install` (`[workspace.metadata.bootstrap.tools.<name>]`).
    pub tools: BTreeMap<String, ToolPin>,
    /// The secrets stage (`[workspace.metadata.bootstrap.secrets]`).
    pub secrets: SecretsSettings,
    /// Optional bundles that are on (releases labelled `bundle: <name>`); `--bundle`
    /// adds to these.
    pub bundles: Vec<String>,
    /// Repository steps (`[[workspace.metadata.bootstrap.steps]]`), in the order given.
    pub steps: Vec<StepSettings>,
    /// Images fetched ahead (`[workspace.metadata.bootstrap.images]`).
    pub images: ImagesSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cluster: "ameide".into(),
            k3d_config: "infra/docker/local/k3d.yaml".into(),
            helmfile: "infra/kubernetes/helmfile.yaml".into(),
            environment: "local".into(),
            allowed_contexts: Vec::new(),
            legacy_registries: vec!["dev-reg".into(), "k3d-docker.io".into()],
            charts_lock: "infra/kubernetes/charts/third_party/charts.lock.yaml".into(),
            log: "~/.devcontainer-setup.log".into(),
            tilt_port: 10350,
            timeouts: Timeouts::default(),
            tools: BTreeMap::new(),
            secrets: SecretsSettings::default(),
            bundles: Vec::new(),
            steps: Vec::new(),
            images: ImagesSettings::default(),
        }
    }
}

/// What the secrets stage waits for and writes (`[workspace.metadata.bootstrap.secrets]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsSettings {
    /// Namespace of the Vault bootstrap CronJob / Job.
    pub vault_namespace: String,
    /// CronJob whose newest Job seeds Vault.
    pub vault_cronjob: String,
    /// A plain Job to wait for instead of the CronJob's newest Job.
    pub vault_job: Option<String>,
    /// The layer after which the Vault bootstrap is awaited.
    pub vault_after_layer: String,
    /// Secret holding the Postgres credentials (keys host, port, database, username, password).
    pub postgres_secret: String,
    pub postgres_namespace: String,
    /// Secret written with the Flyway keys url, user, password.
    pub db_migrations_secret: String,
    pub db_migrations_namespace: String,
    /// The layer after which the db-migrations secret is written.
    pub db_migrations_after_layer: String,
}

impl Default for SecretsSettings {
    fn default() -> Self {
        SecretsSettings {
            vault_namespace: "vault".into(),
            vault_cronjob: "foundation-vault-bootstrap".into(),
            vault_job: None,
            vault_after_layer: "15-secrets-certificates".into(),
            postgres_secret: "postgres-credentials".into(),
            postgres_namespace: "ameide".into(),
            db_migrations_secret: "db-migrations-local".into(),
            db_migrations_namespace: "ameide".into(),
            db_migrations_after_layer: "40-data-plane".into(),
        }
    }
}

// Only the path down to our table is typed; the rest of Cargo.toml is Cargo's business.
#[derive(Deserialize)]
struct Manifest {
    workspace: Option<WorkspaceTable>,
}

#[derive(Deserialize)]
struct WorkspaceTable {
    metadata: Option<MetadataTable>,
}

#[derive(Deserialize)]
struct MetadataTable {
    bootstrap: Option<Settings>,
}

impl Settings {
    /// Read the settings of the workspace rooted at `root`, with paths made absolute.
    pub fn load(root: &Path, home: Option<&Path>) -> Result<Settings> {
        let manifest = root.join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest)
            .map_err(|e| bad_input(format!("{}: cannot read: {e}", manifest.display())))?;
        let settings = Settings::parse(&manifest, &text)?;
        if home.is_none() && settings.log.starts_with("~") {
            resolve_home(&settings.log, root, None, &format!("{}: `log`", manifest.display()))?;
        }
        Ok(settings.resolved(root, home))
    }

    /// Parse the `[workspace.metadata.bootstrap]` table of a root manifest's text
    /// (`manifest` is used in messages only). Paths are left as written.
    pub fn parse(manifest: &Path, text: &str) -> Result<Settings> {
        let parsed: Manifest = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|span| line_col(text, span.start)).unwrap_or_default();
            bad_input(format!(
                "{}{at}: [workspace.metadata.bootstrap]: {}",
                manifest.display(),
                e.message().trim_end()
            ))
        })?;
        let mut settings =
            parsed.workspace.and_then(|w| w.metadata).and_then(|m| m.bootstrap).unwrap_or_default();
        settings.validate(manifest)?;
        steps::validate(manifest, text, &mut settings.steps)?;
        Ok(settings)
    }

    fn validate(&self, manifest: &Path) -> Result<()> {
        crate::pins::validate_pins(manifest, &self.tools)?;
        let file = manifest.display();
        let empty = |key: &str| {
            bad_input(format!("{file}: [workspace.metadata.bootstrap]: `{key}` must not be empty"))
        };
        for (key, value) in [("cluster", self.cluster.as_str()), ("environment", &self.environment)]
        {
            if value.trim().is_empty() {
                return Err(empty(key));
            }
        }
        for (key, path) in [
            ("k3d_config", &self.k3d_config),
            ("helmfile", &self.helmfile),
            ("charts_lock", &self.charts_lock),
            ("log", &self.log),
        ] {
            if path.as_os_str().is_empty() {
                return Err(empty(key));
            }
        }
        let s = &self.secrets;
        for (key, value) in [
            ("vault_namespace", s.vault_namespace.as_str()),
            ("vault_cronjob", &s.vault_cronjob),
            ("vault_job", s.vault_job.as_deref().unwrap_or("-")),
            ("vault_after_layer", &s.vault_after_layer),
            ("postgres_secret", &s.postgres_secret),
            ("postgres_namespace", &s.postgres_namespace),
            ("db_migrations_secret", &s.db_migrations_secret),
            ("db_migrations_namespace", &s.db_migrations_namespace),
            ("db_migrations_after_layer", &s.db_migrations_after_layer),
        ] {
            if value.trim().is_empty() {
                return Err(bad_input(format!(
                    "{file}: [workspace.metadata.bootstrap.secrets]: `{key}` must not be empty"
                )));
            }
        }
        if let Some(bad) = self.bundles.iter().find(|b| b.trim().is_empty()) {
            return Err(bad_input(format!(
                "{file}: [workspace.metadata.bootstrap]: `bundles` entry {bad:?}: expected a bundle name (a release's `bundle` label)"
            )));
        }
        if let Some(why) = self.images.invalid() {
            return Err(bad_input(format!("{file}: [workspace.metadata.bootstrap.images]: {why}")));
        }
        if self.tilt_port == 0 {
            return Err(bad_input(format!(
                "{file}: [workspace.metadata.bootstrap]: `tilt_port` must be a port number 1-65535"
            )));
        }
        self.timeouts.validate(&file.to_string())?;
        Ok(())
    }

    /// Paths made absolute: `~/` against `home`, relative ones against `root`.
    pub fn resolved(mut self, root: &Path, home: Option<&Path>) -> Settings {
        for path in [&mut self.k3d_config, &mut self.helmfile, &mut self.charts_lock, &mut self.log]
        {
            *path = resolve_path(path, root, home);
        }
        self
    }
}

/// `~` or `~/x` against `home` (when known), a relative path against `base`.
pub fn resolve_path(path: &Path, base: &Path, home: Option<&Path>) -> PathBuf {
    if let (Some(home), Ok(rest)) = (home, path.strip_prefix("~")) {
        return home.join(rest);
    }
    if path.is_absolute() { path.to_path_buf() } else { base.join(path) }
}

/// [`resolve_path`], refusing a `~` path when no home directory is known (it would
/// otherwise become a folder literally named `~`).
pub(crate) fn resolve_home(
    path: &Path,
    base: &Path,
    home: Option<&Path>,
    what: &str,
) -> Result<PathBuf> {
    if home.is_none() && path.starts_with("~") {
        return Err(bad_input(format!(
            "{what} {}: `~` needs a home directory, and HOME is unset and the account has none; set HOME or give an absolute path",
            path.display()
        )));
    }
    Ok(resolve_path(path, base, home))
}

/// `:line:col` (1-based) of a byte offset.
fn line_col(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!(":{line}:{col}")
}

/// The workspace root: `$BOOTSTRAP_ROOT` when set, else the nearest directory from
/// `start` upwards whose `Cargo.toml` has a `[workspace]` table.
pub fn find_root(start: &Path) -> Result<PathBuf> {
    if let Some(root) = std::env::var_os(ROOT_ENV).filter(|r| !r.is_empty()) {
        let root = resolve_path(Path::new(&root), start, None);
        if !root.join("Cargo.toml").is_file() {
            return Err(bad_input(format!(
                "{ROOT_ENV}={}: expected a directory holding the workspace Cargo.toml",
                root.display()
            )));
        }
        // `a/xtask/..` reads badly in messages; the real path is what users recognise.
        return Ok(std::fs::canonicalize(&root).unwrap_or(root));
    }
    for dir in start.ancestors() {
        let manifest = dir.join("Cargo.toml");
        if let Ok(text) = std::fs::read_to_string(&manifest)
            && is_workspace_manifest(&text)
        {
            return Ok(dir.to_path_buf());
        }
    }
    Err(bad_input(format!(
        "no workspace Cargo.toml (one with a [workspace] table) in {} or above; run inside the repository or set {ROOT_ENV}",
        start.display()
    )))
}

fn is_workspace_manifest(text: &str) -> bool {
    #[derive(Deserialize)]
    struct Probe {
        workspace: Option<serde::de::IgnoredAny>,
    }
    // A manifest that does not parse is not ours to judge here; Cargo will say why.
    toml::from_str::<Probe>(text).is_ok_and(|p| p.workspace.is_some())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::error::ErrorKind;

    const MANIFEST: &str = "[workspace]\nmembers = [\"xtask\"]\n\n[workspace.metadata.bootstrap]\n";

    fn parse(table: &str) -> Result<Settings> {
        Settings::parse(Path::new("/repo/Cargo.toml"), &format!("{MANIFEST}{table}"))
    }

    #[test]
    fn empty_table_gives_the_defaults() {
        let settings = parse("").unwrap();
        assert_eq!(settings, Settings::default());
        assert_eq!(settings.cluster, "ameide");
        assert_eq!(settings.legacy_registries, ["dev-reg", "k3d-docker.io"]);
        assert_eq!(settings.tilt_port, 10350);
        // No table at all is the same.
        let bare = Settings::parse(Path::new("Cargo.toml"), "[workspace]\n").unwrap();
        assert_eq!(bare, Settings::default());
    }

    #[test]
    fn keys_and_timeouts_override_defaults() {
        let settings =
            parse("cluster = \"dev\"\ntilt_port = 10999\n[workspace.metadata.bootstrap.timeouts]\ngate = 5\n")
                .unwrap();
        assert_eq!(settings.cluster, "dev");
        assert_eq!(settings.tilt_port, 10999);
        assert_eq!(settings.timeouts.gate(), Duration::from_secs(5));
        assert_eq!(settings.timeouts.layer_sync, Timeouts::default().layer_sync);
    }

    #[test]
    fn unknown_key_names_key_file_and_line() {
        let err = parse("cluster = \"a\"\nclustre = \"b\"\n").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput);
        let msg = err.to_string();
        assert!(msg.contains("/repo/Cargo.toml:6:"), "{msg}");
        assert!(msg.contains("clustre"), "{msg}");
        let err = parse("[workspace.metadata.bootstrap.timeouts]\ngates = 1\n").unwrap_err();
        assert!(err.to_string().contains("gates"), "{err}");
    }

    #[test]
    fn wrong_type_and_zero_values_are_bad_input() {
        let err = parse("tilt_port = \"x\"\n").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput);
        let err = parse("[workspace.metadata.bootstrap.timeouts]\ngate = 0\n").unwrap_err();
        assert!(err.to_string().contains("`gate` must be at least 1"), "{err}");
        assert!(parse("cluster = \"\"\n").is_err());
        let err = parse("registry = \"dev-reg\"\n").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `registry`"),
            "the name is k3d.yaml's: {err}"
        );
    }

    #[test]
    fn secrets_table_overrides_defaults_and_rejects_typos() {
        let settings = parse(
            "[workspace.metadata.bootstrap.secrets]\nvault_job = \"seed\"\ndb_migrations_namespace = \"apps\"\n",
        )
        .unwrap();
        assert_eq!(settings.secrets.vault_job.as_deref(), Some("seed"));
        assert_eq!(settings.secrets.db_migrations_namespace, "apps");
        assert_eq!(settings.secrets.vault_after_layer, "15-secrets-certificates");
        let err =
            parse("[workspace.metadata.bootstrap.secrets]\nvault_cronjb = \"x\"\n").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput);
        assert!(err.to_string().contains("vault_cronjb"), "{err}");
        let err =
            parse("[workspace.metadata.bootstrap.secrets]\npostgres_secret = \"\"\n").unwrap_err();
        assert!(err.to_string().contains("`postgres_secret` must not be empty"), "{err}");
    }

    #[test]
    fn paths_resolve_against_root_and_home() {
        let settings = parse("log = \"/var/log/x.log\"\n")
            .unwrap()
            .resolved(Path::new("/repo"), Some(Path::new("/home/dev")));
        assert_eq!(settings.k3d_config, Path::new("/repo/infra/docker/local/k3d.yaml"));
        assert_eq!(settings.log, Path::new("/var/log/x.log"));
        let default_log = Settings::default().resolved(Path::new("/repo"), Some(Path::new("/h")));
        assert_eq!(default_log.log, Path::new("/h/.devcontainer-setup.log"));
    }

    #[test]
    fn the_repository_table_writes_out_the_defaults() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        let mut settings = Settings::parse(&manifest, &text).unwrap();
        // Tool pins and steps have no defaults; tools.rs tests the repository's pins,
        // the e2e tests the sample step.
        settings.tools.clear();
        assert_eq!(settings.steps[0].name, "lint-local-charts");
        settings.steps.clear();
        assert_eq!(settings, Settings::default());
    }

    #[test]
    fn images_table_overrides_defaults_and_rejects_zero() {
        let s = parse("[workspace.metadata.bootstrap.images]\nfetch_ahead = false\nparallel = 2\n")
            .unwrap();
        assert_eq!(
            (s.images.fetch_ahead, s.images.parallel, s.images.fetch_timeout),
            (false, 2, 600)
        );
        let err = parse("[workspace.metadata.bootstrap.images]\nparallel = 0\n").unwrap_err();
        assert!(err.to_string().contains("images]: `parallel` must be at least 1"), "{err}");
        let err = parse("[workspace.metadata.bootstrap.images]\nparalel = 2\n").unwrap_err();
        assert!(err.to_string().contains("paralel"), "{err}");
    }

    #[test]
    fn only_workspace_manifests_are_roots() {
        assert!(is_workspace_manifest(MANIFEST));
        assert!(!is_workspace_manifest("[package]\nname = \"x\"\n"));
    }
}
