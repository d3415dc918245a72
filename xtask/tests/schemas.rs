//! The published JSON contract: the committed `schemas/*.schema.json` are what the
//! types generate, and real command output validates against them (with the
//! `jsonschema` crate, a validator no one here wrote).

mod support;

use std::path::Path;

use support::{Workspace, repo_root};
use xtask::bootstrap::run_plan::RunPlan;
use xtask::bootstrap::summary_json::SummaryDoc;
use xtask::error::Exit;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/small-platform");

#[test]
fn committed_schemas_are_what_the_types_generate() {
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    for (name, schema) in xtask::schemas::all() {
        let path = repo_root().join(xtask::schemas::DIR).join(format!("{name}.schema.json"));
        let generated = xtask::schemas::text(&schema);
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &generated).unwrap();
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is not what the types generate; regenerate it with \
             `UPDATE_SCHEMAS=1 cargo nextest run -p xtask --test schemas` and commit it",
            path.display()
        );
    }
}

#[test]
fn the_plan_of_a_platform_validates_against_the_committed_schema() {
    let fixture = Workspace::copy_of(Path::new(FIXTURE));
    let out = fixture.bare_command(&["plan", "--format", "json"]).env("PATH", "").output().unwrap();
    support::show(&["plan", "--format", "json"], &out);
    assert_eq!(Exit::of(out.status), Exit::Ok);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    support::assert_matches_schema("plan", &plan);
    assert_eq!(plan["schema_version"], 1);
    // The validator is not a rubber stamp: a renamed field fails it.
    let mut renamed = plan.clone();
    let cluster = renamed["cluster"].as_object_mut().unwrap();
    let name = cluster.remove("name").unwrap();
    cluster.insert("cluster_name".into(), name);
    let schema = support::committed_schema("plan");
    assert!(!jsonschema::is_valid(&schema, &renamed), "a missing `cluster.name` passed");
    // And the type that prints it reads it back (tests assert on that type).
    let plan: RunPlan = support::typed(&plan);
    assert!(!plan.platform.layers.is_empty(), "{plan:?}");
}

#[test]
fn a_bootstrap_stopped_by_bad_input_prints_a_summary_the_schema_accepts() {
    let fixture = Workspace::copy_of(Path::new(FIXTURE));
    fixture.edit("infra/kubernetes/helmfiles/20-apps.yaml", |t| {
        t.replace("    chart: ../charts/web\n", "")
    });
    let args = ["bootstrap", "--format", "json"];
    let out = fixture.bare_command(&args).env("PATH", "").output().unwrap();
    support::show(&args, &out);
    assert_eq!(Exit::of(out.status), Exit::BadInput);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    support::assert_matches_schema("bootstrap", &summary);
    assert_eq!(summary["failure"]["stage"], "preflight");
    assert_eq!(summary["schema_version"], 1);
    // And the type that prints it reads it back (tests assert on that type).
    let summary: SummaryDoc = support::typed(&summary);
    assert_eq!(support::failure(&summary).stage, "preflight");
}
