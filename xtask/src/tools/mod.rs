//! `cargo xtask tools install`: the pinned k3d, helm, helmfile, kubectl and tilt, in a
//! project-local folder (`.tools/bin`, ignored by git) that `bootstrap` puts first on
//! `PATH`.
//!
//! Pins live in `[workspace.metadata.bootstrap.tools.<name>]`: a version, a download URL
//! template (`{version}`, `{os}`, `{arch}`), the archive kind and the executable's path
//! inside it, and a sha256 per platform (`linux-amd64`, `linux-arm64`, `darwin-amd64`,
//! `darwin-arm64`). A platform without a checksum is unpinned: `install` refuses it.
//!
//! Install is all or nothing: every needed archive is downloaded to memory and checked
//! against its sha256 before any file is written, so a mismatch or an unreachable URL
//! leaves `.tools` as it was. Each executable is then written to a temp file beside its
//! place, made executable and renamed over it, and `.tools/<name>.version` records the
//! version and checksum so the next run is a no-op.
//!
//! Downloads go through [`crate::http`]: `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY`
//! are honoured, connection failures and 5xx answers are retried a few times.
//!
//! Error kinds: unreachable URL or unpinned platform is missing, checksum mismatch or
//! a broken archive is failed, bad pins are bad input (while reading the settings).
//! With several problems the most severe decides ([`combine`]): missing only when
//! every download was unreachable.
//!
//! Owns: installing pins ([`install`]), bootstrap's tools step ([`planned`], [`install_planned`]) and the
//! `tools` command with its result ([`Installed`]). The pins themselves (types,
//! validation, `.tools/bin`) are `crate::pins`; reading archives is `archive`.

mod archive;
mod prepare;

pub use prepare::{ToolInstall, install_planned, planned};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::Context;
use crate::error::{Error, Result, bad_input, combine, failed, missing};
use crate::events::{Event, Rendered};
use crate::fsutil::write_atomically;
use crate::outcome::{Document, Status, WithStatus};
use crate::pins::{ArchiveKind, PLATFORMS, Platform, TOOLS_DIR, ToolPin, bin_dir};
use crate::session::Session;
use archive::executable_from;

/// One download (connect, headers and body) may take this long.
const DOWNLOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
/// Release downloads redirect (GitHub to its object store); a few hops are enough.
const MAX_REDIRECTS: usize = 5;

fn stamp_path(root: &Path, name: &str) -> PathBuf {
    root.join(TOOLS_DIR).join(format!("{name}.version"))
}

/// What the stamp file says when `pin` is installed for a platform with checksum `sum`.
fn stamp_text(pin: &ToolPin, sum: &str) -> String {
    format!("{} {sum}\n", pin.version)
}

/// What `install` did (or would do) for one tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Outcome {
    pub name: String,
    pub version: String,
    pub action: Action,
    pub path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The pinned version was already in place.
    Present,
    /// Downloaded, verified and installed now.
    Installed,
}

/// Pure decision for one tool: is the pinned version for this platform in place?
fn is_in_place(root: &Path, name: &str, pin: &ToolPin, sum: &str) -> bool {
    let stamp = std::fs::read_to_string(stamp_path(root, name)).unwrap_or_default();
    stamp == stamp_text(pin, sum) && crate::probe::is_executable(&bin_dir(root).join(name))
}

/// How to do by hand what `install` could not.
fn manual_hint(root: &Path, name: &str, pin: &ToolPin, platform: Platform) -> String {
    let url = pin.url_for(platform);
    let target = bin_dir(root).join(name);
    let sum = pin.sha256_for(platform).map_or_else(
        || "compare its sha256 with the one the release publishes".to_string(),
        |sum| format!("check `sha256sum` prints {sum}"),
    );
    let extract = match (&pin.archive, &pin.binary) {
        (ArchiveKind::TarGz, Some(inner)) => {
            format!(", extract `{}` from it", pin.expand(inner, platform))
        }
        _ => String::new(),
    };
    format!(
        "to install {name} {} by hand: download {url}, {sum}{extract}, and put it at {} (or anywhere on PATH) with `chmod +x`",
        pin.version,
        target.display()
    )
}

/// Install every pinned tool named in `only` (all when empty) that is missing or at
/// another version. Nothing is written unless every download was verified.
pub async fn install(
    root: &Path,
    pins: &BTreeMap<String, ToolPin>,
    only: &[String],
    session: &Session,
    platform: Option<Platform>,
) -> Result<Vec<Outcome>> {
    for name in only {
        if !pins.contains_key(name) {
            let known: Vec<&str> = pins.keys().map(String::as_str).collect();
            return Err(bad_input(format!(
                "`{name}` is not pinned in [workspace.metadata.bootstrap.tools]; pinned: {}",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            )));
        }
    }
    let selected: Vec<(&String, &ToolPin)> =
        pins.iter().filter(|(name, _)| only.is_empty() || only.contains(name)).collect();
    let Some(platform) = platform else {
        return Err(missing(format!(
            "this machine ({} {}) is none of the platforms the tools are pinned for ({}); install {} by hand",
            std::env::consts::OS,
            std::env::consts::ARCH,
            PLATFORMS.join(", "),
            selected.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
        )));
    };

    // Plan: which tools need a download, refusing unpinned platforms up front.
    let mut outcomes = Vec::new();
    let mut needed = Vec::new();
    let mut unpinned = Vec::new();
    for (name, pin) in selected {
        let path = bin_dir(root).join(name);
        let Some(sum) = pin.sha256_for(platform) else {
            unpinned.push(format!(
                "{name} {}: no sha256 pinned for {}, so it is not installed; {}",
                pin.version,
                platform.key(),
                manual_hint(root, name, pin, platform)
            ));
            continue;
        };
        if is_in_place(root, name, pin, sum) {
            session.line("tools", &format!("{name} {} already in {}", pin.version, path.display()));
            outcomes.push(Outcome {
                name: name.clone(),
                version: pin.version.clone(),
                action: Action::Present,
                path,
            });
        } else {
            needed.push((name, pin, sum));
        }
    }
    if !unpinned.is_empty() {
        return Err(missing(unpinned.join("\n")));
    }

    // Fetch and verify everything before writing anything.
    let mut verified = Vec::new();
    if !needed.is_empty() {
        let client = crate::http::Client::new()?.follow_redirects(MAX_REDIRECTS);
        let mut problems: Vec<Error> = Vec::new();
        for (name, pin, sum) in needed {
            let url = pin.url_for(platform);
            let hint = manual_hint(root, name, pin, platform);
            session.line("tools", &format!("GET {url}"));
            let _wait =
                session.events.wait("tools", &format!("downloading {name} {}", pin.version));
            let request = client.get(&url, &[], DOWNLOAD_TIMEOUT);
            let response = session.cancel.unless_interrupted(request).await?;
            let bytes = match response.and_then(crate::http::Response::success) {
                Ok(response) => response.body,
                Err(err) => {
                    // Keep the kind (missing for unreachable) while naming the tool; the
                    // URL is named once.
                    let text = err.to_string();
                    let why = text.strip_prefix(&format!("GET {url}")).unwrap_or(&text);
                    let why = why.trim_start_matches([':', ' ']);
                    let message =
                        format!("{name} {}: cannot download {url}: {why}\n  {hint}", pin.version);
                    problems.push(Error::new(err.kind(), message));
                    continue;
                }
            };
            let actual = crate::digest::sha256_hex(&bytes);
            if actual != sum {
                problems.push(failed(format!(
                    "{name} {}: checksum mismatch for {url}: expected sha256 {sum}, got {actual}; nothing was installed (a tampered or re-published download)\n  {hint}",
                    pin.version
                )));
                continue;
            }
            match executable_from(&bytes, pin, platform) {
                Ok(executable) => verified.push((name, pin, sum, executable)),
                Err(err) => {
                    problems.push(failed(format!("{name} {}: {err:#}\n  {hint}", pin.version)))
                }
            }
        }
        // All or nothing: missing only when every download was unreachable, else failed.
        combine("tools could not be installed, so none was", problems)?;
    }

    for (name, pin, sum, executable) in verified {
        let path = place(root, name, &executable)?;
        write_atomically(&stamp_path(root, name), stamp_text(pin, sum).as_bytes(), 0o644)?;
        session.line("tools", &format!("installed {name} {} at {}", pin.version, path.display()));
        outcomes.push(Outcome {
            name: name.clone(),
            version: pin.version.clone(),
            action: Action::Installed,
            path,
        });
    }
    outcomes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(outcomes)
}

fn place(root: &Path, name: &str, executable: &[u8]) -> Result<PathBuf> {
    let path = bin_dir(root).join(name);
    write_atomically(&path, executable, 0o755)?;
    Ok(path)
}

/// `cargo xtask tools ...` (the CLI's flags are in `xtask/src/flags.rs`).
#[derive(Debug)]
pub struct Args {
    pub command: ToolsCommand,
}

/// The `tools` subcommands.
#[derive(Debug)]
pub enum ToolsCommand {
    /// Download the pinned tools that are missing or at another version into .tools/bin.
    Install {
        /// Only these tools (default: every pinned one).
        tools: Vec<String>,
    },
}

/// `cargo xtask tools install`: one result, what was installed and what was in place.
pub async fn run(ctx: &Context, args: &Args) -> Result<()> {
    match &args.command {
        ToolsCommand::Install { tools } => {
            let session = &ctx.session;
            let pins = &ctx.settings.tools;
            let outcomes = install(&ctx.root, pins, tools, session, Platform::current()).await?;
            let result = Installed {
                tools: outcomes
                    .into_iter()
                    .map(|o| Shown { shown_path: ctx.display_path(&o.path), outcome: o })
                    .collect(),
            };
            session.events.emit(Event::Result { result: &result });
            Ok(())
        }
    }
}

/// The version of the JSON shape (`schemas/tools.schema.json`).
pub const SCHEMA_VERSION: u32 = 1;

/// What `tools install` did, for the sinks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Installed {
    pub tools: Vec<Shown>,
}

/// One tool's outcome and its path as shown to people (relative to the root).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Shown {
    #[serde(flatten)]
    pub outcome: Outcome,
    #[serde(skip)]
    pub shown_path: String,
}

impl Rendered for Installed {
    /// One line per tool: `k3d 5.7.5: installed (.tools/bin/k3d)`.
    fn human(&self) -> String {
        if self.tools.is_empty() {
            return "no tools pinned in [workspace.metadata.bootstrap.tools]\n".to_owned();
        }
        let mut out = String::new();
        for Shown { outcome: o, shown_path } in &self.tools {
            let action = match o.action {
                Action::Present => "already installed",
                Action::Installed => "installed",
            };
            out.push_str(&format!("{} {}: {action} ({shown_path})\n", o.name, o.version));
        }
        out
    }

    /// `{"schema_version", "status": "ok", "tools": [{"name", "version", "action", "path"}]}`.
    fn json(&self) -> serde_json::Value {
        Document::new(SCHEMA_VERSION, WithStatus { status: Status::Ok, body: self }).json()
    }

    fn log_lines(&self) -> Vec<(String, String)> {
        self.human().lines().map(|line| ("tools".to_owned(), line.to_owned())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::pins::{path_with_tools, validate_pins};

    fn pin(url: &str) -> ToolPin {
        ToolPin {
            version: "1.2.3".into(),
            url: url.into(),
            archive: ArchiveKind::Binary,
            binary: None,
            os_names: BTreeMap::new(),
            arch_names: BTreeMap::new(),
            sha256: BTreeMap::new(),
        }
    }

    fn validate(name: &str, pin: ToolPin) -> Result<()> {
        validate_pins(Path::new("/repo/Cargo.toml"), &BTreeMap::from([(name.to_string(), pin)]))
    }

    #[test]
    fn templates_use_the_release_names_of_os_and_arch() {
        let mut tilt = pin("https://x/v{version}/tilt.{version}.{os}.{arch}.tar.gz");
        tilt.os_names.insert("darwin".into(), "mac".into());
        tilt.arch_names.insert("amd64".into(), "x86_64".into());
        let mac = Platform { os: "darwin", arch: "amd64" };
        assert_eq!(tilt.url_for(mac), "https://x/v1.2.3/tilt.1.2.3.mac.x86_64.tar.gz");
        let arm = Platform { os: "linux", arch: "arm64" };
        assert_eq!(tilt.url_for(arm), "https://x/v1.2.3/tilt.1.2.3.linux.arm64.tar.gz");
        assert_eq!(arm.key(), "linux-arm64");
    }

    #[test]
    fn bad_pins_are_bad_input_naming_the_table() {
        let mut p = pin("https://x/{version}");
        p.sha256.insert("windows-amd64".into(), "a".repeat(64));
        let err = validate("k3d", p).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput);
        let msg = err.to_string();
        assert!(
            msg.contains("/repo/Cargo.toml: [workspace.metadata.bootstrap.tools.k3d]"),
            "{msg}"
        );
        assert!(msg.contains("sha256.windows-amd64"), "{msg}");

        let mut p = pin("https://x/{version}");
        p.sha256.insert("linux-amd64".into(), "ABC".into());
        assert!(validate("k3d", p).unwrap_err().to_string().contains("64 lower-case hex"));

        let mut p = pin("https://x");
        p.archive = ArchiveKind::TarGz;
        assert!(validate("helm", p).unwrap_err().to_string().contains("needs `binary`"));
        assert!(validate("helm", pin("ftp://x")).is_err());
        assert!(validate("../evil", pin("https://x")).is_err());
        let err = validate("helm", pin("https://x/{platform}")).unwrap_err();
        assert!(err.to_string().contains("unknown placeholder"), "{err}");
        validate("helm", pin("https://x/{version}/{os}-{arch}")).unwrap();
    }

    #[test]
    fn the_result_is_a_line_per_tool_or_one_json_object() {
        let shown = |name: &str, action| Shown {
            outcome: Outcome {
                name: name.into(),
                version: "1.0.0".into(),
                action,
                path: PathBuf::from(format!("/repo/.tools/bin/{name}")),
            },
            shown_path: format!(".tools/bin/{name}"),
        };
        let result = Installed {
            tools: vec![shown("helm", Action::Installed), shown("k3d", Action::Present)],
        };
        assert_eq!(
            result.human(),
            "helm 1.0.0: installed (.tools/bin/helm)\nk3d 1.0.0: already installed (.tools/bin/k3d)\n"
        );
        let json = result.json();
        assert_eq!(json["tools"][1]["action"], "present");
        assert_eq!(json["tools"][0]["path"], "/repo/.tools/bin/helm");
        assert!(Installed { tools: vec![] }.human().starts_with("no tools pinned"));
    }

    #[test]
    fn path_puts_the_tools_folder_first() {
        let path = path_with_tools(Path::new("/repo"));
        let first = std::env::split_paths(&path).next().unwrap();
        assert_eq!(first, Path::new("/repo/.tools/bin"));
    }

    #[test]
    fn the_repository_pins_all_five_tools_for_linux_amd64() {
        let text = include_str!("../../../Cargo.toml");
        let settings = crate::config::Settings::parse(Path::new("Cargo.toml"), text).unwrap();
        let linux = Platform { os: "linux", arch: "amd64" };
        for name in ["k3d", "helm", "helmfile", "kubectl", "tilt"] {
            let pin = &settings.tools[name];
            assert!(pin.sha256_for(linux).is_some(), "{name} has no linux-amd64 checksum");
        }
        let helm = &settings.tools["helm"];
        assert_eq!(
            helm.url_for(linux),
            format!("https://get.helm.sh/helm-v{}-linux-amd64.tar.gz", helm.version)
        );
        let tilt = &settings.tools["tilt"];
        let mac = Platform { os: "darwin", arch: "arm64" };
        assert!(tilt.url_for(mac).ends_with(".mac.arm64.tar.gz"));
    }

    #[test]
    fn hex_digest() {
        assert_eq!(
            crate::digest::sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
