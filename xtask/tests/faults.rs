//! Recovery and safety, tried as a user would: a corpus of bad inputs (each: exit 2, the
//! file named, no mutating tool call at all), faults a re-run must recover from, signals,
//! the run lock, and a kubeconfig whose current context is another cluster.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{Workspace, failure, parse_summary, show, stdout, summary_of, text};
use testbed::calls::mutating;
use testbed::real_tools::Toolset;
use testbed::world::{World, require_docker};
use xtask::error::{Exit, Signal};
use xtask::outcome::Status;

/// Fast knobs: the faithful testbed's defaults stand for minutes of a real cluster.
const SETTINGS: &str =
    "timeouts = { cluster_ready = 60, layer_sync = 120, gate = 60, vault_bootstrap = 20 }";

fn platform(world: &World) -> Workspace {
    let tilt_port = format!("tilt_port = {}", support::free_port());
    Workspace::new(&[SETTINGS, &tilt_port]).with_infra().for_world(world)
}

/// One bad input: how to make it, what the user runs, and what they must read.
struct BadInput {
    name: &'static str,
    make: fn(&Workspace),
    args: &'static [&'static str],
    text: &'static str,
}

const VALUES: &str = "infra/kubernetes/environments/local/auth-smoke.yaml";

fn bad_inputs() -> Vec<BadInput> {
    vec![
        BadInput {
            name: "values file with a YAML error",
            make: |ws| ws.write(VALUES, "image: [unclosed\n"),
            args: &["bootstrap"],
            text: "auth-smoke.yaml:",
        },
        BadInput {
            name: "values file that is not UTF-8",
            make: |ws| std::fs::write(ws.path(VALUES), b"name: \xff\xfe\n").unwrap(),
            args: &["bootstrap"],
            text: "not UTF-8",
        },
        BadInput {
            name: "values path that is a folder",
            make: |ws| {
                std::fs::remove_file(ws.path(VALUES)).unwrap();
                std::fs::create_dir(ws.path(VALUES)).unwrap();
            },
            args: &["bootstrap"],
            text: "is a folder",
        },
        BadInput {
            name: "layer file with no releases",
            make: |ws| ws.write("infra/kubernetes/helmfiles/60-qa.yaml", "releases: []\n"),
            args: &["bootstrap"],
            text: "60-qa.yaml: no releases",
        },
        BadInput {
            name: "local chart path with a typo",
            make: |ws| {
                ws.edit("infra/kubernetes/helmfiles/24-auth.yaml", |t| {
                    t.replacen("chart: ../charts/", "chart: ../chartz/", 1)
                })
            },
            args: &["bootstrap"],
            text: "local chart path `../chartz/",
        },
        BadInput {
            name: "charts lock that does not parse, on a fresh machine",
            make: |ws| {
                ws.write("infra/kubernetes/charts/third_party/charts.lock.yaml", "charts: [\n")
            },
            args: &["bootstrap"],
            text: "charts.lock.yaml",
        },
        BadInput {
            name: "a log path below /proc",
            make: |_| {},
            args: &["bootstrap", "--log", "/proc/xtask/none.log"],
            text: "--log /proc/xtask/none.log",
        },
        BadInput {
            name: "a log path that is a folder",
            make: |_| {},
            args: &["bootstrap", "--log", "/tmp"],
            text: "is a folder",
        },
        BadInput {
            name: "a kube context that is not the cluster's nor allowed",
            make: |_| {},
            args: &["bootstrap", "--context", "prod"],
            text: "allowed_contexts",
        },
        BadInput {
            name: "sync into a context that is not allowed",
            make: |_| {},
            args: &["sync", "24-auth", "--context", "prod"],
            text: "allowed_contexts",
        },
        BadInput {
            name: "an unknown layer",
            make: |_| {},
            args: &["bootstrap", "--from", "25-nope"],
            text: "unknown layer `25-nope`",
        },
    ]
}

#[test]
fn bad_input_is_exit_2_naming_it_and_nothing_is_changed() {
    if !require_docker() {
        return;
    }
    let world = support::fast_world(&[]);
    for case in bad_inputs() {
        let ws = platform(&world);
        (case.make)(&ws);
        let before = world.calls().len();
        let mut args = case.args.to_vec();
        args.extend(["--format", "json"]);
        let own_log = args.contains(&"--log");
        let log = ws.log().display().to_string();
        if !own_log {
            args.extend(["--log", &log]);
        }
        let out = world
            .command(env!("CARGO_BIN_EXE_xtask"))
            .args(&args)
            .env("BOOTSTRAP_ROOT", ws.root())
            .current_dir(ws.root())
            .output()
            .unwrap();
        show(&args, &out);
        assert_eq!(Exit::of(out.status), Exit::BadInput, "{}: {}", case.name, text(&out.stderr));
        let json = parse_summary(&out.stdout);
        support::assert_matches_schema(&support::schema_of(case.args, &json), &json);
        assert!(json.to_string().contains(case.text), "{}: {json}", case.name);
        let calls = mutating(&world.calls()[before..]);
        assert_eq!(calls, Vec::<String>::new(), "{}: a tool changed something", case.name);
        assert!(!ws.path("~").exists(), "{}", case.name);
    }
}

#[test]
fn no_home_uses_the_accounts_home_and_never_a_tilde_folder() {
    let ws = Workspace::new(&["log = \"~/xtask-no-home-test.log\""]).with_infra();
    let out =
        ws.bare_command(&["bootstrap", "--plan", "--no-tilt"]).env_remove("HOME").output().unwrap();
    show(&["bootstrap", "--plan", "(no HOME)"], &out);
    assert!(!ws.path("~").exists(), "a folder literally named ~ was created");
    let combined = format!("{}{}", stdout(&out), text(&out.stderr));
    let home = nix::unistd::User::from_uid(nix::unistd::getuid()).unwrap().map(|u| u.dir);
    match home {
        Some(home) => {
            let log = home.join("xtask-no-home-test.log");
            assert!(combined.contains(&log.display().to_string()), "{combined}");
            let _ = std::fs::remove_file(log);
        }
        None => assert_eq!(Exit::of(out.status), Exit::BadInput, "{combined}"),
    }
}

/// Start a bootstrap and wait until its first layer sync runs.
fn started_bootstrap(
    ws: &Workspace,
    world: &World,
    tools: Toolset,
    format: &str,
) -> std::process::Child {
    let before = world.calls().len();
    let args = [&support::bootstrap_args(tools)[..], &["--force", "--format", format]].concat();
    let child =
        ws.command(world, &args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !world.calls()[before..].iter().any(support::is_sync) {
        assert!(Instant::now() < deadline, "no sync started");
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

#[test]
fn faults_are_named_and_a_plain_rerun_recovers() {
    fault_walk(Toolset::Fake);
}

/// The walk with real helm 3.17.2 and helmfile 0.166.0 carrying every layer.
#[test]
fn faults_under_real_tools_are_named_and_a_plain_rerun_recovers() {
    fault_walk(Toolset::Helm3);
}

fn fault_walk(tools: Toolset) {
    let Some(world) = support::tools_world(tools, &[]) else { return };
    let ws = platform(&world);
    let bootstrap = support::bootstrap_args(tools);

    // A Vault bootstrap that fails: the layer is not recorded as converged, so after
    // the cause is fixed a plain re-run goes green.
    world.set("vault-fail").unwrap();
    let (code, summary) = ws.summary(&world, &bootstrap);
    assert_eq!(code, Exit::Failed, "{summary:?}");
    assert_eq!(failure(&summary).layer.as_deref(), Some("15-secrets-certificates"), "{summary:?}");
    world.set("healthy").unwrap();
    let (code, summary) = ws.summary(&world, &bootstrap);
    assert_eq!(code, Exit::Ok, "a re-run recovers: {summary:?}");

    // `--from` vouches only for earlier layers recorded with today's inputs.
    ws.edit("infra/kubernetes/environments/local/auth-smoke.yaml", |t| format!("{t}\n# edit\n"));
    let from = [&bootstrap[..], &["--from", "40-data-plane"]].concat();
    let (code, summary) = ws.summary(&world, &from);
    assert_eq!(code, Exit::Failed, "{summary:?}");
    assert!(failure(&summary).message.contains("24-auth"), "{summary:?}");
    let (code, summary) = ws.summary(&world, &bootstrap);
    assert_eq!(code, Exit::Ok, "{summary:?}");

    // A gate failure on a terminal-like run is printed once: in the summary, no `error:`.
    world.set("gate-fail=24-auth").unwrap();
    let out = ws.xtask(&world, &["sync", "24-auth"]);
    assert_eq!(Exit::of(out.status), Exit::Failed);
    assert_eq!(stdout(&out).matches("what to do:").count(), 1, "{}", stdout(&out));
    assert!(!text(&out.stderr).contains("error:"), "printed twice: {}", text(&out.stderr));
    let log = std::fs::read_to_string(ws.log()).unwrap();
    let tail: Vec<&str> =
        log.lines().rev().take_while(|l| !l.contains("[bootstrap] end:")).collect();
    assert!(tail.iter().all(|l| l.contains("[gaps]")), "the log ends with the gap log: {tail:?}");
    assert!(log.contains("FAILED in layers (layer 24-auth)"), "the failure as a plain line");
    world.set("healthy").unwrap();

    // A sync failure names the release helmfile could not sync (`sync-fail` is the fake
    // helmfile's own knob).
    if tools == Toolset::Fake {
        world.set("sync-fail=22-control-plane").unwrap();
        let (code, summary) = ws.summary(&world, &["sync", "22-control-plane"]);
        assert_eq!(code, Exit::Failed, "{summary:?}");
        let message = &failure(&summary).message;
        assert!(message.contains("release `"), "{summary:?}");
        world.set("healthy").unwrap();
    } else {
        // Real tools: the gateway cannot turn Ready within the sync timeout (its readiness
        // probe first waits 600 s), from the cluster's side. helm's own timeout ends the
        // sync (the engine's stop comes later): the layer fails, naming the release.
        let chart = "infra/kubernetes/charts/placeholder-service/templates/deployment.yaml";
        let original = std::fs::read_to_string(ws.path(chart)).unwrap();
        let slow = "initialDelaySeconds: 600\n            periodSeconds: 5";
        ws.write(chart, &original.replacen("periodSeconds: 5", slow, 1));
        ws.write_settings(&["timeouts = { cluster_ready = 60, layer_sync = 10, gate = 60 }"]);
        let (code, summary) = ws.summary(&world, &["sync", "22-control-plane"]);
        assert_eq!(code, Exit::Failed, "{summary:?}");
        assert_eq!(failure(&summary).layer.as_deref(), Some("22-control-plane"), "{summary:?}");
        let message = &failure(&summary).message;
        assert!(message.contains("22-control-plane.yaml"), "{summary:?}");
        assert!(message.contains("in release `gateway`"), "{summary:?}");
        eprintln!("a real sync past its timeout reads: {message}");
        ws.write(chart, &original);
        ws.write_settings(&[SETTINGS]);
    }
    // The plain re-run first rolls the failed gateway back to its deployed revision (helm 3
    // would upgrade from that one's manifest and keep what the failed one added), and says so.
    let (code, summary) = ws.summary(&world, &bootstrap);
    assert_eq!(code, Exit::Ok, "{summary:?}");
    let warnings = support::layer(&summary, "22-control-plane").warnings.join("\n");
    assert!(
        warnings.contains("release gateway was") && warnings.contains("rolled back to revision"),
        "{summary:?}"
    );

    // An emptied kubeconfig: the cluster stage restores the k3d context.
    std::fs::write(world.kubeconfig(), "").unwrap();
    let (code, summary) = ws.summary(&world, &bootstrap);
    assert_eq!(code, Exit::Ok, "the context is repaired: {summary:?}");

    // A stale one (the server's port from an older cluster): refreshed the same way.
    let kubeconfig = std::fs::read_to_string(world.kubeconfig()).unwrap();
    let at = kubeconfig.find("https://").expect("a server URL");
    let end = at + kubeconfig[at..].find(|c: char| c == '"' || c.is_whitespace()).unwrap();
    let stale = kubeconfig.replace(&kubeconfig[at..end], "https://127.0.0.1:9");
    std::fs::write(world.kubeconfig(), stale).unwrap();
    let (code, summary) = ws.summary(&world, &bootstrap);
    assert_eq!(code, Exit::Ok, "the stale context is refreshed: {summary:?}");

    // Every mutating command takes the run lock; the one refused names the holder.
    world.set("latency-ms=3000").unwrap();
    let child = started_bootstrap(&ws, &world, tools, "json");
    for args in [&["sync", "10-bootstrap"][..], &["secrets"], &["tilt"], &["cluster"]] {
        let (code, refused) = ws.json(&world, args);
        assert_eq!(code, Exit::Failed, "{args:?}: {refused}");
        let message = refused["error"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("pid {} (`cargo xtask bootstrap`)", child.id())),
            "{message}"
        );
    }

    // SIGTERM (a container stop, CI's `timeout`) is handled like Ctrl-C: children
    // stopped, summary `interrupted`, exit 128 + 15.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    show(&["bootstrap", "(SIGTERM)"], &out);
    assert_eq!(Exit::of(out.status), Exit::Interrupted(Signal::Terminate));
    assert_eq!(summary_of(&out).status, Status::Interrupted);
    let log = std::fs::read_to_string(ws.log()).unwrap();
    assert!(log.lines().last().unwrap_or_default().contains("[gaps]"), "the log was completed");

    // SIGHUP (a closed terminal): the same, exit 128 + 1.
    let child = started_bootstrap(&ws, &world, tools, "json");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(Exit::of(out.status), Exit::Interrupted(Signal::Hangup), "{}", text(&out.stderr));
    assert_eq!(summary_of(&out).status, Status::Interrupted);
    world.set("latency-ms=0").unwrap();
    let (code, summary) = ws.summary(&world, &bootstrap);
    assert_eq!(code, Exit::Ok, "a plain re-run after the signals is green: {summary:?}");

    // A dead API (its process gone while the node runs): the cluster stage says so,
    // naming the URL, within its timeout.
    let pid_file = world.dir().join(format!("clusters/{}/apiserver.pid", world.slot().cluster()));
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL)
        .unwrap();
    ws.write_settings(&["timeouts = { cluster_ready = 8, layer_sync = 120, gate = 60 }"]);
    let (code, summary) = ws.summary(&world, &bootstrap);
    assert_eq!(code, Exit::Failed, "{summary:?}");
    assert_eq!(failure(&summary).stage, "cluster", "{summary:?}");
    assert!(failure(&summary).message.contains("https://"), "the URL: {summary:?}");
}

#[test]
fn a_kubeconfig_switched_to_another_cluster_sees_no_write() {
    if !require_docker() {
        return;
    }
    let world = support::fast_world(&[]);
    let ws = platform(&world);
    assert_eq!(ws.summary(&world, &["bootstrap", "--no-tilt"]).0, Exit::Ok);

    // A second cluster (its own API server), made the current context as `k3d cluster
    // create` does by default.
    let other = world.slot().name("other");
    let other_context = format!("k3d-{other}");
    ws.write(
        "other/k3d.yaml",
        &format!(
            "apiVersion: k3d.io/v1alpha5\nkind: Simple\nmetadata:\n  name: {other}\nservers: 1\n"
        ),
    );
    let created = world
        .command("k3d")
        .args(["cluster", "create", &other, "--config"])
        .arg(ws.path("other/k3d.yaml"))
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", text(&created.stderr));
    let kubectl = |args: &[&str]| {
        let out = world.command("kubectl").args(args).output().unwrap();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };
    let (ok, _, err) = kubectl(&["config", "use-context", &other_context]);
    assert!(ok, "{err}");
    let before =
        kubectl(&["--context", &other_context, "get", "secrets,configmaps", "-A", "-o", "name"]).1;

    for args in [
        &["bootstrap", "--no-tilt", "--force"][..],
        &["sync", "24-auth"],
        &["secrets"],
        &["cluster"],
        &["tilt"],
    ] {
        let out = ws.xtask(&world, args);
        assert_eq!(Exit::of(out.status), Exit::Ok, "{args:?}");
    }
    let after =
        kubectl(&["--context", &other_context, "get", "secrets,configmaps", "-A", "-o", "name"]).1;
    assert_eq!(after, before, "a command wrote into the current (other) cluster");
    let (_, current, _) = kubectl(&["config", "current-context"]);
    assert_eq!(current.trim(), other_context, "the user's current context is left as it was");
}
