//! k3s's ServiceLB (klipper-lb, `pkg/servicelb/controller.go` in k3s): a `LoadBalancer`
//! Service gets the node's address as its ingress once its `svclb-<service>` Pods run;
//! the testbed has one node and writes the ingress at once (no `svclb` DaemonSet).

use serde_json::json;

use crate::apiserver::store::Store;

/// The node's address (k3d's first server on its Docker network).
pub(super) const HOST_IP: &str = "172.18.0.3";

pub(super) fn reconcile(store: &mut Store) {
    for (key, svc) in store.objects_of("", "services") {
        if svc["spec"]["type"] == "LoadBalancer"
            && !svc["status"]["loadBalancer"]["ingress"].is_array()
        {
            store.set_status(
                &key,
                json!({"loadBalancer": {"ingress": [{"ip": HOST_IP, "ipMode": "VIP"}]}}),
            );
        }
    }
}
