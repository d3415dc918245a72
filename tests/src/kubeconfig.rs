//! The kubeconfig entries the fake k3d writes, named as k3d names them: cluster and
//! context `k3d-<cluster>`, user `admin@k3d-<cluster>` (k3d v5, pkg/client/kubeconfig.go).
//! The server is the fake API server (`https://0.0.0.0:<port>`, as k3d writes its API
//! host), the cluster entry carries `certificate-authority-data` and the user
//! `client-certificate-data`/`client-key-data` (k3d copies k3s's admin kubeconfig).

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};

pub fn context_name(cluster: &str) -> String {
    format!("k3d-{cluster}")
}

fn user_name(cluster: &str) -> String {
    format!("admin@k3d-{cluster}")
}

/// Read a kubeconfig; a missing or empty file is an empty config.
pub fn read(path: &Path) -> Result<Value> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if text.trim().is_empty() {
        return Ok(empty());
    }
    let value: Value = serde_saphyr::from_str(&text)
        .with_context(|| format!("{}: not a kubeconfig (YAML)", path.display()))?;
    Ok(if value.is_object() { value } else { empty() })
}

pub fn write(path: &Path, config: &Value) -> Result<()> {
    let text = serde_saphyr::to_string(config).context("serializing the kubeconfig")?;
    // Write then rename, so a reader never sees half a file.
    let tmp = path.with_extension("tmp-testbed");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

pub fn empty() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [],
        "contexts": [],
        "users": [],
        "current-context": "",
        "preferences": {},
    })
}

/// What the kubeconfig carries to reach a cluster over TLS (PEM texts).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub ca: Vec<u8>,
    pub client_cert: Option<Vec<u8>>,
    pub client_key: Option<Vec<u8>>,
}

/// Add or replace the cluster's entries and make its context current. With
/// `credentials` the entries are as k3d writes them: `certificate-authority-data`, and a
/// user with `client-certificate-data`/`client-key-data`.
pub fn upsert_cluster(config: &mut Value, cluster: &str, server: &str) {
    upsert_cluster_tls(config, cluster, server, None)
}

pub fn upsert_cluster_tls(
    config: &mut Value,
    cluster: &str,
    server: &str,
    credentials: Option<&Credentials>,
) {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let name = context_name(cluster);
    let user = user_name(cluster);
    let (cluster_entry, user_entry) = match credentials {
        Some(c) => (
            json!({"server": server, "certificate-authority-data": b64(&c.ca)}),
            json!({"client-certificate-data": b64(c.client_cert.as_deref().unwrap_or_default()),
                   "client-key-data": b64(c.client_key.as_deref().unwrap_or_default())}),
        ),
        None => (json!({"server": server}), json!({"token": "testbed"})),
    };
    set_named(config, "clusters", &name, json!({"name": name, "cluster": cluster_entry}));
    set_named(config, "users", &user, json!({"name": user, "user": user_entry}));
    set_named(
        config,
        "contexts",
        &name,
        json!({"name": name, "context": {"cluster": name, "user": user}}),
    );
    config["current-context"] = json!(name);
}

/// Remove the cluster's entries; clear current-context if it was this one (as k3d does).
pub fn remove_cluster(config: &mut Value, cluster: &str) {
    let name = context_name(cluster);
    remove_named(config, "clusters", &name);
    remove_named(config, "users", &user_name(cluster));
    remove_named(config, "contexts", &name);
    if config["current-context"].as_str() == Some(name.as_str()) {
        config["current-context"] = json!("");
    }
}

/// The server URL of the current context, if any.
pub fn current_server(config: &Value) -> Option<String> {
    context_server(config, config["current-context"].as_str()?)
}

/// The server URL of context `name`, if the kubeconfig has it.
pub fn context_server(config: &Value, name: &str) -> Option<String> {
    let context = named(config, "contexts", name)?;
    let cluster = context["context"]["cluster"].as_str()?;
    named(config, "clusters", cluster)?["cluster"]["server"].as_str().map(str::to_owned)
}

/// The CA and client certificate of the current context (`*-data` fields, or files).
pub fn current_credentials(config: &Value) -> Option<Credentials> {
    context_credentials(config, config["current-context"].as_str()?)
}

/// The CA and client certificate of context `name`.
pub fn context_credentials(config: &Value, name: &str) -> Option<Credentials> {
    use base64::Engine;
    let context = named(config, "contexts", name)?;
    let cluster = &named(config, "clusters", context["context"]["cluster"].as_str()?)?["cluster"];
    let user = context["context"]["user"]
        .as_str()
        .and_then(|u| named(config, "users", u))
        .map(|u| u["user"].clone())
        .unwrap_or(Value::Null);
    let field = |v: &Value, data: &str, file: &str| -> Option<Vec<u8>> {
        match v[data].as_str() {
            Some(d) => base64::engine::general_purpose::STANDARD.decode(d.trim()).ok(),
            None => std::fs::read(v[file].as_str()?).ok(),
        }
    };
    Some(Credentials {
        ca: field(cluster, "certificate-authority-data", "certificate-authority")?,
        client_cert: field(&user, "client-certificate-data", "client-certificate"),
        client_key: field(&user, "client-key-data", "client-key"),
    })
}

pub fn context_names(config: &Value) -> Vec<String> {
    config["contexts"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["name"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn named<'a>(config: &'a Value, list: &str, name: &str) -> Option<&'a Value> {
    config[list].as_array()?.iter().find(|e| e["name"].as_str() == Some(name))
}

fn set_named(config: &mut Value, list: &str, name: &str, entry: Value) {
    if !config[list].is_array() {
        config[list] = json!([]);
    }
    let Some(items) = config[list].as_array_mut() else { return };
    match items.iter_mut().find(|e| e["name"].as_str() == Some(name)) {
        Some(existing) => *existing = entry,
        None => items.push(entry),
    }
}

fn remove_named(config: &mut Value, list: &str, name: &str) {
    if let Some(items) = config[list].as_array_mut() {
        items.retain(|e| e["name"].as_str() != Some(name));
    }
}

/// Read-modify-write of the kubeconfig file.
pub fn update(path: &Path, change: impl FnOnce(&mut Value)) -> Result<()> {
    let mut config = read(path)?;
    change(&mut config);
    write(path, &config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_then_remove_leaves_other_entries() {
        let mut config = empty();
        upsert_cluster(&mut config, "other", "http://127.0.0.1:1");
        upsert_cluster(&mut config, "ameide", "http://127.0.0.1:2");
        upsert_cluster(&mut config, "ameide", "http://127.0.0.1:3");
        assert_eq!(context_names(&config), ["k3d-other", "k3d-ameide"]);
        assert_eq!(current_server(&config).as_deref(), Some("http://127.0.0.1:3"));
        remove_cluster(&mut config, "ameide");
        assert_eq!(context_names(&config), ["k3d-other"]);
        assert_eq!(config["current-context"], "");
        assert_eq!(config["users"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn round_trips_through_yaml() {
        let dir = std::env::temp_dir().join(format!("testbed-kc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kubeconfig");
        std::fs::write(&path, "").unwrap();
        update(&path, |c| upsert_cluster(c, "ameide", "http://127.0.0.1:9")).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(current_server(&back).as_deref(), Some("http://127.0.0.1:9"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
