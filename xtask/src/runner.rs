//! The stage pipeline: run stages in order, each carrying out its part of a plan `P`
//! decided before any of them ran, and fold their reports into rows and the first
//! failure. A stage has no way to run without that plan: [`run`] takes it, and
//! [`Stage::apply`] is given it.
//!
//! A stage's failed check is a [`Report`] with a finding, not an error: the run stops
//! there with that finding. An error means "cannot go on" (the API is gone, a tool is
//! missing) or an interruption; it stops the run too, and its kind decides the exit
//! code. Later stages are listed as `skipped`, so the summary is always complete.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result, failed};
use crate::events::Event;
use crate::outcome::{Finding, Report, Status};
use crate::session::Session;

pub type StageFuture<'a> = Pin<Box<dyn Future<Output = Result<Report>> + 'a>>;

/// One stage of a run over the run's plan `P` and shared state `S` (what earlier
/// stages did).
pub trait Stage<S, P> {
    fn name(&self) -> &'static str;
    /// Carry out this stage's part of `plan`.
    fn apply<'a>(&'a mut self, plan: &'a P, state: &'a mut S) -> StageFuture<'a>;
    /// The layer the stage was working on when an error stopped it, if any.
    fn stopped_in(&self) -> Option<String> {
        None
    }
}

/// Whether a run applies its plan or only prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Apply,
    /// `--plan`: the plan printed, nothing applied.
    Plan,
}

/// One row of the summary's stage table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageRow {
    pub name: String,
    pub status: Status,
    pub duration: Duration,
    pub detail: String,
    pub warnings: Vec<String>,
}

/// The first failure of a run: where, and the finding (what to do included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub stage: String,
    /// The layer it happened in, when it happened in one.
    pub layer: Option<String>,
    pub finding: Finding,
}

/// What a whole run came to.
#[derive(Debug)]
pub struct RunOutcome {
    pub status: Status,
    pub rows: Vec<StageRow>,
    pub failure: Option<Failure>,
    /// What ends the process non-zero: the error that stopped the run, or a `Failed`
    /// error naming the failed stage.
    pub error: Option<Error>,
}

/// A remediation for an error that did not bring its own, by what kind it is.
pub type Remedy = fn(stage: &str, kind: ErrorKind) -> String;

/// Run `stages` in order, each on its part of `plan`, over `state`. The first failed
/// report or error stops the run.
pub async fn run<S, P>(
    stages: &mut [Box<dyn Stage<S, P> + '_>],
    plan: &P,
    state: &mut S,
    session: &Session,
    remedy: Remedy,
) -> RunOutcome {
    let mut rows = Vec::new();
    let mut failure = None;
    let mut error: Option<Error> = None;
    for stage in stages.iter_mut() {
        let name = stage.name();
        if error.is_some() {
            rows.push(StageRow {
                name: name.into(),
                status: Status::Skipped,
                duration: Duration::ZERO,
                detail: "not run: an earlier stage failed".into(),
                warnings: Vec::new(),
            });
            continue;
        }
        session.events.emit(Event::StageStarted { stage: name });
        let started = Instant::now();
        let result = match session.cancel.check() {
            Err(stopped) => Err(stopped),
            Ok(()) => stage.apply(plan, state).await,
        };
        let row = match result {
            Ok(report) => {
                if report.status == Status::Failed {
                    let finding = report.finding.clone().unwrap_or_else(|| {
                        Finding::new(
                            name,
                            "the stage to pass",
                            &report.detail,
                            remedy(name, ErrorKind::Failed),
                        )
                    });
                    let layer = report.layer.clone();
                    error = Some(failed(format!(
                        "stage {name} failed{}; see the summary",
                        layer.as_ref().map_or(String::new(), |l| format!(" in layer {l}"))
                    )));
                    failure = Some(Failure { stage: name.into(), layer, finding });
                }
                for warning in &report.warnings {
                    session.events.warning(name, warning);
                }
                StageRow {
                    name: name.into(),
                    status: report.status,
                    duration: started.elapsed(),
                    detail: report.detail,
                    warnings: report.warnings,
                }
            }
            Err(err) => {
                let status =
                    if err.kind().is_interrupted() { Status::Interrupted } else { Status::Failed };
                let remediation =
                    err.remediation().map_or_else(|| remedy(name, err.kind()), str::to_owned);
                let found = format!("{err:#}");
                let detail = found.lines().next().unwrap_or_default().to_owned();
                failure.get_or_insert(Failure {
                    stage: name.into(),
                    layer: stage.stopped_in(),
                    finding: Finding::new("", "", found, remediation),
                });
                error = Some(err);
                StageRow {
                    name: name.into(),
                    status,
                    duration: started.elapsed(),
                    detail,
                    warnings: Vec::new(),
                }
            }
        };
        session.events.emit(Event::StageFinished {
            stage: name,
            status: row.status,
            detail: &row.detail,
            duration: row.duration,
        });
        if let Some(f) = failure.as_ref().filter(|_| row.status != Status::Ok) {
            session.events.emit(Event::Finding { tag: name, finding: &f.finding });
        }
        rows.push(row);
    }
    let status = match &error {
        None => Status::Ok,
        Some(e) if e.kind().is_interrupted() => Status::Interrupted,
        Some(_) => Status::Failed,
    };
    RunOutcome { status, rows, failure, error }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Signal, bad_input};

    /// A stand-in stage: records that it ran (and its part of the plan) into the
    /// shared log, then answers.
    struct Fake {
        name: &'static str,
        apply: fn() -> Result<Report>,
    }

    /// The plan: one word per stage name.
    type Plan = std::collections::BTreeMap<&'static str, &'static str>;

    impl Stage<Vec<String>, Plan> for Fake {
        fn name(&self) -> &'static str {
            self.name
        }
        fn apply<'a>(&'a mut self, plan: &'a Plan, state: &'a mut Vec<String>) -> StageFuture<'a> {
            state.push(format!("apply {} ({})", self.name, plan.get(self.name).unwrap_or(&"-")));
            let answer = (self.apply)();
            Box::pin(async move { answer })
        }
    }

    fn stage(
        name: &'static str,
        apply: fn() -> Result<Report>,
    ) -> Box<dyn Stage<Vec<String>, Plan>> {
        Box::new(Fake { name, apply })
    }

    fn remedy(stage: &str, kind: ErrorKind) -> String {
        format!("fix {stage} ({kind:?})")
    }

    async fn run_all(
        mut stages: Vec<Box<dyn Stage<Vec<String>, Plan>>>,
        session: &Session,
    ) -> (RunOutcome, Vec<String>) {
        let mut trace = Vec::new();
        let plan = Plan::from([("a", "do a"), ("b", "do b")]);
        let outcome = run(&mut stages, &plan, &mut trace, session, remedy).await;
        (outcome, trace)
    }

    fn statuses(outcome: &RunOutcome) -> Vec<(&str, Status)> {
        outcome.rows.iter().map(|r| (r.name.as_str(), r.status)).collect()
    }

    #[tokio::test]
    async fn stages_run_in_order_each_on_its_part_of_the_plan() {
        let stages =
            vec![stage("a", || Ok(Report::ok("did a"))), stage("b", || Ok(Report::ok("did b")))];
        let (outcome, trace) = run_all(stages, &Session::silent()).await;
        assert_eq!(trace, ["apply a (do a)", "apply b (do b)"]);
        assert_eq!(outcome.status, Status::Ok);
        assert_eq!(statuses(&outcome), [("a", Status::Ok), ("b", Status::Ok)]);
        assert!(outcome.error.is_none() && outcome.failure.is_none());
    }

    #[tokio::test]
    async fn a_failed_report_stops_the_run_with_its_finding() {
        let finding =
            || Finding::new("layer 24-auth", "gate passed", "hook failed", "kubectl logs x");
        let stages = vec![
            stage("a", || {
                Ok(Report {
                    layer: Some("24-auth".into()),
                    ..Report::failed(
                        "1 failed",
                        Finding::new(
                            "layer 24-auth",
                            "gate passed",
                            "hook failed",
                            "kubectl logs x",
                        ),
                    )
                })
            }),
            stage("b", || panic!("ran after a failure")),
        ];
        let (outcome, trace) = run_all(stages, &Session::silent()).await;
        assert_eq!(trace, ["apply a (do a)"]);
        assert_eq!(outcome.status, Status::Failed);
        assert_eq!(statuses(&outcome), [("a", Status::Failed), ("b", Status::Skipped)]);
        let failure = outcome.failure.unwrap();
        assert_eq!((failure.stage.as_str(), failure.layer.as_deref()), ("a", Some("24-auth")));
        assert_eq!(failure.finding, finding());
        assert_eq!(outcome.error.unwrap().kind(), ErrorKind::Failed);
    }

    #[tokio::test]
    async fn an_error_stops_the_run_and_keeps_its_kind_and_remediation() {
        let stages = vec![
            stage("preflight", || Err(bad_input("Cargo.toml:3: unknown key `clustr`"))),
            stage("cluster", || panic!("ran after an error")),
        ];
        let (outcome, _) = run_all(stages, &Session::silent()).await;
        assert_eq!(outcome.status, Status::Failed);
        let failure = outcome.failure.unwrap();
        assert_eq!(failure.finding.found, "Cargo.toml:3: unknown key `clustr`");
        assert_eq!(failure.finding.remediation, "fix preflight (BadInput)");
        assert_eq!(outcome.error.unwrap().kind(), ErrorKind::BadInput);

        let own = vec![stage("tools", || Err(failed("mismatch").with_remediation("re-pin it")))];
        let (outcome, _) = run_all(own, &Session::silent()).await;
        assert_eq!(outcome.failure.unwrap().finding.remediation, "re-pin it");
    }

    #[tokio::test]
    async fn warnings_are_carried_into_the_row() {
        let stages = vec![stage("secrets", || {
            Ok(Report::ok("checked").warn(["0 ExternalSecrets found".to_string()]))
        })];
        let (outcome, _) = run_all(stages, &Session::silent()).await;
        assert_eq!(outcome.status, Status::Ok);
        assert_eq!(outcome.rows[0].warnings, ["0 ExternalSecrets found"]);
    }

    #[tokio::test]
    async fn an_interruption_stops_before_the_next_stage() {
        let session = Session::silent();
        session.cancel.request(Signal::Terminate);
        let stages =
            vec![stage("a", || panic!("started after the signal")), stage("b", || panic!())];
        let (outcome, trace) = run_all(stages, &session).await;
        assert!(trace.is_empty());
        assert_eq!(outcome.status, Status::Interrupted);
        assert_eq!(statuses(&outcome), [("a", Status::Interrupted), ("b", Status::Skipped)]);
        assert_eq!(outcome.error.unwrap().kind(), ErrorKind::Interrupted(Signal::Terminate));
    }

    #[tokio::test]
    async fn an_interrupted_stage_reports_interrupted() {
        let stages = vec![
            stage("layers", || {
                Err(crate::error::interrupted(Signal::Interrupt, "stopped helmfile"))
            }),
            stage("status", || panic!()),
        ];
        let (outcome, _) = run_all(stages, &Session::silent()).await;
        assert_eq!(
            statuses(&outcome),
            [("layers", Status::Interrupted), ("status", Status::Skipped)]
        );
        assert_eq!(outcome.error.unwrap().kind(), ErrorKind::Interrupted(Signal::Interrupt));
    }
}
