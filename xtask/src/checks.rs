//! Every health check, once: the bootstrap's gates and the final release-status gate
//! use these, and so will the `smoke` test binary. A check returns a [`CheckResult`]
//! (what was expected, what was found, what to do) rather than an error; errors are
//! kept for "could not check at all" (API unreachable, Ctrl-C).

use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};
use serde::Serialize;

use crate::exec::{self, Cmd};
use crate::release::{self, HelmRelease};
use crate::report::Log;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Passed,
    /// Passed, with something the user should know (shown in the summary).
    Warned,
    Failed,
}

/// One check's outcome, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    pub name: String,
    pub verdict: Verdict,
    pub expected: String,
    pub found: String,
    pub warnings: Vec<String>,
    /// What to run or change when the check did not pass.
    pub remediation: Option<String>,
}

impl CheckResult {
    pub fn passed(&self) -> bool {
        self.verdict != Verdict::Failed
    }
}

/// Text that `helm test --logs` prints when a test pod was deleted (hook-succeeded
/// delete policy) before its log was read.
pub const POD_LOG_MISSING: &str = "unable to get pod logs";

/// The release-status gate for one release: its latest revision is `deployed`.
pub fn release_status(name: &str, namespace: &str, release: Option<&HelmRelease>) -> CheckResult {
    let check = |verdict, found: String, remediation: Option<String>| CheckResult {
        name: format!("release {namespace}/{name}"),
        verdict,
        expected: "status deployed".into(),
        found,
        warnings: Vec::new(),
        remediation,
    };
    let inspect = format!(
        "inspect it with `helm status {name} -n {namespace}` and `helm history {name} -n {namespace}`"
    );
    match release {
        None => check(
            Verdict::Failed,
            "no Helm release record".into(),
            Some(format!(
                "release `{name}` was never installed in namespace `{namespace}`; run its layer's sync (`cargo xtask sync <layer>`)"
            )),
        ),
        Some(r) if r.info.status == "deployed" => {
            check(Verdict::Passed, format!("revision {} deployed", r.version), None)
        }
        Some(r) => {
            let why = if r.info.description.is_empty() {
                String::new()
            } else {
                format!(" ({})", r.info.description)
            };
            check(
                Verdict::Failed,
                format!("revision {} is `{}`{why}", r.version, r.info.status),
                Some(format!(
                    "release `{name}` in namespace `{namespace}` is `{}`; {inspect}, fix the cause and sync its layer again",
                    r.info.status
                )),
            )
        }
    }
}

/// Read the release and judge its status.
pub async fn release_deployed(
    client: &kube::Client,
    name: &str,
    namespace: &str,
) -> Result<CheckResult> {
    let release = release::read(client, namespace, name).await?;
    Ok(release_status(name, namespace, release.as_ref()))
}

/// The verdict of a gate release after `helm test`: from its test hooks' recorded
/// `last_run.phase`, with helm's own exit status only deciding between passed and
/// warned (a missing pod log) or catching a failure before any hook ran.
pub fn gate_verdict(
    name: &str,
    namespace: &str,
    release: Option<&HelmRelease>,
    helm_succeeded: bool,
    helm_output: &str,
) -> CheckResult {
    let helm_test = format!("helm test {name} -n {namespace} --logs");
    let mut result = CheckResult {
        name: format!("gate {namespace}/{name}"),
        verdict: Verdict::Passed,
        expected: "every test hook Succeeded".into(),
        found: String::new(),
        warnings: Vec::new(),
        remediation: None,
    };
    let Some(release) = release else {
        result.verdict = Verdict::Failed;
        result.found = "no Helm release record".into();
        result.remediation = Some(format!(
            "gate release `{name}` is not installed in namespace `{namespace}`; check its layer's sync output in the log"
        ));
        return result;
    };
    let hooks: Vec<_> = release.test_hooks().collect();
    let not_succeeded: Vec<_> = hooks.iter().filter(|h| h.last_run.phase != "Succeeded").collect();
    let phases: Vec<String> = hooks
        .iter()
        .map(|h| {
            let phase = if h.last_run.phase.is_empty() { "not run" } else { &h.last_run.phase };
            format!("{} {phase}", h.name)
        })
        .collect();
    result.found = if hooks.is_empty() {
        "0 test hooks".into()
    } else {
        format!("{} test hook(s): {}", hooks.len(), phases.join(", "))
    };
    if let Some(first) = not_succeeded.first() {
        let (hook, kind) = (&first.name, first.kind.to_lowercase());
        let pod_hint = if kind == "job" {
            format!(
                "`kubectl logs -n {namespace} job/{hook}`, `kubectl describe job -n {namespace} {hook}`"
            )
        } else {
            format!(
                "`kubectl logs -n {namespace} {hook}`, `kubectl describe pod -n {namespace} {hook}`"
            )
        };
        result.verdict = Verdict::Failed;
        result.remediation = Some(format!(
            "test hook `{hook}` of release `{name}` in namespace `{namespace}` did not succeed (phase {}); inspect it with {pod_hint}, re-run it with `{helm_test}`",
            if first.last_run.phase.is_empty() { "not run" } else { &first.last_run.phase }
        ));
        return result;
    }
    if helm_succeeded {
        if hooks.is_empty() {
            result.verdict = Verdict::Warned;
            result.warnings.push(format!("gate `{name}` has 0 test hooks: nothing was tested"));
        }
        return result;
    }
    if let Some(line) = helm_output.lines().find(|l| l.contains(POD_LOG_MISSING)) {
        result.verdict = Verdict::Warned;
        result.warnings.push(format!(
            "gate `{name}`: every test hook Succeeded, but `helm test --logs` said: {}",
            line.trim()
        ));
        return result;
    }
    result.verdict = Verdict::Failed;
    let tail: Vec<&str> =
        helm_output.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect();
    result.found = format!("{}; `helm test` failed: {}", result.found, tail.join(" / "));
    result.remediation = Some(format!(
        "`{helm_test}` failed before its test hooks could be judged; run it to see why"
    ));
    result
}

/// Where and how the gate runs.
#[derive(Debug, Clone)]
pub struct GateTarget<'a> {
    pub release: &'a str,
    pub namespace: &'a str,
    /// Log tag, e.g. `layers/24-auth`.
    pub tag: &'a str,
    /// Passed to helm as `HELM_KUBECONTEXT`.
    pub kube_context: &'a str,
    pub timeout: Duration,
}

/// A gate release's Helm tests: delete the test pods/jobs an earlier run left, run
/// `helm test --logs`, and judge by the recorded hook phases.
pub async fn helm_test_gate(
    log: &Log,
    client: &kube::Client,
    target: &GateTarget<'_>,
) -> Result<CheckResult> {
    let (name, namespace) = (target.release, target.namespace);
    if let Some(before) = release::read(client, namespace, name).await? {
        delete_stale_test_resources(log, client, target.tag, namespace, &before).await?;
    }
    let cmd = Cmd::new(target.tag, "helm", target.timeout)
        .args(["test", name, "-n", namespace, "--logs", "--timeout"])
        .arg(format!("{}s", target.timeout.as_secs()))
        .env("HELM_KUBECONTEXT", target.kube_context);
    let output = exec::run(log, &cmd).await?;
    let after = release::read(client, namespace, name).await?;
    let text = format!("{}\n{}", output.stdout, output.stderr);
    Ok(gate_verdict(name, namespace, after.as_ref(), output.success(), &text))
}

/// Pods and Jobs named after the release's test hooks (an earlier failed run keeps its
/// pod for `kubectl logs`; a new run must not trip over it).
async fn delete_stale_test_resources(
    log: &Log,
    client: &kube::Client,
    tag: &str,
    namespace: &str,
    release: &HelmRelease,
) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let params = DeleteParams::background();
    for hook in release.test_hooks() {
        let deleted = match hook.kind.as_str() {
            "Pod" => pods.delete(&hook.name, &params).await.map(drop),
            "Job" => jobs.delete(&hook.name, &params).await.map(drop),
            _ => continue,
        };
        match deleted {
            Ok(()) => log
                .line(tag, &format!("deleted stale test {} {namespace}/{}", hook.kind, hook.name)),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "deleting stale test {} {namespace}/{}",
                    hook.kind, hook.name
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::{Hook, Info, LastRun};

    fn release(phases: &[&str]) -> HelmRelease {
        HelmRelease {
            name: "auth-smoke".into(),
            namespace: "ameide".into(),
            version: 2,
            info: Info { status: "deployed".into(), ..Info::default() },
            hooks: phases
                .iter()
                .enumerate()
                .map(|(i, phase)| Hook {
                    name: format!("auth-smoke-check{i}"),
                    kind: "Pod".into(),
                    events: vec!["test".into()],
                    last_run: LastRun { phase: (*phase).into(), ..LastRun::default() },
                })
                .collect(),
        }
    }

    #[test]
    fn all_succeeded_and_helm_ok_passes() {
        let r = gate_verdict(
            "auth-smoke",
            "ameide",
            Some(&release(&["Succeeded", "Succeeded"])),
            true,
            "",
        );
        assert_eq!(r.verdict, Verdict::Passed);
        assert!(r.found.contains("2 test hook(s)"), "{}", r.found);
        assert!(r.remediation.is_none() && r.warnings.is_empty());
    }

    #[test]
    fn failed_hook_fails_naming_hook_namespace_and_commands() {
        let r = gate_verdict(
            "auth-smoke",
            "ameide",
            Some(&release(&["Succeeded", "Failed"])),
            false,
            "Error: 1 test failed",
        );
        assert_eq!(r.verdict, Verdict::Failed);
        let fix = r.remediation.unwrap();
        assert!(fix.contains("`auth-smoke-check1`") && fix.contains("namespace `ameide`"), "{fix}");
        assert!(fix.contains("kubectl logs -n ameide auth-smoke-check1"), "{fix}");
        assert!(fix.contains("kubectl describe pod -n ameide auth-smoke-check1"), "{fix}");
        assert!(fix.contains("helm test auth-smoke -n ameide --logs"), "{fix}");
    }

    #[test]
    fn missing_pod_log_with_all_succeeded_is_a_warning() {
        let out = "Error: unable to get pod logs for auth-smoke-check0: pods \"auth-smoke-check0\" not found";
        let r = gate_verdict("auth-smoke", "ameide", Some(&release(&["Succeeded"])), false, out);
        assert_eq!(r.verdict, Verdict::Warned);
        assert!(r.passed());
        assert!(
            r.warnings[0].contains("unable to get pod logs for auth-smoke-check0"),
            "{:?}",
            r.warnings
        );
        // The same text with a failed hook is a failure.
        let r = gate_verdict("auth-smoke", "ameide", Some(&release(&["Failed"])), false, out);
        assert_eq!(r.verdict, Verdict::Failed);
    }

    #[test]
    fn helm_failing_otherwise_fails_and_no_hooks_warns() {
        let r = gate_verdict("x", "ns", Some(&release(&["Succeeded"])), false, "Error: timed out");
        assert_eq!(r.verdict, Verdict::Failed);
        assert!(r.found.contains("timed out"));
        let r = gate_verdict("x", "ns", Some(&release(&[])), true, "");
        assert_eq!((r.verdict, r.found.as_str()), (Verdict::Warned, "0 test hooks"));
        let r = gate_verdict("x", "ns", Some(&release(&[""])), true, "");
        assert_eq!(r.verdict, Verdict::Failed, "a hook that never ran is not a pass");
        assert_eq!(gate_verdict("x", "ns", None, true, "").verdict, Verdict::Failed);
    }

    #[test]
    fn release_status_names_the_release() {
        let mut r = release(&[]);
        assert_eq!(release_status("auth-smoke", "ameide", Some(&r)).verdict, Verdict::Passed);
        r.info.status = "pending-upgrade".into();
        let check = release_status("auth-smoke", "ameide", Some(&r));
        assert_eq!(check.verdict, Verdict::Failed);
        assert!(check.found.contains("`pending-upgrade`"));
        assert!(check.remediation.unwrap().contains("release `auth-smoke` in namespace `ameide`"));
        assert_eq!(release_status("a", "b", None).verdict, Verdict::Failed);
    }
}
