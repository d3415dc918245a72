//! Repository steps, optional bundles, and what the summary says of the registry and
//! the secret stores, end to end on the testbed: one world walked through a run that
//! lacks a step's variable, green runs that run a step, skip it and run it again, a
//! bundle turned on and off, and a failing step.

mod support;

use serde_json::Value;
use support::{LAYERS, Workspace, failure, helm_list, layer, show, synced_layers, typed};
use testbed::calls::mutating;
use testbed::manifests;
use testbed::world::{World, WorldOptions, require_docker};
use xtask::bootstrap::run_plan::{LayerAction, RunPlan};
use xtask::bootstrap::summary::{LayerStatus, StepStatus};
use xtask::bootstrap::summary_json::{StepDoc, SummaryDoc};
use xtask::error::Exit;
use xtask::layers::GateStatus;
use xtask::outcome::Status;
use xtask::secrets::StoreUse;

/// The value of the step's required variable: never in any output or the log.
const TOKEN: &str = "step-token-7f3a9c1e";

const TIMEOUTS: &str =
    "timeouts = { cluster_ready = 60, layer_sync = 120, gate = 60, vault_bootstrap = 60 }";

/// A step after layer 10 that writes `out/sdk.txt` from `proto/`, needing `SDK_TOKEN`.
const SDK_STEP: &str = r#"[[workspace.metadata.bootstrap.steps]]
name = "sdk"
after = "10-bootstrap"
run = ["sh", "-c", "mkdir -p out && cat proto/*.proto > out/sdk.txt && echo sdk built with $SDK_TOKEN"]
inputs = ["proto/**"]
requires_env = ["SDK_TOKEN"]
timeout = 30"#;

/// The sample platform's own step, as the repository's Cargo.toml declares it.
fn sample_step() -> String {
    let manifest = std::fs::read_to_string(support::repo_root().join("Cargo.toml")).unwrap();
    let start = manifest.find("[[workspace.metadata.bootstrap.steps]]").expect("a sample step");
    let table = &manifest[start..];
    table[..table.find("\n\n").unwrap_or(table.len())].to_owned()
}

fn platform(world: &World) -> Workspace {
    let ws = Workspace::new(&[TIMEOUTS, SDK_STEP, &sample_step()]).with_infra().for_world(world);
    ws.write("proto/api.proto", "message Ping {}\n");
    ws
}

/// `bootstrap --format json --no-tilt [args]` with `SDK_TOKEN` set or not: how it exited,
/// its JSON (checked against its schema; `null` when stdout is not JSON), and everything
/// printed and logged.
fn run_json(ws: &Workspace, world: &World, token: bool, args: &[&str]) -> (Exit, Value, String) {
    let mut all = vec!["bootstrap", "--format", "json", "--no-tilt"];
    all.extend_from_slice(args);
    let mut cmd = ws.command(world, &all);
    cmd.env_remove("SDK_TOKEN");
    if token {
        cmd.env("SDK_TOKEN", TOKEN);
    }
    let out = cmd.output().unwrap();
    show(&all, &out);
    let stdout = support::text(&out.stdout);
    let everything = format!(
        "{stdout}{}{}",
        support::text(&out.stderr),
        std::fs::read_to_string(ws.log()).unwrap_or_default()
    );
    assert!(!everything.contains(TOKEN), "the step's variable leaked");
    (Exit::of(out.status), support::printed_json(&all, &stdout), everything)
}

/// [`run_json`] of a run that prints its summary.
fn run(ws: &Workspace, world: &World, token: bool, args: &[&str]) -> (Exit, SummaryDoc, String) {
    let (code, json, everything) = run_json(ws, world, token, args);
    (code, typed(&json), everything)
}

fn step<'a>(summary: &'a SummaryDoc, name: &str) -> &'a StepDoc {
    let found = summary.steps.iter().find(|s| s.name == name);
    found.unwrap_or_else(|| panic!("no step {name}: {summary:?}"))
}

/// Release names Helm has in namespace `ameide` (`helm list`).
#[test]
fn steps_run_skip_and_fail_and_bundles_install_and_uninstall() {
    if !require_docker() {
        return;
    }
    let world = World::up(WorldOptions::default()).unwrap();
    let ws = platform(&world);

    // The step's variable is missing: exit 3 naming step and variable, nothing changed.
    let (code, _, text) = run_json(&ws, &world, false, &[]);
    assert_eq!(code, Exit::Missing, "{text}");
    assert!(text.contains("step `sdk`: environment variable SDK_TOKEN is not set"), "{text}");
    assert_eq!(mutating(&world.calls()), Vec::<String>::new(), "nothing may change");

    // Green: the step runs after its layer, in the root, tagged in the log.
    let (code, summary, text) = run(&ws, &world, true, &[]);
    assert_eq!(code, Exit::Ok, "{summary:?}");
    // (`typed` holds each step's `duration_ms` to a whole number: the type's `u64`.)
    assert_eq!(step(&summary, "sdk").status, StepStatus::Ran, "{summary:?}");
    // The sample's step (helm lint of the local charts, after the cluster) works here.
    assert_eq!(step(&summary, "lint-local-charts").status, StepStatus::Ran, "{summary:?}");
    assert_eq!(std::fs::read_to_string(ws.path("out/sdk.txt")).unwrap(), "message Ping {}\n");
    assert!(
        text.contains("[steps/sdk] sdk built with [redacted]"),
        "the step's output is in the log, its variable's value redacted"
    );
    // The optional bundle is off by default: not installed, its gate not run.
    let releases = helm_list(&world);
    assert!(releases.contains(&"object-storage".to_owned()), "{releases:?}");
    assert!(!releases.iter().any(|r| r.starts_with("metrics")), "{releases:?}");
    assert!(!world.calls().iter().any(|c| c.args.iter().any(|a| a == "metrics-smoke")));
    // The registry and what it holds are in the summary.
    let registry = summary.registry.as_ref().unwrap_or_else(|| panic!("{summary:?}"));
    assert_eq!(registry.name, world.slot().registry(), "{summary:?}");
    let url = registry.url.trim_start_matches("http://").to_owned();

    // Unchanged inputs: the step is skipped; a pushed image shows in the registry.
    let image = format!("{url}/ameide/demo:1");
    let docker = |args: &[&str]| {
        let out = std::process::Command::new("docker").args(args).output().unwrap();
        assert!(out.status.success(), "docker {args:?}: {}", support::text(&out.stderr));
    };
    docker(&["tag", testbed::docker::images::NODE_IMAGE, &image]);
    docker(&["push", &image]);
    let (code, summary, _) = run(&ws, &world, true, &[]);
    assert_eq!(code, Exit::Ok, "{summary:?}");
    assert_eq!(step(&summary, "sdk").status, StepStatus::Unchanged, "{summary:?}");
    assert_eq!(step(&summary, "lint-local-charts").status, StepStatus::Unchanged, "{summary:?}");
    let repositories = summary.registry.as_ref().map(|r| r.repositories.clone());
    assert_eq!(repositories, Some(vec!["ameide/demo".to_owned()]), "{summary:?}");
    let cluster = summary.stages.iter().find(|s| s.name == "cluster").unwrap();
    assert_eq!(cluster.status, Status::Ok);

    // A changed input runs it again.
    ws.write("proto/api.proto", "message Pong {}\n");
    let (_, summary, _) = run(&ws, &world, true, &[]);
    assert_eq!(step(&summary, "sdk").status, StepStatus::Ran, "{summary:?}");
    assert_eq!(std::fs::read_to_string(ws.path("out/sdk.txt")).unwrap(), "message Pong {}\n");

    // The bundle on: only the layer holding it syncs, its releases and gate run.
    let before = world.calls().len();
    let (code, summary, _) = run(&ws, &world, true, &["--bundle", "observability"]);
    assert_eq!(code, Exit::Ok, "{summary:?}");
    assert_eq!(synced_layers(&world.calls()[before..]), ["45-data-plane-ext"]);
    assert_eq!(layer(&summary, "45-data-plane-ext").gate, GateStatus::Passed);
    let releases = helm_list(&world);
    assert!(
        releases.contains(&"metrics".to_owned()) && releases.contains(&"metrics-smoke".to_owned()),
        "{releases:?}"
    );
    assert!(
        world.calls()[before..]
            .iter()
            .any(|c| c.tool == "helm" && c.args.iter().any(|a| a == "metrics-smoke"))
    );

    // Off again: the plan says it uninstalls first; the run does, and syncs nothing else.
    let (code, printed, _) = run_json(&ws, &world, true, &["--plan"]);
    assert_eq!(code, Exit::Ok, "{printed}");
    let plan: RunPlan = typed(&printed);
    let decision =
        |name: &str| layer(&plan, name).decision.clone().unwrap_or_else(|| panic!("{printed}"));
    let reason = decision("45-data-plane-ext").reason.unwrap_or_default();
    assert!(
        reason.contains(
            "uninstall metrics (bundle observability), metrics-smoke (bundle observability)"
        ),
        "{printed}"
    );
    for name in LAYERS.iter().filter(|l| **l != "45-data-plane-ext") {
        assert_eq!(decision(name).action, Some(LayerAction::Unchanged), "{printed}");
    }
    let before = world.calls().len();
    let (code, summary, _) = run(&ws, &world, true, &[]);
    assert_eq!(code, Exit::Ok, "{summary:?}");
    let destroy: Vec<String> =
        mutating(&world.calls()[before..]).into_iter().filter(|c| c.contains("destroy")).collect();
    assert_eq!(destroy.len(), 1, "{destroy:?}");
    assert!(destroy[0].contains("--selector bundle=observability"), "{destroy:?}");
    assert!(!helm_list(&world).iter().any(|r| r.starts_with("metrics")));

    // Secret stores the ExternalSecrets use are named with their provider.
    support::kubectl_apply(&world, manifests::ESO_CRDS);
    support::kubectl_apply(&world, manifests::VAULT_STORE);
    support::kubectl_apply(&world, &manifests::keycloak_external_secret("keycloak-admin", "admin"));
    let (_, summary, _) = run(&ws, &world, true, &[]);
    let vault = StoreUse {
        name: "vault-local".into(),
        kind: "ClusterSecretStore".into(),
        namespace: None,
        provider: "Vault".into(),
        external_secrets: 1,
    };
    assert_eq!(summary.secret_stores, [vault], "{summary:?}");

    // A failing step stops the run like a failed gate: exit 1, named, later layers skipped.
    let broken = SDK_STEP.replace("name = \"sdk\"", "name = \"broken\"").replace(
        "mkdir -p out && cat proto/*.proto > out/sdk.txt && echo sdk built with $SDK_TOKEN",
        "echo 'error: proto/api.proto:1: no package' >&2; exit 4",
    );
    let broken = broken.replace("after = \"10-bootstrap\"", "after = \"15-secrets-certificates\"");
    ws.write_settings(&[TIMEOUTS, &broken]);
    let before = world.calls().len();
    let (code, summary, _) = run(&ws, &world, true, &[]);
    assert_eq!(code, Exit::Failed, "{summary:?}");
    assert_eq!(step(&summary, "broken").status, StepStatus::Failed);
    let failure = failure(&summary);
    assert_eq!(failure.layer.as_deref(), Some("15-secrets-certificates"));
    let message = &failure.message;
    assert!(message.contains("step broken") && message.contains("exit 4"), "{summary:?}");
    assert!(
        failure.remediation.contains("error: proto/api.proto:1: no package"),
        "the output tail: {summary:?}"
    );
    for name in &LAYERS[2..] {
        assert_eq!(layer(&summary, name).status, LayerStatus::Skipped, "{summary:?}");
    }
    assert_eq!(synced_layers(&world.calls()[before..]), Vec::<String>::new());
}
