//! The root Helmfile and its layers.
//!
//! The root file gives `environments:` and, under `helmfiles:`, the layer files in the
//! order they are applied. Each layer's releases are read from its file; a layer that
//! is a Go template (`.gotmpl`, or containing `{{`) is rendered by `helmfile list`
//! instead, because only helmfile knows its template functions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::bad_input;
use crate::exec::Cmd;
use crate::report::Log;

/// The label that makes a release one of its layer's health gates.
pub const GATE_LABEL: &str = "gate";

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
    pub releases: LayerReleases,
}

/// What we know of a layer's releases.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LayerReleases {
    /// Read from the layer file itself.
    Parsed { releases: Vec<Release> },
    /// A Go template, rendered by `helmfile list` (no `needs` or `values` there).
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

// ---- the root Helmfile -------------------------------------------------------------

#[derive(Deserialize, Default)]
struct RootDocument {
    #[serde(default)]
    environments: Option<BTreeMap<String, Option<Environment>>>,
    #[serde(default)]
    helmfiles: Option<Vec<HelmfileEntry>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum HelmfileEntry {
    Path(String),
    Map { path: String },
}

/// How layers that are Go templates get read: with `helmfile` (if any) for `environment`.
#[derive(Debug, Clone)]
pub struct TemplateReader {
    pub helmfile: Option<PathBuf>,
    pub environment: String,
    pub timeout: Duration,
}

impl TemplateReader {
    /// `helmfile` from the project's `<root>/.tools/bin`, else `PATH`.
    pub fn find(root: &Path, environment: &str, timeout: Duration) -> TemplateReader {
        TemplateReader {
            helmfile: crate::probe::find_tool(root, "helmfile"),
            environment: environment.to_string(),
            timeout,
        }
    }
}

impl Platform {
    /// Read the root Helmfile and every layer it lists. Bad input names the file.
    pub async fn read(root_file: &Path, templates: &TemplateReader) -> Result<Platform> {
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
        if !environments.is_empty() && !environments.contains_key(&templates.environment) {
            return Err(bad_input(format!(
                "{}: environment `{}` is not defined (defined: {})",
                root_file.display(),
                templates.environment,
                environments.keys().cloned().collect::<Vec<_>>().join(", ")
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
            let file = dir.join(&path);
            let layer = Layer::read(&file, templates).await?;
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
}

// ---- layer files -------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct LayerDocument {
    #[serde(default)]
    releases: Option<Vec<RawRelease>>,
}

#[derive(Deserialize)]
struct RawRelease {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    chart: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    needs: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, Value>,
    #[serde(default)]
    installed: Option<bool>,
    #[serde(default)]
    values: Vec<Values>,
}

impl Layer {
    /// Read one layer file (a missing file is bad input).
    pub async fn read(file: &Path, templates: &TemplateReader) -> Result<Layer> {
        let text = read_text(file)?;
        let name = layer_name(file);
        let releases = if is_go_template(file, &text) {
            list_with_helmfile(file, templates).await?
        } else {
            LayerReleases::Parsed { releases: parse_layer(file, &text)? }
        };
        Ok(Layer { name, file: file.to_path_buf(), releases })
    }
}

/// The releases of a plain-YAML layer file (all of its `---` documents).
pub fn parse_layer(file: &Path, text: &str) -> Result<Vec<Release>> {
    let documents: Vec<LayerDocument> = parse_documents(file, text)?;
    let mut releases: Vec<Release> = Vec::new();
    for (index, raw) in
        documents.into_iter().flat_map(|d| d.releases.unwrap_or_default()).enumerate()
    {
        let which = |raw: &RawRelease| match &raw.name {
            Some(name) => format!("release `{name}`"),
            None => format!("release #{}", index + 1),
        };
        let name = raw.name.clone().filter(|n| !n.trim().is_empty()).ok_or_else(|| {
            bad_input(format!("{}: {} has no `name`", file.display(), which(&raw)))
        })?;
        let chart = raw.chart.clone().filter(|c| !c.trim().is_empty()).ok_or_else(|| {
            bad_input(format!(
                "{}: {} has no `chart` (expected a chart path or repo/chart)",
                file.display(),
                which(&raw)
            ))
        })?;
        if releases.iter().any(|r| r.name == name && r.namespace == raw.namespace) {
            return Err(bad_input(format!(
                "{}: release `{name}` is defined twice",
                file.display()
            )));
        }
        let labels = raw
            .labels
            .into_iter()
            .map(|(key, value)| {
                let value = match value {
                    Value::String(s) => s,
                    Value::Bool(_) | Value::Number(_) => value.to_string(),
                    _ => {
                        return Err(bad_input(format!(
                            "{}: release `{name}`: label `{key}` must be a string",
                            file.display()
                        )));
                    }
                };
                Ok((key, value))
            })
            .collect::<Result<BTreeMap<_, _>>>()?;
        releases.push(Release {
            gate: is_gate(&labels),
            name,
            namespace: raw.namespace,
            chart,
            version: raw.version,
            needs: raw.needs,
            labels,
            installed: raw.installed.unwrap_or(true),
            values: raw.values,
        });
    }
    Ok(releases)
}

fn is_gate(labels: &BTreeMap<String, String>) -> bool {
    labels.get(GATE_LABEL).is_some_and(|v| v == "true")
}

/// One entry of `helmfile list --output json`.
#[derive(Deserialize)]
struct ListedRelease {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    installed: Option<bool>,
    #[serde(default)]
    labels: Option<String>,
    #[serde(default)]
    chart: Option<String>,
    #[serde(default)]
    version: Option<String>,
}

async fn list_with_helmfile(file: &Path, templates: &TemplateReader) -> Result<LayerReleases> {
    let Some(helmfile) = &templates.helmfile else {
        return Ok(LayerReleases::NotRead {
            reason: "not read: Go template and helmfile not found".into(),
        });
    };
    // Reading the model changes nothing: not echoed, and no log (`plan` keeps none).
    let cmd = Cmd::new("helmfile", &helmfile.to_string_lossy(), templates.timeout)
        .arg("-f")
        .arg(file.to_string_lossy())
        .args(["-e", &templates.environment, "list", "--output", "json"])
        .quiet();
    let out = crate::exec::run(&Log::none(), &cmd).await?;
    if !out.success() {
        let why = out.stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
        return Err(bad_input(format!("{}: `{}` failed: {why}", file.display(), cmd.display())));
    }
    Ok(LayerReleases::Listed { releases: parse_listed(file, &out.stdout)? })
}

/// Releases from `helmfile list --output json` output (labels as `"k:v,k2:v2"`).
pub fn parse_listed(file: &Path, json: &str) -> Result<Vec<Release>> {
    // helmfile prints nothing, not `[]`, for a file without releases.
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    let listed: Vec<ListedRelease> = serde_json::from_str(json).map_err(|e| {
        bad_input(format!(
            "{}: `helmfile list --output json` printed unexpected JSON: {e}",
            file.display()
        ))
    })?;
    Ok(listed
        .into_iter()
        .map(|l| {
            let labels = parse_label_string(l.labels.as_deref().unwrap_or(""));
            Release {
                gate: is_gate(&labels),
                name: l.name,
                namespace: l.namespace.filter(|n| !n.is_empty()),
                chart: l.chart.unwrap_or_default(),
                version: l.version.filter(|v| !v.is_empty()),
                needs: Vec::new(),
                labels,
                installed: l.installed.unwrap_or(true),
                values: Vec::new(),
            }
        })
        .collect())
}

/// helmfile's `"k:v,k2:v2"` label string as a map.
pub fn parse_label_string(labels: &str) -> BTreeMap<String, String> {
    labels
        .split(',')
        .filter_map(|pair| {
            let (key, value) = pair.split_once(':')?;
            Some((key.trim().to_string(), value.trim().to_string()))
        })
        .filter(|(key, _)| !key.is_empty())
        .collect()
}

// ---- YAML helpers ------------------------------------------------------------------

fn read_text(file: &Path) -> Result<String> {
    std::fs::read_to_string(file)
        .map_err(|e| bad_input(format!("{}: cannot read: {e}", file.display())))
}

/// Every `---` document of `text` as `T` (empty documents are skipped). Errors are bad
/// input with file, line and column, like [`super::parse_yaml`].
fn parse_documents<T: DeserializeOwned>(file: &Path, text: &str) -> Result<Vec<T>> {
    serde_saphyr::from_multiple(text).map_err(|e| {
        let at =
            e.location().map(|loc| format!(":{}:{}", loc.line(), loc.column())).unwrap_or_default();
        let message = e.to_string();
        let first = message.lines().next().unwrap_or(&message);
        bad_input(format!("{}{at}: invalid YAML: {first}", file.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit_code;

    const LAYER: &str = "\
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

    fn no_helmfile() -> TemplateReader {
        TemplateReader {
            helmfile: None,
            environment: "local".into(),
            timeout: Duration::from_secs(30),
        }
    }

    #[test]
    fn reads_releases_across_documents() {
        let releases = parse_layer(Path::new("helmfiles/10-bootstrap.yaml"), LAYER).unwrap();
        assert_eq!(releases.len(), 2);
        let (ns, smoke) = (&releases[0], &releases[1]);
        assert_eq!(ns.name, "namespace");
        assert_eq!(ns.namespace.as_deref(), Some("ameide"));
        assert!(ns.installed && !ns.gate);
        assert_eq!(ns.values[0], Values::Path("../values/local/namespace.yaml".into()));
        assert!(matches!(&ns.values[1], Values::Inline(v) if v["replicas"] == 1));
        assert!(smoke.gate && !smoke.installed);
        assert_eq!(smoke.needs, ["ameide/namespace"]);
        assert_eq!(smoke.labels["layer"], "10");
    }

    #[test]
    fn release_without_chart_names_file_and_release() {
        let text = LAYER.replace("    chart: ../charts/helm-test-jobs\n", "");
        let err = parse_layer(Path::new("helmfiles/10-bootstrap.yaml"), &text).unwrap_err();
        assert_eq!(exit_code(&err), 2);
        let msg = err.to_string();
        assert!(msg.contains("helmfiles/10-bootstrap.yaml"), "{msg}");
        assert!(msg.contains("`bootstrap-smoke` has no `chart`"), "{msg}");
    }

    #[test]
    fn release_without_name_is_named_by_position() {
        let err = parse_layer(Path::new("l.yaml"), "releases:\n  - chart: ./c\n").unwrap_err();
        assert!(err.to_string().contains("release #1 has no `name`"), "{err}");
    }

    #[test]
    fn malformed_layer_names_file_and_line() {
        let err = parse_layer(Path::new("l.yaml"), "releases:\n  - name: a\n    needs: {x\n")
            .unwrap_err();
        assert_eq!(exit_code(&err), 2);
        assert!(err.to_string().starts_with("l.yaml:"), "{err}");
    }

    #[test]
    fn gate_label_must_be_true() {
        let text = LAYER.replace("gate: \"true\"", "gate: \"false\"");
        let releases = parse_layer(Path::new("l.yaml"), &text).unwrap();
        assert!(releases.iter().all(|r| !r.gate));
        // An unquoted YAML boolean counts the same as the string helmfile expects.
        let text = LAYER.replace("gate: \"true\"", "gate: true");
        assert!(parse_layer(Path::new("l.yaml"), &text).unwrap()[1].gate);
    }

    #[test]
    fn go_templates_are_detected() {
        assert!(is_go_template(Path::new("10-bootstrap.yaml.gotmpl"), "releases: []"));
        assert!(is_go_template(Path::new("10-bootstrap.yaml"), "chart: {{ .Values.x }}"));
        assert!(!is_go_template(Path::new("10-bootstrap.yaml"), LAYER));
        assert_eq!(layer_name(Path::new("a/10-bootstrap.yaml.gotmpl")), "10-bootstrap");
        assert_eq!(layer_name(Path::new("a/60-qa.yml")), "60-qa");
    }

    #[tokio::test]
    async fn template_layer_without_helmfile_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("20-core-operators.yaml.gotmpl");
        std::fs::write(&file, "releases: []\n").unwrap();
        let layer = Layer::read(&file, &no_helmfile()).await.unwrap();
        assert_eq!(layer.name, "20-core-operators");
        assert_eq!(
            layer.releases.not_read_reason(),
            Some("not read: Go template and helmfile not found")
        );
        assert_eq!(layer.gates().count(), 0);
    }

    #[tokio::test]
    async fn template_layer_is_listed_by_helmfile_and_its_failure_is_bad_input() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("30-apps.yaml.gotmpl");
        std::fs::write(&file, "releases: []\n").unwrap();
        let helmfile = dir.path().join("helmfile");
        std::fs::write(
            &helmfile,
            r#"#!/bin/sh
case "$*" in
  *"-e local list --output json") echo '[{"name":"web","labels":"gate:true","chart":"c"}]';;
  *) echo "environment not found" >&2; exit 1;;
esac
"#,
        )
        .unwrap();
        std::fs::set_permissions(&helmfile, std::fs::Permissions::from_mode(0o755)).unwrap();
        let reader = TemplateReader { helmfile: Some(helmfile), ..no_helmfile() };

        let layer = Layer::read(&file, &reader).await.unwrap();
        assert!(matches!(layer.releases, LayerReleases::Listed { .. }), "{layer:?}");
        assert_eq!(layer.gates().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["web"]);

        let staging = TemplateReader { environment: "staging".into(), ..reader };
        let err = Layer::read(&file, &staging).await.unwrap_err();
        assert_eq!(exit_code(&err), 2);
        let text = err.to_string();
        assert!(text.contains("30-apps.yaml.gotmpl: `"), "{text}");
        assert!(
            text.contains("-e staging list --output json` failed: environment not found"),
            "{text}"
        );
    }

    #[test]
    fn helmfile_list_output_is_parsed() {
        let json = r#"[{"name":"smoke","namespace":"ameide","enabled":true,"installed":true,
            "labels":"gate:true,layer:20","chart":"../charts/helm-test-jobs","version":""}]"#;
        let releases = parse_listed(Path::new("l.yaml.gotmpl"), json).unwrap();
        assert!(releases[0].gate);
        assert_eq!(releases[0].labels["layer"], "20");
        assert_eq!(releases[0].version, None);
        assert!(parse_listed(Path::new("l"), "").unwrap().is_empty());
        assert_eq!(exit_code(&parse_listed(Path::new("l"), "{").unwrap_err()), 2);
        assert!(parse_label_string("").is_empty());
    }

    #[tokio::test]
    async fn root_helmfile_lists_layers_in_order() {
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
        let platform = Platform::read(&root, &no_helmfile()).await.unwrap();
        let names: Vec<_> = platform.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["20-b", "10-a"]);
        assert_eq!(
            platform.environments["local"].values,
            [Values::Path("values/local.yaml".into())]
        );
        assert_eq!(platform.layers[1].gates().count(), 1);

        let unknown_env = TemplateReader { environment: "prod".into(), ..no_helmfile() };
        let err = Platform::read(&root, &unknown_env).await.unwrap_err();
        assert!(err.to_string().contains("environment `prod` is not defined"), "{err}");

        std::fs::remove_file(dir.path().join("helmfiles/20-b.yaml")).unwrap();
        let err = Platform::read(&root, &no_helmfile()).await.unwrap_err();
        assert_eq!(exit_code(&err), 2);
        assert!(err.to_string().contains("20-b.yaml: cannot read"), "{err}");
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
