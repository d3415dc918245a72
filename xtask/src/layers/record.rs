//! The per-layer digests recorded in the cluster after a layer's last fully green run.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};

use crate::error::{Context as _, Result};

pub const DIGESTS_CONFIGMAP: &str = "bootstrap-layer-digests";
pub const DIGESTS_NAMESPACE: &str = "kube-system";

// ---- recorded digests --------------------------------------------------------------

/// The digests recorded in the cluster (none on a new cluster).
pub async fn recorded_digests(client: &kube::Client) -> Result<BTreeMap<String, String>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), DIGESTS_NAMESPACE);
    let cm = api
        .get_opt(DIGESTS_CONFIGMAP)
        .await
        .with_context(|| format!("reading ConfigMap {DIGESTS_NAMESPACE}/{DIGESTS_CONFIGMAP}"))?;
    Ok(cm.and_then(|c| c.data).unwrap_or_default())
}

/// Record `layer`'s digest after a green gate (server-side apply of the whole map: all
/// its keys are ours, so a partial apply would drop the others).
pub async fn record_digest(client: &kube::Client, layer: &str, digest: &str) -> Result<()> {
    let mut data = recorded_digests(client).await?;
    data.insert(layer.to_owned(), digest.to_owned());
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), DIGESTS_NAMESPACE);
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": DIGESTS_CONFIGMAP, "namespace": DIGESTS_NAMESPACE },
        "data": data,
    });
    api.patch(
        DIGESTS_CONFIGMAP,
        &PatchParams::apply(crate::k8s::FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .with_context(|| {
        format!("recording the digest of layer {layer} in {DIGESTS_NAMESPACE}/{DIGESTS_CONFIGMAP}")
    })?;
    Ok(())
}

/// Forget `layer`'s digest before it syncs: if the sync or gate then fails, the next
/// run must not mistake it for converged.
pub async fn forget_digest(client: &kube::Client, layer: &str) -> Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), DIGESTS_NAMESPACE);
    let patch = serde_json::json!({ "data": { layer: null } });
    match api.patch(DIGESTS_CONFIGMAP, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => {
            Err(crate::error::Error::from(e)
                .context(format!("forgetting the digest of layer {layer}")))
        }
    }
}
