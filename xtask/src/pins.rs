//! Pinned tools as the settings declare them (`[workspace.metadata.bootstrap.tools.<name>]`):
//! the pin type, the platform names, their validation, and where installed tools live.
//! Pure: installing them is the `tools` command's job.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, bad_input};

/// The project-local folder, relative to the workspace root.
pub const TOOLS_DIR: &str = ".tools";

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
