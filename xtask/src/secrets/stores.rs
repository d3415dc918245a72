//! Which secret backends supply the platform's secrets: every secret store the
//! ExternalSecrets name (`spec.secretStoreRef`, and `storeRef` of `data[].sourceRef` /
//! `dataFrom[].sourceRef`; kind `SecretStore` unless `ClusterSecretStore`, as ESO's
//! `apis/externalsecrets/v1/externalsecret_types.go` defaults it) and its provider
//! (the one key set under the store's `spec.provider`, `secretstore_types.go`).

use std::collections::BTreeMap;

use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams};
use serde::Serialize;
use serde_json::Value;

use super::external_secrets::{ESO_GROUP, ESO_VERSIONS};
use crate::error::{Context as _, Result};

/// One store in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct StoreUse {
    pub name: String,
    /// `SecretStore` or `ClusterSecretStore`.
    pub kind: String,
    /// The namespace of a `SecretStore` (the ExternalSecret's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `Vault`, `Azure Key Vault`, … ; `not found` when the store does not exist.
    pub provider: String,
    /// How many ExternalSecrets use it.
    pub external_secrets: usize,
}

impl StoreUse {
    pub fn describe(&self) -> String {
        let at = self.namespace.as_ref().map_or(String::new(), |ns| format!("{ns}/"));
        format!(
            "{at}{} ({}, {}; {} ExternalSecret(s))",
            self.name, self.kind, self.provider, self.external_secrets
        )
    }
}

/// The stores an ExternalSecret (`data` of its object) names: (kind, name).
pub fn store_refs(external_secret: &Value) -> Vec<(String, String)> {
    let spec = &external_secret["spec"];
    let mut refs = vec![&spec["secretStoreRef"]];
    for list in ["data", "dataFrom"] {
        for entry in spec[list].as_array().into_iter().flatten() {
            refs.push(&entry["sourceRef"]["storeRef"]);
        }
    }
    let mut out: Vec<(String, String)> = refs
        .into_iter()
        .filter_map(|r| {
            let name = r["name"].as_str().filter(|n| !n.is_empty())?;
            let kind = r["kind"].as_str().filter(|k| !k.is_empty()).unwrap_or("SecretStore");
            Some((kind.to_owned(), name.to_owned()))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The provider a store's `spec.provider` configures, in words.
pub fn provider_name(store: &Value) -> String {
    let Some(provider) = store["spec"]["provider"].as_object() else {
        return "no provider set".into();
    };
    let Some((key, config)) = provider.iter().find(|(_, v)| !v.is_null()) else {
        return "no provider set".into();
    };
    let known = match key.as_str() {
        "vault" => "Vault",
        "azurekv" => "Azure Key Vault",
        "aws" => match config["service"].as_str() {
            Some("ParameterStore") => "AWS Parameter Store",
            _ => "AWS Secrets Manager",
        },
        "gcpsm" => "Google Secret Manager",
        "kubernetes" => "Kubernetes",
        "fake" => "Fake (static data)",
        "onepassword" | "onepasswordSDK" => "1Password",
        "bitwardensecretsmanager" => "Bitwarden Secrets Manager",
        "akeyless" => "Akeyless",
        "doppler" => "Doppler",
        "infisical" => "Infisical",
        "gitlab" => "GitLab variables",
        "github" => "GitHub",
        "ibm" => "IBM Secrets Manager",
        "oracle" => "Oracle Vault",
        "webhook" => "Webhook",
        other => return other.to_owned(),
    };
    known.to_owned()
}

/// The ExternalSecrets and the stores, as listed: (ExternalSecrets, SecretStores,
/// ClusterSecretStores).
type Listed = (Vec<DynamicObject>, Vec<DynamicObject>, Vec<DynamicObject>);

/// Every ExternalSecret and store; none when ESO's API is not served or no
/// ExternalSecret exists.
async fn list_all(client: &kube::Client) -> Result<Option<Listed>> {
    let group = match kube::discovery::oneshot::group(client, ESO_GROUP).await {
        Ok(group) => group,
        Err(kube::Error::Discovery(_)) => return Ok(None),
        Err(e) => return Err(e).context("discovering the external-secrets.io API group"),
    };
    let Some(version) = ESO_VERSIONS.into_iter().find(|v| !group.versioned_resources(v).is_empty())
    else {
        return Ok(None);
    };
    let resources = group.versioned_resources(version);
    let list = |plural: &str| {
        let found = resources.iter().find(|(r, _)| r.plural == plural).map(|(r, _)| r.clone());
        let client = client.clone();
        let plural = plural.to_owned();
        async move {
            let Some(resource) = found else { return Ok(Vec::new()) };
            let api: Api<DynamicObject> = Api::all_with(client, &resource);
            api.list(&ListParams::default())
                .await
                .map(|l| l.items)
                .with_context(|| format!("listing {plural} ({ESO_GROUP}/{version})"))
        }
    };
    let external_secrets = list("externalsecrets").await?;
    if external_secrets.is_empty() {
        return Ok(None);
    }
    Ok(Some((external_secrets, list("secretstores").await?, list("clustersecretstores").await?)))
}

/// A store's (kind, namespace of a SecretStore, name).
type StoreKey = (String, Option<String>, String);

/// Each store in use: its key, how many ExternalSecrets use it, and the store object
/// when it exists.
fn in_use(listed: &Listed) -> Vec<(StoreKey, usize, Option<&DynamicObject>)> {
    let (external_secrets, stores, cluster_stores) = listed;
    let mut uses: BTreeMap<StoreKey, usize> = BTreeMap::new();
    for es in external_secrets {
        for (kind, name) in store_refs(&es.data) {
            let namespace = (kind == "SecretStore").then(|| es.namespace().unwrap_or_default());
            *uses.entry((kind, namespace, name)).or_default() += 1;
        }
    }
    uses.into_iter()
        .map(|((kind, namespace, name), count)| {
            let store = match &namespace {
                Some(ns) => stores
                    .iter()
                    .find(|s| s.name_any() == name && s.namespace().as_ref() == Some(ns)),
                None => cluster_stores.iter().find(|s| s.name_any() == name),
            };
            ((kind, namespace, name), count, store)
        })
        .collect()
}

/// Every store the ExternalSecrets use, with its provider; none when ESO's API is not
/// served or no ExternalSecret exists.
pub async fn used(client: &kube::Client) -> Result<Vec<StoreUse>> {
    let Some(listed) = list_all(client).await? else { return Ok(Vec::new()) };
    Ok(in_use(&listed)
        .into_iter()
        .map(|((kind, namespace, name), count, store)| {
            let provider = store.map_or_else(|| "not found".to_owned(), |s| provider_name(&s.data));
            StoreUse { name, kind, namespace, provider, external_secrets: count }
        })
        .collect())
}

/// A store in use that ESO will not read from yet: its flood gate (on by default) lets
/// an ExternalSecret sync only once the store's `Ready` condition is True
/// (external-secrets `pkg/controllers/secretstore/client_manager.go`
/// `assertStoreIsUsable`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreNotReady {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    /// `not found`, `no Ready condition yet`, or `<reason>: <message>` of the condition.
    pub why: String,
}

impl StoreNotReady {
    pub fn describe(&self) -> String {
        let at = self.namespace.as_ref().map_or(String::new(), |ns| format!("{ns}/"));
        format!("{} {at}{} is not Ready: {}", self.kind, self.name, self.why)
    }
}

/// Why a store is not Ready, or None when it is.
pub fn not_ready_why(store: Option<&Value>) -> Option<String> {
    let Some(store) = store else { return Some("not found".into()) };
    let conditions = store["status"]["conditions"].as_array();
    let Some(ready) = conditions.into_iter().flatten().find(|c| c["type"] == "Ready") else {
        return Some("no Ready condition yet (the operator has not validated it)".into());
    };
    if ready["status"] == "True" {
        return None;
    }
    let part = |key: &str| ready[key].as_str().filter(|s| !s.is_empty()).map(str::to_owned);
    Some(match (part("reason"), part("message")) {
        (Some(r), Some(m)) => format!("{r}: {m}"),
        (r, m) => r.or(m).unwrap_or_else(|| "Ready is False".into()),
    })
}

/// The stores in use that are not Ready (none when ESO's API or ExternalSecrets are
/// absent).
pub async fn not_ready(client: &kube::Client) -> Result<Vec<StoreNotReady>> {
    let Some(listed) = list_all(client).await? else { return Ok(Vec::new()) };
    Ok(in_use(&listed)
        .into_iter()
        .filter_map(|((kind, namespace, name), _, store)| {
            let why = not_ready_why(store.map(|s| &s.data))?;
            Some(StoreNotReady { kind, namespace, name, why })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_store_reference_is_found_with_the_default_kind() {
        let es = json!({"spec": {
            "secretStoreRef": {"name": "vault-backend", "kind": "ClusterSecretStore"},
            "data": [
                {"secretKey": "a", "remoteRef": {"key": "k"}},
                {"secretKey": "b", "remoteRef": {"key": "k"}, "sourceRef": {"storeRef": {"name": "azure"}}}
            ],
            "dataFrom": [{"sourceRef": {"storeRef": {"name": "vault-backend", "kind": "ClusterSecretStore"}}}]
        }});
        assert_eq!(
            store_refs(&es),
            [
                ("ClusterSecretStore".to_owned(), "vault-backend".to_owned()),
                ("SecretStore".into(), "azure".into())
            ]
        );
    }

    #[test]
    fn a_store_is_ready_only_with_its_ready_condition_true() {
        let with = |c: Value| json!({"status": {"conditions": [c]}});
        assert_eq!(not_ready_why(None).unwrap(), "not found");
        assert!(not_ready_why(Some(&json!({}))).unwrap().starts_with("no Ready condition yet"));
        assert_eq!(not_ready_why(Some(&with(json!({"type": "Ready", "status": "True"})))), None);
        let held = with(json!({"type": "Ready", "status": "False",
            "reason": "InvalidProviderConfig", "message": "unable to validate store"}));
        assert_eq!(
            not_ready_why(Some(&held)).unwrap(),
            "InvalidProviderConfig: unable to validate store"
        );
        let s = StoreNotReady {
            kind: "ClusterSecretStore".into(),
            namespace: None,
            name: "vault-backend".into(),
            why: "InvalidProviderConfig: unable to validate store".into(),
        };
        assert_eq!(
            s.describe(),
            "ClusterSecretStore vault-backend is not Ready: InvalidProviderConfig: unable to validate store"
        );
    }

    #[test]
    fn providers_are_named_in_words() {
        let store = |provider: Value| json!({"spec": {"provider": provider}});
        assert_eq!(
            provider_name(&store(json!({"vault": {"server": "http://vault:8200"}}))),
            "Vault"
        );
        assert_eq!(
            provider_name(&store(json!({"azurekv": {"vaultUrl": "https://x"}}))),
            "Azure Key Vault"
        );
        assert_eq!(
            provider_name(&store(json!({"aws": {"service": "ParameterStore"}}))),
            "AWS Parameter Store"
        );
        assert_eq!(provider_name(&store(json!({"pulumi": {}}))), "pulumi");
        assert_eq!(provider_name(&json!({"spec": {}})), "no provider set");
        let used = StoreUse {
            name: "vault-backend".into(),
            kind: "ClusterSecretStore".into(),
            namespace: None,
            provider: "Vault".into(),
            external_secrets: 2,
        };
        assert_eq!(
            used.describe(),
            "vault-backend (ClusterSecretStore, Vault; 2 ExternalSecret(s))"
        );
    }
}
