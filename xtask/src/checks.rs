//! Every health check, once: the bootstrap's gates and the final release-status gate
//! use these, and so does the `smoke` test binary. A check returns an
//! [`outcome::Check`](Check) (verdict, and the finding: what was expected, what was
//! found, what to do) rather than an error; errors are kept for "could not check at
//! all" (API unreachable, interruption).

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, LogParams};

use crate::error::Result;
use crate::exec::{self, Cmd};
use crate::k8s::{helm_command, kubectl_command};
use crate::learn::learn_pod_secrets;
use crate::outcome::{Check, Finding, Verdict, tail};
use crate::pull_failures::{self, PullFailure};
use crate::release::{self, HelmRelease, HookPhase, ReleaseStatus};
use crate::session::Session;

/// The release-status gate for one release: its latest revision is `deployed`.
pub fn release_status(
    name: &str,
    namespace: &str,
    context: &str,
    release: Option<&HelmRelease>,
) -> Check {
    let check = |verdict, found: String, remediation: String| Check {
        verdict,
        finding: Finding::new(
            format!("release {namespace}/{name}"),
            "status deployed",
            found,
            remediation,
        ),
        warnings: Vec::new(),
    };
    let inspect = format!(
        "inspect it with `{}` and `{}`",
        helm_command(context, &format!("status {name} -n {namespace}")),
        helm_command(context, &format!("history {name} -n {namespace}"))
    );
    match release {
        None => check(
            Verdict::Failed,
            "no Helm release record".into(),
            format!(
                "release `{name}` was never installed in namespace `{namespace}`: run its layer's sync (`cargo xtask sync <layer>`)"
            ),
        ),
        Some(r) if r.info.status == ReleaseStatus::Deployed => {
            check(Verdict::Passed, format!("revision {} deployed", r.version), String::new())
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
                format!(
                    "{inspect}, fix the cause, then sync its layer again (release `{name}` in namespace `{namespace}` is `{}`)",
                    r.info.status
                ),
            )
        }
    }
}

/// Read the release and judge its status.
pub async fn release_deployed(
    client: &kube::Client,
    name: &str,
    namespace: &str,
    context: &str,
) -> Result<Check> {
    let release = release::read(client, namespace, name).await?;
    Ok(release_status(name, namespace, context, release.as_ref()))
}

/// The last lines a failed test hook's pod printed, read by us (failed test pods are
/// kept), so the verdict never depends on `helm test --logs` racing hook deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookLog {
    pub hook: String,
    pub tail: String,
}

/// The verdict of a gate release after `helm test`: from its test hooks' recorded
/// `last_run.phase` (helm records it even when it then fails to read logs), with
/// helm's exit status only catching a failure before any hook ran.
pub fn gate_verdict(
    name: &str,
    namespace: &str,
    context: &str,
    release: Option<&HelmRelease>,
    helm_succeeded: bool,
    helm_output: &str,
    failed_logs: &[HookLog],
) -> Check {
    let helm_test = helm_command(context, &format!("test {name} -n {namespace} --logs"));
    let mut check = Check {
        verdict: Verdict::Passed,
        finding: Finding::new(
            format!("gate {namespace}/{name}"),
            "every test hook Succeeded",
            "",
            "",
        ),
        warnings: Vec::new(),
    };
    let Some(release) = release else {
        check.verdict = Verdict::Failed;
        check.finding.found = "no Helm release record".into();
        check.finding.remediation = format!(
            "check its layer's sync output in the log: gate release `{name}` is not installed in namespace `{namespace}`"
        );
        return check;
    };
    let hooks: Vec<_> = release.test_hooks().collect();
    let phases: Vec<String> =
        hooks.iter().map(|h| format!("{} {}", h.name, h.last_run.phase)).collect();
    check.finding.found = if hooks.is_empty() {
        "0 test hooks".into()
    } else {
        format!("{} test hook(s): {}", hooks.len(), phases.join(", "))
    };
    if let Some(first) = hooks.iter().find(|h| h.last_run.phase != HookPhase::Succeeded) {
        let hook = &first.name;
        let (logs, describe) = if first.kind.eq_ignore_ascii_case("job") {
            (format!("job/{hook}"), format!("job -n {namespace} {hook}"))
        } else {
            (hook.clone(), format!("pod -n {namespace} {hook}"))
        };
        let logs = kubectl_command(context, &format!("logs -n {namespace} {logs}"));
        let describe = kubectl_command(context, &format!("describe {describe}"));
        if let Some(log) = failed_logs.iter().find(|l| &l.hook == hook) {
            check
                .finding
                .found
                .push_str(&format!("; `{hook}` printed: {}", log.tail.replace('\n', " / ")));
        }
        check.verdict = Verdict::Failed;
        check.finding.remediation = format!(
            "inspect test hook `{hook}` of release `{name}` (namespace `{namespace}`, phase {}) with `{logs}` and `{describe}`, fix the cause, then re-run it with `{helm_test}`",
            first.last_run.phase
        );
        return check;
    }
    // Every hook's record says Succeeded: whatever helm said after (helm 3.x cannot read
    // the logs of the pods it already deleted) does not change that.
    if !hooks.is_empty() {
        return check;
    }
    if helm_succeeded {
        check.verdict = Verdict::Warned;
        check.warnings.push(format!("gate `{name}` has 0 test hooks: nothing was tested"));
        return check;
    }
    check.verdict = Verdict::Failed;
    check.finding.found = format!(
        "{}; `helm test` failed: {}",
        check.finding.found,
        tail(helm_output, 5).replace('\n', " / ")
    );
    check.finding.remediation =
        format!("run `{helm_test}` to see why it failed before its test hooks could be judged");
    check
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
    session: &Session,
    client: &kube::Client,
    target: &GateTarget<'_>,
) -> Result<Check> {
    let (name, namespace) = (target.release, target.namespace);
    let before = release::read(client, namespace, name).await?;
    if let Some(before) = &before {
        delete_stale_test_resources(session, client, target.tag, namespace, before).await?;
    }
    let hooks: Vec<String> =
        before.iter().flat_map(|r| r.test_hooks()).map(|h| h.name.clone()).collect();
    // No `--logs`: helm 3.x/4.0 delete hook-succeeded pods before reading them. The
    // verdict is the release's record; failed pods are kept, and we read those ourselves.
    let cmd = Cmd::new(target.tag, "helm", target.timeout)
        .args(["test", name, "-n", namespace, "--kube-context", target.kube_context, "--timeout"])
        .arg(format!("{}s", target.timeout.as_secs()))
        .env("HELM_KUBECONTEXT", target.kube_context);
    // While helm waits, a test Pod that cannot pull its image for good ends the gate.
    let output = tokio::select! {
        output = exec::run(session, &cmd) => output?,
        failure = unpullable_hook_image(session, client, namespace, &hooks) => {
            let failure = failure?;
            let check = image_gate_failure(name, namespace, target.kube_context, &failure);
            session.line(target.tag, &check.finding.to_string());
            return Ok(check);
        }
    };
    let after = release::read(client, namespace, name).await?;
    let mut failed_logs = Vec::new();
    for hook in after.iter().flat_map(|r| r.test_hooks()) {
        if hook.last_run.phase == HookPhase::Succeeded || !hook.kind.eq_ignore_ascii_case("pod") {
            continue;
        }
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        // What the pod was given as environment is redacted from its log.
        if let Ok(pod) = pods.get(&hook.name).await {
            learn_pod_secrets(session, client, namespace, pod.spec.as_ref()).await;
        }
        let params = LogParams { tail_lines: Some(20), ..LogParams::default() };
        if let Ok(text) = pods.logs(&hook.name, &params).await {
            // One event for the whole log: a key printed over several lines is redacted whole.
            let lines: Vec<String> = text.lines().map(|l| format!("{}: {l}", hook.name)).collect();
            session.line(target.tag, &lines.join("\n"));
            failed_logs.push(HookLog { hook: hook.name.clone(), tail: tail(&text, 3) });
        }
    }
    let text = format!("{}\n{}", output.stdout, output.stderr);
    let context = target.kube_context;
    Ok(gate_verdict(
        name,
        namespace,
        context,
        after.as_ref(),
        output.success(),
        &text,
        &failed_logs,
    ))
}

/// Polls the test hooks' Pods (a Pod hook by name, a Job hook's Pods by `job-name`)
/// until one cannot pull an image for good; API errors only skip a poll.
async fn unpullable_hook_image(
    session: &Session,
    client: &kube::Client,
    namespace: &str,
    hooks: &[String],
) -> Result<PullFailure> {
    let ours = |pod: &Pod| {
        let job = pod.labels().get("job-name");
        hooks.iter().any(|h| *h == pod.name_any() || job == Some(h))
    };
    loop {
        session.cancel.sleep(Duration::from_secs(2)).await?;
        if let Ok(failures) = pull_failures::find(client, namespace, ours).await
            && let Some(failure) = failures.into_iter().find(PullFailure::permanent)
        {
            return Ok(failure);
        }
    }
}

/// A gate stopped because a test Pod cannot pull its image.
pub fn image_gate_failure(
    name: &str,
    namespace: &str,
    context: &str,
    failure: &PullFailure,
) -> Check {
    let describe =
        kubectl_command(context, &format!("describe pod -n {namespace} {}", failure.pod));
    Check {
        verdict: Verdict::Failed,
        finding: Finding::new(
            format!("gate {namespace}/{name}"),
            "every test hook Succeeded",
            format!(
                "test hook {}; waiting cannot help, `helm test` was stopped",
                failure.describe()
            ),
            format!(
                "{}; `{describe}` shows the kubelet's Events; then run again",
                pull_failures::PULLABLE,
            ),
        ),
        warnings: Vec::new(),
    }
}

/// Pods and Jobs named after the release's test hooks (an earlier failed run keeps its
/// pod for `kubectl logs`; a new run must not trip over it).
async fn delete_stale_test_resources(
    session: &Session,
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
            Ok(()) => session
                .line(tag, &format!("deleted stale test {} {namespace}/{}", hook.kind, hook.name)),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                return Err(crate::error::Error::from(e).context(format!(
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
            info: Info { status: ReleaseStatus::Deployed, ..Info::default() },
            hooks: phases
                .iter()
                .enumerate()
                .map(|(i, phase)| Hook {
                    name: format!("auth-smoke-check{i}"),
                    kind: "Pod".into(),
                    events: vec!["test".into()],
                    last_run: LastRun { phase: HookPhase::parse(phase), ..LastRun::default() },
                })
                .collect(),
        }
    }

    fn verdict(phases: &[&str], helm_ok: bool, out: &str) -> Check {
        gate_verdict(
            "auth-smoke",
            "ameide",
            "k3d-ameide",
            Some(&release(phases)),
            helm_ok,
            out,
            &[],
        )
    }

    #[test]
    fn all_succeeded_passes_whatever_helm_said_about_logs() {
        let r = verdict(&["Succeeded", "Succeeded"], true, "");
        assert_eq!(r.verdict, Verdict::Passed);
        assert!(r.finding.found.contains("2 test hook(s)"), "{}", r.finding.found);
        assert!(r.finding.remediation.is_empty() && r.warnings.is_empty());
        // Helm 3.x deleting a hook-succeeded pod before reading it is no concern of ours.
        let out = "Error: unable to get pod logs for auth-smoke-check0: pods not found";
        assert_eq!(verdict(&["Succeeded"], false, out).verdict, Verdict::Passed);
    }

    #[test]
    fn failed_hook_fails_naming_hook_namespace_commands_and_its_log() {
        let logs = [HookLog { hook: "auth-smoke-check1".into(), tail: "wget: bad address".into() }];
        let r = gate_verdict(
            "auth-smoke",
            "ameide",
            "k3d-ameide",
            Some(&release(&["Succeeded", "Failed"])),
            false,
            "Error: 1 test failed",
            &logs,
        );
        assert_eq!(r.verdict, Verdict::Failed);
        assert!(r.finding.found.contains("`auth-smoke-check1` printed: wget: bad address"));
        let fix = r.finding.remediation;
        assert!(fix.contains("`auth-smoke-check1`") && fix.contains("namespace `ameide`"), "{fix}");
        // Each command names the context the gate ran in.
        assert!(fix.contains("`kubectl logs -n ameide auth-smoke-check1 --context k3d-ameide`"));
        assert!(
            fix.contains("`kubectl describe pod -n ameide auth-smoke-check1 --context k3d-ameide`"),
            "{fix}"
        );
        assert!(
            fix.contains("`helm test auth-smoke -n ameide --logs --kube-context k3d-ameide`"),
            "{fix}"
        );
    }

    #[test]
    fn helm_failing_before_the_hooks_fails_and_no_hooks_warns() {
        let r = verdict(&["Succeeded"], false, "Error: timed out");
        assert_eq!(r.verdict, Verdict::Passed, "every hook's record says Succeeded");
        let r = verdict(&[], false, "Error: timed out waiting for the condition");
        assert_eq!(r.verdict, Verdict::Failed);
        assert!(r.finding.found.contains("timed out"));
        let r = verdict(&[], true, "");
        assert_eq!((r.verdict, r.finding.found.as_str()), (Verdict::Warned, "0 test hooks"));
        let r = verdict(&[""], true, "");
        assert_eq!(r.verdict, Verdict::Failed, "a hook that never ran is not a pass");
        assert_eq!(gate_verdict("x", "ns", "c", None, true, "", &[]).verdict, Verdict::Failed);
    }

    #[test]
    fn release_status_names_the_release() {
        let mut r = release(&[]);
        assert_eq!(
            release_status("auth-smoke", "ameide", "k3d-ameide", Some(&r)).verdict,
            Verdict::Passed
        );
        r.info.status = ReleaseStatus::PendingUpgrade;
        let check = release_status("auth-smoke", "ameide", "k3d-ameide", Some(&r));
        assert_eq!(check.verdict, Verdict::Failed);
        assert!(check.finding.found.contains("`pending-upgrade`"));
        assert!(check.finding.remediation.starts_with(
            "inspect it with `helm status auth-smoke -n ameide --kube-context k3d-ameide`"
        ));
        assert!(check.finding.remediation.contains("release `auth-smoke` in namespace `ameide`"));
        assert_eq!(release_status("a", "b", "c", None).verdict, Verdict::Failed);
    }
}
