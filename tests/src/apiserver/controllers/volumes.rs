//! k3s's local-path provisioner and the volume binder (rancher/local-path-provisioner;
//! kubernetes `pkg/controller/volume/persistentvolume/pv_controller.go`): the default
//! StorageClass `local-path` binds `WaitForFirstConsumer`, so a claim stays `Pending`
//! until a Pod that mounts it is scheduled; then it is provisioned on the Pod's node and
//! `Bound`. A claim of another class (or `""`, which needs a pre-made volume) has no
//! provisioner here and stays `Pending`.

use serde_json::json;

use super::meta;
use crate::apiserver::defaults::DEFAULT_STORAGE_CLASS;
use crate::apiserver::store::Store;

/// The node every Pod is scheduled to.
const NODE: &str = "k3d-node";

pub(super) fn reconcile(store: &mut Store, node: Option<&str>) {
    let claims = store.objects_of("", "persistentvolumeclaims");
    if claims.iter().all(|(_, c)| c["status"]["phase"] == "Bound") {
        return;
    }
    // Claims some scheduled, live Pod mounts (namespace/claim).
    let mut wanted = Vec::new();
    for (_, pod) in store.objects_of("", "pods") {
        if matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed")) {
            continue;
        }
        for v in pod["spec"]["volumes"].as_array().into_iter().flatten() {
            if let Some(claim) = v["persistentVolumeClaim"]["claimName"].as_str() {
                wanted.push(format!("{}/{claim}", meta(&pod, "namespace")));
            }
        }
    }
    for (key, claim) in claims {
        let id = format!("{}/{}", meta(&claim, "namespace"), meta(&claim, "name"));
        if claim["status"]["phase"] == "Bound"
            || claim["spec"]["storageClassName"] != DEFAULT_STORAGE_CLASS
            || !wanted.contains(&id)
        {
            continue;
        }
        let volume = format!("pvc-{}", meta(&claim, "uid"));
        let node = node.unwrap_or(NODE);
        store.merge_into(
            &key,
            &json!({"metadata": {"annotations": {
                        "pv.kubernetes.io/bind-completed": "yes",
                        "pv.kubernetes.io/bound-by-controller": "yes",
                        "volume.beta.kubernetes.io/storage-provisioner": "rancher.io/local-path",
                        "volume.kubernetes.io/storage-provisioner": "rancher.io/local-path",
                        "volume.kubernetes.io/selected-node": node}},
                    "spec": {"volumeName": volume}}),
        );
        let capacity = claim["spec"]["resources"]["requests"].clone();
        store.set_status(
            &key,
            json!({"phase": "Bound", "accessModes": claim["spec"]["accessModes"], "capacity": capacity}),
        );
    }
}
