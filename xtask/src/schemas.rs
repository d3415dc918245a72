//! The JSON contract: a JSON Schema for each command's `--format json` output,
//! generated from the types that print it, committed under `schemas/` (a test fails
//! when the types and the committed files differ, and says how to regenerate them).
//! Every document carries `schema_version`; a field renamed or removed bumps it.

use serde_json::Value;

use crate::bootstrap::run_plan::RunPlan;
use crate::bootstrap::summary_json::SummaryDoc;

/// The folder, relative to the repository root, that holds `<command>.schema.json`.
pub const DIR: &str = "schemas";

/// Each published schema: the file stem (`plan` covers `cargo xtask plan` and
/// `bootstrap --plan`, which print the same value; `bootstrap` covers `bootstrap` and
/// `sync`, which print the same summary) and the schema.
pub fn all() -> Vec<(&'static str, Value)> {
    vec![("plan", schema::<RunPlan>()), ("bootstrap", schema::<SummaryDoc>())]
}

/// The schema of `T` as pretty JSON, as committed (ends with a newline).
pub fn text(schema: &Value) -> String {
    format!("{}\n", serde_json::to_string_pretty(schema).unwrap_or_default())
}

fn schema<T: schemars::JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_schema_requires_the_version_and_names_the_decisions() {
        let (name, schema) = &all()[0];
        assert_eq!(*name, "plan");
        let required = schema["required"].as_array().unwrap();
        assert!(required.contains(&"schema_version".into()), "{schema}");
        let layer = schema.to_string();
        assert!(layer.contains("\"recheck\"") && layer.contains("\"fetch_ahead\""), "{layer}");
    }
}
