//! What the status facts mean, decided by pure functions (unit-tested without a
//! cluster): each layer converged / drifted / failed / not installed, each gate's
//! recorded verdict, and every problem as one finding with what to do.

use serde::Serialize;

use crate::checks;
use crate::outcome::{Finding, Verdict};
use crate::release::{HelmRelease, HookPhase, ReleaseStatus};

/// One release of a layer, as Helm's records show it (`None`: never installed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseFact {
    pub name: String,
    pub namespace: String,
    pub gate: bool,
    pub release: Option<HelmRelease>,
}

/// What was read about one layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerFacts {
    pub name: String,
    /// The digest of today's inputs, and the one recorded after the last green run.
    pub digest: String,
    pub recorded: Option<String>,
    /// The releases that should be installed (bundles that are off left out).
    pub releases: Vec<ReleaseFact>,
    /// Releases of bundles that are off which Helm still has.
    pub off_present: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LayerState {
    /// Inputs as recorded after its last green run, every release deployed, every
    /// gate's last test passed.
    Converged,
    /// Healthy releases, but not what the next bootstrap would leave (inputs changed,
    /// no record, a release missing, a bundle off but installed, a gate not run).
    Drifted,
    /// A release failed or pending, or a gate's last test failed.
    Failed,
    NotInstalled,
    /// Not read (the cluster is not up).
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GateState {
    Passed,
    Failed,
    /// Its test hooks have not run since the release was last synced (or are running).
    NotRun,
    /// The gate release has no test hooks: nothing is tested.
    NoHooks,
    NotInstalled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Hook {
    pub name: String,
    pub phase: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub completed_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct GateView {
    pub release: String,
    pub namespace: String,
    pub verdict: GateState,
    pub hooks: Vec<Hook>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ReleaseView {
    pub name: String,
    pub namespace: String,
    /// Helm's word (`deployed`, `failed`, `pending-upgrade` ...) or `not installed`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct LayerView {
    pub name: String,
    pub state: LayerState,
    /// Why, in a few words.
    pub reason: String,
    pub releases: Vec<ReleaseView>,
    pub gates: Vec<GateView>,
    /// What to do, when it is not converged.
    #[serde(skip)]
    pub problem: Option<Finding>,
}

impl LayerView {
    /// A layer that could not be read: `why`.
    pub fn unknown(name: &str, why: &str) -> LayerView {
        LayerView {
            name: name.to_owned(),
            state: LayerState::Unknown,
            reason: why.to_owned(),
            releases: Vec::new(),
            gates: Vec::new(),
            problem: None,
        }
    }

    /// The gate column: the worst gate verdict, or `none`.
    pub fn gate_word(&self) -> &'static str {
        let has = |s| self.gates.iter().any(|g| g.verdict == s);
        match () {
            _ if self.gates.is_empty() => "none",
            _ if has(GateState::Failed) => "failed",
            _ if has(GateState::NotInstalled) => "not installed",
            _ if has(GateState::NotRun) => "not run",
            _ if has(GateState::NoHooks) => "no hooks",
            _ => "passed",
        }
    }
}

/// A gate's recorded verdict: its test hooks' `last_run.phase` (what the bootstrap's
/// gate judges after `helm test`), with the finding `checks::gate_verdict` words.
pub fn gate(fact: &ReleaseFact, context: &str) -> (GateView, Option<Finding>) {
    let (name, namespace) = (&fact.name, &fact.namespace);
    let check =
        checks::gate_verdict(name, namespace, context, fact.release.as_ref(), true, "", &[]);
    let hooks: Vec<Hook> = fact
        .release
        .iter()
        .flat_map(HelmRelease::test_hooks)
        .map(|h| Hook {
            name: h.name.clone(),
            phase: h.last_run.phase.to_string(),
            completed_at: h.last_run.completed_at.clone(),
        })
        .collect();
    let phases: Vec<&HookPhase> =
        fact.release.iter().flat_map(HelmRelease::test_hooks).map(|h| &h.last_run.phase).collect();
    let verdict = match &fact.release {
        None => GateState::NotInstalled,
        Some(_) if phases.is_empty() => GateState::NoHooks,
        Some(_)
            if phases.iter().any(|p| {
                !matches!(p, HookPhase::Succeeded | HookPhase::NotRun | HookPhase::Running)
            }) =>
        {
            GateState::Failed
        }
        Some(_) if phases.iter().any(|p| matches!(p, HookPhase::NotRun | HookPhase::Running)) => {
            GateState::NotRun
        }
        Some(_) => GateState::Passed,
    };
    let view =
        GateView { release: fact.name.clone(), namespace: fact.namespace.clone(), verdict, hooks };
    let finding = (check.verdict == Verdict::Failed).then_some(check.finding);
    (view, finding)
}

/// One layer's state from what was read. The first reason found wins, worst first.
pub fn layer(facts: &LayerFacts, context: &str) -> LayerView {
    let releases: Vec<ReleaseView> = facts
        .releases
        .iter()
        .map(|r| ReleaseView {
            name: r.name.clone(),
            namespace: r.namespace.clone(),
            status: r
                .release
                .as_ref()
                .map_or("not installed".into(), |h| h.info.status.to_string()),
            revision: r.release.as_ref().map(|h| h.version),
        })
        .collect();
    let gates: Vec<(GateView, Option<Finding>)> =
        facts.releases.iter().filter(|r| r.gate).map(|r| gate(r, context)).collect();
    let name = &facts.name;
    let resync = |found: String| {
        Finding::new(
            format!("layer {name}"),
            "converged (inputs as at its last green run, releases deployed, gates passed)",
            found,
            format!("run `cargo xtask bootstrap` (or `cargo xtask sync {name}`)"),
        )
    };
    let missing: Vec<&ReleaseFact> =
        facts.releases.iter().filter(|r| r.release.is_none()).collect();
    let unhealthy = facts
        .releases
        .iter()
        .find(|r| r.release.as_ref().is_some_and(|h| h.info.status != ReleaseStatus::Deployed));
    let failed_gate = gates.iter().find(|(g, _)| g.verdict == GateState::Failed);
    let not_run = gates.iter().find(|(g, _)| g.verdict == GateState::NotRun);
    let (state, reason, problem) = if !facts.releases.is_empty()
        && missing.len() == facts.releases.len()
    {
        let found = "no release installed".to_owned();
        (LayerState::NotInstalled, found.clone(), Some(resync(found)))
    } else if let Some(release) = unhealthy {
        let check = checks::release_status(
            &release.name,
            &release.namespace,
            context,
            release.release.as_ref(),
        );
        (
            LayerState::Failed,
            format!("release {}: {}", release.name, check.finding.found),
            Some(check.finding),
        )
    } else if let Some((gate, finding)) = failed_gate {
        let found = finding.as_ref().map_or(String::new(), |f| f.found.clone());
        let reason = format!("gate {}/{} failed: {found}", gate.namespace, gate.release);
        (LayerState::Failed, reason, finding.clone())
    } else if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|r| r.name.as_str()).collect();
        let found = format!("not installed: {}", names.join(", "));
        (LayerState::Drifted, found.clone(), Some(resync(found)))
    } else if !facts.off_present.is_empty() {
        let found = format!("installed though its bundle is off: {}", facts.off_present.join(", "));
        (LayerState::Drifted, found.clone(), Some(resync(found)))
    } else if facts.recorded.is_none() {
        let found =
            "no green run recorded (never green, or its last sync did not finish green)".to_owned();
        (LayerState::Drifted, found.clone(), Some(resync(found)))
    } else if facts.recorded.as_deref() != Some(facts.digest.as_str()) {
        let found = "its inputs changed since its last green run".to_owned();
        (LayerState::Drifted, found.clone(), Some(resync(found)))
    } else if let Some((gate, _)) = not_run {
        let found =
            format!("gate {}/{} has not run since its last sync", gate.namespace, gate.release);
        (LayerState::Drifted, found.clone(), Some(resync(found)))
    } else {
        let passed = gates.len();
        let reason =
            format!("{} release(s) deployed, {passed} gate(s) passed", facts.releases.len());
        (LayerState::Converged, reason, None)
    };
    LayerView {
        name: name.clone(),
        state,
        reason,
        releases,
        gates: gates.into_iter().map(|(g, _)| g).collect(),
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTEXT: &str = "k3d-ameide";
    use crate::release::{Hook as HelmHook, Info, LastRun};

    fn helm(name: &str, status: &str, hooks: &[(&str, &str)]) -> HelmRelease {
        HelmRelease {
            name: name.into(),
            namespace: "ameide".into(),
            version: 2,
            info: Info { status: ReleaseStatus::parse(status), description: String::new() },
            hooks: hooks
                .iter()
                .map(|(hook, phase)| HelmHook {
                    name: (*hook).into(),
                    kind: "Pod".into(),
                    events: vec!["test".into()],
                    last_run: LastRun {
                        started_at: "a".into(),
                        completed_at: "b".into(),
                        phase: HookPhase::parse(phase),
                    },
                })
                .collect(),
        }
    }

    fn facts(gate_phase: &str) -> LayerFacts {
        LayerFacts {
            name: "24-auth".into(),
            digest: "d1".into(),
            recorded: Some("d1".into()),
            releases: vec![
                ReleaseFact {
                    name: "keycloak".into(),
                    namespace: "ameide".into(),
                    gate: false,
                    release: Some(helm("keycloak", "deployed", &[])),
                },
                ReleaseFact {
                    name: "auth-smoke".into(),
                    namespace: "ameide".into(),
                    gate: true,
                    release: Some(helm(
                        "auth-smoke",
                        "deployed",
                        &[("auth-smoke-keycloak", gate_phase)],
                    )),
                },
            ],
            off_present: Vec::new(),
        }
    }

    #[test]
    fn recorded_inputs_deployed_releases_and_passed_gates_are_converged() {
        let view = layer(&facts("Succeeded"), CONTEXT);
        assert_eq!(view.state, LayerState::Converged, "{view:?}");
        assert_eq!(view.reason, "2 release(s) deployed, 1 gate(s) passed");
        assert_eq!(view.gate_word(), "passed");
        assert_eq!(view.gates[0].hooks[0].phase, "Succeeded");
        assert!(view.problem.is_none());
    }

    #[test]
    fn a_failed_gate_fails_the_layer_naming_the_gate_and_what_to_do() {
        let view = layer(&facts("Failed"), CONTEXT);
        assert_eq!(view.state, LayerState::Failed);
        assert!(
            view.reason.starts_with(
                "gate ameide/auth-smoke failed: 1 test hook(s): auth-smoke-keycloak Failed"
            ),
            "{}",
            view.reason
        );
        let problem = view.problem.unwrap();
        assert_eq!(problem.subject, "gate ameide/auth-smoke");
        assert!(
            problem
                .remediation
                .contains("`kubectl logs -n ameide auth-smoke-keycloak --context k3d-ameide`"),
            "{problem:?}"
        );
    }

    #[test]
    fn a_failed_or_pending_release_fails_the_layer_first() {
        let mut failed = facts("Failed");
        failed.releases[0].release = Some(helm("keycloak", "pending-upgrade", &[]));
        let view = layer(&failed, CONTEXT);
        assert_eq!(view.state, LayerState::Failed);
        assert!(
            view.reason.starts_with("release keycloak: revision 2 is `pending-upgrade`"),
            "{}",
            view.reason
        );
        assert_eq!(view.releases[0].status, "pending-upgrade");
    }

    #[test]
    fn drift_is_named_by_its_cause() {
        let reason = |change: fn(&mut LayerFacts)| {
            let mut f = facts("Succeeded");
            change(&mut f);
            let view = layer(&f, CONTEXT);
            assert_eq!(view.state, LayerState::Drifted, "{view:?}");
            assert!(
                view.problem.as_ref().unwrap().remediation.contains("cargo xtask sync 24-auth")
            );
            view.reason
        };
        assert_eq!(
            reason(|f| f.digest = "d2".into()),
            "its inputs changed since its last green run"
        );
        assert!(reason(|f| f.recorded = None).starts_with("no green run recorded"));
        assert_eq!(reason(|f| f.releases[0].release = None), "not installed: keycloak");
        assert!(
            reason(|f| f.off_present = vec!["metrics (bundle observability)".into()])
                .contains("bundle is off")
        );
        let mut not_run = facts("");
        not_run.recorded = Some("d1".into());
        assert_eq!(
            layer(&not_run, CONTEXT).reason,
            "gate ameide/auth-smoke has not run since its last sync"
        );
        assert_eq!(layer(&not_run, CONTEXT).gate_word(), "not run");
    }

    #[test]
    fn nothing_installed_is_not_installed_and_a_gate_without_hooks_is_said() {
        let mut none = facts("Succeeded");
        for r in &mut none.releases {
            r.release = None;
        }
        let view = layer(&none, CONTEXT);
        assert_eq!((view.state, view.gate_word()), (LayerState::NotInstalled, "not installed"));
        assert_eq!(view.releases[1].status, "not installed");
        let mut hookless = facts("Succeeded");
        hookless.releases[1].release = Some(helm("auth-smoke", "deployed", &[]));
        let view = layer(&hookless, CONTEXT);
        assert_eq!((view.state, view.gate_word()), (LayerState::Converged, "no hooks"));
    }
}
