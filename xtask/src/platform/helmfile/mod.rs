//! The root Helmfile and its layers, as a model read from files alone.
//!
//! The root file gives `environments:` and, under `helmfiles:`, the layer files in the
//! order they are applied. Each plain-YAML layer's releases are read from its file. A
//! layer that is a Go template (`.gotmpl`, or containing `{{`) is left
//! [`LayerReleases::NotRead`] here: only helmfile knows its template functions, and this
//! module runs no process. An adapter above (`helmfile_list`) fills such layers in with
//! `helmfile build`. Parsing the documents is [`parse`]'s job.

mod parse;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Result, bad_input};

use parse::{HelmfileEntry, RootDocument, parse_documents, read_text};
pub use parse::{parse_built, parse_layer};

/// The label that makes a release one of its layer's health gates.
pub const GATE_LABEL: &str = "gate";

/// Why a Go-template layer has no releases yet: nothing has listed it with helmfile.
pub const TEMPLATE_NOT_LISTED: &str = "not read: Go template, to be rendered with `helmfile build`";

/// The root Helmfile: environments and the layers in order.
#[derive(Debug, Clone, Serialize)]
pub struct Platform {
    pub file: PathBuf,
    pub environments: BTreeMap<String, Environment>,
    pub layers: Vec<Layer>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    #[serde(default)]
    pub values: Vec<Values>,
}

/// A `values:` entry: a file path (relative to the file that names it) or inline values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Values {
    Path(String),
    Inline(Value),
}

#[derive(Debug, Clone, Serialize)]
pub struct Layer {
    /// File stem: `10-bootstrap` for `helmfiles/10-bootstrap.yaml(.gotmpl)`.
    pub name: String,
    pub file: PathBuf,
    /// A Go template: its releases come from `helmfile build`, not from the file.
    pub template: bool,
    pub releases: LayerReleases,
}

/// What we know of a layer's releases.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LayerReleases {
    /// Read from the layer file itself.
    Parsed { releases: Vec<Release> },
    /// A Go template, rendered by helmfile (`helmfile build`, with the run's state values).
    Listed { releases: Vec<Release> },
    /// Could not be read; `reason` says why in plain words.
    NotRead { reason: String },
}

impl LayerReleases {
    /// The releases, or none when the layer could not be read.
    pub fn as_slice(&self) -> &[Release] {
        match self {
            LayerReleases::Parsed { releases } | LayerReleases::Listed { releases } => releases,
            LayerReleases::NotRead { .. } => &[],
        }
    }

    pub fn not_read_reason(&self) -> Option<&str> {
        match self {
            LayerReleases::NotRead { reason } => Some(reason),
            _ => None,
        }
    }
}

impl Layer {
    /// The releases labelled `gate: "true"`: the layer's health gates.
    pub fn gates(&self) -> impl Iterator<Item = &Release> {
        self.releases.as_slice().iter().filter(|r| r.gate)
    }

    /// A release's chart as a local directory, when it is one (see [`local_chart_path`]).
    pub fn local_chart(&self, release: &Release) -> Option<PathBuf> {
        local_chart_path(&self.file, &release.chart)
    }

    /// Read one layer file (a missing file is bad input). A Go template is left
    /// [`LayerReleases::NotRead`] with [`TEMPLATE_NOT_LISTED`].
    pub fn read(file: &Path) -> Result<Layer> {
        let text = read_text(file)?;
        let name = layer_name(file);
        let template = is_go_template(file, &text);
        let releases = match template {
            true => LayerReleases::NotRead { reason: TEMPLATE_NOT_LISTED.into() },
            false => LayerReleases::Parsed { releases: parse_layer(file, &text)? },
        };
        Ok(Layer { name, file: file.to_path_buf(), template, releases })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Release {
    pub name: String,
    pub namespace: Option<String>,
    /// As written in the layer file (a local path is relative to the layer's folder).
    pub chart: String,
    pub version: Option<String>,
    pub needs: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub installed: bool,
    pub values: Vec<Values>,
    /// Labelled `gate: "true"`.
    pub gate: bool,
}

/// A chart reference that is a local directory, resolved against the layer file's
/// folder: `./x`, `../x`, an absolute path, or a relative path that exists there.
/// Repository (`repo/chart`) and `oci://` references are `None`.
pub fn local_chart_path(layer_file: &Path, chart: &str) -> Option<PathBuf> {
    if chart.contains("://") {
        return None;
    }
    let dir = layer_file.parent().unwrap_or(Path::new("."));
    let explicit = chart.starts_with("./") || chart.starts_with("../") || chart.starts_with('/');
    let candidate = dir.join(chart);
    (explicit || candidate.is_dir()).then_some(candidate)
}

/// Is this layer file a Go template helmfile must render?
pub fn is_go_template(file: &Path, text: &str) -> bool {
    file.extension().is_some_and(|e| e == "gotmpl") || text.contains("{{")
}

fn layer_name(file: &Path) -> String {
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    let name = name.strip_suffix(".gotmpl").unwrap_or(&name);
    let name = name.strip_suffix(".yaml").or_else(|| name.strip_suffix(".yml")).unwrap_or(name);
    name.to_string()
}

impl Platform {
    /// Read the root Helmfile and every layer it lists, from the files alone (Go-template
    /// layers are left not read). Bad input names the file.
    pub fn read(root_file: &Path) -> Result<Platform> {
        let text = read_text(root_file)?;
        if is_go_template(root_file, &text) {
            return Err(bad_input(format!(
                "{}: the root Helmfile must be plain YAML (environments and helmfiles); found a Go template",
                root_file.display()
            )));
        }
        let documents: Vec<RootDocument> = parse_documents(root_file, &text)?;
        let mut environments = BTreeMap::new();
        let mut entries = Vec::new();
        for doc in documents {
            for (name, env) in doc.environments.unwrap_or_default() {
                environments.insert(name, env.unwrap_or_default());
            }
            entries.extend(doc.helmfiles.unwrap_or_default());
        }
        if entries.is_empty() {
            return Err(bad_input(format!(
                "{}: expected `helmfiles:` listing the layer files in order",
                root_file.display()
            )));
        }
        let dir = root_file.parent().unwrap_or(Path::new("."));
        let mut layers: Vec<Layer> = Vec::with_capacity(entries.len());
        for entry in entries {
            let (HelmfileEntry::Path(path) | HelmfileEntry::Map { path }) = entry;
            if path.contains(['*', '?', '[']) {
                return Err(bad_input(format!(
                    "{}: `helmfiles:` entry `{path}` is a glob; list each layer file so the order is explicit",
                    root_file.display()
                )));
            }
            let layer = Layer::read(&dir.join(&path))?;
            if layers.iter().any(|l| l.name == layer.name) {
                return Err(bad_input(format!(
                    "{}: layer `{}` is listed twice",
                    root_file.display(),
                    layer.name
                )));
            }
            layers.push(layer);
        }
        Ok(Platform { file: root_file.to_path_buf(), environments, layers })
    }

    /// Bad input unless `environment` is one the root file defines (a root file that
    /// defines none accepts any).
    pub fn check_environment(&self, environment: &str) -> Result<()> {
        if self.environments.is_empty() || self.environments.contains_key(environment) {
            return Ok(());
        }
        Err(bad_input(format!(
            "{}: environment `{environment}` is not defined (defined: {})",
            self.file.display(),
            self.environments.keys().cloned().collect::<Vec<_>>().join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    pub(super) const LAYER: &str = "\
environments:
  local: {}
---
releases:
  - name: namespace
    namespace: ameide
    chart: ../charts/namespace
    values:
      - ../values/local/namespace.yaml
      - replicas: 1
  - name: bootstrap-smoke
    namespace: ameide
    chart: ../charts/helm-test-jobs
    needs: [ameide/namespace]
    installed: false
    labels:
      gate: \"true\"
      layer: \"10\"
";

    #[test]
    fn go_templates_are_detected() {
        assert!(is_go_template(Path::new("10-bootstrap.yaml.gotmpl"), "releases: []"));
        assert!(is_go_template(Path::new("10-bootstrap.yaml"), "chart: {{ .Values.x }}"));
        assert!(!is_go_template(Path::new("10-bootstrap.yaml"), LAYER));
        assert_eq!(layer_name(Path::new("a/10-bootstrap.yaml.gotmpl")), "10-bootstrap");
        assert_eq!(layer_name(Path::new("a/60-qa.yml")), "60-qa");
    }

    #[test]
    fn template_layer_is_left_for_helmfile_to_list() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("20-core-operators.yaml.gotmpl");
        std::fs::write(&file, "releases: []\n").unwrap();
        let layer = Layer::read(&file).unwrap();
        assert_eq!(layer.name, "20-core-operators");
        assert!(layer.template);
        assert_eq!(layer.releases.not_read_reason(), Some(TEMPLATE_NOT_LISTED));
        assert_eq!(layer.gates().count(), 0);
    }

    #[test]
    fn root_helmfile_lists_layers_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("helmfile.yaml");
        std::fs::create_dir(dir.path().join("helmfiles")).unwrap();
        std::fs::write(
            &root,
            "environments:\n  local:\n    values: [values/local.yaml]\n---\nhelmfiles:\n  - path: helmfiles/20-b.yaml\n  - helmfiles/10-a.yaml\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("helmfiles/10-a.yaml"), LAYER).unwrap();
        std::fs::write(dir.path().join("helmfiles/20-b.yaml"), "releases: []\n").unwrap();
        let platform = Platform::read(&root).unwrap();
        let names: Vec<_> = platform.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["20-b", "10-a"]);
        assert_eq!(
            platform.environments["local"].values,
            [Values::Path("values/local.yaml".into())]
        );
        assert_eq!(platform.layers[1].gates().count(), 1);
        assert!(!platform.layers[1].template);

        platform.check_environment("local").unwrap();
        let err = platform.check_environment("prod").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput);
        assert!(err.to_string().contains("environment `prod` is not defined"), "{err}");

        std::fs::remove_file(dir.path().join("helmfiles/20-b.yaml")).unwrap();
        let err = Platform::read(&root).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput);
        assert!(err.to_string().contains("20-b.yaml: cannot read"), "{err}");
    }

    #[test]
    fn globs_and_duplicate_layers_are_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("helmfile.yaml");
        std::fs::write(dir.path().join("10-a.yaml"), "releases: []\n").unwrap();
        std::fs::write(&root, "helmfiles:\n  - '*.yaml'\n").unwrap();
        let err = Platform::read(&root).unwrap_err();
        assert!(err.to_string().contains("is a glob"), "{err}");
        std::fs::write(&root, "helmfiles:\n  - 10-a.yaml\n  - ./10-a.yaml\n").unwrap();
        let err = Platform::read(&root).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput);
        assert!(err.to_string().contains("layer `10-a` is listed twice"), "{err}");
    }

    #[test]
    fn local_chart_paths_resolve_against_the_layer_folder() {
        let layer = Path::new("/repo/infra/kubernetes/helmfiles/10-bootstrap.yaml");
        assert_eq!(
            local_chart_path(layer, "../charts/namespace"),
            Some(PathBuf::from("/repo/infra/kubernetes/helmfiles/../charts/namespace"))
        );
        assert_eq!(local_chart_path(layer, "bitnami/postgresql"), None);
        assert_eq!(local_chart_path(layer, "oci://reg/charts/x"), None);
    }
}
