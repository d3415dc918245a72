//! The secrets stage: wait for the Vault bootstrap Job, write the `db-migrations-local`
//! Secret from the Postgres credentials, and require every ExternalSecret to be Ready.
//!
//! Secret values never leave this module's locals: they are not printed, logged, put in
//! errors or `Debug` output. Messages name Secrets and keys only.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams, LogParams, ObjectMeta, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::Value;

use crate::config::{Context, SecretsSettings};
use crate::report::Log;

const TAG: &str = "secrets";
const POLL: Duration = Duration::from_secs(2);
const LOG_TAIL_LINES: i64 = 20;
/// Remediation from the troubleshooting table for a failing Vault bootstrap.
const VAULT_REMEDIATION: &str = "Vault pod still starting or service account missing auth: \
inspect the CronJob pod logs after layer 15 completes; ensure the `foundation-vault-core` \
StatefulSet is Healthy and the bootstrap service account retains `system:auth-delegator`.";

#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Kube context to use (default: the current context).
    #[arg(long)]
    pub context: Option<String>,
}

/// Why a stage failed and what to do about it (the summary shows both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    pub remediation: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\nremediation: {}", self.message, self.remediation)
    }
}

impl std::error::Error for Failure {}

fn failure(message: impl Into<String>, remediation: impl Into<String>) -> anyhow::Error {
    Failure { message: message.into(), remediation: remediation.into() }.into()
}

/// What a passing step did, and what a reader should still know about (gaps).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub done: Vec<String>,
    pub warnings: Vec<String>,
}

impl Outcome {
    pub fn merge(&mut self, other: Outcome) {
        self.done.extend(other.done);
        self.warnings.extend(other.warnings);
    }
}

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

    pub async fn run(self, ctx: &Context, log: &Log, client: &kube::Client) -> Result<Outcome> {
        match self {
            Step::VaultBootstrap => wait_vault_bootstrap(ctx, log, client).await,
            Step::DbMigrations => apply_db_migrations(ctx, log, client).await,
        }
    }
}

/// The steps that follow `layer`, in stage order.
pub fn steps_after(settings: &SecretsSettings, layer: &str) -> Vec<Step> {
    Step::ALL.into_iter().filter(|step| step.after_layer(settings) == layer).collect()
}

/// `cargo xtask secrets`: the whole stage, alone.
pub async fn run(ctx: &Context, args: &Args) -> Result<()> {
    let log = Log::open(&ctx.log_path)?;
    let client = crate::k8s::client(args.context.as_deref()).await?;
    let outcome = stage(ctx, &log, &client, &[]).await?;
    for line in &outcome.done {
        println!("secrets: {line}");
    }
    for warning in &outcome.warnings {
        println!("secrets: warning: {warning}");
    }
    println!("secrets: ok; log: {}", log.path().display());
    Ok(())
}

/// Vault bootstrap and db-migrations secret (unless `done` already, after their layers),
/// then ExternalSecret validation.
pub async fn stage(
    ctx: &Context,
    log: &Log,
    client: &kube::Client,
    done: &[Step],
) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    for step in Step::ALL.into_iter().filter(|step| !done.contains(step)) {
        outcome.merge(step.run(ctx, log, client).await?);
    }
    outcome.merge(validate_external_secrets(log, client).await?);
    Ok(outcome)
}

// ---------------------------------------------------------------------------------------
// Vault bootstrap Job

/// Where a Job stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Succeeded,
    Failed { reason: String },
    Running,
}

/// A Job's state from its conditions, else its pod counters.
pub fn job_state(job: &Job) -> JobState {
    let Some(status) = &job.status else { return JobState::Running };
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let holds = |kind: &str| conditions.iter().find(|c| c.type_ == kind && c.status == "True");
    if holds("Complete").is_some() {
        return JobState::Succeeded;
    }
    if let Some(c) = holds("Failed") {
        let reason = [c.reason.as_deref(), c.message.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": ");
        return JobState::Failed {
            reason: if reason.is_empty() { "Failed".into() } else { reason },
        };
    }
    if status.succeeded.unwrap_or(0) > 0 {
        return JobState::Succeeded;
    }
    let backoff_limit = job.spec.as_ref().and_then(|s| s.backoff_limit).unwrap_or(6);
    let failed = status.failed.unwrap_or(0);
    if failed > backoff_limit && status.active.unwrap_or(0) == 0 {
        return JobState::Failed { reason: format!("{failed} failed pod(s)") };
    }
    JobState::Running
}

/// The newest Job owned by CronJob `cronjob` (creation time, then name).
pub fn newest_owned_job<'a>(jobs: &'a [Job], cronjob: &str) -> Option<&'a Job> {
    jobs.iter()
        .filter(|job| {
            job.owner_references().iter().any(|o| o.kind == "CronJob" && o.name == cronjob)
        })
        .max_by(|a, b| {
            let key = |j: &Job| {
                let name = j.name_any();
                (j.metadata.creation_timestamp.clone(), name.len(), name)
            };
            key(a).cmp(&key(b))
        })
}

/// Where the Vault bootstrap stands, read once ([`vault_bootstrap_state`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultBootstrapState {
    /// Its Job succeeded; the Job's name.
    Succeeded { job: String },
    /// Its Job failed: the Job, its pod's log tail, and what to do.
    Failed(Failure),
    /// No Job yet, or it still runs: which, and what to do if it stays so.
    Pending(Failure),
}

/// "Job ns/name" or "CronJob ns/name": what runs the Vault bootstrap.
fn vault_owner(settings: &SecretsSettings) -> String {
    let namespace = &settings.vault_namespace;
    match &settings.vault_job {
        Some(job) => format!("Job {namespace}/{job}"),
        None => format!("CronJob {namespace}/{}", settings.vault_cronjob),
    }
}

/// Read the Vault bootstrap's state once, writing nothing. A missing CronJob is an error
/// (a [`Failure`]): waiting would not make it appear.
pub async fn vault_bootstrap_state(
    ctx: &Context,
    client: &kube::Client,
) -> Result<VaultBootstrapState> {
    let settings = &ctx.settings.secrets;
    let namespace = settings.vault_namespace.as_str();
    let owner = vault_owner(settings);
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let job = match &settings.vault_job {
        Some(name) => jobs.get_opt(name).await?,
        None => {
            let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), namespace);
            if cronjobs.get_opt(&settings.vault_cronjob).await?.is_none() {
                return Err(failure(
                    format!("{owner} not found"),
                    format!(
                        "sync layer {} first (`cargo xtask sync {}`), or set `vault_cronjob` / \
                         `vault_namespace` in [workspace.metadata.bootstrap.secrets]",
                        settings.vault_after_layer, settings.vault_after_layer
                    ),
                ));
            }
            let all = jobs.list(&ListParams::default()).await?.items;
            newest_owned_job(&all, &settings.vault_cronjob).cloned()
        }
    };
    let Some(job) = job else {
        return Ok(VaultBootstrapState::Pending(vault_pending(
            settings,
            format!("no Job of {owner} exists yet"),
        )));
    };
    let name = job.name_any();
    Ok(match job_state(&job) {
        JobState::Succeeded => VaultBootstrapState::Succeeded { job: name },
        JobState::Failed { reason } => {
            VaultBootstrapState::Failed(vault_failed(client, namespace, &name, &reason).await)
        }
        JobState::Running => VaultBootstrapState::Pending(vault_pending(
            settings,
            format!("Job {namespace}/{name} is still running"),
        )),
    })
}

fn vault_pending(settings: &SecretsSettings, what: String) -> Failure {
    let manual = format!(
        "kubectl create job -n {} --from=cronjob/{1} {1}-manual",
        settings.vault_namespace, settings.vault_cronjob
    );
    Failure {
        message: what,
        remediation: format!("{VAULT_REMEDIATION} To start a run now: `{manual}`."),
    }
}

/// Wait until the Vault bootstrap Job succeeded; a failed one names itself and its log.
pub async fn wait_vault_bootstrap(
    ctx: &Context,
    log: &Log,
    client: &kube::Client,
) -> Result<Outcome> {
    let timeout = ctx.settings.timeouts.vault_bootstrap();
    let namespace = ctx.settings.secrets.vault_namespace.as_str();
    let owner = vault_owner(&ctx.settings.secrets);
    log.line(
        TAG,
        &format!("waiting up to {}s for the Vault bootstrap ({owner})", timeout.as_secs()),
    );
    let spinner = crate::report::spinner(&format!("waiting for the Vault bootstrap ({owner})"));
    let started = Instant::now();
    // Ctrl-C ends the wait wherever it is (the requests only read).
    let waiting = async {
        loop {
            match vault_bootstrap_state(ctx, client).await? {
                VaultBootstrapState::Succeeded { job } => {
                    let line = format!("Vault bootstrap Job {namespace}/{job} succeeded");
                    log.line(TAG, &line);
                    break Ok(Outcome { done: vec![line], warnings: vec![] });
                }
                VaultBootstrapState::Failed(failed) => {
                    log.line(TAG, &failed.message);
                    break Err(failed.into());
                }
                VaultBootstrapState::Pending(pending) if started.elapsed() >= timeout => {
                    break Err(failure(
                        format!(
                            "the Vault bootstrap did not succeed within {}s: {}",
                            timeout.as_secs(),
                            pending.message
                        ),
                        pending.remediation,
                    ));
                }
                VaultBootstrapState::Pending(_) => tokio::time::sleep(POLL).await,
            }
        }
    };
    let result = crate::cancel::unless_interrupted(waiting).await.and_then(|waited| waited);
    spinner.finish_and_clear();
    if let Err(e) = &result
        && crate::error::exit_code(e) == 130
    {
        log.line(TAG, &format!("interrupted while waiting for the Vault bootstrap ({owner})"));
    }
    result
}

/// The failure of Job `job`, with its pod's last log lines.
async fn vault_failed(client: &kube::Client, namespace: &str, job: &str, reason: &str) -> Failure {
    let (pod, tail) = match job_pod_log_tail(client, namespace, job).await {
        Ok(Some((pod, tail))) => (Some(pod), tail),
        Ok(None) => (None, "(no pod of the Job found)".to_owned()),
        Err(e) => (None, format!("(pod log unavailable: {e})")),
    };
    let source = pod.as_deref().map_or(String::new(), |p| format!(" of pod {p}"));
    let message = format!(
        "Vault bootstrap Job {namespace}/{job} failed ({reason}); last lines{source}:\n{}",
        indent(&tail)
    );
    let logs_cmd = match &pod {
        Some(pod) => format!("kubectl logs -n {namespace} {pod}"),
        None => format!("kubectl logs -n {namespace} job/{job}"),
    };
    Failure {
        message,
        remediation: format!(
            "{VAULT_REMEDIATION} Commands: `{logs_cmd}`, `kubectl describe job -n {namespace} {job}`."
        ),
    }
}

/// The newest pod of `job` and the last lines of its log.
async fn job_pod_log_tail(
    client: &kube::Client,
    namespace: &str,
    job: &str,
) -> Result<Option<(String, String)>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let all = pods.list(&ListParams::default()).await?.items;
    let Some(pod) = all
        .iter()
        .filter(|pod| {
            let labels = pod.labels();
            labels.get("job-name").map(String::as_str) == Some(job)
                || labels.get("batch.kubernetes.io/job-name").map(String::as_str) == Some(job)
                || pod.owner_references().iter().any(|o| o.kind == "Job" && o.name == job)
        })
        .max_by_key(|pod| pod.metadata.creation_timestamp.clone())
    else {
        return Ok(None);
    };
    let name = pod.name_any();
    let params = LogParams { tail_lines: Some(LOG_TAIL_LINES), ..LogParams::default() };
    let text = pods.logs(&name, &params).await?;
    Ok(Some((name, tail(&text, LOG_TAIL_LINES as usize))))
}

// ---------------------------------------------------------------------------------------
// db-migrations-local

/// The Postgres credential keys the platform's Secret must hold.
pub const POSTGRES_KEYS: [&str; 5] = ["host", "port", "database", "username", "password"];

/// The Flyway keys (`url`, `user`, `password`) from the Postgres Secret's data. `Err`
/// lists the missing keys (names only).
pub fn flyway_data(
    postgres: &BTreeMap<String, ByteString>,
) -> std::result::Result<BTreeMap<String, ByteString>, Vec<&'static str>> {
    let missing: Vec<&str> =
        POSTGRES_KEYS.into_iter().filter(|k| !postgres.contains_key(*k)).collect();
    if !missing.is_empty() {
        return Err(missing);
    }
    let text = |key: &str| String::from_utf8_lossy(&postgres[key].0).trim().to_owned();
    let url = format!("jdbc:postgresql://{}:{}/{}", text("host"), text("port"), text("database"));
    Ok(BTreeMap::from([
        ("url".to_owned(), ByteString(url.into_bytes())),
        ("user".to_owned(), postgres["username"].clone()),
        ("password".to_owned(), postgres["password"].clone()),
    ]))
}

/// What `db-migrations-local` must hold and what it holds. No `Debug`: it carries
/// secret values.
struct DbMigrationsState {
    source_name: String,
    target: String,
    desired: BTreeMap<String, ByteString>,
    existing: Option<Secret>,
}

/// Read the Postgres credentials (the desired Flyway keys) and `db-migrations-local`.
async fn db_migrations_state(
    s: &SecretsSettings,
    client: &kube::Client,
) -> Result<DbMigrationsState> {
    let source_api: Api<Secret> = Api::namespaced(client.clone(), &s.postgres_namespace);
    let source_name = format!("{}/{}", s.postgres_namespace, s.postgres_secret);
    let Some(source) = source_api.get_opt(&s.postgres_secret).await? else {
        return Err(failure(
            format!("Secret {source_name} (the Postgres credentials) not found"),
            format!(
                "sync layer {0} first (`cargo xtask sync {0}`), or set `postgres_secret` / \
                 `postgres_namespace` in [workspace.metadata.bootstrap.secrets]",
                s.db_migrations_after_layer
            ),
        ));
    };
    let desired = flyway_data(&source.data.unwrap_or_default()).map_err(|missing| {
        failure(
            format!("Secret {source_name} lacks key(s) {}", missing.join(", ")),
            format!("the Postgres chart must write keys {}", POSTGRES_KEYS.join(", ")),
        )
    })?;

    let target = format!("{}/{}", s.db_migrations_namespace, s.db_migrations_secret);
    let api: Api<Secret> = Api::namespaced(client.clone(), &s.db_migrations_namespace);
    let existing = api.get_opt(&s.db_migrations_secret).await?;
    Ok(DbMigrationsState { source_name, target, desired, existing })
}

/// Read-only (the check `smoke` runs): `db-migrations-local` holds exactly the Flyway
/// keys from the Postgres credentials. A difference names keys, never values.
pub async fn check_db_migrations(ctx: &Context, client: &kube::Client) -> Result<Outcome> {
    let DbMigrationsState { source_name, target, desired, existing } =
        db_migrations_state(&ctx.settings.secrets, client).await?;
    let fix = "`cargo xtask secrets` (or `cargo xtask bootstrap`) writes it";
    let Some(existing) = existing else {
        return Err(failure(format!("Secret {target} not found"), fix));
    };
    let data = existing.data.unwrap_or_default();
    let differing: Vec<&str> = desired
        .keys()
        .chain(data.keys())
        .filter(|key| desired.get(*key) != data.get(*key))
        .map(String::as_str)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if !differing.is_empty() {
        return Err(failure(
            format!(
                "Secret {target} differs from the Flyway keys of Secret {source_name} in key(s) {}",
                differing.join(", ")
            ),
            fix,
        ));
    }
    Ok(Outcome {
        done: vec![format!("Secret {target} holds url, user, password from Secret {source_name}")],
        warnings: vec![],
    })
}

/// Apply `db-migrations-local` when its data differs from the Postgres credentials.
pub async fn apply_db_migrations(
    ctx: &Context,
    log: &Log,
    client: &kube::Client,
) -> Result<Outcome> {
    let s: &SecretsSettings = &ctx.settings.secrets;
    let DbMigrationsState { source_name, target, desired, existing } =
        db_migrations_state(s, client).await?;
    let api: Api<Secret> = Api::namespaced(client.clone(), &s.db_migrations_namespace);
    if existing.as_ref().and_then(|e| e.data.as_ref()) == Some(&desired) {
        let line = format!("Secret {target} unchanged (url, user, password)");
        log.line(TAG, &line);
        return Ok(Outcome { done: vec![line], warnings: vec![] });
    }
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(s.db_migrations_secret.clone()),
            namespace: Some(s.db_migrations_namespace.clone()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                crate::k8s::FIELD_MANAGER.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(desired),
        ..Secret::default()
    };
    let params = PatchParams::apply(crate::k8s::FIELD_MANAGER).force();
    api.patch(&s.db_migrations_secret, &params, &Patch::Apply(&secret))
        .await
        // kube's error carries the server's message, never our request body.
        .with_context(|| format!("applying Secret {target}"))?;
    let verb = if existing.is_some() { "updated" } else { "created" };
    let line = format!("Secret {target} {verb} from {source_name} (url, user, password)");
    log.line(TAG, &line);
    Ok(Outcome { done: vec![line], warnings: vec![] })
}

// ---------------------------------------------------------------------------------------
// ExternalSecrets

pub const ESO_GROUP: &str = "external-secrets.io";
/// Served versions we understand, preferred first.
pub const ESO_VERSIONS: [&str; 2] = ["v1", "v1beta1"];

/// One ExternalSecret's readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalSecretStatus {
    pub namespace: String,
    pub name: String,
    pub ready: bool,
    pub reason: String,
    pub message: String,
    /// Remote keys the condition message says are missing (names only).
    pub missing_keys: Vec<String>,
}

impl ExternalSecretStatus {
    /// One line for the summary: name, reason, message and missing keys.
    pub fn describe(&self) -> String {
        let mut line = format!("ExternalSecret {}/{} is not Ready", self.namespace, self.name);
        if !self.reason.is_empty() {
            line.push_str(&format!(": {}", self.reason));
        }
        if !self.message.is_empty() {
            line.push_str(&format!(": {}", self.message));
        }
        if !self.missing_keys.is_empty() {
            line.push_str(&format!(" (missing remote key(s): {})", self.missing_keys.join(", ")));
        }
        line
    }
}

/// Readiness of an ExternalSecret object: `status.conditions[type=Ready].status == "True"`.
pub fn external_secret_status(object: &DynamicObject) -> ExternalSecretStatus {
    let ready_condition = object.data["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
    let field =
        |key: &str| ready_condition.and_then(|c| c[key].as_str()).unwrap_or_default().to_owned();
    let ready = field("status") == "True";
    let (reason, message) = match ready_condition {
        Some(_) => (field("reason"), field("message")),
        None => ("NoReadyCondition".to_owned(), "the operator has not reported on it".to_owned()),
    };
    let missing_keys =
        if ready { Vec::new() } else { missing_keys(&message, &referenced_keys(&object.data)) };
    ExternalSecretStatus {
        namespace: object.namespace().unwrap_or_default(),
        name: object.name_any(),
        ready,
        reason,
        message,
        missing_keys,
    }
}

/// Remote keys and properties an ExternalSecret references (`spec.data[].remoteRef`,
/// `spec.dataFrom[].extract`).
pub fn referenced_keys(object: &Value) -> Vec<String> {
    let spec = &object["spec"];
    let data = spec["data"].as_array().into_iter().flatten().map(|d| &d["remoteRef"]);
    let data_from = spec["dataFrom"].as_array().into_iter().flatten().map(|d| &d["extract"]);
    let mut keys = Vec::new();
    for reference in data.chain(data_from) {
        for field in ["key", "property"] {
            if let Some(key) = reference[field].as_str().filter(|k| !k.is_empty()) {
                keys.push(key.to_owned());
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// The key names a condition message says are missing: quoted or bare words after
/// `key`/`property` (ESO's wording), plus every referenced key the message names.
pub fn missing_keys(message: &str, referenced: &[String]) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let words: Vec<&str> = message.split_whitespace().collect();
    for pair in words.windows(2) {
        let label = pair[0].trim_matches(|c: char| !c.is_alphanumeric()).to_ascii_lowercase();
        if matches!(label.as_str(), "key" | "property" | "path") {
            let word = pair[1].trim_matches(|c: char| "\"'`,.;:()[]{}".contains(c));
            if !word.is_empty() && !word.eq_ignore_ascii_case("not") {
                found.push(word.to_owned());
            }
        }
    }
    for key in referenced {
        let mentioned = message
            .match_indices(key.as_str())
            .any(|(i, _)| is_word_boundary(message, i, key.len()));
        if mentioned {
            found.push(key.clone());
        }
    }
    let mut unique = Vec::new();
    for key in found {
        if !unique.contains(&key) {
            unique.push(key);
        }
    }
    unique
}

fn is_word_boundary(text: &str, start: usize, len: usize) -> bool {
    let key_char = |c: char| c.is_alphanumeric() || "-_/.".contains(c);
    let before = text[..start].chars().next_back();
    let after = text[start + len..].chars().next();
    // A trailing '.' ends a sentence rather than continuing a key.
    before.is_none_or(|c| !key_char(c))
        && after.is_none_or(|c| {
            !key_char(c)
                || (c == '.'
                    && text[start + len + 1..].chars().next().is_none_or(char::is_whitespace))
        })
}

/// What the ExternalSecret listing found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExternalSecrets {
    /// The `external-secrets.io` group (or its ExternalSecret kind) is not served.
    CrdAbsent,
    Listed {
        version: String,
        statuses: Vec<ExternalSecretStatus>,
    },
}

/// List every ExternalSecret in all namespaces (`v1`, falling back to `v1beta1`).
pub async fn list_external_secrets(client: &kube::Client) -> Result<ExternalSecrets> {
    let group = match kube::discovery::oneshot::group(client, ESO_GROUP).await {
        Ok(group) => group,
        Err(kube::Error::Discovery(_)) => return Ok(ExternalSecrets::CrdAbsent),
        Err(e) => return Err(e).context("discovering the external-secrets.io API group"),
    };
    for version in ESO_VERSIONS {
        let served = group.versioned_resources(version);
        let Some((resource, _)) = served.iter().find(|(r, _)| r.plural == "externalsecrets") else {
            continue;
        };
        let api: Api<DynamicObject> = Api::all_with(client.clone(), resource);
        let items = api
            .list(&ListParams::default())
            .await
            .with_context(|| format!("listing ExternalSecrets ({ESO_GROUP}/{version})"))?
            .items;
        let mut statuses: Vec<_> = items.iter().map(external_secret_status).collect();
        statuses.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        return Ok(ExternalSecrets::Listed { version: version.to_owned(), statuses });
    }
    Ok(ExternalSecrets::CrdAbsent)
}

/// The ApiResource of ExternalSecrets at `version`, for callers that know it is served.
pub fn external_secret_resource(version: &str) -> ApiResource {
    ApiResource {
        group: ESO_GROUP.into(),
        version: version.into(),
        api_version: format!("{ESO_GROUP}/{version}"),
        kind: "ExternalSecret".into(),
        plural: "externalsecrets".into(),
    }
}

/// The verdict on a listing: a one-line summary, warnings, or the failure.
pub fn judge_external_secrets(found: &ExternalSecrets) -> std::result::Result<Outcome, Failure> {
    let statuses = match found {
        ExternalSecrets::CrdAbsent => {
            return Ok(Outcome {
                done: vec![],
                warnings: vec![format!(
                    "0 ExternalSecrets checked: the {ESO_GROUP} CRD (v1 or v1beta1) is not installed"
                )],
            });
        }
        ExternalSecrets::Listed { statuses, .. } if statuses.is_empty() => {
            return Ok(Outcome {
                done: vec![],
                warnings: vec![
                    "0 ExternalSecrets found in any namespace: nothing to validate".into(),
                ],
            });
        }
        ExternalSecrets::Listed { statuses, .. } => statuses,
    };
    let not_ready: Vec<&ExternalSecretStatus> = statuses.iter().filter(|s| !s.ready).collect();
    if not_ready.is_empty() {
        return Ok(Outcome {
            done: vec![format!("{} ExternalSecrets Ready", statuses.len())],
            warnings: vec![],
        });
    }
    let first = not_ready[0];
    let message = format!(
        "{} of {} ExternalSecrets not Ready:\n{}",
        not_ready.len(),
        statuses.len(),
        not_ready.iter().map(|s| format!("  {}", s.describe())).collect::<Vec<_>>().join("\n")
    );
    let keys = if first.missing_keys.is_empty() {
        "the keys it references".to_owned()
    } else {
        first.missing_keys.join(", ")
    };
    Err(Failure {
        message,
        remediation: format!(
            "seed {keys} in the secret store (Vault fixtures: \
             infra/kubernetes/environments/local/foundation-vault-bootstrap.yaml), then \
             `kubectl describe externalsecret -n {} {}`",
            first.namespace, first.name
        ),
    })
}

/// Every ExternalSecret Ready; none or no CRD is a warning with a count.
pub async fn validate_external_secrets(log: &Log, client: &kube::Client) -> Result<Outcome> {
    let found = list_external_secrets(client).await?;
    match judge_external_secrets(&found) {
        Ok(outcome) => {
            for line in outcome.done.iter().chain(&outcome.warnings) {
                log.line(TAG, line);
            }
            Ok(outcome)
        }
        Err(failure) => {
            log.line(TAG, &failure.message);
            Err(failure.into())
        }
    }
}

// ---------------------------------------------------------------------------------------

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
    use serde_json::json;

    fn job(name: &str, owner: &str, created_secs: i64, status: JobStatus) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(
                    k8s_openapi::jiff::Timestamp::from_second(created_secs).unwrap(),
                )),
                owner_references: Some(vec![OwnerReference {
                    kind: "CronJob".into(),
                    name: owner.into(),
                    ..OwnerReference::default()
                }]),
                ..ObjectMeta::default()
            },
            spec: Some(JobSpec { backoff_limit: Some(1), ..JobSpec::default() }),
            status: Some(status),
        }
    }

    fn condition(kind: &str, reason: &str) -> JobCondition {
        JobCondition {
            type_: kind.into(),
            status: "True".into(),
            reason: Some(reason.into()),
            ..JobCondition::default()
        }
    }

    #[test]
    fn job_state_reads_conditions_then_counters() {
        let done =
            JobStatus { conditions: Some(vec![condition("Complete", "")]), ..JobStatus::default() };
        assert_eq!(job_state(&job("a", "c", 1, done)), JobState::Succeeded);
        let failed = JobStatus {
            conditions: Some(vec![condition("Failed", "BackoffLimitExceeded")]),
            ..JobStatus::default()
        };
        assert_eq!(
            job_state(&job("a", "c", 1, failed)),
            JobState::Failed { reason: "BackoffLimitExceeded".into() }
        );
        let counted = JobStatus { succeeded: Some(1), ..JobStatus::default() };
        assert_eq!(job_state(&job("a", "c", 1, counted)), JobState::Succeeded);
        let retrying = JobStatus { failed: Some(1), active: Some(1), ..JobStatus::default() };
        assert_eq!(job_state(&job("a", "c", 1, retrying)), JobState::Running);
        let exhausted = JobStatus { failed: Some(2), ..JobStatus::default() };
        assert!(matches!(job_state(&job("a", "c", 1, exhausted)), JobState::Failed { .. }));
    }

    #[test]
    fn newest_job_of_the_cronjob_wins() {
        let jobs = [
            job("vault-9", "vault", 10, JobStatus::default()),
            job("vault-10", "vault", 10, JobStatus::default()),
            job("other-99", "other", 99, JobStatus::default()),
            job("vault-1", "vault", 5, JobStatus::default()),
        ];
        assert_eq!(newest_owned_job(&jobs, "vault").unwrap().name_any(), "vault-10");
        assert!(newest_owned_job(&jobs, "missing").is_none());
    }

    fn bytes(map: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
        map.iter().map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec()))).collect()
    }

    #[test]
    fn flyway_keys_come_from_the_postgres_secret() {
        let source = bytes(&[
            ("host", "postgres.ameide.svc.cluster.local"),
            ("port", "5432"),
            ("database", "ameide"),
            ("username", "ameide"),
            ("password", "s3cret"),
        ]);
        let data = flyway_data(&source).unwrap();
        assert_eq!(
            data,
            bytes(&[
                ("url", "jdbc:postgresql://postgres.ameide.svc.cluster.local:5432/ameide"),
                ("user", "ameide"),
                ("password", "s3cret"),
            ])
        );
        let partial = bytes(&[("host", "h"), ("password", "s3cret")]);
        assert_eq!(flyway_data(&partial).unwrap_err(), ["port", "database", "username"]);
    }

    fn external_secret(conditions: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "external-secrets.io/v1",
            "kind": "ExternalSecret",
            "metadata": {"name": "keycloak-db", "namespace": "ameide"},
            "spec": {"data": [
                {"secretKey": "password", "remoteRef": {"key": "keycloak/db", "property": "password"}},
                {"secretKey": "username", "remoteRef": {"key": "keycloak/db", "property": "username"}},
            ]},
            "status": {"conditions": conditions},
        }))
        .unwrap()
    }

    #[test]
    fn ready_external_secret_passes() {
        let es =
            external_secret(json!([{"type": "Ready", "status": "True", "reason": "SecretSynced"}]));
        let status = external_secret_status(&es);
        assert!(status.ready && status.missing_keys.is_empty());
        let found = ExternalSecrets::Listed { version: "v1".into(), statuses: vec![status] };
        assert_eq!(judge_external_secrets(&found).unwrap().done, ["1 ExternalSecrets Ready"]);
    }

    #[test]
    fn not_ready_external_secret_names_itself_and_the_missing_key() {
        let es = external_secret(json!([{
            "type": "Ready", "status": "False", "reason": "SecretSyncedError",
            "message": "error retrieving secret at .data[0], key: keycloak/db, err: cannot find secret data for key: \"password\"",
        }]));
        let status = external_secret_status(&es);
        assert!(!status.ready);
        assert_eq!(status.missing_keys, ["keycloak/db", "password"]);
        let found = ExternalSecrets::Listed { version: "v1".into(), statuses: vec![status] };
        let failure = judge_external_secrets(&found).unwrap_err();
        assert!(failure.message.contains("1 of 1 ExternalSecrets not Ready"), "{failure}");
        assert!(
            failure
                .message
                .contains("ExternalSecret ameide/keycloak-db is not Ready: SecretSyncedError")
        );
        assert!(
            failure.message.contains("missing remote key(s): keycloak/db, password"),
            "{failure}"
        );
        assert!(
            failure.remediation.contains("kubectl describe externalsecret -n ameide keycloak-db")
        );
    }

    #[test]
    fn missing_key_parsing_handles_eso_wordings() {
        let refs = vec!["keycloak/admin".to_owned(), "password".to_owned()];
        assert_eq!(missing_keys("key \"keycloak/admin\" not found", &refs), ["keycloak/admin"]);
        assert_eq!(
            missing_keys(
                "error processing spec.data[0] (key: keycloak/admin), err: Secret does not exist",
                &refs
            ),
            ["keycloak/admin"]
        );
        assert_eq!(
            missing_keys("could not get secret data from provider", &refs),
            Vec::<String>::new()
        );
        assert_eq!(
            missing_keys("Secret does not exist: keycloak/admin.", &refs),
            ["keycloak/admin"]
        );
        // A referenced key inside a longer word is not a mention.
        assert_eq!(missing_keys("passwords rotated", &refs), Vec::<String>::new());
    }

    #[test]
    fn no_external_secrets_or_no_crd_is_said_with_a_count() {
        let none = ExternalSecrets::Listed { version: "v1".into(), statuses: vec![] };
        assert!(
            judge_external_secrets(&none).unwrap().warnings[0].starts_with("0 ExternalSecrets")
        );
        let absent = judge_external_secrets(&ExternalSecrets::CrdAbsent).unwrap();
        assert!(absent.done.is_empty());
        assert!(
            absent.warnings[0].contains("0 ExternalSecrets checked")
                && absent.warnings[0].contains("CRD")
        );
    }

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

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
