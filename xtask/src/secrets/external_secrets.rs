//! ExternalSecret validation: every ExternalSecret (`external-secrets.io`, `v1` or
//! `v1beta1`, all namespaces) must be Ready; one that is not names itself, its reason
//! and the remote keys it misses. ESO's Ready condition only says "could not get secret
//! data from provider" (`externalsecret_controller.go` `msgErrorGetSecretData`); the key
//! is in the Warning Event `UpdateFailed` it records on the ExternalSecret
//! (`markAsFailed`: "error processing spec.data[N] (key: K), err: ..."), read here.
//!
//! No CRD or no ExternalSecret is a warning with a count, never a silent pass; and
//! ExternalSecrets with no operator running to reconcile them are a warning naming the
//! missing controller, not a not-Ready failure: nothing is wrong with them, the platform
//! lacks the controller.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::ApiResource;

use super::remote_keys::{missing_keys, referenced_keys};
use crate::error::{Context as _, Result};
use crate::outcome::{Check, Finding, Report, Verdict};

const SUBJECT: &str = "ExternalSecrets";
const EXPECTED: &str = "every ExternalSecret Ready (every key it references exists)";

pub const ESO_GROUP: &str = "external-secrets.io";
/// The label the upstream chart puts on the operator's own Deployment
/// (`deploy/charts/external-secrets/templates/_helpers.tpl`, `external-secrets.selectorLabels`:
/// `app.kubernetes.io/name: {{ include "external-secrets.name" . }}`, the chart name
/// unless `nameOverride`); its webhook and cert-controller are `...-webhook` and
/// `...-cert-controller`, so this selects the controller alone.
///
/// Why this signal: it is the controller itself, however it was installed (the chart
/// through Helmfile or Helm, or the static manifests ESO renders from the same chart),
/// and "a ready replica" is what reconciling needs; a Helm release record only says a
/// chart was installed once, not that its controller runs now.
pub const ESO_CONTROLLER_SELECTOR: &str = "app.kubernetes.io/name=external-secrets";
/// How to add the operator to a platform (the chart's upstream repository).
const ESO_INSTALL: &str = "install the `external-secrets` chart (`cargo xtask vendor add \
external-secrets --repo https://charts.external-secrets.io --version <v>`, then a release of \
it in a layer before the ExternalSecrets'), or remove the ExternalSecrets";
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
    /// The newest Warning Event on it (`<reason>: <message>`, e.g. `UpdateFailed: error
    /// processing spec.data[0] (key: K), err: Secret does not exist`): where ESO names the
    /// key its generic condition message does not.
    pub event: Option<String>,
    /// Remote keys the condition message or the event says are missing (names only).
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
        if let Some(event) = &self.event {
            line.push_str(&format!(" (event {event})"));
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
        event: None,
        missing_keys,
    }
}

/// `status` with the newest Warning Event on it: the event is kept and the keys it names
/// are added to the missing ones.
pub fn with_warning_event(
    mut status: ExternalSecretStatus,
    events: &[Event],
) -> ExternalSecretStatus {
    let newest = events
        .iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .filter(|e| e.involved_object.kind.as_deref().is_none_or(|k| k == "ExternalSecret"))
        .filter(|e| e.involved_object.name.as_deref() == Some(status.name.as_str()))
        .max_by_key(|e| {
            let at = e.last_timestamp.as_ref().or(e.first_timestamp.as_ref()).map(|t| t.0);
            (at, e.metadata.creation_timestamp.clone(), e.count)
        });
    let Some(event) = newest else { return status };
    let reason = event.reason.as_deref().unwrap_or("Warning");
    let message = event.message.as_deref().unwrap_or_default();
    for key in missing_keys(message, &[]) {
        if !status.missing_keys.contains(&key) {
            status.missing_keys.push(key);
        }
    }
    status.event = Some(format!("{reason}: {message}"));
    status
}

/// Whether the External Secrets operator runs ([`ESO_CONTROLLER_SELECTOR`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Controller {
    /// A Deployment of it (`ns/name`) has a ready replica.
    Running(String),
    /// None has; the labelled Deployments found (`ns/name (0 of 1 ready)`), if any.
    Missing { not_ready: Vec<String> },
}

/// What the ExternalSecret listing found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExternalSecrets {
    /// The `external-secrets.io` group (or its ExternalSecret kind) is not served.
    CrdAbsent,
    Listed {
        version: String,
        statuses: Vec<ExternalSecretStatus>,
        controller: Controller,
    },
}

/// The operator's Deployments (all namespaces, [`ESO_CONTROLLER_SELECTOR`]) read as a
/// [`Controller`].
pub fn controller_of(deployments: &[Deployment]) -> Controller {
    let mut not_ready = Vec::new();
    for deployment in deployments {
        let name =
            format!("{}/{}", deployment.namespace().unwrap_or_default(), deployment.name_any());
        let status = deployment.status.as_ref();
        let ready = status.and_then(|s| s.ready_replicas).unwrap_or(0);
        if ready > 0 {
            return Controller::Running(name);
        }
        let wanted = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        not_ready.push(format!("{name} (0 of {wanted} ready)"));
    }
    Controller::Missing { not_ready }
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
        let controller = if statuses.is_empty() {
            Controller::Missing { not_ready: Vec::new() }
        } else {
            let deployments: Api<Deployment> = Api::all(client.clone());
            let params = ListParams::default().labels(ESO_CONTROLLER_SELECTOR);
            let listed = deployments.list(&params).await.with_context(|| {
                format!("listing the External Secrets operator's Deployments ({ESO_CONTROLLER_SELECTOR})")
            })?;
            controller_of(&listed.items)
        };
        // Only a running operator records Events worth reading.
        if matches!(controller, Controller::Running(_)) {
            for status in statuses.iter_mut().filter(|s| !s.ready) {
                let events: Api<Event> = Api::namespaced(client.clone(), &status.namespace);
                let params =
                    ListParams::default().fields(&format!("involvedObject.name={}", status.name));
                let listed = events.list(&params).await.with_context(|| {
                    format!("listing Events of ExternalSecret {}/{}", status.namespace, status.name)
                })?;
                *status = with_warning_event(status.clone(), &listed.items);
            }
        }
        return Ok(ExternalSecrets::Listed { version: version.to_owned(), statuses, controller });
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

/// The verdict on a listing: passed (with the count), warned (none to check: said with
/// a count), or failed naming every ExternalSecret that is not Ready and what to run
/// (against `context`).
pub fn judge_external_secrets(found: &ExternalSecrets, context: &str) -> Check {
    let warned = |found: String, warning: String| Check {
        verdict: Verdict::Warned,
        finding: Finding::new(SUBJECT, EXPECTED, found, ""),
        warnings: vec![warning],
    };
    let statuses = match found {
        ExternalSecrets::CrdAbsent => {
            return warned(
                "0 ExternalSecrets".into(),
                format!(
                    "0 ExternalSecrets checked: the {ESO_GROUP} CRD (v1 or v1beta1) is not installed"
                ),
            );
        }
        ExternalSecrets::Listed { statuses, .. } if statuses.is_empty() => {
            return warned(
                "0 ExternalSecrets".into(),
                "0 ExternalSecrets found in any namespace: nothing to validate".into(),
            );
        }
        ExternalSecrets::Listed {
            statuses, controller: Controller::Missing { not_ready }, ..
        } => {
            let names: Vec<String> =
                statuses.iter().map(|s| format!("{}/{}", s.namespace, s.name)).collect();
            let found = match not_ready.is_empty() {
                true => format!("no Deployment labelled {ESO_CONTROLLER_SELECTOR}"),
                false => format!("{ESO_CONTROLLER_SELECTOR}: {}", not_ready.join(", ")),
            };
            return warned(
                format!("{} ExternalSecrets, no External Secrets Operator", statuses.len()),
                format!(
                    "no External Secrets Operator runs ({found}): {} ExternalSecret(s) cannot \
                 become Ready and were not checked: {}; {ESO_INSTALL}",
                    statuses.len(),
                    names.join(", ")
                ),
            );
        }
        ExternalSecrets::Listed { statuses, .. } => statuses,
    };
    let not_ready: Vec<&ExternalSecretStatus> = statuses.iter().filter(|s| !s.ready).collect();
    let Some(first) = not_ready.first() else {
        return Check {
            verdict: Verdict::Passed,
            finding: Finding::new(
                SUBJECT,
                EXPECTED,
                format!("{} ExternalSecrets Ready", statuses.len()),
                "",
            ),
            warnings: Vec::new(),
        };
    };
    let found = format!(
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
    let describe = format!("describe externalsecret -n {} {}", first.namespace, first.name);
    let remediation = format!(
        "seed {keys} in the secret store (Vault fixtures: \
         infra/kubernetes/environments/local/foundation-vault-bootstrap.yaml), then `{}`",
        crate::k8s::kubectl_command(context, &describe)
    );
    Check {
        verdict: Verdict::Failed,
        finding: Finding::new(SUBJECT, EXPECTED, found, remediation),
        warnings: Vec::new(),
    }
}

/// A check as a step's report: its count when it passed, its warnings, its finding
/// when it failed (the first line of what was found is the detail).
pub fn report_of(check: Check) -> Report {
    match check.verdict {
        Verdict::Passed => Report::ok(check.finding.found).warn(check.warnings),
        Verdict::Warned => Report::ok("").warn(check.warnings),
        Verdict::Failed => {
            let detail =
                check.finding.found.lines().next().unwrap_or_default().trim_end_matches(':');
            Report::failed(detail.to_owned(), check.finding).warn(check.warnings)
        }
    }
}

#[cfg(test)]
#[path = "external_secrets_tests.rs"]
mod tests;
