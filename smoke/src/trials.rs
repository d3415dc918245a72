//! Which trials exist: read from the platform model alone (no Docker, no cluster), so
//! listing works on any machine and every process nextest starts sees the same names.

use std::path::PathBuf;
use std::sync::Arc;

use xtask::config::{self, Context, Overrides};
use xtask::layers::namespace_of;
use xtask::platform::helmfile::Platform;

/// Everything the trials need, loaded once per process. A part that cannot be loaded
/// keeps its error as text: the trials that need it fail with it, the rest still run.
pub struct Plan {
    pub ctx: Result<Arc<Context>, String>,
    pub platform: Result<Platform, String>,
    /// The registry container the k3d config creates (`Ok(None)`: it creates none).
    pub registry: Result<Option<String>, String>,
    /// How gate trials judge (`SMOKE_GATES`).
    pub gates: Result<GateMode, String>,
}

/// `SMOKE_GATES`: `live` (default) runs each gate now, as the bootstrap does;
/// `recorded` reads the verdict the last `helm test` left in the release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateMode {
    Live,
    Recorded,
}

pub const GATES_ENV: &str = "SMOKE_GATES";

impl GateMode {
    pub fn from_env(value: Option<&str>) -> Result<GateMode, String> {
        match value.map(str::trim) {
            None | Some("" | "live") => Ok(GateMode::Live),
            Some("recorded") => Ok(GateMode::Recorded),
            Some(other) => Err(format!("{GATES_ENV}={other:?}: expected `live` or `recorded`")),
        }
    }
}

/// One trial: its stable name and what it checks.
pub struct TrialSpec {
    pub name: String,
    pub what: What,
    pub ctx: Result<Arc<Context>, String>,
    /// Known at listing time not to apply (shown as ignored, with the reason on stderr).
    pub not_applicable: Option<String>,
}

pub enum What {
    ClusterExists,
    ClusterRegistry,
    VaultBootstrap,
    DbMigrations,
    ExternalSecretsReady,
    /// Every installed release of every layer: (layer, release, namespace).
    ReleasesDeployed(Result<Vec<(String, String, String)>, String>),
    /// A gate release's Helm tests: run now (live), or the recorded verdict.
    Gate {
        release: String,
        namespace: String,
        mode: Result<GateMode, String>,
    },
    /// The model could not be read (the whole platform, or one layer's releases).
    Unreadable(String),
    TiltReady,
}

impl Plan {
    pub fn load() -> Plan {
        let ctx = load_context().map(Arc::new).map_err(|e| format!("{e:#}"));
        let platform = match &ctx {
            // Go-template layers are read by running helmfile: a small runtime for it.
            Ok(ctx) => match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt
                    .block_on(xtask::helmfile_list::read_platform(ctx))
                    .map_err(|e| format!("{e:#}")),
                Err(e) => Err(format!("no async runtime: {e}")),
            },
            Err(e) => Err(e.clone()),
        };
        let registry = match &ctx {
            Ok(ctx) => xtask::cluster::desired(ctx)
                .map(|(_, desired)| desired.registry)
                .map_err(|e| format!("{e:#}")),
            Err(e) => Err(e.clone()),
        };
        let gates = GateMode::from_env(std::env::var(GATES_ENV).ok().as_deref());
        Plan { ctx, platform, registry, gates }
    }

    /// The trials, in the order a reader expects: cluster, layers, helm, secrets, tilt.
    pub fn checks(&self) -> Vec<TrialSpec> {
        let check = |name: &str, what: What| TrialSpec {
            name: name.to_owned(),
            what,
            ctx: self.ctx.clone(),
            not_applicable: None,
        };
        let mut checks = vec![check("cluster::exists", What::ClusterExists)];
        let mut registry = check("cluster::registry", What::ClusterRegistry);
        if let Ok(None) = self.registry {
            registry.not_applicable =
                Some("the k3d config creates no registry (`registries.create` is absent)".into());
        }
        checks.push(registry);

        match &self.platform {
            Ok(platform) => {
                for layer in &platform.layers {
                    if let Some(reason) = layer.releases.not_read_reason() {
                        let name = format!("layers::{}::releases", layer.name);
                        let why = format!(
                            "the releases of layer `{}` ({}) could not be read: {reason}",
                            layer.name,
                            layer.file.display()
                        );
                        checks.push(check(&name, What::Unreadable(why)));
                        continue;
                    }
                    for gate in layer.gates().filter(|r| r.installed) {
                        checks.push(check(
                            &format!("layers::{}::{}", layer.name, gate.name),
                            What::Gate {
                                release: gate.name.clone(),
                                namespace: namespace_of(gate).to_owned(),
                                mode: self.gates.clone(),
                            },
                        ));
                    }
                }
            }
            Err(e) => checks.push(check(
                "layers::model",
                What::Unreadable(format!("the platform model could not be read: {e}")),
            )),
        }
        checks.push(check("helm::releases_deployed", What::ReleasesDeployed(self.releases())));

        checks.push(check("secrets::external_secrets_ready", What::ExternalSecretsReady));
        checks.push(check("secrets::vault_bootstrap", What::VaultBootstrap));
        checks.push(check("secrets::db_migrations", What::DbMigrations));
        checks.push(check("tilt::ready", What::TiltReady));
        checks
    }

    fn releases(&self) -> Result<Vec<(String, String, String)>, String> {
        let platform = self.platform.as_ref().map_err(Clone::clone)?;
        if let Some(layer) = platform.layers.iter().find(|l| l.releases.not_read_reason().is_some())
        {
            return Err(format!(
                "the releases of layer `{}` could not be read: {}",
                layer.name,
                layer.releases.not_read_reason().unwrap_or_default()
            ));
        }
        Ok(platform
            .layers
            .iter()
            .flat_map(|layer| {
                layer
                    .releases
                    .as_slice()
                    .iter()
                    .filter(|r| r.installed)
                    .map(|r| (layer.name.clone(), r.name.clone(), namespace_of(r).to_owned()))
            })
            .collect())
    }
}

/// The variable that names the kube context the trials check (there are no flags);
/// unset, the one rule of every command: `k3d-<cluster>`.
pub const CONTEXT_ENV: &str = "BOOTSTRAP_CONTEXT";

/// Bundles on besides the `bundles` setting (comma-separated), as `--bundle` gives them
/// to the bootstrap: the gates of a bundle that is off are not trials.
pub const BUNDLES_ENV: &str = "BOOTSTRAP_BUNDLES";

/// The workspace root from `$BOOTSTRAP_ROOT`, else upwards from the package dir cargo
/// and nextest give the test (`CARGO_MANIFEST_DIR`), else from the current directory.
fn load_context() -> xtask::error::Result<Context> {
    let cwd = std::env::current_dir()?;
    // A relative `$BOOTSTRAP_ROOT` is meant from where the user stands.
    let start = match std::env::var_os("CARGO_MANIFEST_DIR") {
        Some(dir) if std::env::var_os(config::ROOT_ENV).is_none() => PathBuf::from(dir),
        _ => cwd.clone(),
    };
    let root = config::find_root(&start)?;
    let kube_context = std::env::var(CONTEXT_ENV).ok().filter(|c| !c.is_empty());
    let bundles = std::env::var(BUNDLES_ENV).unwrap_or_default();
    let bundles = bundles.split(',').map(str::trim).filter(|b| !b.is_empty()).map(str::to_owned);
    let overrides = Overrides { kube_context, bundles: bundles.collect(), ..Overrides::default() };
    Context::new(&root, &cwd, &overrides)
}
