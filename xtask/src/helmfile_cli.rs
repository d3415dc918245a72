//! helmfile's command line across the versions the engine supports, read from helmfile's
//! own history (`cmd/*.go`, `pkg/app`):
//!
//! | what the engine calls | since |
//! |---|---|
//! | `--state-values-file`, `--selector k!=v`, `--skip-deps`, `sync --wait --wait-for-jobs`, `build`, `template` | before 0.145 |
//! | `destroy --skip-charts` | 0.151.0 |
//! | `sync --sync-args` (helm's own flags for `helm upgrade`) | **0.163.0**, the minimum |
//! | `sync --timeout <seconds>` | 1.1.6 (commit 135ff63a, 2025-08-27) |
//!
//! Below 0.163.0 nothing gives helm the layer's timeout from the command line (helm's
//! default, 5 minutes, would cut a slow layer short), so the preflight refuses it.
//! From 0.163.0 to 1.1.5 the timeout goes through `--sync-args=--timeout=<n>s`, which
//! *replaces* a layer's `helmDefaults.syncArgs` (helmfile takes the command line's first);
//! from 1.1.6 on, `--timeout <n>` overrides `helmDefaults.timeout` only.
//!
//! Both major versions exit 3 with `no releases found` (and print no state) when a file
//! or selector matches no release (`pkg/app` `ForEachState`, `NoMatchingHelmfileError`);
//! 0.x renders every state file as a Go template while 1.x renders only `*.gotmpl` (both
//! render `.gotmpl`); `--version` prints `helmfile version <v>` with no network call
//! (the `version` verb checks for an upgrade online unless
//! `HELMFILE_UPGRADE_NOTICE_DISABLED` is set).

use std::time::Duration;

use crate::exec::Output;
use crate::version::Version;

/// The oldest helmfile the engine drives: the first with `sync --sync-args`.
pub const MINIMUM: Version = Version::new(0, 163, 0);

/// The first helmfile whose `sync` takes `--timeout`.
pub const SYNC_TIMEOUT_SINCE: Version = Version::new(1, 1, 6);

/// The first helmfile that drives helm 4 (helmfile `pkg/helmexec/exec.go`, #2262): older
/// ones ask `helm version --client`, a flag helm 4 removed, and stop.
pub const HELM_4_SINCE: Version = Version::new(1, 2, 0);

/// Why `helmfile` cannot drive `helm`, if it cannot.
pub fn helm_incompatibility(helmfile: Version, helm: Version) -> Option<String> {
    (helm.major >= 4 && helmfile < HELM_4_SINCE).then(|| {
        format!(
            "helmfile {helmfile} cannot drive helm {helm}: helm 4 is supported from helmfile {HELM_4_SINCE} on (older ones run `helm version --client`, which helm 4 removed)"
        )
    })
}

/// The arguments that print helmfile's version without a network call.
pub const VERSION_ARGS: &[&str] = &["--version"];

/// The helmfile a run calls, as far as its command line differs by version.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Helmfile {
    /// `None` when its `--version` output was not recognised: then only what every
    /// supported version has is used.
    pub version: Option<Version>,
}

impl Helmfile {
    /// The `sync` arguments that give helm `timeout` for each release's install or
    /// upgrade: `--timeout <s>` where helmfile has it, else `--sync-args=--timeout=<s>s`.
    pub fn sync_timeout_args(&self, timeout: Duration) -> Vec<String> {
        let seconds = timeout.as_secs();
        match &self.version {
            Some(v) if *v >= SYNC_TIMEOUT_SINCE => vec!["--timeout".into(), seconds.to_string()],
            _ => vec![format!("--sync-args=--timeout={seconds}s")],
        }
    }
}

/// Whether helmfile stopped because the file (or selector) matched no release: exit 3
/// and `no releases found` on stderr, in every supported version.
pub fn matched_no_release(output: &Output) -> bool {
    output.code == Some(3) && output.stderr.contains("no releases found")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_goes_where_the_version_takes_it() {
        let timeout = Duration::from_secs(900);
        let v1_6 = Helmfile { version: Some(Version::new(1, 6, 0)) };
        assert_eq!(v1_6.sync_timeout_args(timeout), ["--timeout", "900"]);
        let v1_1_6 = Helmfile { version: Some(SYNC_TIMEOUT_SINCE) };
        assert_eq!(v1_1_6.sync_timeout_args(timeout), ["--timeout", "900"]);
        for old in [Version::new(0, 166, 0), Version::new(1, 1, 5), MINIMUM] {
            let helmfile = Helmfile { version: Some(old) };
            assert_eq!(helmfile.sync_timeout_args(timeout), ["--sync-args=--timeout=900s"]);
        }
        let unknown = Helmfile { version: None };
        assert_eq!(unknown.sync_timeout_args(timeout), ["--sync-args=--timeout=900s"]);
    }

    #[test]
    fn no_matching_release_is_exit_3_with_helmfiles_words() {
        let out = |code, stderr: &str| Output {
            code: Some(code),
            stdout: String::new(),
            stderr: stderr.into(),
            duration: Duration::ZERO,
        };
        let none = "err: no releases found that matches specified selector() and environment(local), in any helmfile";
        assert!(matched_no_release(&out(3, none)));
        assert!(!matched_no_release(&out(1, none)));
        assert!(!matched_no_release(&out(3, "err: failed to read 10-a.yaml")));
    }

    #[test]
    fn helm_4_needs_helmfile_1_2() {
        let helm4 = Version::new(4, 1, 4);
        let refused = helm_incompatibility(Version::new(0, 166, 0), helm4.clone()).unwrap();
        assert!(refused.contains("helmfile 0.166.0 cannot drive helm 4.1.4"), "{refused}");
        assert_eq!(helm_incompatibility(HELM_4_SINCE, helm4), None);
        assert_eq!(helm_incompatibility(Version::new(0, 166, 0), Version::new(3, 17, 2)), None);
    }
}
