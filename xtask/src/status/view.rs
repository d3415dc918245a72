//! The status result: the cluster, one row per layer, one per other check, and every
//! problem as a finding with what to do; as tables or one JSON object.

use serde::Serialize;

use super::judge::{self, LayerState, LayerView};
use super::observe::{ClusterFacts, Facts};
use crate::cluster::Action;
use crate::config::Context;
use crate::events::Rendered;
use crate::outcome::{Document, Finding, Status, Verdict, WithStatus};
use crate::secrets::VaultBootstrapState;
use crate::table;
use crate::tilt::Probe;

/// The cluster or one of the other checks: its state word and a detail line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Item {
    pub name: String,
    /// `up`, `stopped`, `drifted`, `absent`, `unknown`, `not_managed` (cluster);
    /// `ok`, `warned`, `failed`, `pending`, `unknown`, `ready`, `not_ready`, `down` (checks).
    pub state: String,
    pub detail: String,
}

/// The version of the JSON shape (`schemas/status.schema.json`).
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct StatusView {
    pub context: String,
    pub cluster: Item,
    pub layers: Vec<LayerView>,
    pub checks: Vec<Item>,
    pub problems: Vec<Finding>,
    pub warnings: Vec<String>,
    pub duration_ms: u64,
}

fn item(name: &str, state: &str, detail: impl Into<String>) -> Item {
    Item { name: name.into(), state: state.into(), detail: detail.into() }
}

/// What the facts mean, every problem with what to do.
pub fn judge(ctx: &Context, layer_names: &[String], facts: Facts) -> StatusView {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let context = ctx.kube_context.clone();
    let name = &ctx.settings.cluster;
    let start = "run `cargo xtask bootstrap` (it creates or starts the cluster and converges it)";
    let cluster_problem = |found: &str, remediation: &str| {
        Finding::new(format!("cluster {name}"), "up and matching its config", found, remediation)
    };
    let mut cluster = match &facts.cluster {
        ClusterFacts::NotManaged => {
            item("cluster", "not_managed", format!("context {context} is not the k3d cluster's"))
        }
        ClusterFacts::Unreachable(why) => {
            problems.push(cluster_problem(
                why,
                "start Docker (or set DOCKER_HOST), then run `cargo xtask status` again",
            ));
            item("cluster", "unknown", why.clone())
        }
        ClusterFacts::Decided(Action::Noop) => {
            item("cluster", "up", format!("{name}: running, matches its config"))
        }
        ClusterFacts::Decided(Action::Create) => {
            problems.push(cluster_problem("no cluster", start));
            item("cluster", "absent", format!("no k3d cluster `{name}`"))
        }
        ClusterFacts::Decided(Action::Start { reason }) => {
            problems.push(cluster_problem(reason, start));
            item("cluster", "stopped", reason.clone())
        }
        ClusterFacts::Decided(Action::Recreate { reason }) => {
            problems.push(cluster_problem(reason, "run `cargo xtask bootstrap` (it recreates the cluster from its config and converges it)"));
            item("cluster", "drifted", reason.clone())
        }
    };
    match &facts.api {
        Some(Ok(())) => cluster.detail.push_str(&format!("; API ready through {context}")),
        Some(Err(why)) => {
            problems.push(Finding::new(
                format!("the API of context {context}"),
                "/readyz ok",
                why,
                "look at the cluster's containers (`docker ps -a --filter label=app=k3d`), then run `cargo xtask bootstrap`",
            ));
            cluster.state = "unknown".into();
            cluster.detail.push_str(&format!("; API not ready: {why}"));
        }
        None => {}
    }
    let not_read = match (&facts.cluster, &facts.api) {
        (_, Some(Err(_))) => "not read: the API does not answer".to_owned(),
        _ => format!("not read: the cluster is {}", cluster.state.replace('_', " ")),
    };
    let layers: Vec<LayerView> = match facts.layers {
        Some(Ok(layers)) => layers.iter().map(|l| judge::layer(l, &context)).collect(),
        Some(Err(why)) => {
            problems.push(Finding::new(
                "layers",
                "their Helm records readable",
                &why,
                "check the API and your access to it",
            ));
            layer_names.iter().map(|n| LayerView::unknown(n, &format!("not read: {why}"))).collect()
        }
        None => layer_names.iter().map(|n| LayerView::unknown(n, &not_read)).collect(),
    };
    for layer in &layers {
        problems.extend(layer.problem.clone());
        for gate in layer.gates.iter().filter(|g| g.verdict == judge::GateState::NoHooks) {
            warnings.push(format!(
                "gate {}/{} has 0 test hooks: nothing is tested",
                gate.namespace, gate.release
            ));
        }
    }
    let mut checks = Vec::new();
    let unknown = |name: &str, why: &str| item(name, "unknown", why);
    match facts.vault {
        Some(Ok(VaultBootstrapState::Succeeded { job })) => {
            let namespace = &ctx.settings.secrets.vault_namespace;
            checks.push(item("vault-bootstrap", "ok", format!("Job {namespace}/{job} succeeded")))
        }
        Some(Ok(VaultBootstrapState::Pending(finding))) => {
            checks.push(item("vault-bootstrap", "pending", finding.found.clone()));
            problems.push(finding);
        }
        Some(Ok(VaultBootstrapState::Failed(finding))) => {
            checks.push(item("vault-bootstrap", "failed", finding.found.clone()));
            problems.push(finding);
        }
        Some(Err(why)) => checks.push(unknown("vault-bootstrap", &why)),
        None => checks.push(unknown("vault-bootstrap", &not_read)),
    }
    for (name, check) in
        [("db-migrations", facts.db_migrations), ("external-secrets", facts.external_secrets)]
    {
        match check {
            Some(Ok(check)) => {
                let state = match check.verdict {
                    Verdict::Passed => "ok",
                    Verdict::Warned => "warned",
                    Verdict::Failed => "failed",
                };
                checks.push(item(name, state, check.finding.found.clone()));
                warnings.extend(check.warnings.iter().map(|w| format!("{name}: {w}")));
                if check.verdict == Verdict::Failed {
                    problems.push(check.finding);
                }
            }
            Some(Err(why)) => checks.push(unknown(name, &why)),
            None => checks.push(unknown(name, &not_read)),
        }
    }
    if let Some(probe) = facts.tilt {
        let port = ctx.settings.tilt_port;
        let url = format!("http://localhost:{port}/");
        let state = match &probe {
            Probe::Tilt(s) if s.ready => "ready",
            Probe::Down(_) => "down",
            _ => "not_ready",
        };
        checks.push(item("tilt", state, format!("{} ({url})", probe.describe(port))));
        if state != "ready" {
            let remediation = match probe.load_error() {
                Some(_) => format!("fix the Tiltfile (Tilt's error is in its UI at {url}); Tilt reloads it when it is saved"),
                None => "run `cargo xtask tilt` (or `cargo xtask status --no-tilt` if you run without Tilt)".into(),
            };
            problems.push(Finding::new(
                "Tilt",
                format!("(Tiltfile) Ready on {url}"),
                probe.describe(port),
                remediation,
            ));
        }
    }
    StatusView { context, cluster, layers, checks, problems, warnings, duration_ms: 0 }
}

impl StatusView {
    fn status(&self) -> Status {
        if self.problems.is_empty() { Status::Ok } else { Status::Failed }
    }
}

fn word<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
        .unwrap_or_default()
}

impl Rendered for StatusView {
    fn human(&self) -> String {
        let mut out = format!(
            "cluster: {} ({})\n\n",
            self.cluster.state.replace('_', " "),
            self.cluster.detail
        );
        let rows: Vec<Vec<String>> = self
            .layers
            .iter()
            .map(|l| vec![l.name.clone(), word(&l.state), l.gate_word().into(), l.reason.clone()])
            .collect();
        out.push_str(&table::render(&["LAYER", "STATE", "GATE", "DETAIL"], &rows));
        let rows: Vec<Vec<String>> = self
            .checks
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    c.state.replace('_', " "),
                    c.detail.lines().next().unwrap_or_default().to_owned(),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&table::render(&["CHECK", "STATE", "DETAIL"], &rows));
        for warning in &self.warnings {
            out.push_str(&format!("warning: {warning}\n"));
        }
        for problem in &self.problems {
            out.push_str(&format!("\nproblem: {problem}\n"));
            if !problem.remediation.is_empty() {
                out.push_str(&format!("what to do: {}\n", problem.remediation));
            }
        }
        let secs = self.duration_ms as f64 / 1000.0;
        let converged = self.layers.iter().filter(|l| l.state == LayerState::Converged).count();
        out.push_str(&match self.problems.len() {
            0 => format!(
                "\nall well: {converged} of {} layer(s) converged ({secs:.2}s)\n",
                self.layers.len()
            ),
            n => format!(
                "\nnot well: {n} problem(s); {converged} of {} layer(s) converged ({secs:.2}s)\n",
                self.layers.len()
            ),
        });
        out
    }

    fn json(&self) -> serde_json::Value {
        Document::new(SCHEMA_VERSION, WithStatus { status: self.status(), body: self }).json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Check;

    fn ctx() -> Context {
        let settings = crate::config::Settings {
            cluster: "ameide".into(),
            tilt_port: 10350,
            ..Default::default()
        };
        Context::for_tests(settings)
    }

    fn passed(found: &str) -> Check {
        Check {
            verdict: Verdict::Passed,
            finding: Finding::new("x", "y", found, ""),
            warnings: vec![],
        }
    }

    fn converged(name: &str) -> judge::LayerFacts {
        judge::LayerFacts {
            name: name.into(),
            digest: "d".into(),
            recorded: Some("d".into()),
            releases: vec![],
            off_present: vec![],
        }
    }

    fn healthy() -> Facts {
        Facts {
            cluster: ClusterFacts::Decided(Action::Noop),
            api: Some(Ok(())),
            layers: Some(Ok(vec![converged("10-bootstrap")])),
            vault: Some(Ok(VaultBootstrapState::Succeeded { job: "j-1".into() })),
            db_migrations: Some(Ok(passed("url, user, password"))),
            external_secrets: Some(Ok(Check {
                verdict: Verdict::Warned,
                finding: Finding::new("ExternalSecrets", "Ready", "0 ExternalSecrets", ""),
                warnings: vec!["0 ExternalSecrets checked".into()],
            })),
            tilt: None,
        }
    }

    #[test]
    fn a_healthy_platform_is_all_well_with_its_warnings() {
        let view = judge(&ctx(), &["10-bootstrap".into()], healthy());
        assert!(view.problems.is_empty(), "{:?}", view.problems);
        assert_eq!(view.status(), Status::Ok);
        assert_eq!(view.warnings, ["external-secrets: 0 ExternalSecrets checked"]);
        let text = view.human();
        assert!(
            text.starts_with(
                "cluster: up (ameide: running, matches its config; API ready through k3d-ameide)"
            ),
            "{text}"
        );
        assert!(text.contains("10-bootstrap  converged  none"), "{text}");
        assert!(text.contains("\nall well: 1 of 1 layer(s) converged"), "{text}");
        let json = view.json();
        assert_eq!(json["status"], "ok");
        assert_eq!(json["layers"][0]["state"], "converged");
        assert_eq!(
            json["checks"][0],
            serde_json::json!({"name": "vault-bootstrap", "state": "ok", "detail": "Job vault/j-1 succeeded"})
        );
    }

    #[test]
    fn a_stopped_cluster_is_a_problem_and_nothing_behind_it_is_read() {
        let facts = Facts {
            cluster: ClusterFacts::Decided(Action::Start {
                reason: "stopped containers: k3d-ameide-server-0".into(),
            }),
            api: None,
            layers: None,
            vault: None,
            db_migrations: None,
            external_secrets: None,
            tilt: Some(Probe::Down("connection refused".into())),
        };
        let view = judge(&ctx(), &["10-bootstrap".into()], facts);
        assert_eq!(view.cluster.state, "stopped");
        assert_eq!(view.layers[0].state, LayerState::Unknown);
        assert_eq!(view.layers[0].reason, "not read: the cluster is stopped");
        let subjects: Vec<&str> = view.problems.iter().map(|p| p.subject.as_str()).collect();
        assert_eq!(subjects, ["cluster ameide", "Tilt"]);
        assert!(view.problems[0].remediation.contains("cargo xtask bootstrap"));
        assert!(view.problems[1].remediation.contains("cargo xtask tilt"));
        assert!(view.human().contains("\nnot well: 2 problem(s); 0 of 1 layer(s) converged"));
        assert_eq!(view.json()["status"], "failed");
    }

    #[test]
    fn a_drifted_layer_and_a_pending_vault_bootstrap_are_problems() {
        let mut facts = healthy();
        let mut layer = converged("24-auth");
        layer.recorded = None;
        facts.layers = Some(Ok(vec![layer]));
        facts.vault = Some(Ok(VaultBootstrapState::Pending(Finding::new(
            "Vault bootstrap",
            "its Job succeeded",
            "no Job yet",
            "wait",
        ))));
        let view = judge(&ctx(), &["24-auth".into()], facts);
        let subjects: Vec<&str> = view.problems.iter().map(|p| p.subject.as_str()).collect();
        assert_eq!(subjects, ["layer 24-auth", "Vault bootstrap"]);
        assert_eq!(view.checks[0].state, "pending");
    }
}
