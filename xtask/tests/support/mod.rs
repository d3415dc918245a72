//! Setup the xtask integration tests share: a workspace root of the test's own (a temp
//! dir found through `BOOTSTRAP_ROOT`, its Cargo.toml holding the
//! `[workspace.metadata.bootstrap]` settings the test needs, optionally a copy of this
//! repository's `infra/`), the xtask binary run there as a user runs it, and what it
//! printed shown in the test's output for when an assertion fails.
//!
//! A test that runs the platform in a testbed world makes the workspace for the world's
//! slot, last: `Workspace::new(..).with_infra().for_world(&world)`. The engine then reads
//! that slot's cluster, registry, ports and images from the copy's config, as it reads a
//! user's, and several worlds run on one machine at once; assertions name them through
//! `world.slot()` (`slot.cluster()`, `slot.context()`, `slot.registry()`, ...).
//!
//! Every test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

pub mod docs;
pub mod file_server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use testbed::Slot;
use testbed::calls::Call;
use testbed::real_tools::Toolset;
use testbed::world::World;
use xtask::error::Exit;

pub mod smoke;

// Every test file uses a part of them.
#[allow(unused_imports)]
pub use docs::{failure, layer, summary_of, typed};

/// The cluster config, relative to a workspace root.
pub const K3D_CONFIG: &str = "infra/docker/local/k3d.yaml";

/// The layers of the background note, in the order they must be applied.
pub const LAYERS: [&str; 9] = [
    "10-bootstrap",
    "15-secrets-certificates",
    "20-core-operators",
    "22-control-plane",
    "24-auth",
    "40-data-plane",
    "45-data-plane-ext",
    "50-product-services",
    "60-qa",
];

/// This repository's root (the workspace holding the xtask package).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The committed JSON Schema `schemas/<name>.schema.json`.
#[allow(dead_code)]
pub fn committed_schema(name: &str) -> Value {
    let path = repo_root().join("schemas").join(format!("{name}.schema.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// `value` (a command's JSON) validates against the committed schema `name`; the
/// failure lists every violation with where it is.
#[allow(dead_code)]
pub fn assert_matches_schema(name: &str, value: &Value) {
    let schema = committed_schema(name);
    let validator = jsonschema::validator_for(&schema).expect("the committed schema compiles");
    let errors: Vec<String> =
        validator.iter_errors(value).map(|e| format!("{}: {e}", e.instance_path())).collect();
    assert!(
        errors.is_empty(),
        "output does not match schemas/{name}.schema.json:\n{}",
        errors.join("\n")
    );
}

/// How `xtask <args> --format json` exited, and its one JSON object, checked against
/// the committed schema of that command ([`schema_of`]).
pub fn checked_json(args: &[&str], out: &Output) -> (Exit, Value) {
    let json = parse_summary(&out.stdout);
    assert_matches_schema(&schema_of(args, &json), &json);
    (Exit::of(out.status), json)
}

/// The JSON object `xtask <args> --format json` printed, checked against the committed
/// schema of that command; `null` when stdout is not JSON (for tests whose runs may stop
/// before printing any, and that look at what was printed instead).
pub fn printed_json(args: &[&str], stdout: &str) -> Value {
    let json = serde_json::from_str(stdout).unwrap_or(Value::Null);
    if !json.is_null() {
        assert_matches_schema(&schema_of(args, &json), &json);
    }
    json
}

/// The committed schema `xtask <args>` prints (as `xtask::schemas::all` lists them):
/// `error` when it stopped with no result to show.
pub fn schema_of(args: &[&str], json: &Value) -> String {
    if json.get("error").is_some() && json.get("exit_code").is_some() {
        return "error".into();
    }
    let plan = args.contains(&"--plan");
    let schema = match args.first().copied().unwrap_or_default() {
        "bootstrap" if plan => "plan",
        "sync" => "bootstrap",
        "cluster" if args.get(1).is_some_and(|a| ["stop", "start"].contains(a)) => "stage",
        "secrets" | "tilt" => "stage",
        command => command,
    };
    schema.into()
}

/// For a test file's own `struct Name(Workspace)` carrying that file's helpers: every
/// shared helper stays callable on it, and a helper of the same name in the file wins.
#[allow(unused_macros)]
macro_rules! wraps_workspace {
    ($name:ident) => {
        impl std::ops::Deref for $name {
            type Target = $crate::support::Workspace;
            fn deref(&self) -> &Self::Target {
                &self.0
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use wraps_workspace;

/// A workspace root of the test's own, removed when dropped.
pub struct Workspace {
    root: tempfile::TempDir,
    slot: Option<Slot>,
}

impl Workspace {
    /// A root whose Cargo.toml holds `settings`: lines of `[workspace.metadata.bootstrap]`
    /// (further tables may follow them).
    pub fn new(settings: &[&str]) -> Workspace {
        let workspace = Workspace::empty();
        workspace.write_settings(settings);
        workspace
    }

    /// A root holding a copy of `dir`, its own Cargo.toml included.
    pub fn copy_of(dir: &Path) -> Workspace {
        let workspace = Workspace::empty();
        copy_dir(dir, workspace.root());
        workspace
    }

    fn empty() -> Workspace {
        let root = tempfile::tempdir().unwrap();
        // The log's directory; `tilt.log` is written beside the log.
        std::fs::create_dir_all(root.path().join("logs")).unwrap();
        Workspace { root, slot: None }
    }

    /// (Re)write Cargo.toml with these settings (and, after [`Workspace::for_world`],
    /// the slot's names and ports where they do not set them).
    pub fn write_settings(&self, settings: &[&str]) {
        let mut manifest =
            String::from("[workspace]\nmembers = []\n\n[workspace.metadata.bootstrap]\n");
        for line in settings {
            manifest.push_str(line);
            manifest.push('\n');
        }
        self.write("Cargo.toml", &manifest);
        if let Some(slot) = self.slot {
            slot.settings(self.root()).unwrap();
        }
    }

    /// Made for `world`'s slot (call it last, after `with_infra`, `with_k3d_config` or
    /// `copy_of`): `Slot::make_platform` gives Cargo.toml the slot's cluster, legacy
    /// registries and Tilt port (where the test's own settings do not set them),
    /// k3d.yaml (when there is one) the slot's cluster, registry and host ports, and
    /// infra/'s chart and Helmfile values the slot's images. Nothing else tells the
    /// engine about slots.
    pub fn for_world(mut self, world: &World) -> Workspace {
        let slot = world.slot();
        self.slot = Some(slot);
        slot.make_platform(self.root()).unwrap();
        self
    }

    /// The slot this workspace was made for ([`Workspace::for_world`]).
    pub fn slot(&self) -> Slot {
        self.slot.expect("a workspace made for a world (Workspace::for_world)")
    }

    /// With a copy of this repository's `infra/` (the sample platform), free to edit.
    pub fn with_infra(self) -> Workspace {
        copy_dir(&repo_root().join("infra"), &self.path("infra"));
        self
    }

    /// With a copy of this repository's k3d.yaml only, free to edit.
    pub fn with_k3d_config(self) -> Workspace {
        let config = self.path(K3D_CONFIG);
        std::fs::create_dir_all(config.parent().unwrap()).unwrap();
        std::fs::copy(repo_root().join(K3D_CONFIG), config).unwrap();
        self
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.path().join(relative)
    }

    /// The log every run through [`Workspace::command`] writes (`--log`).
    pub fn log(&self) -> PathBuf {
        self.path("logs/setup.log")
    }

    /// Write a file, creating its directories.
    pub fn write(&self, relative: &str, text: &str) {
        let file = self.path(relative);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    }

    pub fn edit(&self, relative: &str, change: impl FnOnce(String) -> String) {
        let file = self.path(relative);
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, change(text)).unwrap();
    }

    /// The xtask binary run from this root with the test's own environment (no world).
    pub fn bare_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
        // A home of its own: the default log (`~/.devcontainer-setup.log`) and anything
        // else under `~` stay in the workspace, not the machine's home.
        cmd.args(args)
            .env("BOOTSTRAP_ROOT", self.root())
            .env("HOME", self.path("home"))
            .current_dir(self.root());
        cmd
    }

    /// The xtask binary run from this root in `world` (its fake tools on PATH), logging
    /// to [`Workspace::log`].
    pub fn command(&self, world: &World, args: &[&str]) -> Command {
        let mut cmd = world.command(env!("CARGO_BIN_EXE_xtask"));
        cmd.args(args)
            .arg("--log")
            .arg(self.log())
            .env("BOOTSTRAP_ROOT", self.root())
            .current_dir(self.root());
        cmd
    }

    /// Run in `world`; what it printed is shown.
    pub fn xtask(&self, world: &World, args: &[&str]) -> Output {
        let out = self.command(world, args).output().unwrap();
        show(args, &out);
        out
    }

    /// Run with `--format json`: how it exited and the one JSON object on stdout, which
    /// must match the command's committed schema.
    pub fn json(&self, world: &World, args: &[&str]) -> (Exit, Value) {
        let mut all = args.to_vec();
        all.extend(["--format", "json"]);
        checked_json(args, &self.xtask(world, &all))
    }
}

/// What a user of `xtask <args>` saw, in the test's output.
pub fn show(args: &[&str], out: &Output) {
    eprintln!(
        "xtask {args:?}: {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn stdout(out: &Output) -> String {
    text(&out.stdout)
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The one JSON line a `--format json` run prints.
pub fn parse_summary(stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    assert_eq!(text.trim().lines().count(), 1, "exactly one JSON line on stdout: {text}");
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Whether `call` is a `helmfile ... sync`.
pub fn is_sync(call: &Call) -> bool {
    call.tool == "helmfile" && call.args.iter().any(|a| a == "sync")
}

/// Layers (file stems) `helmfile -f <layer> ... sync` was called for.
pub fn synced_layers(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| is_sync(c))
        .filter_map(|c| {
            let file = c.args.iter().skip_while(|a| *a != "-f").nth(1)?;
            Some(
                Path::new(file).file_stem()?.to_string_lossy().trim_end_matches(".yaml").to_owned(),
            )
        })
        .collect()
}

/// A loopback port nothing listens on now (for Tilt: 10350 may be taken by a
/// developer's real Tilt).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Proxy variables as curl, Go and reqwest read them: removed from runs so a developer's
/// or CI's proxy does not change what a test sees.
pub const PROXY_VARIABLES: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// `kubectl apply -f -` of `manifest` in `world`, retried while kubectl does not know a
/// kind yet (its CRD applied a moment ago).
pub fn kubectl_apply(world: &World, manifest: &str) {
    use std::io::Write as _;
    use std::process::Stdio;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let mut child = world
            .command("kubectl")
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(manifest.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "kubectl apply: {}", text(&out.stderr));
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// A world of the fake tools whose CronJobs tick every 2 s and whose Pods start in
/// 300 ms, plus `scenarios`.
pub fn fast_world(scenarios: &[&str]) -> World {
    World::up(fast_options(Toolset::Fake, scenarios)).unwrap()
}

/// [`fast_world`] running `tools` (`testbed::real_tools`). `None` (the test skips; under
/// `CI` it fails) without Docker or the real binaries.
pub fn tools_world(tools: Toolset, scenarios: &[&str]) -> Option<World> {
    if !testbed::world::require_docker() || !testbed::real_tools::require(tools) {
        return None;
    }
    Some(World::up(fast_options(tools, scenarios)).unwrap())
}

fn fast_options(tools: Toolset, scenarios: &[&str]) -> testbed::world::WorldOptions {
    let mut words = vec!["cron-minute-ms=2000".to_owned(), "startup-ms=300".to_owned()];
    words.extend(scenarios.iter().map(|s| s.to_string()));
    testbed::world::WorldOptions { scenarios: words, tools, ..Default::default() }
}

/// The releases real helm lists in `ameide`.
pub fn helm_list(world: &World) -> Vec<String> {
    let out = world.command("helm").args(["list", "-n", "ameide", "-q"]).output().unwrap();
    text(&out.stdout).lines().map(str::to_owned).collect()
}

/// How many `helm test` calls there are among `calls`.
pub fn helm_tests(calls: &[Call]) -> usize {
    calls.iter().filter(|c| c.tool == "helm" && c.args.first().is_some_and(|a| a == "test")).count()
}

/// `bootstrap --no-tilt`, and `--no-install` with real tools: they are older than the
/// pins, and the run must use them rather than install the pinned ones.
pub fn bootstrap_args(tools: Toolset) -> Vec<&'static str> {
    let mut args = vec!["bootstrap", "--no-tilt"];
    if tools != Toolset::Fake {
        args.push("--no-install");
    }
    args
}
