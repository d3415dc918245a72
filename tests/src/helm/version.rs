//! The helm version the fake helm claims (scenario `helm-version=X.Y.Z`, default the
//! version pinned in the root Cargo.toml) and what changes with it in `helm test`
//! (helm `pkg/action/release_testing.go`, `pkg/action/hooks.go`, `pkg/cmd/release_testing.go`
//! at v3.18.4, v4.0.4, v4.0.5, v4.1.4, v4.2.3, v4.2.4):
//!
//! - before 4.0.5 (all of 3.x, 4.0.0-4.0.4) `execHook` deletes `hook-succeeded` test Pods
//!   as soon as they pass, so `--logs` then fails on them:
//!   `unable to get pod logs for <hook>: pods "<hook>" not found`;
//! - from 4.0.5 (`execHookWithDelayedShutdown`) the deletion waits until the logs are read;
//! - every released version asks `--logs` for a Pod named like *each* test hook, a Job
//!   hook too (only helm's main branch after 4.2.4 skips non-Pod hooks);
//! - from 4.2.4 the logs are read per container: the header is `POD LOGS: <pod> (<container>)`
//!   and a missing Pod is `unable to get pod <hook>: pods "<hook>" not found`.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HelmVersion(pub u32, pub u32, pub u32);

impl HelmVersion {
    pub fn parse(text: &str) -> Option<HelmVersion> {
        crate::scenario::parse_version(text)
            .map(|(major, minor, patch)| HelmVersion(major, minor, patch))
    }

    /// Passing `hook-succeeded` test Pods are deleted only after `--logs` read them.
    pub fn reads_logs_before_deleting(self) -> bool {
        self >= HelmVersion(4, 0, 5)
    }

    /// Logs are fetched per container (`POD LOGS: <pod> (<container>)`).
    pub fn logs_per_container(self) -> bool {
        self >= HelmVersion(4, 2, 4)
    }

    /// `--logs` reads only hooks of kind Pod (helm's main branch after 4.2.4); every
    /// released version asks for a Pod named like each test hook, a Job hook too, and so
    /// fails with "unable to get pod logs for <job>" on a Job hook.
    pub fn logs_pods_only(self) -> bool {
        self > HelmVersion(4, 2, 4)
    }

    /// The error when a test Pod's logs cannot be read.
    pub fn log_error(self, pod: &str, cause: &str) -> String {
        if self.logs_per_container() {
            format!("unable to get pod {pod}: {cause}")
        } else {
            format!("unable to get pod logs for {pod}: {cause}")
        }
    }

    /// `helm version` (and `--short`, `--template '{{.Version}}'`) output.
    pub fn version_text(self, args: &[String]) -> String {
        let v = format!("v{}.{}.{}", self.0, self.1, self.2);
        let commit = "0000000000000000000000000000000000000000";
        if args.iter().any(|a| a == "--short") {
            format!("{v}+g{}\n", &commit[..7])
        } else if let Some(i) =
            args.iter().position(|a| a == "--template" || a.starts_with("--template="))
        {
            let t = args[i]
                .strip_prefix("--template=")
                .map(str::to_owned)
                .or_else(|| args.get(i + 1).cloned());
            t.unwrap_or_default().replace("{{.Version}}", &v).replace("{{ .Version }}", &v)
        } else {
            let kube = if self.0 >= 4 { ", KubeClientVersion:\"v1.35\"" } else { "" };
            format!(
                "version.BuildInfo{{Version:\"{v}\", GitCommit:\"{commit}\", GitTreeState:\"clean\", GoVersion:\"go1.24.4\"{kube}}}\n"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_and_wording_follow_the_tags() {
        let v = |s| HelmVersion::parse(s).unwrap();
        assert!(!v("3.18.4").reads_logs_before_deleting());
        assert!(!v("4.0.4").reads_logs_before_deleting());
        assert!(v("4.0.5").reads_logs_before_deleting());
        assert!(v("4.1.4").reads_logs_before_deleting());
        assert_eq!(v("4.1.4").log_error("p", "x"), "unable to get pod logs for p: x");
        assert_eq!(v("4.2.4").log_error("p", "x"), "unable to get pod p: x");
        assert!(!v("4.2.4").logs_pods_only() && !v("3.18.4").logs_pods_only());
        assert_eq!(v("v3.18.4").version_text(&["--short".into()]), "v3.18.4+g0000000\n");
    }
}
