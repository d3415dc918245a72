//! How the fake helmfile reads a state file (helmfile `pkg/app/desired_state_file_loader.go`
//! `load`): the text split into parts on `\n---\n`, each part rendered as a Go template
//! when the version renders that file (`crate::helmfile::version`), then parsed; `.Values`
//! (and `.StateValues`) are the environment's values of the parts read so far, inline
//! maps and files in order, merged with every `--state-values-file` on top.
//!
//! Rendering is Go's text/template (the `gtmpl` crate) with helmfile's missing-key rule
//! (`missingkey=error`: "map has no entry for key") and, of sprig's functions, `has`.
//! Left out: every other sprig and helmfile function, `.Environment.Values` beyond
//! `.Environment.Name`, and Go's variable assignment (`$x = y`), which gtmpl lacks.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Map, Value};

/// `tmpl.Execute` of one part with `values` as `.Values`: the rendered text.
pub fn render_part(
    file: &Path,
    index: usize,
    text: &str,
    values: &Value,
    env: &str,
) -> Result<String> {
    let mut template = gtmpl::Template::default();
    template.add_func("has", has);
    let id = format!("{}.part.{index}", file.file_name().unwrap_or_default().to_string_lossy());
    template.parse(text).map_err(|e| {
        anyhow::anyhow!("in {}: error during {id} parsing: template: {e}", file.display())
    })?;
    let mut data = Map::new();
    data.insert("Values".into(), values.clone());
    data.insert("StateValues".into(), values.clone());
    data.insert("Environment".into(), serde_json::json!({ "Name": env }));
    let context = gtmpl::Context::from(to_gtmpl(&Value::Object(data)));
    let missing_key = || {
        anyhow::anyhow!(
            "in {}: error during {id} parsing: template: map has no entry for key (a `.Values` key the environment and state values do not define)",
            file.display()
        )
    };
    // gtmpl treats a missing key as Go's default does (`<no value>`, or an error where it
    // is used); helmfile runs with missingkey=error.
    let rendered = template.render(&context).map_err(|e| match e.to_string() {
        text if text.contains("NoValue") => missing_key(),
        text => {
            anyhow::anyhow!("in {}: error during {id} parsing: template: {text}", file.display())
        }
    })?;
    if rendered.contains("<no value>") {
        return Err(missing_key());
    }
    Ok(rendered)
}

/// sprig's `has NEEDLE LIST`: whether the list holds the needle (a nil list does not).
fn has(args: &[gtmpl::Value]) -> std::result::Result<gtmpl::Value, gtmpl::FuncError> {
    let [needle, haystack] = args else {
        return Err(gtmpl::FuncError::ExactlyXArgs("has".into(), 2));
    };
    let found = match haystack {
        gtmpl::Value::Array(items) => items.iter().any(|i| i.to_string() == needle.to_string()),
        _ => false,
    };
    Ok(gtmpl::Value::Bool(found))
}

fn to_gtmpl(value: &Value) -> gtmpl::Value {
    match value {
        Value::Null => gtmpl::Value::Nil,
        Value::Bool(b) => gtmpl::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => gtmpl::Value::from(i),
            (None, Some(f)) => gtmpl::Value::from(f),
            _ => gtmpl::Value::Nil,
        },
        Value::String(s) => gtmpl::Value::String(s.clone()),
        Value::Array(items) => gtmpl::Value::Array(items.iter().map(to_gtmpl).collect()),
        Value::Object(map) => {
            gtmpl::Value::Map(map.iter().map(|(k, v)| (k.clone(), to_gtmpl(v))).collect())
        }
    }
}

/// `b` merged into `a` as helmfile merges values (maps deeply, anything else replaced).
pub fn merge(a: &mut Value, b: &Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (a, b) => *a = b.clone(),
    }
}

/// A values file (YAML) as JSON.
pub fn read_values(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    let value: Value = serde_saphyr::from_str(&text)
        .with_context(|| format!("failed to read {}: expected YAML", path.display()))?;
    Ok(if value.is_null() { Value::Object(Map::new()) } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parts_render_with_the_values_and_sprigs_has() {
        let text = "installed: {{ has \"observability\" .Values.bundles }}\nenv: {{ .Environment.Name }}\n{{ range .Values.bundles }}- {{ . }}\n{{ end }}";
        let file = Path::new("45-x.yaml.gotmpl");
        let on = render_part(file, 1, text, &json!({"bundles": ["observability"]}), "local");
        assert_eq!(on.unwrap(), "installed: true\nenv: local\n- observability\n");
        let off = render_part(file, 1, text, &json!({"bundles": []}), "local").unwrap();
        assert!(off.starts_with("installed: false\n"), "{off}");
        let err = render_part(file, 1, text, &json!({}), "local").unwrap_err().to_string();
        assert!(
            err.contains("45-x.yaml.gotmpl.part.1 parsing: template: map has no entry"),
            "{err}"
        );
    }

    #[test]
    fn values_merge_deeply() {
        let mut a = json!({"bundles": [], "x": {"a": 1, "b": 2}});
        merge(&mut a, &json!({"bundles": ["o"], "x": {"b": 3}}));
        assert_eq!(a, json!({"bundles": ["o"], "x": {"a": 1, "b": 3}}));
    }
}
