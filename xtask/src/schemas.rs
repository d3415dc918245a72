//! The JSON contract: a JSON Schema for each command's `--format json` output,
//! generated from the types that print it, committed under `schemas/` (a test fails
//! when the types and the committed files differ, and says how to regenerate them).
//! Every document carries `schema_version`; a field renamed or removed bumps it.

use serde_json::Value;

use crate::bootstrap::run_plan::RunPlan;
use crate::bootstrap::summary_json::SummaryDoc;
use crate::error::ErrorDoc;
use crate::outcome::{Document, WithStatus};
use crate::stage_result::StageResult;
use crate::{charts, cluster, doctor, down, status, tools};

/// The folder, relative to the repository root, that holds `<command>.schema.json`.
pub const DIR: &str = "schemas";

/// Each published schema: the file stem and the schema. Some commands print the same
/// shape, so share one:
///
/// - `plan`: `cargo xtask plan` and `bootstrap --plan` (the same run plan);
/// - `bootstrap`: `bootstrap` and `sync` (the same summary);
/// - `cluster`: `cluster` and `cluster --plan`;
/// - `down`: `down` and `down --plan` (`status: planned`);
/// - `stage`: the commands that run one stage alone, `secrets`, `tilt`, and
///   `cluster stop` / `cluster start`;
/// - `doctor`, `status`, `tools` (`tools install`), `vendor` (each `vendor` command,
///   told apart by `action`);
/// - `error`: what any command prints instead when it stopped with no result to show.
pub fn all() -> Vec<(&'static str, Value)> {
    vec![
        ("plan", schema::<RunPlan>()),
        ("bootstrap", schema::<SummaryDoc>()),
        (
            "cluster",
            titled::<Document<WithStatus<cluster::Outcome>>>(
                "ClusterDoc",
                "`cargo xtask cluster [--plan]`: the decision, and what was done",
            ),
        ),
        (
            "down",
            titled::<Document<WithStatus<down::Down>>>(
                "DownDoc",
                "`cargo xtask down [--plan] [--purge]`: each action and how it went",
            ),
        ),
        (
            "stage",
            titled::<Document<WithStatus<StageResult>>>(
                "StageDoc",
                "`secrets`, `tilt`, `cluster stop` / `start`: one stage run alone",
            ),
        ),
        (
            "doctor",
            titled::<Document<doctor::Report>>(
                "DoctorDoc",
                "`cargo xtask doctor`: each prerequisite and the kube context",
            ),
        ),
        (
            "status",
            titled::<Document<WithStatus<status::StatusView>>>(
                "StatusDoc",
                "`cargo xtask status`: the cluster, each layer, each check, the problems",
            ),
        ),
        (
            "tools",
            titled::<Document<WithStatus<tools::Installed>>>(
                "ToolsDoc",
                "`cargo xtask tools install`: each pinned tool and what was done",
            ),
        ),
        (
            "vendor",
            titled::<Document<WithStatus<charts::Vendored>>>(
                "VendorDoc",
                "`cargo xtask vendor ...`: what the vendor command did (`action`)",
            ),
        ),
        (
            "error",
            titled::<Document<ErrorDoc>>(
                "ErrorDoc",
                "any command that stopped with no result to show: the error",
            ),
        ),
    ]
}

/// The schema of `T` as pretty JSON, as committed (ends with a newline).
pub fn text(schema: &Value) -> String {
    format!("{}\n", serde_json::to_string_pretty(schema).unwrap_or_default())
}

fn schema<T: schemars::JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default()
}

/// A document's schema under a readable title (not `Document_for_WithStatus_for_...`)
/// and what prints it (not the doc comment of the generic [`Document`]).
fn titled<T: schemars::JsonSchema>(title: &str, description: &str) -> Value {
    let mut schema = schema::<T>();
    schema["title"] = title.into();
    schema["description"] = description.into();
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_document_requires_its_version_and_has_a_title_of_its_own() {
        let mut titles = Vec::new();
        for (name, schema) in all() {
            let required = schema["required"].as_array().unwrap();
            assert!(required.contains(&"schema_version".into()), "{name}: {schema}");
            let title = schema["title"].as_str().unwrap().to_owned();
            assert!(!title.contains("_for_") && !titles.contains(&title), "{name}: {title}");
            titles.push(title);
        }
    }

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
