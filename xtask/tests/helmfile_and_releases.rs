//! The helmfile and helm around the engine, end to end on the testbed: a helmfile below
//! the supported range is refused before anything changes, helmfile 0.166 (no `sync
//! --timeout`) converges the platform, releases a stopped run left pending are brought
//! back, and helm's ConfigMap storage works as its Secret storage does.

mod support;

use serde_json::Value;
use support::{Workspace, layer, show, text, typed};
use testbed::calls::{Call, mutating};
use testbed::real_tools::Toolset;
use testbed::release::{Driver, Release};
use testbed::world::{World, require_docker};
use xtask::bootstrap::run_plan::RunPlan;
use xtask::bootstrap::summary::LayerStatus;
use xtask::bootstrap::summary_json::SummaryDoc;
use xtask::error::Exit;
use xtask::layers::GateStatus;

const TIMEOUTS: &str =
    "timeouts = { cluster_ready = 60, layer_sync = 120, gate = 60, vault_bootstrap = 60 }";

/// `<args> --format json` with `env` set: exit code, the JSON (`null` when stdout is not
/// JSON), and everything printed.
fn run(
    ws: &Workspace,
    world: &World,
    env: &[(&str, &str)],
    args: &[&str],
) -> (Exit, Value, String) {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let mut cmd = ws.command(world, &all);
    cmd.envs(env.iter().copied());
    let out = cmd.output().unwrap();
    show(&all, &out);
    let stdout = text(&out.stdout);
    let json = support::printed_json(args, &stdout);
    (Exit::of(out.status), json, format!("{stdout}{}", text(&out.stderr)))
}

/// Every revision of release `name` in `ameide` that Helm keeps in `driver`'s records.
fn revisions(world: &World, driver: Driver, name: &str) -> Vec<(Value, Release)> {
    let kind = match driver {
        Driver::Secret => "secrets",
        Driver::ConfigMap => "configmaps",
    };
    let out = world
        .command("kubectl")
        .args(["get", kind, "-n", "ameide", "-l", &format!("owner=helm,name={name}"), "-o", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "kubectl get {kind}: {}", text(&out.stderr));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = list["items"].as_array().cloned().unwrap_or_default();
    items.into_iter().map(|item| (item.clone(), Release::from_record(&item).unwrap())).collect()
}

/// Write revision `version` of `release` with `status`, as a helm that was killed while
/// it worked would have left it (the testbed's codec writes Helm's own format).
fn leave_pending(world: &World, mut release: Release, version: u32, status: &str) {
    release.version = version;
    release.info.status = status.into();
    release.info.description = "Preparing upgrade".into();
    let record = release.to_record(Driver::Secret).unwrap();
    support::kubectl_apply(world, &record.to_string());
}

fn delete_records(world: &World, name: &str) {
    let selector = format!("owner=helm,name={name}");
    let out = world
        .command("kubectl")
        .args(["delete", "secrets", "-n", "ameide", "-l", &selector])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn old_helmfile_is_refused_0_166_converges_and_pending_releases_recover() {
    if !require_docker() {
        return;
    }
    let world = support::fast_world(&[]);
    let ws = Workspace::new(&[TIMEOUTS]).with_infra().for_world(&world);
    let bootstrap = ["bootstrap", "--no-tilt", "--no-install"];

    // Below the supported range: exit 3 naming the version and how to install, and not
    // one mutating call, from doctor and from the bootstrap (also with --no-install).
    world.set("helmfile-version=0.150.0").unwrap();
    let (code, _, printed) = run(&ws, &world, &[], &bootstrap);
    assert_eq!(code, Exit::Missing, "{printed}");
    assert!(printed.contains("helmfile 0.150.0 ("), "{printed}");
    assert!(printed.contains("is older than 0.163.0"), "{printed}");
    assert!(printed.contains("`cargo xtask tools install helmfile`"), "{printed}");
    let (code, doctor, printed) = run(&ws, &world, &[], &["doctor"]);
    assert_eq!(code, Exit::Missing, "{printed}");
    let helmfile = doctor["checks"].as_array().unwrap().iter().find(|c| c["name"] == "helmfile");
    let helmfile = helmfile.unwrap_or_else(|| panic!("{doctor}"));
    assert_eq!((&helmfile["status"], &helmfile["version"]), (&"missing".into(), &"0.150.0".into()));
    assert_eq!(mutating(&world.calls()), Vec::<String>::new(), "nothing may change");

    // helmfile 0.166.0: no `sync --timeout`, so helm gets it through `--sync-args`; the
    // template layer is rendered by this helmfile too.
    world.set("helmfile-version=0.166.0").unwrap();
    let (code, json, printed) = run(&ws, &world, &[], &bootstrap);
    assert_eq!(code, Exit::Ok, "{printed}");
    let summary: SummaryDoc = typed(&json);
    let syncs: Vec<Call> = world.calls().into_iter().filter(support::is_sync).collect();
    assert_eq!(syncs.len(), 9, "{syncs:?}");
    for sync in &syncs {
        assert!(sync.args.iter().any(|a| a == "--sync-args=--timeout=120s"), "{sync:?}");
        assert!(!sync.args.iter().any(|a| a == "--timeout"), "{sync:?}");
    }
    assert_eq!(layer(&summary, "45-data-plane-ext").gate, GateStatus::Passed, "{printed}");

    // A killed run left `keycloak` pending-upgrade and `platform-smoke` pending-install.
    let keycloak = revisions(&world, Driver::Secret, "keycloak");
    let deployed = keycloak.iter().map(|(_, r)| r.version).max().unwrap();
    leave_pending(&world, keycloak[0].1.clone(), deployed + 1, "pending-upgrade");
    let smoke = revisions(&world, Driver::Secret, "platform-smoke").remove(0).1;
    delete_records(&world, "platform-smoke");
    leave_pending(&world, smoke, 1, "pending-install");

    // The plan says what the sync of those layers does first, and changes nothing.
    let before = world.calls().len();
    let (code, json, printed) = run(&ws, &world, &[], &[&bootstrap[..], &["--plan"]].concat());
    assert_eq!(code, Exit::Ok, "{printed}");
    let plan: RunPlan = typed(&json);
    let first = |name: &str| {
        layer(&plan, name).decision.as_ref().map(|d| d.first.join("\n")).unwrap_or_default()
    };
    assert!(
        first("24-auth").contains(&format!(
            "roll back keycloak from revision {} (pending-upgrade, left by a run that was stopped) to revision {deployed} (deployed)",
            deployed + 1
        )),
        "{printed}"
    );
    assert!(first("60-qa").contains("uninstall platform-smoke (revision 1 is pending-install"));
    assert_eq!(mutating(&world.calls()[before..]), Vec::<String>::new());

    // The run brings both back, says so, and converges.
    let before = world.calls().len();
    let (code, json, printed) = run(&ws, &world, &[], &bootstrap);
    assert_eq!(code, Exit::Ok, "{printed}");
    let summary: SummaryDoc = typed(&json);
    let warnings = |name: &str| layer(&summary, name).warnings.join("\n");
    assert!(
        warnings("24-auth").contains(&format!(
            "release keycloak was left pending-upgrade at revision {} by a run that was stopped: rolled back to revision {deployed}",
            deployed + 1
        )),
        "{printed}"
    );
    assert!(warnings("60-qa").contains("release platform-smoke was left pending-install"));
    let calls = mutating(&world.calls()[before..]);
    assert!(calls.iter().any(|c| c.starts_with(&format!("helm rollback keycloak {deployed} "))));
    assert!(calls.iter().any(|c| c.starts_with("helm uninstall platform-smoke ")), "{calls:?}");
    let latest = |name: &str| {
        let history = revisions(&world, Driver::Secret, name);
        history.into_iter().max_by_key(|(_, r)| r.version).map(|(_, r)| r.info.status).unwrap()
    };
    assert_eq!(latest("keycloak"), "deployed");
    assert_eq!(latest("platform-smoke"), "deployed");
}

#[test]
fn helm_configmap_storage_converges_and_sql_is_refused() {
    configmap_storage_converges_and_sql_is_refused(Toolset::Fake);
}

/// Real helm 3.17.2 and helmfile 0.166.0 keep the records in ConfigMaps themselves.
#[test]
fn real_helm_configmap_storage_converges_and_sql_is_refused() {
    configmap_storage_converges_and_sql_is_refused(Toolset::Helm3);
}

fn configmap_storage_converges_and_sql_is_refused(tools: Toolset) {
    let Some(world) = support::tools_world(tools, &[]) else { return };
    let ws = Workspace::new(&[TIMEOUTS]).with_infra().for_world(&world);
    let bootstrap = ["bootstrap", "--no-tilt", "--no-install"];

    // A storage the engine cannot read: exit 3 before anything changes.
    let (code, _, printed) = run(&ws, &world, &[("HELM_DRIVER", "sql")], &bootstrap);
    assert_eq!(code, Exit::Missing, "{printed}");
    assert!(printed.contains("HELM_DRIVER=sql keeps releases in a SQL database"), "{printed}");
    assert_eq!(mutating(&world.calls()), Vec::<String>::new());

    // ConfigMaps: green, then a re-run changes nothing.
    let configmap = [("HELM_DRIVER", "configmap")];
    let (code, json, printed) = run(&ws, &world, &configmap, &bootstrap);
    assert_eq!(code, Exit::Ok, "{printed}");
    assert_eq!(layer(&typed::<SummaryDoc>(&json), "24-auth").gate, GateStatus::Passed, "{json}");
    let records = revisions(&world, Driver::ConfigMap, "keycloak");
    assert_eq!(records.len(), 1, "keycloak is stored in a ConfigMap");
    assert_eq!(records[0].0["metadata"]["name"], "sh.helm.release.v1.keycloak.v1");
    assert!(revisions(&world, Driver::Secret, "keycloak").is_empty(), "and in no Secret");
    let before = world.calls().len();
    let (code, json, printed) = run(&ws, &world, &configmap, &bootstrap);
    assert_eq!(code, Exit::Ok, "{printed}");
    let summary: SummaryDoc = typed(&json);
    for name in support::LAYERS {
        assert_eq!(layer(&summary, name).status, LayerStatus::Unchanged, "{json}");
    }
    assert_eq!(mutating(&world.calls()[before..]), Vec::<String>::new());

    // `status` reads the same records: every layer converged, every gate's recorded
    // verdict passed, nothing changed (Tilt is down: --no-tilt).
    let (_, status, _) = run(&ws, &world, &configmap, &["status"]);
    for name in support::LAYERS {
        let row = layer(&status, name);
        assert_eq!(row["state"], "converged", "{status}");
        let verdicts: Vec<&Value> = row["gates"].as_array().unwrap().iter().collect();
        assert!(verdicts.iter().all(|g| g["verdict"] == "passed"), "{row}");
    }
    assert_eq!(mutating(&world.calls()[before..]), Vec::<String>::new());
}
