//! World slots: a bounded pool of testbed worlds that run on one machine at once.
//!
//! The engine reads the cluster, registry and kube context names and the host ports from
//! the platform config, as a user's run does; two worlds bootstrapping the sample
//! platform as it is would fight over the same Docker container names and host ports. So
//! each world takes a slot (`$TESTBED_SLOTS` of them, default 8; one lock file each, the
//! first free one, blocking while all are taken), and the test runs a copy of the
//! platform whose config names that slot's cluster, registry, ports and images
//! ([`Slot::make_platform`]; `Workspace::for_world` in the xtask tests).
//! Slot `n` has the sample's names with `-s<n>` appended and the host ports
//! `24000 + 100 n ..` (below Linux's ephemeral range, so no `free_port` lands there).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

/// How many worlds may run at once on this machine.
pub const SLOTS_VAR: &str = "TESTBED_SLOTS";
pub const DEFAULT_SLOTS: usize = 8;

/// The sample platform's names and ports (Cargo.toml `[workspace.metadata.bootstrap]`,
/// `infra/docker/local/k3d.yaml`) that a slot makes its own.
pub const SAMPLE_CLUSTER: &str = "ameide";
pub const SAMPLE_REGISTRY: &str = "k3d-dev-reg";
pub const SAMPLE_REGISTRY_PORT: u16 = 5001;
/// The image cache the sample's k3d.yaml uses (`registries.use`), without k3d's prefix.
pub const SAMPLE_CACHE: &str = "ameide-cache";
pub const SAMPLE_LEGACY_REGISTRIES: [&str; 2] = ["dev-reg", "k3d-docker.io"];
pub const SAMPLE_HTTP_PORT: u16 = 8080;
pub const SAMPLE_HTTPS_PORT: u16 = 8443;

const PORT_BASE: u16 = 24000;
const PORT_BLOCK: u16 = 100;

/// One slot: its index, names and port block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(usize);

impl Slot {
    pub fn new(index: usize) -> Slot {
        Slot(index)
    }

    pub fn index(self) -> usize {
        self.0
    }

    /// `$TMPDIR/testbed-slot-<n>.lock`, held while a world runs in the slot.
    pub fn lock_file(self) -> PathBuf {
        std::env::temp_dir().join(format!("testbed-slot-{}.lock", self.0))
    }

    /// The start of a test world's dir name in this slot; stale-world clearing only
    /// touches dirs (and their containers and images) with its own slot's prefix.
    pub fn dir_prefix(self) -> String {
        format!("testbed-slot{}-world-", self.0)
    }

    /// `base` made this slot's: `ameide` -> `ameide-s2`.
    pub fn name(self, base: &str) -> String {
        format!("{base}-s{}", self.0)
    }

    /// Port `offset` (below 100) of this slot's block.
    pub fn port(self, offset: u16) -> u16 {
        assert!(offset < PORT_BLOCK, "port offset {offset} is outside a slot's block");
        PORT_BASE + PORT_BLOCK * self.0 as u16 + offset
    }

    /// The k3d cluster (`cluster` in the platform config, `metadata.name` in k3d.yaml).
    pub fn cluster(self) -> String {
        self.name(SAMPLE_CLUSTER)
    }

    /// The kube context k3d writes for the cluster.
    pub fn context(self) -> String {
        format!("k3d-{}", self.cluster())
    }

    /// The registry container k3d creates with the cluster (`registries.create.name`).
    pub fn registry(self) -> String {
        self.name(SAMPLE_REGISTRY)
    }

    /// The image cache `k3d registry create` makes (`registries.use` names it `k3d-` this).
    pub fn cache(self) -> String {
        self.name(SAMPLE_CACHE)
    }

    /// The registry's host port (`registries.create.hostPort`).
    pub fn registry_port(self) -> u16 {
        self.port(1)
    }

    /// Containers the cluster stage removes as legacy registries (`legacy_registries`).
    pub fn legacy_registries(self) -> Vec<String> {
        SAMPLE_LEGACY_REGISTRIES.iter().map(|r| self.name(r)).collect()
    }

    /// The load balancer's host ports (`ports:` 8080:80 and 8443:443).
    pub fn http_port(self) -> u16 {
        self.port(80)
    }
    pub fn https_port(self) -> u16 {
        self.port(43)
    }

    /// Tilt's port (`tilt_port`).
    pub fn tilt_port(self) -> u16 {
        self.port(50)
    }

    /// An image reference made this slot's (`busybox:1.37.0` -> `busybox:1.37.0-s2`):
    /// the host's image store is one per machine, and a world's `down` removes what it
    /// downloaded, so two worlds must not download the same reference. A digest
    /// reference is left as it is.
    pub fn image(self, reference: &str) -> String {
        if reference.contains('@') {
            return reference.to_owned();
        }
        let last = reference.rsplit('/').next().unwrap_or(reference);
        if last.contains(':') {
            format!("{reference}-s{}", self.0)
        } else {
            format!("{reference}:latest-s{}", self.0)
        }
    }

    /// A k3d config (the sample's `infra/docker/local/k3d.yaml`, or one shaped like it)
    /// with this slot's cluster name, registry name, image cache and host ports.
    pub fn k3d_config(self, text: &str) -> String {
        let replacements = [
            (format!("k3d-{SAMPLE_CACHE}:"), format!("k3d-{}:", self.cache())),
            (format!("name: {SAMPLE_CLUSTER}\n"), format!("name: {}\n", self.cluster())),
            (format!("name: {SAMPLE_REGISTRY}\n"), format!("name: {}\n", self.registry())),
            (
                format!("hostPort: \"{SAMPLE_REGISTRY_PORT}\""),
                format!("hostPort: \"{}\"", self.registry_port()),
            ),
            (format!("port: {SAMPLE_HTTP_PORT}:"), format!("port: {}:", self.http_port())),
            (format!("port: {SAMPLE_HTTPS_PORT}:"), format!("port: {}:", self.https_port())),
        ];
        replacements.iter().fold(text.to_owned(), |t, (from, to)| t.replace(from, to))
    }

    /// YAML (chart values, Helmfile values) whose `image: REF` lines name this slot's
    /// images ([`Slot::image`]).
    pub fn images(self, yaml: &str) -> String {
        let mut out = String::with_capacity(yaml.len() + 16);
        for line in yaml.split_inclusive('\n') {
            let body = line.trim_end_matches('\n');
            let indent = body.len() - body.trim_start().len();
            let rest = body[indent..].strip_prefix("- ").unwrap_or(&body[indent..]);
            let Some(value) = rest.strip_prefix("image:").map(str::trim) else {
                out.push_str(line);
                continue;
            };
            let (quote, bare) = match value.chars().next() {
                Some(q @ ('"' | '\'')) => (Some(q), value.trim_matches(q)),
                _ => (None, value),
            };
            if bare.is_empty() || bare.contains("{{") || bare.starts_with('#') {
                out.push_str(line);
                continue;
            }
            let at = body.len() - value.len();
            let slotted = self.image(bare);
            out.push_str(&body[..at]);
            match quote {
                Some(q) => out.push_str(&format!("{q}{slotted}{q}")),
                None => out.push_str(&slotted),
            }
            if line.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }
}

/// Where the sample platform keeps what a slot rewrites, relative to a workspace root.
pub const K3D_CONFIG: &str = "infra/docker/local/k3d.yaml";
const VALUES_DIRS: [&str; 2] = ["infra/kubernetes/charts", "infra/kubernetes/environments"];

impl Slot {
    /// Make the platform copy at workspace root `root` this slot's: its Cargo.toml's
    /// `[workspace.metadata.bootstrap]` names the slot's cluster, legacy registries and
    /// Tilt port (where it does not set them itself), its k3d.yaml (if any) the slot's
    /// cluster, registry and host ports, and the chart and Helmfile values under its
    /// `infra/` the slot's images. The engine reads these as it reads a user's config.
    pub fn make_platform(self, root: &Path) -> Result<()> {
        self.settings(root)?;
        let config = root.join(K3D_CONFIG);
        if config.is_file() {
            rewrite(&config, |text| self.k3d_config(text))?;
        }
        for dir in VALUES_DIRS {
            for file in yaml_files(&root.join(dir)) {
                rewrite(&file, |text| self.images(text))?;
            }
        }
        Ok(())
    }

    /// Add the slot's `cluster`, `legacy_registries` and `tilt_port` to `root`'s
    /// Cargo.toml `[workspace.metadata.bootstrap]`, each unless it is set there.
    pub fn settings(self, root: &Path) -> Result<()> {
        let path = root.join("Cargo.toml");
        let manifest = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let parsed: toml::Table =
            toml::from_str(&manifest).with_context(|| format!("parsing {}", path.display()))?;
        let table = parsed
            .get("workspace")
            .and_then(|w| w.get("metadata"))
            .and_then(|m| m.get("bootstrap"));
        let is_set = |key: &str| table.is_some_and(|t| t.get(key).is_some());
        let legacy: Vec<String> =
            self.legacy_registries().iter().map(|r| format!("{r:?}")).collect();
        let keys = [
            ("cluster", format!("{:?}", self.cluster())),
            ("legacy_registries", format!("[{}]", legacy.join(", "))),
            ("tilt_port", self.tilt_port().to_string()),
        ];
        let lines: String = keys
            .iter()
            .filter(|(key, _)| !is_set(key))
            .map(|(key, value)| format!("{key} = {value}\n"))
            .collect();
        let header = "[workspace.metadata.bootstrap]\n";
        let manifest = match manifest.find(header) {
            Some(at) => {
                let end = at + header.len();
                format!("{}{lines}{}", &manifest[..end], &manifest[end..])
            }
            None => format!("{manifest}\n{header}{lines}"),
        };
        std::fs::write(&path, manifest).with_context(|| format!("writing {}", path.display()))
    }
}

fn rewrite(file: &Path, change: impl FnOnce(&str) -> String) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let changed = change(&text);
    if changed != text {
        std::fs::write(file, changed).with_context(|| format!("writing {}", file.display()))?;
    }
    Ok(())
}

/// Every `*.yaml` / `*.yaml.gotmpl` file under `dir`.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = path.to_string_lossy();
        if path.is_dir() {
            found.extend(yaml_files(&path));
        } else if name.ends_with(".yaml") || name.ends_with(".yaml.gotmpl") {
            found.push(path);
        }
    }
    found
}

/// `$TESTBED_SLOTS`, else [`DEFAULT_SLOTS`].
pub fn count() -> usize {
    std::env::var(SLOTS_VAR)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_SLOTS)
}

/// The first free slot, locked; `None` when every slot is taken.
pub fn try_acquire() -> Result<Option<(Slot, File)>> {
    for index in 0..count() {
        let slot = Slot::new(index);
        let path = slot.lock_file();
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        #[allow(clippy::incompatible_msrv)]
        match lock.try_lock() {
            Ok(()) => return Ok(Some((slot, lock))),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
    }
    Ok(None)
}

/// The first free slot, waiting while all are taken (`give_up` ends the wait early).
pub fn acquire_unless(mut give_up: impl FnMut() -> bool) -> Result<Option<(Slot, File)>> {
    let mut said = false;
    loop {
        if let Some(taken) = try_acquire()? {
            return Ok(Some(taken));
        }
        if give_up() {
            return Ok(None);
        }
        if !said {
            eprintln!("testbed: all {} world slots are taken; waiting for one", count());
            said = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The first free slot, waiting while all are taken.
pub fn acquire() -> Result<(Slot, File)> {
    Ok(acquire_unless(|| false)?.expect("waits until a slot is free"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_have_distinct_names_and_port_blocks() {
        let (a, b) = (Slot::new(0), Slot::new(3));
        assert_eq!((a.cluster(), a.context()), ("ameide-s0".into(), "k3d-ameide-s0".into()));
        assert_eq!(b.registry(), "k3d-dev-reg-s3");
        assert_eq!(b.legacy_registries(), ["dev-reg-s3", "k3d-docker.io-s3"]);
        assert_eq!((a.registry_port(), b.registry_port()), (24001, 24301));
        assert_ne!(a.lock_file(), b.lock_file());
        assert!(!a.dir_prefix().starts_with(&b.dir_prefix()));
    }

    #[test]
    fn the_sample_k3d_config_gets_the_slots_names_and_ports() {
        let sample = include_str!("../../infra/docker/local/k3d.yaml");
        let slotted = Slot::new(2).k3d_config(sample);
        assert!(slotted.contains("  name: ameide-s2\n"), "{slotted}");
        assert!(slotted.contains("    name: k3d-dev-reg-s2\n"), "{slotted}");
        assert!(slotted.contains("hostPort: \"24201\""), "{slotted}");
        assert!(slotted.contains("port: 24280:80") && slotted.contains("port: 24243:443"));
        assert!(slotted.contains("    - k3d-ameide-cache-s2:5000\n"), "{slotted}");
        assert!(slotted.contains("- http://k3d-ameide-cache-s2:5000\n"), "{slotted}");
        assert!(!slotted.contains("5001\"") && !slotted.contains("name: ameide\n"));
    }

    #[test]
    fn image_lines_name_the_slots_images() {
        let slot = Slot::new(1);
        let yaml = "image: busybox:1.37.0\nchecks:\n  - image: \"postgres:16.4-alpine\"\n    \
                    name: db\n  image: {{ .Values.image }}\nimage: a@sha256:ab\nimage: vault\n";
        assert_eq!(
            slot.images(yaml),
            "image: busybox:1.37.0-s1\nchecks:\n  - image: \"postgres:16.4-alpine-s1\"\n    \
             name: db\n  image: {{ .Values.image }}\nimage: a@sha256:ab\nimage: vault:latest-s1\n"
        );
        assert_eq!(slot.image("localhost:5000/a/b:1"), "localhost:5000/a/b:1-s1");
    }

    #[test]
    fn settings_are_added_unless_the_manifest_sets_them() {
        let root =
            std::env::temp_dir().join(format!("testbed-slot-settings-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let manifest = "[workspace]\nmembers = []\n\n[workspace.metadata.bootstrap]\ntilt_port = 1\n\n\
                        [workspace.metadata.bootstrap.images]\nparallel = 2\n";
        std::fs::write(root.join("Cargo.toml"), manifest).unwrap();
        Slot::new(1).settings(&root).unwrap();
        let text = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        let table = &parsed["workspace"]["metadata"]["bootstrap"];
        assert_eq!(table["cluster"].as_str(), Some("ameide-s1"), "{text}");
        assert_eq!(table["tilt_port"].as_integer(), Some(1), "the manifest's own wins: {text}");
        assert_eq!(table["legacy_registries"][0].as_str(), Some("dev-reg-s1"));
        assert_eq!(table["images"]["parallel"].as_integer(), Some(2));
    }
}
