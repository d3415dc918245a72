//! The helmfile version the fake helmfile claims (scenario `helmfile-version=X.Y.Z`,
//! default the version pinned in the root Cargo.toml) and what changes with it, read
//! from helmfile's history (`cmd/sync.go`, `cmd/root.go`, `pkg/runtime/runtime.go`,
//! `pkg/app/desired_state_file_loader.go`):
//!
//! - `sync --timeout <seconds>` exists from 1.1.6 (commit 135ff63a); before, cobra
//!   refuses it: `Error: unknown flag: --timeout`;
//! - `sync --sync-args` (helm flags for `helm upgrade`) exists from 0.163.0;
//! - 0.x renders every state file as a Go template ("V1 mode" off), 1.x only `*.gotmpl`;
//!   `HELMFILE_V1MODE=true|false` switches either way;
//! - `--version` prints `helmfile version <v>` (cobra's template) in both.

use crate::helm::version::HelmVersion;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelmfileVersion(pub HelmVersion);

impl HelmfileVersion {
    /// The claimed version; an unreadable one is the pinned 1.6.0.
    pub fn parse(text: &str) -> HelmfileVersion {
        HelmfileVersion(HelmVersion::parse(text).unwrap_or(HelmVersion(1, 6, 0)))
    }

    pub fn has_sync_timeout(self) -> bool {
        self.0 >= HelmVersion(1, 1, 6)
    }

    pub fn has_sync_args(self) -> bool {
        self.0 >= HelmVersion(0, 163, 0)
    }

    /// Whether a state file named `file` is rendered as a Go template, with
    /// `HELMFILE_V1MODE` as read from the environment (`None` when unset).
    pub fn renders(self, file: &std::path::Path, v1_mode_env: Option<&str>) -> bool {
        let v1_mode = match v1_mode_env {
            Some("true") => true,
            Some("false") => false,
            _ => self.0 >= HelmVersion(1, 0, 0),
        };
        file.extension().is_some_and(|e| e == "gotmpl") || !v1_mode
    }

    pub fn text(self) -> String {
        let HelmVersion(major, minor, patch) = self.0;
        format!("{major}.{minor}.{patch}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn flags_and_rendering_follow_the_claimed_version() {
        let v0 = HelmfileVersion::parse("0.166.0");
        let v1 = HelmfileVersion::parse("1.6.0");
        assert!(!v0.has_sync_timeout() && v0.has_sync_args());
        assert!(v1.has_sync_timeout() && v1.has_sync_args());
        assert!(!HelmfileVersion::parse("1.1.5").has_sync_timeout());
        assert!(!HelmfileVersion::parse("0.162.0").has_sync_args());
        let (plain, tmpl) = (Path::new("10-a.yaml"), Path::new("45-b.yaml.gotmpl"));
        assert!(v0.renders(plain, None) && v0.renders(tmpl, None));
        assert!(!v1.renders(plain, None) && v1.renders(tmpl, None));
        assert!(!v0.renders(plain, Some("true")) && v1.renders(plain, Some("false")));
    }
}
