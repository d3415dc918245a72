//! Parsing Helmfile documents: the root file's `environments:`/`helmfiles:`, a layer's
//! `releases:`, and the rendered state `helmfile build` prints. Pure: text in,
//! model out; every problem is bad input naming the file (and line where YAML gives one).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Environment, GATE_LABEL, Release, Values};
use crate::error::{Result, bad_input};

#[derive(Deserialize, Default)]
pub(super) struct RootDocument {
    #[serde(default)]
    pub(super) environments: Option<BTreeMap<String, Option<Environment>>>,
    #[serde(default)]
    pub(super) helmfiles: Option<Vec<HelmfileEntry>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum HelmfileEntry {
    Path(String),
    Map { path: String },
}

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

/// The releases of a template layer as `helmfile build` prints its rendered state: a
/// `---` document per state file (a `#  Source: <path>` comment, then the state as YAML
/// with `releases:` written as in a layer file, paths as written there).
pub fn parse_built(file: &Path, yaml: &str) -> Result<Vec<Release>> {
    parse_layer(file, yaml).map_err(|e| {
        bad_input(format!("{e} (in the state `helmfile build` rendered from this template)"))
    })
}

pub(super) fn read_text(file: &Path) -> Result<String> {
    std::fs::read_to_string(file)
        .map_err(|e| bad_input(format!("{}: cannot read: {e}", file.display())))
}

/// Every `---` document of `text` as `T` (empty documents are skipped). Errors are bad
/// input with file, line and column, like [`crate::platform::parse_yaml`].
pub(super) fn parse_documents<T: DeserializeOwned>(file: &Path, text: &str) -> Result<Vec<T>> {
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
    use super::super::tests::LAYER;
    use super::*;
    use crate::error::ErrorKind;

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
        assert_eq!(err.kind(), ErrorKind::BadInput);
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
        assert_eq!(err.kind(), ErrorKind::BadInput);
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
    fn helmfile_build_output_is_parsed_like_a_layer() {
        // helmfile 0.166.0's `build` of a template layer (abridged).
        let built = "---\n#  Source: /r/helmfiles/45-x.yaml.gotmpl\n\nfilepath: 45-x.yaml.gotmpl\nhelmBinary: helm\nenvironments:\n  local:\n    values:\n    - bundles: []\nreleases:\n- chart: ../charts/c\n  installed: false\n  needs:\n  - ameide/x\n  name: metrics\n  namespace: ameide\n  labels:\n    bundle: observability\n  values:\n  - ../environments/local/metrics.yaml\n- chart: ../charts/t\n  name: metrics-smoke\n  labels:\n    gate: 'true'\ntemplates: {}\nrenderedvalues:\n  bundles: []\n";
        let releases = parse_built(Path::new("45-x.yaml.gotmpl"), built).unwrap();
        let (metrics, smoke) = (&releases[0], &releases[1]);
        assert_eq!(metrics.name, "metrics");
        assert!(!metrics.installed);
        assert_eq!(metrics.bundle(), Some("observability"));
        assert_eq!(metrics.needs, ["ameide/x"]);
        assert_eq!(metrics.values, [Values::Path("../environments/local/metrics.yaml".into())]);
        assert!(smoke.gate && smoke.installed);
        let err = parse_built(Path::new("45-x.yaml.gotmpl"), "releases: [").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput);
        assert!(err.to_string().contains("rendered from this template"), "{err}");
    }
}
