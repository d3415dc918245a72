//! `World`: a testbed for one test. `World::up` does what `testbed up` does in a fresh
//! temp dir; dropping the world (also on panic) does what `testbed down` does.
//!
//! Up to `$TESTBED_SLOTS` worlds (default 8) run at once per machine: `up` takes the
//! first free slot (`crate::slot`, waiting while all are taken) and holds it until drop.
//! The engine reads cluster and registry names and host ports from the platform config,
//! so a test runs a platform made for its world's slot ([`World::slot`]; in the xtask
//! tests `Workspace::for_world`). Holding the slot, `up` also clears what a killed
//! earlier world of the same slot left behind, and nothing of another slot.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::calls::{self, Call};
use crate::real_tools::Toolset;
use crate::slot::Slot;
use crate::{cli, docker};

#[derive(Debug, Clone, Default)]
pub struct WorldOptions {
    /// Scenario words, as `testbed up --scenario` takes them (`gate-fail=24-auth`, ...).
    pub scenarios: Vec<String>,
    /// Added to every fake tool call.
    pub latency_ms: u64,
    /// The fake helm and helmfile, or real ones (`crate::real_tools`).
    pub tools: Toolset,
}

pub struct World {
    dir: PathBuf,
    env: Vec<(String, String)>,
    slot: Slot,
    _lock: File,
}

impl World {
    pub fn up(options: WorldOptions) -> Result<World> {
        let (slot, lock) = crate::slot::acquire()?;
        clear_stale_worlds(slot)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("{}{}-{nanos}", slot.dir_prefix(), std::process::id());
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("slot"), slot.index().to_string())?;
        let bin = testbed_bin()?;
        let env = match cli::up(&dir, &options.scenarios, options.latency_ms, options.tools, &bin) {
            Ok(env) => env,
            Err(e) => {
                let _ = cli::down(&dir);
                return Err(e);
            }
        };
        let dir = dir.canonicalize()?;
        Ok(World { dir, env, slot, _lock: lock })
    }

    /// The world's slot: the cluster, registry, context, host ports and image names a
    /// platform run in this world must use (`Slot::cluster`, `Slot::k3d_config`, ...).
    pub fn slot(&self) -> Slot {
        self.slot
    }

    /// `sample` (a k3d.yaml shaped like the platform's) made for the world's slot
    /// (`Slot::k3d_config`), written into the world's dir; its path, for `k3d cluster
    /// create --config`.
    pub fn k3d_config(&self, sample: &Path) -> Result<PathBuf> {
        let text = std::fs::read_to_string(sample)
            .with_context(|| format!("reading {}", sample.display()))?;
        let config = self.dir.join("k3d.yaml");
        std::fs::write(&config, self.slot.k3d_config(&text))?;
        Ok(config)
    }

    /// Create the image cache the sample's k3d.yaml uses (`registries.use`), as the
    /// bootstrap does before `k3d cluster create`: k3d refuses a config naming a registry
    /// that does not exist.
    pub fn create_image_cache(&self) -> Result<()> {
        let out = self
            .command("k3d")
            .args(["registry", "create", &self.slot.cache()])
            .args(["--proxy-remote-url", "https://registry-1.docker.io"])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "k3d registry create {}: {}",
            self.slot.cache(),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// The testbed dir (`$TESTBED_DIR`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `PATH`, `KUBECONFIG`, `TESTBED_DIR` and, when a real helm exists, `TESTBED_REAL_HELM`.
    pub fn env(&self) -> Vec<(String, String)> {
        self.env.clone()
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// A command with the world's environment; `program` is looked up on the world's PATH,
    /// so `k3d`, `helm`, `helmfile`, `tilt` are the testbed's (helm and helmfile running
    /// the real ones in a real-tools world) and `kubectl` the real one.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let program = program.as_ref();
        let resolved = if Path::new(program).components().count() == 1 {
            self.which(program).unwrap_or_else(|| PathBuf::from(program))
        } else {
            PathBuf::from(program)
        };
        let mut cmd = Command::new(resolved);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    // Command::new searches the *parent's* PATH, not the one given with .env().
    fn which(&self, program: &std::ffi::OsStr) -> Option<PathBuf> {
        let path = self.env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.clone())?;
        std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
    }

    /// Every fake tool call so far, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        calls::read(&self.dir).unwrap_or_default()
    }

    /// Change the scenario for the next tool calls (`healthy` resets it).
    pub fn set(&self, scenario: &str) -> Result<()> {
        cli::set(&self.dir, &[scenario.to_owned()])
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Err(e) = cli::down(&self.dir) {
            eprintln!("testbed: tearing down {} failed: {e:#}", self.dir.display());
        }
    }
}

/// Containers, processes and dirs of `slot`'s test worlds whose test process died without
/// dropping its world, and containers named as the slot names them (left by a `testbed
/// up` world that was never taken down). Safe while holding the slot: no other world of
/// it is alive, and other slots' worlds have other names and dirs.
fn clear_stale_worlds(slot: Slot) -> Result<()> {
    let prefix = slot.dir_prefix();
    let stale_dirs: Vec<PathBuf> = std::fs::read_dir(std::env::temp_dir())
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    let mut slot_names = slot.legacy_registries();
    slot_names.push(slot.registry());
    for dir in &stale_dirs {
        let _ = cli::stop_processes(dir);
        let _ = std::fs::remove_dir_all(dir);
    }
    docker::runtime()?.block_on(async {
        let docker = docker::connect().await?;
        for c in docker::containers_with_labels(&docker, &[]).await? {
            let Some(dir) = docker::label(&c, docker::LABEL_TESTBED_DIR) else { continue };
            let is_stale_world = Path::new(dir)
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix));
            let named_as_ours = docker::label(&c, "k3d.cluster") == Some(slot.cluster().as_str())
                || slot_names.contains(&docker::container_name(&c));
            if is_stale_world || named_as_ours || !Path::new(dir).exists() {
                docker::remove_container(&docker, c.id.as_deref().unwrap_or_default()).await?;
            }
        }
        // The slot's cluster network, or one whose world is gone.
        let slot_network = format!("k3d-{}", slot.cluster());
        docker::network::remove_testbed_networks(&docker, |name, dir| {
            name == slot_network
                || Path::new(dir)
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
                || !Path::new(dir).exists()
        })
        .await?;
        for dir in &stale_dirs {
            docker::remove_testbed_images(&docker, dir).await?;
        }
        Ok(())
    })
}

/// The `testbed` binary: `$TESTBED_BIN`, else `<target>/debug/testbed` beside the running
/// test executable's `deps/` dir, else built with `$CARGO build -q -p testbed`.
pub fn testbed_bin() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("TESTBED_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let beside = beside_current_exe();
    if let Some(bin) = beside.as_ref().filter(|b| b.is_file()) {
        return Ok(bin.clone());
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .args(["build", "-q", "-p", "testbed", "--bin", "testbed"])
        .status()
        .context("running cargo build -p testbed")?;
    match beside_current_exe() {
        Some(bin) if status.success() && bin.is_file() => Ok(bin),
        _ => bail!("no testbed binary: set TESTBED_BIN or run `cargo build -p testbed`"),
    }
}

/// `<target>/<profile>/testbed` for the profile the test runs in; `cargo bench` runs in
/// `release/` while `cargo build -p testbed` builds into `debug/`, so a bench finds it there.
fn beside_current_exe() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let mut dir = exe.parent()?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent()?;
    }
    let here = dir.join("testbed");
    let debug = dir.parent()?.join("debug").join("testbed");
    Some(if here.is_file() || !debug.is_file() { here } else { debug })
}

/// Whether Docker-backed tests can run. Without a daemon: panics when `CI` is set (a CI
/// run must not pass by skipping), otherwise prints that the test was skipped.
pub fn require_docker() -> bool {
    if docker::daemon_answers() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("no Docker daemon answers, and CI is set: Docker-backed tests must run in CI");
    }
    eprintln!("skipped: no Docker daemon");
    false
}
