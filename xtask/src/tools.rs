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
//! Exit codes: unreachable URL or unpinned platform 3, checksum mismatch or a broken
//! archive 1, bad pins 2 (while reading the settings). With several problems the most
//! severe decides ([`combine`]): 3 only when every download was unreachable.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::config::Context;
use crate::error::{Coded, ExitCode, bad_input, code_of, combine, failed, missing};
use crate::fsutil::write_atomically;
use crate::report::Log;

/// The project-local folder, relative to the workspace root.
pub const TOOLS_DIR: &str = ".tools";

/// One download (connect, headers and body) may take this long.
const DOWNLOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
/// Release downloads redirect (GitHub to its object store); a few hops are enough.
const MAX_REDIRECTS: usize = 5;

/// Platforms a pin may carry a checksum for, as `<os>-<arch>` in Go's names.
pub const PLATFORMS: [&str; 4] = ["linux-amd64", "linux-arm64", "darwin-amd64", "darwin-arm64"];

/// One pinned tool (`[workspace.metadata.bootstrap.tools.<name>]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolPin {
    /// The version, without a leading `v` unless the tool's releases use one in URLs.
    pub version: String,
    /// Download URL with `{version}`, `{os}` and `{arch}` placeholders.
    pub url: String,
    /// What the URL serves: the executable itself, or a `tar.gz` holding it.
    #[serde(default)]
    pub archive: ArchiveKind,
    /// For archives: the executable's path inside, with the same placeholders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
    /// How the release names operating systems when not Go's (`darwin = "mac"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub os_names: BTreeMap<String, String>,
    /// How the release names architectures when not Go's (`amd64 = "x86_64"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub arch_names: BTreeMap<String, String>,
    /// Lower-case hex sha256 of the download, per platform (`linux-amd64 = "..."`).
    #[serde(default)]
    pub sha256: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArchiveKind {
    /// The URL serves the executable.
    #[default]
    #[serde(rename = "binary")]
    Binary,
    /// A gzip-compressed tar holding the executable at `binary`.
    #[serde(rename = "tar.gz")]
    TarGz,
}

/// An operating system and architecture in Go's names (`linux`, `amd64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Platform {
    pub os: &'static str,
    pub arch: &'static str,
}

impl Platform {
    /// This machine, when it is one the pins can cover.
    pub fn current() -> Option<Platform> {
        let os = match std::env::consts::OS {
            "linux" => "linux",
            "macos" => "darwin",
            _ => return None,
        };
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            _ => return None,
        };
        Some(Platform { os, arch })
    }

    /// `linux-amd64`: the key of the pin's `sha256` table.
    pub fn key(&self) -> String {
        format!("{}-{}", self.os, self.arch)
    }
}

impl ToolPin {
    /// A template with `{version}`, `{os}` and `{arch}` filled in for `platform`.
    pub fn expand(&self, template: &str, platform: Platform) -> String {
        let os = self.os_names.get(platform.os).map_or(platform.os, String::as_str);
        let arch = self.arch_names.get(platform.arch).map_or(platform.arch, String::as_str);
        template.replace("{version}", &self.version).replace("{os}", os).replace("{arch}", arch)
    }

    pub fn url_for(&self, platform: Platform) -> String {
        self.expand(&self.url, platform)
    }

    pub fn sha256_for(&self, platform: Platform) -> Option<&str> {
        self.sha256.get(&platform.key()).map(String::as_str)
    }
}

/// Check the pins of `[workspace.metadata.bootstrap.tools]` (`manifest` for messages).
pub fn validate_pins(manifest: &Path, pins: &BTreeMap<String, ToolPin>) -> Result<()> {
    let file = manifest.display();
    for (name, pin) in pins {
        let table = format!("{file}: [workspace.metadata.bootstrap.tools.{name}]");
        let valid_name = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_name {
            return Err(bad_input(format!(
                "{table}: a tool name must be letters, digits, `-` or `_` (it names a file in {TOOLS_DIR}/bin)"
            )));
        }
        if pin.version.trim().is_empty() || pin.version.contains(char::is_whitespace) {
            return Err(bad_input(format!("{table}: `version` must be a non-empty version")));
        }
        if !(pin.url.starts_with("https://") || pin.url.starts_with("http://")) {
            return Err(bad_input(format!(
                "{table}: `url` must be an http(s) URL template, found `{}`",
                pin.url
            )));
        }
        match (pin.archive, &pin.binary) {
            (ArchiveKind::TarGz, None) => {
                return Err(bad_input(format!(
                    "{table}: `archive = \"tar.gz\"` needs `binary`, the executable's path inside the archive"
                )));
            }
            (ArchiveKind::Binary, Some(_)) => {
                return Err(bad_input(format!(
                    "{table}: `binary` is only for archives; add `archive = \"tar.gz\"` or remove it"
                )));
            }
            _ => {}
        }
        for os in pin.os_names.keys() {
            if !["linux", "darwin"].contains(&os.as_str()) {
                return Err(bad_input(format!(
                    "{table}: `os_names.{os}`: expected `linux` or `darwin`"
                )));
            }
        }
        for arch in pin.arch_names.keys() {
            if !["amd64", "arm64"].contains(&arch.as_str()) {
                return Err(bad_input(format!(
                    "{table}: `arch_names.{arch}`: expected `amd64` or `arm64`"
                )));
            }
        }
        for (platform, sum) in &pin.sha256 {
            if !PLATFORMS.contains(&platform.as_str()) {
                return Err(bad_input(format!(
                    "{table}: `sha256.{platform}`: expected one of {}",
                    PLATFORMS.join(", ")
                )));
            }
            if sum.len() != 64
                || !sum.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
            {
                return Err(bad_input(format!(
                    "{table}: `sha256.{platform}` must be 64 lower-case hex digits"
                )));
            }
        }
        let sample = Platform { os: "linux", arch: "amd64" };
        for (key, template) in
            std::iter::once(("url", &pin.url)).chain(pin.binary.iter().map(|b| ("binary", b)))
        {
            let expanded = pin.expand(template, sample);
            if expanded.contains('{') || expanded.contains('}') {
                return Err(bad_input(format!(
                    "{table}: `{key}` has an unknown placeholder; only {{version}}, {{os}} and {{arch}} are filled in"
                )));
            }
        }
    }
    Ok(())
}

/// `<root>/.tools/bin`, where the executables go.
pub fn bin_dir(root: &Path) -> PathBuf {
    root.join(TOOLS_DIR).join("bin")
}

/// `PATH` with `<root>/.tools/bin` first, for every tool call.
pub fn path_with_tools(root: &Path) -> OsString {
    let current = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::iter::once(bin_dir(root)).chain(std::env::split_paths(&current));
    std::env::join_paths(dirs).unwrap_or(current)
}

fn stamp_path(root: &Path, name: &str) -> PathBuf {
    root.join(TOOLS_DIR).join(format!("{name}.version"))
}

/// What the stamp file says when `pin` is installed for a platform with checksum `sum`.
fn stamp_text(pin: &ToolPin, sum: &str) -> String {
    format!("{} {sum}\n", pin.version)
}

/// What `install` did (or would do) for one tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub name: String,
    pub version: String,
    pub action: Action,
    pub path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    log: &Log,
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
            log.line("tools", &format!("{name} {} already in {}", pin.version, path.display()));
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
        let mut problems: Vec<anyhow::Error> = Vec::new();
        for (name, pin, sum) in needed {
            let url = pin.url_for(platform);
            let hint = manual_hint(root, name, pin, platform);
            log.line("tools", &format!("GET {url}"));
            let response = client.get(&url, &[], DOWNLOAD_TIMEOUT).await.and_then(|r| r.success());
            let bytes = match response {
                Ok(response) => response.body,
                Err(err) => {
                    // Keep the code (3 for unreachable) while naming the tool.
                    let message =
                        format!("{name} {}: cannot download {url}: {err}\n  {hint}", pin.version);
                    problems.push(Coded { code: code_of(&err), message }.into());
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
        // All or nothing: 3 only when every download was unreachable, else 1.
        combine("tools could not be installed, so none was", problems)?;
    }

    for (name, pin, sum, executable) in verified {
        let path = place(root, name, &executable)?;
        write_atomically(&stamp_path(root, name), stamp_text(pin, sum).as_bytes(), 0o644)?;
        log.line("tools", &format!("installed {name} {} at {}", pin.version, path.display()));
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

/// The executable's bytes from a verified download.
fn executable_from(bytes: &[u8], pin: &ToolPin, platform: Platform) -> Result<Vec<u8>> {
    match (&pin.archive, &pin.binary) {
        (ArchiveKind::TarGz, Some(inner)) => {
            let inner = pin.expand(inner, platform);
            let mut tar = Vec::new();
            flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut tar)
                .context("the download is not a valid tar.gz")?;
            tar_entry(&tar, &inner)?
                .ok_or_else(|| failed(format!("the archive holds no file `{inner}`")))
        }
        _ => Ok(bytes.to_vec()),
    }
}

/// The regular file at `wanted` in an uncompressed tar (ustar, GNU long names, PAX
/// `path`), `./` prefixes ignored.
pub fn tar_entry(tar: &[u8], wanted: &str) -> Result<Option<Vec<u8>>> {
    fn octal(field: &[u8]) -> Result<usize> {
        let text = std::str::from_utf8(field).unwrap_or("");
        let digits = text.trim_matches(|c: char| c == '\0' || c == ' ');
        if digits.is_empty() {
            return Ok(0);
        }
        usize::from_str_radix(digits, 8).map_err(|_| failed("the tar archive is corrupt"))
    }
    fn text(field: &[u8]) -> String {
        let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
        String::from_utf8_lossy(&field[..end]).into_owned()
    }
    let normal = |name: &str| name.trim_start_matches("./").trim_end_matches('/').to_owned();
    let wanted = normal(wanted);
    let mut offset = 0;
    let mut long_name: Option<String> = None;
    while offset + 512 <= tar.len() {
        let header = &tar[offset..offset + 512];
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let size = octal(&header[124..136])?;
        let kind = header[156];
        let data_start = offset + 512;
        let data_end = data_start + size;
        if data_end > tar.len() {
            return Err(failed("the tar archive is truncated"));
        }
        let data = &tar[data_start..data_end];
        offset = data_start + size.div_ceil(512) * 512;
        match kind {
            // GNU long name: the next entry's name.
            b'L' => long_name = Some(text(data)),
            // PAX extended header: `<len> path=<name>\n` records.
            b'x' => {
                long_name = String::from_utf8_lossy(data)
                    .lines()
                    .find_map(|r| r.split_once(' ').and_then(|(_, kv)| kv.strip_prefix("path=")))
                    .map(str::to_owned)
                    .or(long_name);
            }
            b'0' | 0 => {
                let name = long_name.take().unwrap_or_else(|| {
                    let prefix = text(&header[345..500]);
                    let name = text(&header[0..100]);
                    if prefix.is_empty() { name } else { format!("{prefix}/{name}") }
                });
                if normal(&name) == wanted {
                    return Ok(Some(data.to_vec()));
                }
            }
            _ => long_name = None,
        }
    }
    Ok(None)
}

fn place(root: &Path, name: &str, executable: &[u8]) -> Result<PathBuf> {
    let path = bin_dir(root).join(name);
    write_atomically(&path, executable, 0o755)?;
    Ok(path)
}

/// For `bootstrap`'s preflight: install the pinned tools (unless `no_install`); every
/// tool call finds `.tools/bin` first on `PATH` (set by the CLI). A tool not pinned for
/// this platform but already on `PATH` is used as it is (logged). When the downloads
/// cannot be reached (offline) but every wanted tool is already on `PATH`, those are
/// used and the returned warning says so; otherwise install's error stops the run.
pub async fn prepare(ctx: &Context, log: &Log, no_install: bool) -> Result<Option<String>> {
    let mut warning = None;
    if !no_install {
        let platform = Platform::current();
        let pins = &ctx.settings.tools;
        let wanted: Vec<String> = pins
            .iter()
            .filter(|(name, pin)| {
                let pinned = platform.is_some_and(|p| pin.sha256_for(p).is_some());
                let usable = pinned || crate::probe::find_on_path(name).is_none();
                if !usable {
                    log.line(
                        "tools",
                        &format!("{name}: not pinned for this platform; using the one on PATH"),
                    );
                }
                usable
            })
            .map(|(name, _)| name.clone())
            .collect();
        if !wanted.is_empty()
            && let Err(err) = install(&ctx.root, pins, &wanted, log, platform).await
        {
            let on_path =
                wanted.iter().all(|name| crate::probe::find_tool(&ctx.root, name).is_some());
            if code_of(&err) != ExitCode::Missing || !on_path {
                return Err(err);
            }
            let text = format!(
                "pinned tools not installed (downloads unreachable); using {} as found in \
                 {} or on PATH: `cargo xtask doctor` compares their versions",
                wanted.join(", "),
                ctx.display_path(&bin_dir(&ctx.root))
            );
            log.line("tools", &format!("{text}: {err:#}"));
            eprintln!("warning: {text}");
            warning = Some(text);
        }
    }
    Ok(warning)
}

/// `cargo xtask tools ...`
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: ToolsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ToolsCommand {
    /// Download the pinned tools that are missing or at another version into .tools/bin,
    /// each verified against its pinned sha256 before it is made executable. A no-op
    /// when all are in place. Exit 3 when a download is unreachable or this platform
    /// has no pinned checksum, 1 on a checksum mismatch; nothing is half-installed.
    Install {
        /// Only these tools (default: every pinned one).
        tools: Vec<String>,
    },
}

pub async fn run(ctx: &Context, args: &Args) -> Result<()> {
    match &args.command {
        ToolsCommand::Install { tools } => {
            let log = Log::open(&ctx.log_path)?;
            let outcomes =
                install(&ctx.root, &ctx.settings.tools, tools, &log, Platform::current()).await?;
            print!("{}", render(ctx, &outcomes));
            Ok(())
        }
    }
}

/// One line per tool, then where they are.
pub fn render(ctx: &Context, outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    if outcomes.is_empty() {
        out.push_str("no tools pinned in [workspace.metadata.bootstrap.tools]\n");
        return out;
    }
    for o in outcomes {
        let action = match o.action {
            Action::Present => "already installed",
            Action::Installed => "installed",
        };
        out.push_str(&format!(
            "{} {}: {action} ({})\n",
            o.name,
            o.version,
            ctx.display_path(&o.path)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit_code;

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
        assert_eq!(exit_code(&err), 2);
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

    fn tar_with(entries: &[(&str, &[u8], u8)]) -> Vec<u8> {
        let mut tar = Vec::new();
        for (name, data, kind) in entries {
            let mut header = [0u8; 512];
            header[..name.len()].copy_from_slice(name.as_bytes());
            header[100..107].copy_from_slice(b"0000755");
            let size = format!("{:011o}", data.len());
            header[124..135].copy_from_slice(size.as_bytes());
            header[156] = *kind;
            header[257..262].copy_from_slice(b"ustar");
            tar.extend_from_slice(&header);
            tar.extend_from_slice(data);
            tar.resize(tar.len().div_ceil(512) * 512, 0);
        }
        tar.extend_from_slice(&[0u8; 1024]);
        tar
    }

    #[test]
    fn tar_entries_are_found_by_path() {
        let long = format!("{}/helm", "d".repeat(120));
        let tar = tar_with(&[
            ("linux-amd64/", b"", b'5'),
            ("./linux-amd64/README.md", b"readme", b'0'),
            ("./linux-amd64/helm", b"#!/bin/sh\necho v1\n", b'0'),
            ("././@LongLink", format!("{long}\0").as_bytes(), b'L'),
            ("ignored-short-name", b"long one", b'0'),
        ]);
        assert_eq!(tar_entry(&tar, "linux-amd64/helm").unwrap().unwrap(), b"#!/bin/sh\necho v1\n");
        assert_eq!(tar_entry(&tar, &long).unwrap().unwrap(), b"long one");
        assert_eq!(tar_entry(&tar, "helm").unwrap(), None);
        let one = tar_with(&[("a", b"0123456789", b'0')]);
        assert!(tar_entry(&one[..520], "a").is_err(), "truncated data is an error");
    }

    #[test]
    fn path_puts_the_tools_folder_first() {
        let path = path_with_tools(Path::new("/repo"));
        let first = std::env::split_paths(&path).next().unwrap();
        assert_eq!(first, Path::new("/repo/.tools/bin"));
    }

    #[test]
    fn the_repository_pins_all_five_tools_for_linux_amd64() {
        let text = include_str!("../../Cargo.toml");
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
