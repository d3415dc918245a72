//! The k3d config file (`apiVersion: k3d.io/v1alpha5`, `kind: Simple`).
//!
//! The typed view covers what the engine reads; the whole parsed document is kept so
//! [`K3dConfig::canonical_hash`] covers every key, including ones we do not type.

use std::path::{Path, PathBuf};

use crate::error::Result;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::bad_input;

pub const API_VERSION: &str = "k3d.io/v1alpha5";
pub const KIND: &str = "Simple";

/// A parsed and validated k3d config.
#[derive(Debug, Clone)]
pub struct K3dConfig {
    pub file: PathBuf,
    pub spec: SimpleConfig,
    /// The whole document, for hashing.
    pub document: Value,
}

/// The typed part of a `kind: Simple` config. Unknown keys are allowed: k3d has many.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimpleConfig {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: Metadata,
    #[serde(default)]
    pub servers: Option<u32>,
    #[serde(default)]
    pub agents: Option<u32>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    #[serde(default)]
    pub registries: Registries,
    #[serde(default)]
    pub options: Options,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub port: String,
    #[serde(default)]
    pub node_filters: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registries {
    #[serde(default)]
    pub create: Option<RegistryCreate>,
    #[serde(default, rename = "use")]
    pub use_: Vec<String>,
    #[serde(default)]
    pub config: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryCreate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub host_port: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    #[serde(default)]
    pub runtime: RuntimeOptions,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeOptions {
    #[serde(default)]
    pub labels: Vec<RuntimeLabel>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeLabel {
    pub label: String,
    #[serde(default)]
    pub node_filters: Vec<String>,
}

impl K3dConfig {
    /// Read and validate a k3d config file; any problem is bad input naming the file.
    pub fn read(file: &Path) -> Result<K3dConfig> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| bad_input(format!("{}: cannot read: {e}", file.display())))?;
        K3dConfig::parse(file, &text)
    }

    /// Parse `text` that came from `file` (used in messages).
    pub fn parse(file: &Path, text: &str) -> Result<K3dConfig> {
        let document: Value = super::parse_yaml(file, text)?;
        if !document.is_object() {
            return Err(bad_input(format!(
                "{}: expected a mapping with `apiVersion: {API_VERSION}` and `kind: {KIND}`",
                file.display()
            )));
        }
        let spec: SimpleConfig = super::parse_yaml(file, text)?;
        if spec.api_version != API_VERSION || spec.kind != KIND {
            return Err(bad_input(format!(
                "{}: expected `apiVersion: {API_VERSION}` and `kind: {KIND}`, found `apiVersion: {}` and `kind: {}`",
                file.display(),
                spec.api_version,
                spec.kind
            )));
        }
        Ok(K3dConfig { file: file.to_path_buf(), spec, document })
    }

    /// sha256 (64 lowercase hex) of the document's canonical JSON: keys sorted at
    /// every level, no whitespace. Comments, layout and key order do not change it.
    pub fn canonical_hash(&self) -> String {
        let mut canonical = String::new();
        write_canonical(&self.document, &mut canonical);
        crate::digest::sha256_hex(canonical.as_bytes())
    }

    /// The container name of the registry k3d creates for `cluster`, if the config
    /// creates one: exactly `registries.create.name`, else k3d's default
    /// `k3d-<cluster>-registry`. (Only `k3d registry create NAME` adds a `k3d-` prefix;
    /// the config-file path never does.)
    pub fn created_registry(&self, cluster: &str) -> Option<String> {
        let create = self.spec.registries.create.as_ref()?;
        Some(match create.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
            Some(name) => name.to_owned(),
            None => format!("k3d-{cluster}-registry"),
        })
    }
}

// Sorting explicitly rather than trusting serde_json's map order: another crate in the
// build could turn on `preserve_order` and silently change every hash.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    const CONFIG: &str = "\
apiVersion: k3d.io/v1alpha5
kind: Simple
metadata:
  name: ameide
servers: 1
agents: 0
image: rancher/k3s:v1.33.1-k3s1
ports:
  - port: 8080:80
    nodeFilters: [loadbalancer]
registries:
  create:
    name: k3d-dev-reg
    host: 0.0.0.0
    hostPort: \"5000\"
options:
  runtime:
    labels:
      - label: team=platform
        nodeFilters: [server:*]
";

    fn parse(text: &str) -> Result<K3dConfig> {
        K3dConfig::parse(Path::new("infra/docker/local/k3d.yaml"), text)
    }

    #[test]
    fn reads_the_typed_fields() {
        let config = parse(CONFIG).unwrap();
        assert_eq!(config.spec.metadata.name.as_deref(), Some("ameide"));
        assert_eq!(config.spec.servers, Some(1));
        assert_eq!(config.created_registry("ameide").as_deref(), Some("k3d-dev-reg"));
        assert_eq!(config.spec.registries.create.unwrap().host_port.as_deref(), Some("5000"));
        assert_eq!(config.spec.options.runtime.labels[0].label, "team=platform");
        assert_eq!(config.spec.ports[0].node_filters, ["loadbalancer"]);
    }

    #[test]
    fn registry_is_named_exactly_as_configured_or_by_k3d_default() {
        let named = CONFIG.replace("name: k3d-dev-reg", "name: dev-reg");
        assert_eq!(parse(&named).unwrap().created_registry("ameide").as_deref(), Some("dev-reg"));
        let unnamed = CONFIG.replace("    name: k3d-dev-reg\n", "");
        assert_eq!(
            parse(&unnamed).unwrap().created_registry("ameide").as_deref(),
            Some("k3d-ameide-registry")
        );
        let none = CONFIG.replace("registries:\n  create:\n", "registries:\n  other:\n");
        assert_eq!(parse(&none).unwrap().created_registry("ameide"), None);
    }

    #[test]
    fn hash_is_64_hex_and_ignores_comments_layout_and_key_order() {
        let hash = parse(CONFIG).unwrap().canonical_hash();
        assert_eq!(hash.len(), 64);
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));

        let commented =
            format!("# the local cluster\n{}", CONFIG.replace("agents: 0", "agents: 0   # none"));
        assert_eq!(parse(&commented).unwrap().canonical_hash(), hash);

        let reordered = CONFIG.replace("servers: 1\nagents: 0\n", "agents: 0\nservers: 1\n");
        assert_eq!(parse(&reordered).unwrap().canonical_hash(), hash);

        let flow = CONFIG.replace("metadata:\n  name: ameide\n", "metadata: { name: ameide }\n");
        assert_eq!(parse(&flow).unwrap().canonical_hash(), hash);
    }

    #[test]
    fn hash_changes_with_content() {
        let hash = parse(CONFIG).unwrap().canonical_hash();
        let two_servers = CONFIG.replace("servers: 1", "servers: 2");
        assert_ne!(parse(&two_servers).unwrap().canonical_hash(), hash);
        // Keys we do not type still count.
        let extra = format!("{CONFIG}subnet: 172.28.0.0/16\n");
        assert_ne!(parse(&extra).unwrap().canonical_hash(), hash);
    }

    #[test]
    fn wrong_kind_or_version_is_bad_input_naming_the_file() {
        let err = parse(&CONFIG.replace("kind: Simple", "kind: Cluster")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput);
        let msg = err.to_string();
        assert!(
            msg.contains("infra/docker/local/k3d.yaml") && msg.contains("kind: Cluster"),
            "{msg}"
        );
        assert!(parse(&CONFIG.replace("v1alpha5", "v1alpha4")).is_err());
    }

    #[test]
    fn malformed_yaml_names_file_and_line() {
        let err = parse("apiVersion: k3d.io/v1alpha5\nkind: Simple\nservers: [1\n").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput);
        assert!(err.to_string().starts_with("infra/docker/local/k3d.yaml:"), "{err}");
        let err = parse("apiVersion: k3d.io/v1alpha5\nkind: Simple\nservers: many\n").unwrap_err();
        assert!(err.to_string().contains("k3d.yaml:3"), "{err}");
        assert!(parse("- just\n- a list\n").is_err());
    }
}
