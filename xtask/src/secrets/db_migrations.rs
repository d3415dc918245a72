//! The `db-migrations-local` Secret: the Flyway keys (`url`, `user`, `password`) derived
//! from the platform's Postgres credentials, applied (server-side) only when they
//! differ, and checked read-only for smoke.
//!
//! Secret values stay in this module's locals: messages and findings name keys only.
//! Both Secrets' values are given to the session's redactor as soon as they are read,
//! so a tool or pod that prints them later is redacted.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};

use super::TAG;
use crate::config::{Context, SecretsSettings};
use crate::error::{Context as _, Result};
use crate::learn::learn_secret;
use crate::outcome::{Check, Finding, Report, Verdict};
use crate::session::Session;

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

/// The keys whose values differ between `desired` and `actual` (present in one only, or
/// different): names, never values.
pub fn differing_keys<'a>(
    desired: &'a BTreeMap<String, ByteString>,
    actual: &'a BTreeMap<String, ByteString>,
) -> Vec<&'a str> {
    desired
        .keys()
        .chain(actual.keys())
        .filter(|key| desired.get(*key) != actual.get(*key))
        .map(String::as_str)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// What `db-migrations-local` must hold and what it holds. No `Debug`: it carries
/// secret values.
struct DbMigrationsState {
    source_name: String,
    target: String,
    desired: BTreeMap<String, ByteString>,
    existing: Option<Secret>,
}

/// What the Secret should hold, for findings.
fn expected(s: &SecretsSettings) -> String {
    format!(
        "Secret {}/{} holding url, user, password from Secret {}/{}",
        s.db_migrations_namespace, s.db_migrations_secret, s.postgres_namespace, s.postgres_secret
    )
}

fn subject(s: &SecretsSettings) -> String {
    format!("Secret {}/{}", s.db_migrations_namespace, s.db_migrations_secret)
}

/// Read the Postgres credentials (the desired Flyway keys) and `db-migrations-local`,
/// learning both Secrets' values. The inner `Err` is the finding when the credentials
/// are missing or incomplete.
async fn db_migrations_state(
    session: &Session,
    s: &SecretsSettings,
    client: &kube::Client,
) -> Result<std::result::Result<DbMigrationsState, Finding>> {
    let source_api: Api<Secret> = Api::namespaced(client.clone(), &s.postgres_namespace);
    let source_name = format!("{}/{}", s.postgres_namespace, s.postgres_secret);
    let Some(source) = source_api.get_opt(&s.postgres_secret).await? else {
        return Ok(Err(Finding::new(
            subject(s),
            expected(s),
            format!("Secret {source_name} (the Postgres credentials) not found"),
            format!(
                "sync layer {0} first (`cargo xtask sync {0}`), or set `postgres_secret` / \
                 `postgres_namespace` in [workspace.metadata.bootstrap.secrets]",
                s.db_migrations_after_layer
            ),
        )));
    };
    learn_secret(session, &source);
    let desired = match flyway_data(&source.data.unwrap_or_default()) {
        Ok(desired) => desired,
        Err(missing) => {
            return Ok(Err(Finding::new(
                subject(s),
                expected(s),
                format!("Secret {source_name} lacks key(s) {}", missing.join(", ")),
                format!("the Postgres chart must write keys {}", POSTGRES_KEYS.join(", ")),
            )));
        }
    };
    let target = format!("{}/{}", s.db_migrations_namespace, s.db_migrations_secret);
    let api: Api<Secret> = Api::namespaced(client.clone(), &s.db_migrations_namespace);
    let existing = api.get_opt(&s.db_migrations_secret).await?;
    if let Some(existing) = &existing {
        learn_secret(session, existing);
    }
    Ok(Ok(DbMigrationsState { source_name, target, desired, existing }))
}

/// Read-only (the check `smoke` runs): `db-migrations-local` holds exactly the Flyway
/// keys from the Postgres credentials. A difference names keys, never values.
pub async fn check_db_migrations(ctx: &Context, client: &kube::Client) -> Result<Check> {
    let s = &ctx.settings.secrets;
    let failed = |found: String, remediation: &str| Check {
        verdict: Verdict::Failed,
        finding: Finding::new(subject(s), expected(s), found, remediation),
        warnings: Vec::new(),
    };
    let DbMigrationsState { source_name, target, desired, existing } =
        match db_migrations_state(&ctx.session, s, client).await? {
            Ok(state) => state,
            Err(finding) => {
                return Ok(Check { verdict: Verdict::Failed, finding, warnings: Vec::new() });
            }
        };
    let fix = "`cargo xtask secrets` (or `cargo xtask bootstrap`) writes it";
    let Some(existing) = existing else {
        return Ok(failed(format!("Secret {target} not found"), fix));
    };
    let data = existing.data.unwrap_or_default();
    let differing = differing_keys(&desired, &data);
    if !differing.is_empty() {
        return Ok(failed(
            format!(
                "Secret {target} differs from the Flyway keys of Secret {source_name} in key(s) {}",
                differing.join(", ")
            ),
            fix,
        ));
    }
    Ok(Check {
        verdict: Verdict::Passed,
        finding: Finding::new(
            subject(s),
            expected(s),
            format!("Secret {target} holds url, user, password from Secret {source_name}"),
            "",
        ),
        warnings: Vec::new(),
    })
}

/// Apply `db-migrations-local` when its data differs from the Postgres credentials.
/// Missing or incomplete credentials are a failed report.
pub async fn apply_db_migrations(ctx: &Context, client: &kube::Client) -> Result<Report> {
    let s: &SecretsSettings = &ctx.settings.secrets;
    let read = ctx
        .session
        .cancel
        .unless_interrupted(db_migrations_state(&ctx.session, s, client))
        .await??;
    let DbMigrationsState { source_name, target, desired, existing } = match read {
        Ok(state) => state,
        Err(finding) => {
            ctx.session.line(TAG, &finding.to_string());
            return Ok(Report::failed(finding.found.clone(), finding));
        }
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), &s.db_migrations_namespace);
    if existing.as_ref().and_then(|e| e.data.as_ref()) == Some(&desired) {
        let line = format!("Secret {target} unchanged (url, user, password)");
        ctx.session.line(TAG, &line);
        return Ok(Report::ok(line));
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
    // One write, not cut short: a signal is seen before it and by the next step.
    api.patch(&s.db_migrations_secret, &params, &Patch::Apply(&secret))
        .await
        // kube's error carries the server's message, never our request body.
        .with_context(|| format!("applying Secret {target}"))?;
    let verb = if existing.is_some() { "updated" } else { "created" };
    let line = format!("Secret {target} {verb} from {source_name} (url, user, password)");
    ctx.session.line(TAG, &line);
    Ok(Report::ok(line))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn differences_name_keys_only() {
        let desired = bytes(&[("url", "u"), ("user", "a"), ("password", "s3cret")]);
        let actual = bytes(&[("url", "u"), ("password", "other"), ("extra", "x")]);
        assert_eq!(differing_keys(&desired, &actual), ["extra", "password", "user"]);
        assert!(differing_keys(&desired, &desired).is_empty());
    }

    #[test]
    fn findings_name_the_secrets() {
        let s = SecretsSettings::default();
        assert_eq!(subject(&s), "Secret ameide/db-migrations-local");
        assert_eq!(
            expected(&s),
            "Secret ameide/db-migrations-local holding url, user, password from Secret \
             ameide/postgres-credentials"
        );
    }
}
