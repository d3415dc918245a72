//! What a Helm test Pod's command would find in the cluster: the testbed runs no
//! containers, so the fake helm (as the kubelet) reads the hosts a check names
//! (`<svc>.<ns>.svc[.cluster.local]`, in URLs, `-h HOST`, `nc HOST PORT`) and asks the
//! API whether a Ready Pod backs each Service, as busybox `wget`/`nslookup`/`nc` would
//! find out over the cluster network: no Service is a DNS failure, a Service whose
//! selector matches no Ready workload refuses connections.

use serde_json::Value;

use crate::apiserver::controllers::workload_ready;
use crate::kube_api::Client;

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

/// `None` when every host answers; else what the check's tool would print.
pub async fn failure(client: &Client, pod_spec: &Value) -> anyhow::Result<Option<String>> {
    for (host, svc, ns) in hosts(pod_spec) {
        if svc == "kubernetes" && ns == "default" {
            continue;
        }
        let Some(service) =
            client.get_opt(&format!("/api/v1/namespaces/{ns}/services/{svc}")).await?
        else {
            return Ok(Some(format!("wget: bad address '{host}'\n")));
        };
        let Some(selector) = service["spec"]["selector"].as_object().filter(|s| !s.is_empty())
        else {
            continue; // endpoints managed by hand: not simulated, taken as answering
        };
        let matches = |labels: &Value| selector.iter().all(|(k, v)| &labels[k] == v);
        let mut ready = false;
        for (path, template) in [
            (format!("/apis/apps/v1/namespaces/{ns}/deployments"), true),
            (format!("/apis/apps/v1/namespaces/{ns}/statefulsets"), true),
            (format!("/apis/apps/v1/namespaces/{ns}/daemonsets"), true),
            (format!("/api/v1/namespaces/{ns}/pods"), false),
        ] {
            for obj in client.list(&path, None).await? {
                let labels = if template {
                    &obj["spec"]["template"]["metadata"]["labels"]
                } else {
                    &obj["metadata"]["labels"]
                };
                let some_ready = match obj["kind"].as_str() {
                    Some("Pod") => workload_ready(&obj),
                    _ => {
                        obj["status"]["readyReplicas"].as_i64().unwrap_or(0) > 0
                            || obj["status"]["numberReady"].as_i64().unwrap_or(0) > 0
                    }
                };
                ready |= matches(labels) && some_ready;
            }
        }
        if !ready {
            let ip = service["spec"]["clusterIP"].as_str().unwrap_or("10.43.0.1");
            return Ok(Some(format!(
                "wget: can't connect to remote host ({ip}): Connection refused\n"
            )));
        }
    }
    Ok(None)
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
