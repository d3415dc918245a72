//! `cargo xtask bootstrap` / `sync` end to end against the testbed: the real engine,
//! real Docker containers made by the fake k3d, the fake API server, fake helmfile and
//! helm. Worlds are expensive (a few at a time per machine), so each test walks one world
//! through several situations.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{LAYERS, Workspace, failure, helm_tests, layer, show, summary_of, synced_layers};
use testbed::calls::mutating;
use testbed::world::{World, WorldOptions, require_docker};
use xtask::bootstrap::run_plan::{LayerAction, RunPlan};
use xtask::bootstrap::summary::LayerStatus;
use xtask::bootstrap::summary_json::SummaryDoc;
use xtask::error::{Exit, Signal};
use xtask::layers::GateStatus;
use xtask::outcome::Status;

/// A workspace root of our own holding a copy of the repository's infra/, made for the
/// world's slot.
fn platform(world: &World) -> Workspace {
    Workspace::new(&["timeouts = { cluster_ready = 60, layer_sync = 120, gate = 60 }"])
        .with_infra()
        .for_world(world)
}

fn statuses(summary: &SummaryDoc) -> Vec<(String, LayerStatus, GateStatus)> {
    summary.layers.iter().map(|l| (l.name.clone(), l.status, l.gate)).collect()
}

/// Every layer with this status and gate, in order.
fn all_layers(status: LayerStatus, gate: GateStatus) -> Vec<(String, LayerStatus, GateStatus)> {
    LAYERS.iter().map(|l| (l.to_string(), status, gate)).collect()
}

/// The cluster decision's action in a plan.
fn cluster_action(plan: &RunPlan) -> Option<&str> {
    plan.platform.cluster.decision.as_ref().map(|d| d.action.as_str())
}

/// Live processes started from this world's fake tools (`helmfile`, `helm`, `k3d`): run
/// from its `bin/`, or by bare name with its `TESTBED_DIR` (other worlds run at once).
fn fake_tool_processes(world: &World) -> Vec<String> {
    let bin = world.dir().join("bin").display().to_string();
    let ours = format!("TESTBED_DIR={}", world.dir().display());
    let in_world = |pid: &std::path::Path| {
        std::fs::read(pid.join("environ"))
            .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == ours.as_bytes()))
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        let argv0 = String::from_utf8_lossy(argv0);
        let is_tool = ["helmfile", "helm", "k3d"]
            .iter()
            .any(|t| argv0 == *t || argv0.ends_with(&format!("/{t}")));
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().starts_with('Z')))
            .unwrap_or(true);
        let by_name = !argv0.contains('/') && in_world(&entry.path());
        if is_tool && !zombie && (argv0.starts_with(&bin) || by_name) {
            found.push(format!("{} {argv0}", entry.file_name().to_string_lossy()));
        }
    }
    found
}

#[test]
fn healthy_converged_edited_malformed_and_interrupted() {
    if !require_docker() {
        return;
    }
    let world = World::up(WorldOptions::default()).unwrap();
    let platform = platform(&world);

    // A plan in a fresh world: the cluster created, every layer selected with action
    // `sync`, no change made; `cargo xtask plan` prints the same plan.
    // (`json` checks each document against its committed schema.)
    let (code, printed) = platform.json(&world, &["bootstrap", "--plan"]);
    let plan: RunPlan = support::typed(&printed);
    assert_eq!(code, Exit::Ok, "{printed}");
    assert_eq!(cluster_action(&plan), Some("create"), "{printed}");
    for name in LAYERS {
        let row = layer(&plan, name);
        let decision = row.decision.as_ref();
        assert_eq!(
            decision.map(|d| (d.selected, d.action)),
            Some((true, Some(LayerAction::Sync))),
            "{row:?}"
        );
        let reason = decision.and_then(|d| d.reason.as_deref());
        assert!(reason.is_some_and(|r| !r.is_empty()), "{row:?}");
    }
    assert_eq!(plan.tools, [], "nothing pinned, nothing to install");
    let (code, same) = platform.json(&world, &["plan"]);
    assert_eq!((code, &same), (Exit::Ok, &printed), "`plan` and `bootstrap --plan` differ");
    assert_eq!(mutating(&world.calls()), Vec::<String>::new(), "a plan changes nothing");

    // Cold: every layer synced in order, every gate passed.
    let (code, summary) = platform.summary(&world, &["bootstrap"]);
    assert_eq!(code, Exit::Ok, "{summary:?}");
    assert_eq!(summary.status, Status::Ok);
    assert_eq!(summary.failure, None);
    assert_eq!(statuses(&summary), all_layers(LayerStatus::Synced, GateStatus::Passed));
    let stages: Vec<&str> = summary.stages.iter().map(|s| s.name.as_str()).collect();
    // The offline charts check comes before the cluster: a bad lock changes nothing.
    assert_eq!(stages[..5], ["preflight", "charts", "cluster", "layers", "status"]);
    assert_eq!(summary.log, platform.log().display().to_string());
    assert_eq!(synced_layers(&world.calls()), LAYERS);
    let log = std::fs::read_to_string(platform.log()).unwrap();
    // Every tool call is pinned to the run's context, and syncs wait for readiness.
    let context = world.slot().context();
    assert!(
        log.contains(&format!("[layers/24-auth] $ helmfile --kube-context {context} -f")),
        "log has tagged command lines: {log}"
    );
    assert!(log.contains("sync --skip-deps --wait --wait-for-jobs"), "{log}");
    assert!(
        log.contains(&format!(
            "[layers/24-auth] $ helm test auth-smoke -n ameide --kube-context {context}"
        )),
        "{log}"
    );

    // Converged: all unchanged, and no sync or test was run.
    let before = world.calls().len();
    let (code, summary) = platform.summary(&world, &["bootstrap"]);
    assert_eq!(code, Exit::Ok, "{summary:?}");
    assert_eq!(statuses(&summary), all_layers(LayerStatus::Unchanged, GateStatus::None));
    let since = world.calls()[before..].to_vec();
    assert_eq!(synced_layers(&since), Vec::<String>::new());
    assert_eq!(helm_tests(&since), 0, "{since:?}");

    // A plan after a green run: nothing to do for the cluster, every layer `unchanged`.
    let before = world.calls().len();
    let (code, printed) = platform.json(&world, &["bootstrap", "--plan"]);
    let plan: RunPlan = support::typed(&printed);
    assert_eq!(code, Exit::Ok, "{printed}");
    assert_eq!(cluster_action(&plan), Some("noop"), "{printed}");
    for name in LAYERS {
        let action = layer(&plan, name).decision.as_ref().and_then(|d| d.action);
        assert_eq!(action, Some(LayerAction::Unchanged), "{printed}");
    }
    let (code, same) = platform.json(&world, &["plan"]);
    assert_eq!((code, &same), (Exit::Ok, &printed), "`plan` and `bootstrap --plan` differ");
    assert_eq!(mutating(&world.calls()[before..]), Vec::<String>::new(), "a plan changes nothing");

    // The human summary is a table naming each layer.
    let out = platform.xtask(&world, &["bootstrap"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("LAYER") && table.contains("40-data-plane") && table.contains("unchanged"),
        "{table}"
    );

    // A values edit re-syncs that layer only.
    let values = platform.path("infra/kubernetes/environments/local/auth-smoke.yaml");
    let text = std::fs::read_to_string(&values).unwrap();
    std::fs::write(&values, format!("{text}\n# edited by the test\n")).unwrap();
    let before = world.calls().len();
    let (code, summary) = platform.summary(&world, &["bootstrap"]);
    assert_eq!(code, Exit::Ok, "{summary:?}");
    assert_eq!(synced_layers(&world.calls()[before..]), ["24-auth"]);
    assert_eq!(layer(&summary, "24-auth").status, LayerStatus::Synced);
    assert_eq!(layer(&summary, "22-control-plane").status, LayerStatus::Unchanged);
    assert_eq!(layer(&summary, "40-data-plane").status, LayerStatus::Unchanged);

    // `sync <layer>` runs the cycle for that layer whatever its digest.
    let before = world.calls().len();
    let (code, summary) = platform.summary(&world, &["sync", "10-bootstrap"]);
    assert_eq!(code, Exit::Ok, "{summary:?}");
    assert_eq!(synced_layers(&world.calls()[before..]), ["10-bootstrap"]);
    assert_eq!(layer(&summary, "10-bootstrap").gate, GateStatus::Passed);

    // A malformed layer: exit 2 naming the file, and no mutating call at all.
    let file = platform.path("infra/kubernetes/helmfiles/40-data-plane.yaml");
    let good = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, good.replacen("releases:", "releases: [", 1)).unwrap();
    let before = world.calls().len();
    let out = platform.xtask(&world, &["bootstrap", "--format", "json"]);
    assert_eq!(Exit::of(out.status), Exit::BadInput);
    let summary = summary_of(&out);
    assert_eq!(failure(&summary).stage, "preflight");
    assert!(failure(&summary).message.contains("40-data-plane.yaml"), "{summary:?}");
    assert_eq!(mutating(&world.calls()[before..]), Vec::<String>::new());
    std::fs::write(&file, good).unwrap();

    // Ctrl-C during a layer's sync: 130, `interrupted`, no fake tool left running; a
    // second bootstrap meanwhile is refused naming the holder.
    std::fs::write(&values, format!("{text}\n# edited again\n")).unwrap();
    world.set("latency-ms=4000").unwrap();
    let before = world.calls().len();
    let child = platform
        .command(&world, &["bootstrap", "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while synced_layers(&world.calls()[before..]).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no helmfile sync started: {:?}",
            &world.calls()[before..]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, second) = platform.json(&world, &["bootstrap"]);
    assert_eq!(code, Exit::Failed);
    let message = second["error"].as_str().unwrap();
    assert!(
        message.contains(&format!("is running: pid {} (`cargo xtask bootstrap`)", child.id())),
        "{message}"
    );
    let (code, sync) = platform.json(&world, &["sync", "10-bootstrap"]);
    assert_eq!(code, Exit::Failed, "every mutating command takes the lock: {sync}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    show(&["bootstrap", "(interrupted)"], &out);
    assert_eq!(Exit::of(out.status), Exit::Interrupted(Signal::Interrupt));
    let summary = summary_of(&out);
    assert_eq!(summary.status, Status::Interrupted);
    assert_eq!(failure(&summary).layer.as_deref(), Some("24-auth"));
    assert_eq!(layer(&summary, "40-data-plane").status, LayerStatus::Skipped);
    assert_eq!(fake_tool_processes(&world), Vec::<String>::new());

    // The next run finishes green.
    world.set("latency-ms=0").unwrap();
    let (code, summary) = platform.summary(&world, &["bootstrap"]);
    assert_eq!(code, Exit::Ok, "{summary:?}");
    assert_eq!(layer(&summary, "24-auth").status, LayerStatus::Synced);
}

#[test]
fn failures_stop_the_flow_and_warnings_do_not() {
    if !require_docker() {
        return;
    }
    let world = World::up(WorldOptions {
        scenarios: vec!["gate-fail=24-auth".into()],
        ..WorldOptions::default()
    })
    .unwrap();
    let platform = platform(&world);

    // A failing gate: exit 1, the layer and its remediation named, nothing after it synced.
    let (code, summary) = platform.summary(&world, &["bootstrap"]);
    assert_eq!(code, Exit::Failed, "{summary:?}");
    assert_eq!(summary.status, Status::Failed);
    assert_eq!(failure(&summary).layer.as_deref(), Some("24-auth"));
    let fix = &failure(&summary).remediation;
    // The commands to copy name the run's context: they reach this cluster, whatever
    // kubectl's current context is.
    let context = world.slot().context();
    assert!(
        fix.contains("`kubectl logs -n ameide")
            && fix.contains(&format!(" --context {context}`"))
            && fix.contains(&format!(
                "`helm test auth-smoke -n ameide --logs --kube-context {context}`"
            )),
        "{fix}"
    );
    assert_eq!(layer(&summary, "24-auth").gate, GateStatus::Failed);
    for later in &LAYERS[5..] {
        assert_eq!(layer(&summary, later).status, LayerStatus::Skipped);
    }
    assert_eq!(synced_layers(&world.calls()), LAYERS[..5]);

    // A failing sync: exit 1, later layers skipped.
    world.set("healthy").unwrap();
    world.set("sync-fail=22-control-plane").unwrap();
    let (code, summary) = platform.summary(&world, &["bootstrap", "--force"]);
    assert_eq!(code, Exit::Failed, "{summary:?}");
    assert_eq!(failure(&summary).layer.as_deref(), Some("22-control-plane"));
    assert_eq!(layer(&summary, "22-control-plane").status, LayerStatus::Failed);
    for later in &LAYERS[4..] {
        assert_eq!(layer(&summary, later).status, LayerStatus::Skipped, "{later}");
    }

    // A pod-log race cannot touch the verdict (it comes from the release, not `--logs`):
    // exit 0, that gate passed without a warning; the failed 22 is re-synced.
    world.set("healthy").unwrap();
    world.set("log-race=40-data-plane").unwrap();
    let before = world.calls().len();
    let (code, summary) = platform.summary(&world, &["bootstrap"]);
    assert_eq!(code, Exit::Ok, "{summary:?}");
    let data = layer(&summary, "40-data-plane");
    assert_eq!(data.gate, GateStatus::Passed, "{data:?}");
    assert_eq!(data.warnings, Vec::<String>::new(), "{data:?}");
    let synced = synced_layers(&world.calls()[before..]);
    assert_eq!(synced.first().map(String::as_str), Some("22-control-plane"), "{synced:?}");
    assert!(!synced.iter().any(|l| l == "10-bootstrap"), "{synced:?}");
}
