//! A layer file as the fake helmfile reads it (helmfile `pkg/state/state.go`):
//! `environments:`, `helmDefaults:` (`wait`, `waitForJobs`, `timeout`), `releases:`
//! (`name`, `namespace`, `chart`, `version`, `labels`, `values`, `installed`,
//! `createNamespace`, `wait`, `waitForJobs`, `timeout`) and nested `helmfiles:`. Each
//! part (`---`) is rendered as a Go template first when the claimed version renders the
//! file (`crate::helmfile::template`, `crate::helmfile::version`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::helmfile::template::{merge, read_values, render_part};
use crate::helmfile::version::HelmfileVersion;

/// One release of a layer file, with what the fake needs of it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseSpec {
    pub name: String,
    pub namespace: String,
    pub chart: String,
    pub version: String,
    pub labels: BTreeMap<String, String>,
    pub installed: bool,
    pub create_namespace: bool,
    /// Values files (absolute) and inline values (written to temp files when rendering).
    pub values: Vec<Value>,
    /// The layer file's directory (charts and values are relative to it).
    pub base_dir: PathBuf,
    /// The layer: the stem of the file that declares the release.
    pub layer: String,
    /// `wait` (else `helmDefaults.wait`): helm waits for the release's workloads.
    pub wait: bool,
    /// `waitForJobs` (else `helmDefaults.waitForJobs`): and for its Jobs.
    pub wait_for_jobs: bool,
    /// `timeout` (else `helmDefaults.timeout`, else helm's 300), seconds.
    pub timeout: u64,
}

/// How a state file is read: for which environment, with which state values
/// (`--state-values-file`, merged), as which helmfile version.
#[derive(Debug, Clone)]
pub struct StateOptions {
    pub environment: String,
    pub state_values: Value,
    pub version: HelmfileVersion,
    /// `HELMFILE_V1MODE` as the process sees it.
    pub v1_mode: Option<String>,
}

impl StateOptions {
    /// The pinned helmfile's view of `environment`, with no state values.
    pub fn new(environment: &str) -> StateOptions {
        StateOptions {
            environment: environment.to_owned(),
            state_values: json!({}),
            version: HelmfileVersion::parse(""),
            v1_mode: None,
        }
    }
}

/// [`load_state`] as the pinned helmfile reads `file` for `environment`.
pub fn load_releases(file: &Path, environment: &str) -> Result<Vec<ReleaseSpec>> {
    load_state(file, &StateOptions::new(environment))
}

/// The layer a state file declares: its name without `.gotmpl` and `.yaml`/`.yml`.
pub fn layer_name(file: &Path) -> String {
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    let name = name.strip_suffix(".gotmpl").unwrap_or(&name);
    let name = name.strip_suffix(".yaml").or_else(|| name.strip_suffix(".yml")).unwrap_or(name);
    name.to_owned()
}

/// The YAML documents of a state file, each part rendered first when the version
/// renders the file, with the environment values of the parts before it.
pub fn state_documents(file: &Path, options: &StateOptions) -> Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let text = text.replace("\r\n", "\n");
    let render = options.version.renders(file, options.v1_mode.as_deref());
    let base_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut env_values = json!({});
    let mut docs = Vec::new();
    for (index, part) in text.split("\n---\n").enumerate() {
        let part = match render {
            true => {
                let mut values = env_values.clone();
                merge(&mut values, &options.state_values);
                render_part(file, index, part, &values, &options.environment)?
            }
            false => part.to_owned(),
        };
        let part_docs: Vec<Value> = serde_saphyr::from_multiple(&part).with_context(|| {
            format!(
                "in {}: failed to read {}: expected YAML documents",
                file.display(),
                file.display()
            )
        })?;
        for doc in &part_docs {
            let env = &doc["environments"][options.environment.as_str()];
            for v in env["values"].as_array().into_iter().flatten() {
                match v.as_str() {
                    Some(path) => merge(&mut env_values, &read_values(&base_dir.join(path))?),
                    None => merge(&mut env_values, v),
                }
            }
        }
        docs.extend(part_docs);
    }
    Ok(docs)
}

/// The releases of a helmfile (and of its nested `helmfiles:`), in order. Fails as
/// helmfile does when `environment` is not defined in a file that declares environments.
pub fn load_state(file: &Path, options: &StateOptions) -> Result<Vec<ReleaseSpec>> {
    let environment = options.environment.as_str();
    let docs = state_documents(file, options)?;
    let base_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let layer = layer_name(file);
    let mut defaults = &Value::Null;
    for doc in docs.iter().filter(|d| d["helmDefaults"].is_object()) {
        defaults = &doc["helmDefaults"];
    }
    let mut envs_declared = false;
    let mut env_found = environment == "default";
    let mut out = Vec::new();
    for doc in docs.iter().filter(|d| d.is_object()) {
        if let Some(envs) = doc.get("environments").and_then(Value::as_object) {
            envs_declared = true;
            env_found |= envs.contains_key(environment);
        }
    }
    if envs_declared && !env_found || !envs_declared && environment != "default" {
        bail!("in {}: environment \"{environment}\" is not defined", file.display());
    }
    for doc in docs.iter().filter(|d| d.is_object()) {
        for sub in doc.get("helmfiles").and_then(Value::as_array).into_iter().flatten() {
            let path = sub
                .as_str()
                .or_else(|| sub["path"].as_str())
                .context("helmfiles: entry without a path")?;
            out.extend(load_state(&base_dir.join(path), options)?);
        }
        for r in doc.get("releases").and_then(Value::as_array).into_iter().flatten() {
            let field = |k: &str| r[k].as_str().unwrap_or("").to_owned();
            let name = field("name");
            if name.is_empty() {
                bail!("in {}: a release without a name", file.display());
            }
            let labels = r["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let values = r["values"]
                .as_array()
                .map(|vs| {
                    vs.iter()
                        .map(|v| match v.as_str() {
                            Some(path) => json!(base_dir.join(path).to_string_lossy()),
                            None => v.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(ReleaseSpec {
                namespace: Some(field("namespace"))
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| "default".into()),
                chart: field("chart"),
                version: field("version"),
                installed: r["installed"].as_bool().unwrap_or(true),
                create_namespace: r["createNamespace"].as_bool().unwrap_or(true),
                labels,
                values,
                base_dir: base_dir.clone(),
                layer: layer.clone(),
                wait: r["wait"].as_bool().or(defaults["wait"].as_bool()).unwrap_or(false),
                wait_for_jobs: r["waitForJobs"]
                    .as_bool()
                    .or(defaults["waitForJobs"].as_bool())
                    .unwrap_or(false),
                timeout: r["timeout"].as_u64().or(defaults["timeout"].as_u64()).unwrap_or(300),
                name,
            });
        }
    }
    Ok(out)
}

impl ReleaseSpec {
    pub(crate) fn chart_path(&self) -> PathBuf {
        self.base_dir.join(&self.chart)
    }

    pub(crate) fn labels_text(&self) -> String {
        self.labels.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join(",")
    }
}
