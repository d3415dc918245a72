//! The bounded wait before ExternalSecrets are judged. ESO's flood gate (on by default)
//! syncs an ExternalSecret only once its store's `Ready` condition is True, and a store
//! becomes Ready only after the operator validated it; a first run right after the
//! layer that installs ESO would otherwise judge ExternalSecrets that simply have not
//! synced yet. So: first every store the ExternalSecrets use must be Ready (a store
//! that is not is named with its condition's message), then every ExternalSecret; both
//! within `timeouts.external_secrets`, polling, with a progress line while waiting.

use std::time::Instant;

use super::external_secrets::{
    Controller, ExternalSecretStatus, ExternalSecrets, judge_external_secrets,
    list_external_secrets, report_of,
};
use super::stores::{StoreNotReady, not_ready};
use super::{POLL, TAG};
use crate::config::Context;
use crate::error::Result;
use crate::outcome::{Finding, Report, Verdict};

/// Stores Ready, then ExternalSecrets Ready; the report of the ExternalSecret check (or
/// the stores' failure when they did not turn Ready in time).
pub async fn await_external_secrets(ctx: &Context, client: &kube::Client) -> Result<Report> {
    let session = &ctx.session;
    let timeout = ctx.settings.timeouts.external_secrets();
    let started = Instant::now();
    loop {
        let found = session.cancel.unless_interrupted(list_external_secrets(client)).await??;
        // Nothing to wait for: no ESO API, no ExternalSecret, or no operator to sync
        // them (the check says so with a warning).
        let statuses =
            match &found {
                ExternalSecrets::Listed {
                    controller: Controller::Running(_), statuses, ..
                } if !statuses.is_empty() => statuses,
                _ => return Ok(report_of(judge_external_secrets(&found, &ctx.kube_context))),
            };
        let stores = session.cancel.unless_interrupted(not_ready(client)).await??;
        let check = judge_external_secrets(&found, &ctx.kube_context);
        let waiting = if !stores.is_empty() {
            Waiting::Stores(stores)
        } else if check.verdict == Verdict::Failed && statuses.iter().any(not_synced_yet) {
            Waiting::ExternalSecrets(check)
        } else {
            if check.verdict == Verdict::Failed {
                session.line(TAG, &check.finding.to_string());
                return Ok(report_of(check));
            }
            session.line(TAG, &check.finding.found);
            return Ok(report_of(check));
        };
        if started.elapsed() >= timeout {
            return Ok(waiting.failed(timeout.as_secs(), &ctx.kube_context));
        }
        session.progress(TAG, &waiting.progress(started.elapsed().as_secs(), timeout.as_secs()));
        session.cancel.sleep(POLL).await?;
    }
}

/// An ExternalSecret that may still turn Ready by itself: ESO has not reconciled it, or
/// its last failure was its store not being Ready (ESO retries it). Any other failure (a
/// missing key, a store that does not exist) is judged at once.
fn not_synced_yet(es: &ExternalSecretStatus) -> bool {
    !es.ready
        && (es.reason.is_empty()
            || es.event.as_deref().is_some_and(|e| e.contains(" is not ready")))
}

enum Waiting {
    Stores(Vec<StoreNotReady>),
    ExternalSecrets(crate::outcome::Check),
}

impl Waiting {
    fn progress(&self, waited: u64, limit: u64) -> String {
        match self {
            Waiting::Stores(stores) => format!(
                "waiting for {} secret store(s) to be Ready ({waited}s of {limit}s): {}",
                stores.len(),
                stores.iter().map(StoreNotReady::describe).collect::<Vec<_>>().join("; ")
            ),
            Waiting::ExternalSecrets(check) => format!(
                "waiting for ExternalSecrets to be Ready ({waited}s of {limit}s): {}",
                check.finding.found.lines().next().unwrap_or_default()
            ),
        }
    }

    fn failed(self, limit: u64, context: &str) -> Report {
        match self {
            Waiting::Stores(stores) => {
                let first = &stores[0];
                let what = match &first.namespace {
                    Some(ns) => format!("describe secretstore -n {ns} {}", first.name),
                    None => format!("describe clustersecretstore {}", first.name),
                };
                let describe = crate::k8s::kubectl_command(context, &what);
                let found = format!(
                    "after {limit}s: {}",
                    stores.iter().map(StoreNotReady::describe).collect::<Vec<_>>().join("; ")
                );
                let finding = Finding::new(
                    "secret stores",
                    "every secret store the ExternalSecrets use Ready (External Secrets reads only from a Ready store)",
                    found,
                    format!(
                        "check the store's provider settings and that its backend answers: `{describe}` (its Events carry the provider's error); then run again"
                    ),
                );
                Report::failed(format!("{} secret store(s) not Ready", stores.len()), finding)
            }
            Waiting::ExternalSecrets(check) => report_of(check),
        }
    }
}
