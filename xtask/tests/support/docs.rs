//! Published JSON documents (`xtask::schemas` lists them) read back into the types that
//! print them: the bootstrap/sync summary and the run plan so far. Tests assert on typed
//! fields rather than on `serde_json::Value` lookups that are `null` whenever a name is
//! misspelt.

use std::fmt::Debug;
use std::process::Output;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use testbed::world::World;
use xtask::bootstrap::describe::LayerView;
use xtask::bootstrap::run_plan::RunPlan;
use xtask::bootstrap::summary_json::{FailureDoc, LayerDoc, SummaryDoc};
use xtask::error::Exit;

use super::{Workspace, assert_matches_schema, parse_summary};

/// `json` as the type `T` that prints it. Strict: `T` must print back exactly `json`, so
/// a field the type lacks, or one it fills in by default, fails here with the raw JSON
/// instead of passing unseen.
pub fn typed<T: DeserializeOwned + Serialize>(json: &Value) -> T {
    let name = std::any::type_name::<T>();
    let doc: T = serde_json::from_value(json.clone())
        .unwrap_or_else(|e| panic!("the JSON does not read as {name}: {e}\n{json:#}"));
    let printed = serde_json::to_value(&doc).unwrap();
    assert!(
        printed == *json,
        "{name} prints back\n{printed:#}\ninstead of what was read\n{json:#}"
    );
    doc
}

/// The summary a `bootstrap`/`sync --format json` the test ran itself printed (say one
/// it interrupted), checked against the committed schema and read as [`SummaryDoc`].
pub fn summary_of(out: &Output) -> SummaryDoc {
    let json = parse_summary(&out.stdout);
    assert_matches_schema("bootstrap", &json);
    typed(&json)
}

impl Workspace {
    /// Run `bootstrap` or `sync` with `--format json`: how it exited and its summary.
    pub fn summary(&self, world: &World, args: &[&str]) -> (Exit, SummaryDoc) {
        let (code, json) = self.json(world, args);
        (code, typed(&json))
    }

    /// Run `plan` or `bootstrap --plan` with `--format json`: how it exited and the plan.
    pub fn plan(&self, world: &World, args: &[&str]) -> (Exit, RunPlan) {
        let (code, json) = self.json(world, args);
        (code, typed(&json))
    }
}

/// The summary's first failure; the test fails, showing the summary, when there is none.
pub fn failure(summary: &SummaryDoc) -> &FailureDoc {
    summary.failure.as_ref().unwrap_or_else(|| panic!("no failure in {summary:#?}"))
}

/// A document that lists the layers by name, one row each.
pub trait Layers: Debug {
    type Row;
    fn rows(&self) -> &[Self::Row];
    fn name(row: &Self::Row) -> &str;
}

impl Layers for SummaryDoc {
    type Row = LayerDoc;
    fn rows(&self) -> &[LayerDoc] {
        &self.layers
    }
    fn name(row: &LayerDoc) -> &str {
        &row.name
    }
}

impl Layers for RunPlan {
    type Row = LayerView;
    fn rows(&self) -> &[LayerView] {
        &self.platform.layers
    }
    fn name(row: &LayerView) -> &str {
        &row.name
    }
}

/// Documents not typed here (`status`: its types live with the status judge).
impl Layers for Value {
    type Row = Value;
    fn rows(&self) -> &[Value] {
        self["layers"].as_array().map_or(&[], Vec::as_slice)
    }
    fn name(row: &Value) -> &str {
        row["name"].as_str().unwrap_or_default()
    }
}

/// The row of layer `name` in a summary, a plan or a status.
pub fn layer<'a, D: Layers>(doc: &'a D, name: &str) -> &'a D::Row {
    doc.rows()
        .iter()
        .find(|row| D::name(row) == name)
        .unwrap_or_else(|| panic!("no layer {name} in {doc:?}"))
}
