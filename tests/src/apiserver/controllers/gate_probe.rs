//! What a Helm test Pod's command would find in the cluster: the testbed runs no
//! containers, so the kubelet (`apiserver/controllers/test_pods.rs`) reads the hosts a
//! check names (`<svc>.<ns>.svc[.cluster.local]`, in URLs, `-h HOST`, `nc HOST PORT`)
//! and looks in the store whether a Ready Pod backs each Service, as busybox
//! `wget`/`nslookup`/`nc` would find out over the cluster network: no Service is a DNS
//! failure, a Service whose selector matches no Ready Pod refuses connections.

use serde_json::Value;

use crate::apiserver::controllers::workload_ready;
use crate::apiserver::store::Store;

/// `(service, namespace)` of every cluster host named in a Pod spec's commands.
pub fn hosts(pod_spec: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for c in pod_spec["containers"].as_array().into_iter().flatten() {
        let words = ["command", "args"]
            .iter()
            .flat_map(|f| c[*f].as_array().cloned().unwrap_or_default())
            .filter_map(|v| v.as_str().map(str::to_owned))
            .flat_map(|s| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>());
        for w in words {
            let host = w.split("://").last().unwrap_or("");
            let host = host.split(['/', ':', '\'', '"']).next().unwrap_or("");
            let parts: Vec<&str> = host.split('.').collect();
            if parts.len() >= 3 && parts[2] == "svc" {
                let entry = (host.to_owned(), parts[0].to_owned(), parts[1].to_owned());
                if !out.contains(&entry) {
                    out.push(entry);
                }
            }
        }
    }
    out
}

/// `None` when every host answers; else what the check's tool would print. A Service
/// answers when a Ready Pod (not terminating) of its namespace matches its selector,
/// which is what its Endpoints would list; a Service without a selector (endpoints
/// managed by hand) is taken as answering.
pub fn failure(store: &Store, pod_spec: &Value) -> Option<String> {
    for (host, svc, ns) in hosts(pod_spec) {
        if svc == "kubernetes" && ns == "default" {
            continue;
        }
        let Some(service) = store.data.objects.get(&format!("core/services/{ns}/{svc}")) else {
            return Some(format!("wget: bad address '{host}'\n"));
        };
        let Some(selector) = service["spec"]["selector"].as_object().filter(|s| !s.is_empty())
        else {
            continue;
        };
        let matches = |labels: &Value| selector.iter().all(|(k, v)| &labels[k] == v);
        let prefix = format!("core/pods/{ns}/");
        let ready = store
            .data
            .objects
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .any(|(_, pod)| {
                matches(&pod["metadata"]["labels"])
                    && pod["metadata"]["deletionTimestamp"].is_null()
                    && workload_ready(pod)
            });
        if !ready {
            let ip = service["spec"]["clusterIP"].as_str().unwrap_or("10.43.0.1");
            return Some(format!(
                "wget: can't connect to remote host ({ip}): Connection refused\n"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hosts_come_from_urls_and_flags() {
        let spec = json!({"containers": [{"command": ["wget", "-q", "-O", "/dev/null",
            "http://foundation-vault-core.vault.svc.cluster.local:8200/v1/sys/health"]},
            {"command": ["sh", "-c", "pg_isready -h postgres.ameide.svc -p 5432"]}]});
        let h = hosts(&spec);
        assert_eq!(h[0].1, "foundation-vault-core");
        assert_eq!(h[0].2, "vault");
        assert_eq!((h[1].1.as_str(), h[1].2.as_str()), ("postgres", "ameide"));
    }
}
