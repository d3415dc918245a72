//! What the run learns of the Secrets it reads, for redaction: their values go to the
//! session's redactor (never anywhere else) before anything that might print them is
//! read (a pod's log), so they are replaced by `[redacted]` in every output from then on.

use k8s_openapi::api::core::v1::{PodSpec, Secret};
use kube::api::Api;

use crate::session::Session;

/// The session learns a Secret's values (see [`Session::learn_secret`]).
pub fn learn_secret(session: &Session, secret: &Secret) {
    let data = secret.data.iter().flatten();
    session.learn_secret(data.map(|(key, value)| (key.as_str(), value.0.as_slice())));
}

/// The session learns the values of the Secrets the bootstrap's pods get as environment
/// (`env[].valueFrom.secretKeyRef`, `envFrom[].secretRef`: the Vault token), before any
/// of their logs is read, so a script that echoes its token is redacted. A Secret that
/// cannot be read is skipped: its pods' logs are still shown, with the shapes redacted.
pub async fn learn_pod_secrets(
    session: &Session,
    client: &kube::Client,
    namespace: &str,
    spec: Option<&PodSpec>,
) {
    let containers = spec
        .into_iter()
        .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()));
    // (Secret, key); no key: every key of it.
    let mut wanted: Vec<(String, Option<String>)> = Vec::new();
    for container in containers {
        for env in container.env.iter().flatten() {
            if let Some(r) = env.value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()) {
                wanted.push((r.name.clone(), Some(r.key.clone())));
            }
        }
        for from in container.env_from.iter().flatten() {
            if let Some(r) = &from.secret_ref {
                wanted.push((r.name.clone(), None));
            }
        }
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for (name, key) in wanted {
        let Ok(Some(mut secret)) = secrets.get_opt(&name).await else { continue };
        if let (Some(key), Some(data)) = (&key, secret.data.as_mut()) {
            data.retain(|k, _| k == key);
        }
        learn_secret(session, &secret);
    }
}
