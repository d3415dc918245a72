//! The secrets stage: wait for the Vault bootstrap Job ([`vault`], deciding with
//! [`cronjob`]), write the
//! `db-migrations-local` Secret from the Postgres credentials ([`db_migrations`]), and
//! wait, bounded, for the secret stores in use and then every ExternalSecret to be
//! Ready ([`wait`], [`stores`], [`external_secrets`]).
//!
//! A check that does not pass (the Job failed, a Secret is missing, an ExternalSecret is
//! not Ready) is a failed [`Report`] with its [`Finding`]; `Err` only when the API cannot
//! be read or the run is interrupted.
//!
//! Secret values never leave this module's locals: they are not printed, logged, put in
//! findings, errors or `Debug` output. Messages name Secrets and keys only. The values
//! are given to the session's redactor ([`crate::learn`]), so a tool that prints one is
//! redacted.

pub mod cronjob;
pub mod db_migrations;
pub mod external_secrets;
pub mod remote_keys;
pub mod stores;
pub mod vault;
pub mod wait;

use std::time::Duration;

pub use cronjob::{JobState, job_state, newest_owned_job};
pub use db_migrations::{POSTGRES_KEYS, apply_db_migrations, check_db_migrations, flyway_data};
pub use external_secrets::{
    Controller, ESO_CONTROLLER_SELECTOR, ESO_GROUP, ESO_VERSIONS, ExternalSecretStatus,
    ExternalSecrets, external_secret_resource, external_secret_status, judge_external_secrets,
    list_external_secrets,
};
pub use remote_keys::{missing_keys, referenced_keys};
pub use stores::StoreUse;
pub use vault::{VaultBootstrapState, vault_bootstrap_state, wait_vault_bootstrap};

use crate::config::{Context, SecretsSettings};
use crate::error::{Result, failed};
use crate::events::Event;
use crate::outcome::Report;
use crate::stage_result::StageResult;

const TAG: &str = "secrets";
const POLL: Duration = Duration::from_secs(2);

/// A step that belongs right after a layer (settings `vault_after_layer`,
/// `db_migrations_after_layer`): the bootstrap runs it there, so later layers can rely
/// on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    VaultBootstrap,
    DbMigrations,
}

impl Step {
    /// In stage order.
    pub const ALL: [Step; 2] = [Step::VaultBootstrap, Step::DbMigrations];

    /// The layer this step follows.
    pub fn after_layer(self, settings: &SecretsSettings) -> &str {
        match self {
            Step::VaultBootstrap => &settings.vault_after_layer,
            Step::DbMigrations => &settings.db_migrations_after_layer,
        }
    }

    /// What it does, for plans.
    pub fn describe(self, settings: &SecretsSettings) -> String {
        match self {
            Step::VaultBootstrap => "await the Vault bootstrap Job".into(),
            Step::DbMigrations => format!(
                "write Secret {}/{}",
                settings.db_migrations_namespace, settings.db_migrations_secret
            ),
        }
    }

    pub async fn run(self, ctx: &Context, client: &kube::Client) -> Result<Report> {
        match self {
            Step::VaultBootstrap => wait_vault_bootstrap(ctx, client).await,
            Step::DbMigrations => apply_db_migrations(ctx, client).await,
        }
    }
}

/// The steps that follow `layer`, in stage order.
pub fn steps_after(settings: &SecretsSettings, layer: &str) -> Vec<Step> {
    Step::ALL.into_iter().filter(|step| step.after_layer(settings) == layer).collect()
}

/// The Vault bootstrap and the db-migrations secret (unless `done` already, after their
/// layers), then ExternalSecret validation; the first failed report ends the stage.
pub async fn stage(ctx: &Context, client: &kube::Client, done: &[Step]) -> Result<Report> {
    let reports = stage_reports(ctx, client, done).await?;
    Ok(reports.into_iter().fold(Report::ok(""), Report::merge))
}

/// Each step's report, in order, up to and including the first failed one.
async fn stage_reports(ctx: &Context, client: &kube::Client, done: &[Step]) -> Result<Vec<Report>> {
    let mut reports = Vec::new();
    for step in Step::ALL.into_iter().filter(|step| !done.contains(step)) {
        ctx.session.cancel.check()?;
        let report = step.run(ctx, client).await?;
        let passed = report.passed();
        reports.push(report);
        if !passed {
            return Ok(reports);
        }
    }
    reports.push(wait::await_external_secrets(ctx, client).await?);
    Ok(reports)
}

/// `cargo xtask secrets`: the whole stage, alone, against `ctx.kube_context`. Its result
/// is emitted for the sinks; a failed stage is then a `Failed` error (already shown).
pub async fn run(ctx: &Context) -> Result<()> {
    let client = crate::k8s::client(&ctx.kube_context).await?;
    let reports = stage_reports(ctx, &client, &[]).await?;
    let result = StageResult::new(TAG, &reports, ctx.session.where_output_is("; log: ", ""));
    ctx.session.events.emit(Event::Result { result: &result });
    match result.failure {
        Some(finding) => Err(failed(format!("the secrets stage failed: {finding}"))
            .with_remediation(finding.remediation)),
        None => Ok(()),
    }
}

/// `text` indented by two spaces, line by line.
fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Rendered;
    use crate::outcome::{Finding, Status};
    use serde_json::json;

    #[test]
    fn steps_follow_their_configured_layers() {
        let mut settings = SecretsSettings::default();
        assert_eq!(steps_after(&settings, "15-secrets-certificates"), [Step::VaultBootstrap]);
        assert_eq!(steps_after(&settings, "40-data-plane"), [Step::DbMigrations]);
        assert_eq!(steps_after(&settings, "24-auth"), []);
        settings.db_migrations_after_layer = "15-secrets-certificates".into();
        assert_eq!(
            steps_after(&settings, "15-secrets-certificates"),
            [Step::VaultBootstrap, Step::DbMigrations]
        );
        assert_eq!(
            Step::DbMigrations.describe(&settings),
            "write Secret ameide/db-migrations-local"
        );
    }

    fn finding() -> Finding {
        Finding::new("ExternalSecrets", "every ExternalSecret Ready", "1 of 2 not Ready", "seed it")
    }

    #[test]
    fn a_passing_stage_lists_what_was_done_and_its_warnings() {
        let reports = [
            Report::ok("Vault bootstrap Job vault/v-1 succeeded"),
            Report::ok("").warn(["0 ExternalSecrets found".to_owned()]),
        ];
        let result = StageResult::new(TAG, &reports, "; log: /tmp/x.log".into());
        assert_eq!(
            result.human(),
            "secrets: Vault bootstrap Job vault/v-1 succeeded\n\
             secrets: warning: 0 ExternalSecrets found\nsecrets: ok; log: /tmp/x.log\n"
        );
        let json = result.json();
        assert_eq!(json["status"], "ok");
        assert_eq!(json["done"], json!(["Vault bootstrap Job vault/v-1 succeeded"]));
        assert!(json["failure"].is_null());
    }

    #[test]
    fn a_failed_stage_shows_the_finding_and_what_to_do() {
        let reports = [Report::ok("Secret a/b unchanged"), Report::failed("1 of 2", finding())];
        let result = StageResult::new(TAG, &reports, String::new());
        let human = result.human();
        assert!(human.starts_with("secrets: Secret a/b unchanged\n"), "{human}");
        assert!(human.contains(
            "secrets: FAILED: ExternalSecrets: expected every ExternalSecret Ready, found 1 of 2 not Ready\n\
             what to do: seed it\n"
        ));
        let json = result.json();
        assert_eq!(json["status"], "failed");
        assert_eq!(json["done"], json!(["Secret a/b unchanged"]));
        assert_eq!(json["failure"]["remediation"], "seed it");
        assert_eq!(json["failure"]["subject"], "ExternalSecrets");
        let merged = reports.into_iter().fold(Report::ok(""), Report::merge);
        assert_eq!(merged.status, Status::Failed);
        assert_eq!(merged.detail, "Secret a/b unchanged; 1 of 2");
    }
}
