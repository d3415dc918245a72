//! The `xtask` binary as a user runs it: `plan` and `doctor` against small platforms in
//! temp dirs (found through `BOOTSTRAP_ROOT`), and `plan` against this repository's own
//! `infra/`, and the devcontainer that runs the bootstrap. Asserts exit codes and what
//! is printed.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use support::{LAYERS, Workspace, repo_root};
use xtask::error::Exit;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/small-platform");

/// A copy of the small fixture platform the test may edit.
struct Fixture(Workspace);

support::wraps_workspace!(Fixture);

impl Fixture {
    fn new() -> Fixture {
        Fixture(Workspace::copy_of(std::path::Path::new(FIXTURE)))
    }

    /// The xtask binary as a user runs it from the fixture's root (no testbed world).
    fn xtask(&self, args: &[&str]) -> Command {
        self.bare_command(args)
    }
}

fn run(cmd: &mut Command) -> (Exit, String, String) {
    let Output { status, stdout, stderr } = cmd.output().unwrap();
    let stdout = String::from_utf8(stdout).unwrap();
    let stderr = String::from_utf8(stderr).unwrap();
    (Exit::of(status), stdout, stderr)
}

fn plan_json(cmd: &mut Command) -> Value {
    let (code, stdout, stderr) = run(cmd);
    assert_eq!(code, Exit::Ok, "stderr: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn is_sha256_hex(value: &Value) -> bool {
    value.as_str().is_some_and(|s| {
        s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// A directory holding only the executables given (name, shell script body).
fn bin_dir(tools: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in tools {
        let file = dir.path().join(name);
        std::fs::write(&file, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

#[test]
fn plan_json_lists_cluster_layers_releases_and_charts() {
    let fixture = Fixture::new();
    let plan = plan_json(fixture.xtask(&["plan", "--format", "json"]).env("PATH", ""));

    let cluster = &plan["cluster"];
    assert_eq!(cluster["name"], "tiny");
    assert_eq!(cluster["config"], "infra/docker/local/k3d.yaml");
    assert!(is_sha256_hex(&cluster["config_hash"]), "{cluster}");
    // Exactly k3d.yaml's `registries.create.name`.
    assert_eq!(cluster["registry"], "k3d-tiny-reg");

    let layers = plan["layers"].as_array().unwrap();
    let names: Vec<_> = layers.iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["10-base", "20-apps"]);
    assert_eq!(layers[0]["file"], "infra/kubernetes/helmfiles/10-base.yaml");
    let release = &layers[0]["releases"][1];
    assert_eq!(release["name"], "base-smoke");
    assert_eq!(release["namespace"], "tiny");
    assert_eq!(release["chart"], "../charts/helm-test-jobs");
    assert_eq!(release["gate"], true);
    assert_eq!(layers[0]["releases"][0]["gate"], false);
    assert_eq!(layers[1]["releases"][0]["installed"], false);
    assert_eq!(layers[1]["gates"], serde_json::json!(["apps-smoke"]));

    let chart = &plan["charts"][0];
    assert_eq!(chart["name"], "redis");
    assert_eq!(chart["version"], "1.2.3");
    assert_eq!(chart["archive"], "infra/kubernetes/charts/third_party/redis-1.2.3.tgz");
}

#[test]
fn plan_human_lists_layers_in_order() {
    let fixture = Fixture::new();
    let (code, stdout, stderr) = run(&mut fixture.xtask(&["plan"]));
    assert_eq!(code, Exit::Ok, "{stderr}");
    let base = stdout.find("1. 10-base").expect(&stdout);
    let apps = stdout.find("2. 20-apps").expect(&stdout);
    assert!(base < apps);
    assert!(stdout.contains("apps-smoke") && stdout.contains("[gate]"), "{stdout}");
    // The log it names is there, as after `bootstrap --plan`.
    let log = stdout.rsplit_once("planned, nothing changed; log: ").expect(&stdout).1.trim();
    assert_eq!(std::path::Path::new(log), fixture.path("home/.devcontainer-setup.log"));
    let text = std::fs::read_to_string(log).unwrap();
    assert!(text.contains("[preflight]") && text.contains("[result]"), "{text}");
}

#[test]
fn config_hash_ignores_comments_but_not_servers() {
    let fixture = Fixture::new();
    let hash = |f: &Fixture| {
        plan_json(&mut f.xtask(&["plan", "--format", "json"]))["cluster"]["config_hash"].clone()
    };
    let original = hash(&fixture);
    fixture.edit("infra/docker/local/k3d.yaml", |t| {
        format!("# a new comment\n{}", t.replace("agents: 0", "agents:    0  # still none"))
    });
    assert_eq!(hash(&fixture), original);
    fixture.edit("infra/docker/local/k3d.yaml", |t| t.replace("servers: 1", "servers: 2"));
    assert_ne!(hash(&fixture), original);
}

#[test]
fn malformed_k3d_config_is_exit_2_naming_the_file_and_line() {
    let fixture = Fixture::new();
    fixture.edit("infra/docker/local/k3d.yaml", |t| t.replace("servers: 1", "servers: [1"));
    let (code, stdout, stderr) = run(&mut fixture.xtask(&["plan"]));
    assert_eq!(code, Exit::BadInput, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("infra/docker/local/k3d.yaml:"), "{stderr}");

    let fixture = Fixture::new();
    fixture.edit("infra/docker/local/k3d.yaml", |t| t.replace("kind: Simple", "kind: Cluster"));
    let (code, _, stderr) = run(&mut fixture.xtask(&["plan"]));
    assert_eq!(code, Exit::BadInput, "{stderr}");
    assert!(stderr.contains("k3d.yaml") && stderr.contains("kind: Simple"), "{stderr}");
}

#[test]
fn release_without_chart_is_exit_2_naming_layer_and_release() {
    let fixture = Fixture::new();
    fixture.edit("infra/kubernetes/helmfiles/20-apps.yaml", |t| {
        t.replace("    chart: ../charts/web\n", "")
    });
    let (code, stdout, stderr) = run(&mut fixture.xtask(&["plan", "--format", "json"]));
    assert_eq!(code, Exit::BadInput, "{stderr}");
    assert!(stderr.contains("infra/kubernetes/helmfiles/20-apps.yaml"), "{stderr}");
    assert!(stderr.contains("release `web` has no `chart`"), "{stderr}");
    // Scripts get the same error as the one JSON object on stdout.
    let error: Value = serde_json::from_str(&stdout).unwrap();
    support::assert_matches_schema("error", &error);
    assert_eq!((&error["status"], &error["exit_code"]), (&"failed".into(), &2.into()), "{error}");
}

#[test]
fn unknown_settings_key_is_exit_2_naming_key_and_cargo_toml() {
    let fixture = Fixture::new();
    fixture.edit("Cargo.toml", |t| format!("{t}tilt_prot = 10351\n"));
    let (code, _, stderr) = run(&mut fixture.xtask(&["plan"]));
    assert_eq!(code, Exit::BadInput, "{stderr}");
    assert!(stderr.contains("Cargo.toml:"), "{stderr}");
    assert!(stderr.contains("tilt_prot"), "{stderr}");
    // Every subcommand reads the settings first.
    let (code, _, _) = run(&mut fixture.xtask(&["doctor"]));
    assert_eq!(code, Exit::BadInput);
}

#[test]
fn go_template_layer_is_read_by_helmfile_or_said_unread() {
    let fixture = Fixture::new();
    let layer = fixture.path("infra/kubernetes/helmfiles/20-apps.yaml");
    std::fs::rename(&layer, layer.with_extension("yaml.gotmpl")).unwrap();
    fixture.edit("infra/kubernetes/helmfile.yaml", |t| {
        t.replace("20-apps.yaml", "20-apps.yaml.gotmpl")
    });

    let empty = bin_dir(&[]);
    let plan = plan_json(fixture.xtask(&["plan", "--format", "json"]).env("PATH", empty.path()));
    let apps = &plan["layers"][1];
    assert_eq!(apps["name"], "20-apps");
    assert_eq!(apps["state"], "not_read");
    assert_eq!(apps["note"], "not read: Go template and helmfile not found");

    // A helmfile that answers `build` the way the real one (0.166.0, 1.x) does.
    let helmfile = bin_dir(&[(
        "helmfile",
        r#"case "$*" in *"-e local --state-values-file "*" build"*) printf -- '---\n#  Source: x\n\nfilepath: 20-apps.yaml.gotmpl\nreleases:\n- chart: ../charts/web\n  name: web\n  namespace: tiny\n  labels:\n    gate: "true"\n    tier: web\n';; *) exit 1;; esac"#,
    )]);
    let plan = plan_json(fixture.xtask(&["plan", "--format", "json"]).env("PATH", helmfile.path()));
    let apps = &plan["layers"][1];
    assert_eq!(apps["state"], "listed");
    assert_eq!(apps["releases"][0]["name"], "web");
    assert_eq!(apps["gates"], serde_json::json!(["web"]));
}

const FAKE_TOOLS: &[(&str, &str)] = &[
    ("helm", "echo v3.15.2+g1a500d5"),
    ("helmfile", "echo helmfile version 1.1.2"),
    ("kubectl", r#"echo '{"clientVersion":{"gitVersion":"v1.33.1"}}'"#),
    ("tilt", "echo v0.33.17, built 2024-06-10"),
];

#[test]
fn doctor_without_k3d_is_exit_3_with_install_hint() {
    let fixture = Fixture::new();
    let bin = bin_dir(FAKE_TOOLS);
    let doctor = |format: &str| {
        run(fixture
            .xtask(&["doctor", "--format", format])
            .env("PATH", bin.path())
            .env("KUBECONFIG", fixture.path("no-kubeconfig")))
    };

    let (code, stdout, stderr) = doctor("human");
    assert_eq!(code, Exit::Missing, "stdout: {stdout}\nstderr: {stderr}");
    // The table carries the verdict and the hints; the failure is not printed twice.
    let verdict = stdout.lines().last().unwrap_or_default();
    assert_eq!(verdict, "missing prerequisites: k3d (not found on PATH)", "{stdout}");
    assert!(stdout.contains("https://k3d.io"), "{stdout}");
    assert!(!stderr.contains("k3d (not found on PATH)"), "printed twice: {stderr}");
    assert!(!stderr.contains("$ "), "version probes are not echoed: {stderr}");
    assert!(stdout.contains("kube context: k3d-tiny (not in the kubeconfig"), "{stdout}");
    let k3d_row = stdout.lines().find(|l| l.starts_with("k3d ")).expect(&stdout);
    assert!(k3d_row.contains("MISSING"), "{stdout}");
    let helm_row = stdout.lines().find(|l| l.starts_with("helm ")).expect(&stdout);
    assert!(helm_row.contains("ok") && helm_row.contains("3.15.2"), "{stdout}");

    let (code, stdout, _) = doctor("json");
    assert_eq!(code, Exit::Missing);
    let report: Value = serde_json::from_str(&stdout).unwrap();
    support::assert_matches_schema("doctor", &report);
    assert_eq!(report["ok"], false);
    let check = |name: &str| {
        report["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap().clone()
    };
    assert_eq!(check("k3d")["status"], "missing");
    assert!(check("k3d")["hint"].as_str().unwrap().contains("https://k3d.io"));
    assert_eq!(check("kubectl")["version"], "1.33.1");
    assert_eq!(check("tilt")["status"], "ok");
    assert_eq!(report["kube_context"]["name"], "k3d-tiny");
    assert_eq!(report["kube_context"]["present"], false);
}

#[test]
fn doctor_with_every_tool_reports_versions() {
    // Exit 0 needs a Docker daemon too: CI has one; elsewhere its absence is reported.
    let fixture = Fixture::new();
    let mut tools = FAKE_TOOLS.to_vec();
    tools.push(("k3d", "echo k3d version v5.8.3; echo 'k3s version v1.31.5-k3s1 (default)'"));
    let bin = bin_dir(&tools);
    let (code, stdout, stderr) = run(fixture
        .xtask(&["doctor", "--format", "json"])
        .env("PATH", bin.path())
        .env("KUBECONFIG", fixture.path("no-kubeconfig")));
    let report: Value = serde_json::from_str(&stdout).unwrap();
    support::assert_matches_schema("doctor", &report);
    let checks = report["checks"].as_array().unwrap();
    let docker = checks.iter().find(|c| c["name"] == "docker").unwrap();
    let docker_ok = docker["status"] != "missing";
    if !docker_ok {
        assert!(std::env::var_os("CI").is_none(), "CI has a Docker daemon, doctor says: {docker}");
        println!("skipped the Docker part: no daemon answers here ({})", docker["detail"]);
    }
    assert_eq!(code, if docker_ok { Exit::Ok } else { Exit::Missing }, "{stderr}");
    for check in checks.iter().filter(|c| c["name"] != "docker") {
        assert_eq!(check["status"], "ok", "{check}");
    }
    let k3d = checks.iter().find(|c| c["name"] == "k3d").unwrap();
    assert_eq!(k3d["version"], "5.8.3");
}

#[test]
fn plan_of_this_repository_lists_the_nine_layers_with_gates() {
    // The template layer is rendered by a helmfile: the testbed's, which renders it as
    // helmfile does (tests/src/helmfile/template.rs), first on PATH.
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(testbed::world::testbed_bin().unwrap(), bin.path().join("helmfile"))
        .unwrap();
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(["plan", "--format", "json"])
        .env("BOOTSTRAP_ROOT", support::repo_root())
        .env("PATH", path)
        .env_remove("TESTBED_DIR");
    let plan = plan_json(&mut cmd);
    assert_eq!(plan["cluster"]["name"], "ameide");
    assert!(is_sha256_hex(&plan["cluster"]["config_hash"]), "{}", plan["cluster"]);
    let layers = plan["layers"].as_array().unwrap();
    let names: Vec<_> = layers.iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, LAYERS);
    for layer in layers {
        let template = layer["file"].as_str().unwrap().ends_with(".yaml.gotmpl");
        assert_eq!(layer["state"], if template { "listed" } else { "parsed" }, "{layer}");
        let gates = layer["releases"].as_array().unwrap().iter().filter(|r| r["gate"] == true);
        assert!(gates.count() >= 1, "layer {} has no gate release", layer["name"]);
    }
}

// ---- the devcontainer -------------------------------------------------------------

fn devcontainer() -> serde_json::Value {
    let path = repo_root().join(".devcontainer/devcontainer.json");
    let text = std::fs::read_to_string(&path).unwrap();
    // Kept free of comments so any JSON parser (and this test) reads it as is.
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn devcontainer_json_parses_and_builds_from_its_dockerfile() {
    let config = devcontainer();
    let dockerfile = config["build"]["dockerfile"].as_str().expect("build.dockerfile");
    let dir = repo_root().join(".devcontainer");
    let dockerfile = dir.join(dockerfile);
    assert!(dockerfile.is_file(), "{} is missing", dockerfile.display());
    let context = dir.join(config["build"]["context"].as_str().unwrap_or("."));
    assert!(context.join("Cargo.toml").is_file(), "the build context is the repository");
    let text = std::fs::read_to_string(&dockerfile).unwrap();
    assert!(text.contains("devcontainers/rust:") || text.contains("rustup"), "a Rust toolchain");
    let forwarded = config["forwardPorts"].as_array().expect("forwardPorts");
    assert!(forwarded.contains(&serde_json::json!(10350)), "Tilt's port is forwarded");
    let mounts = serde_json::to_string(&config["mounts"]).unwrap();
    let features = serde_json::to_string(&config["features"]).unwrap();
    assert!(
        mounts.contains("/var/run/docker.sock") || features.contains("docker-"),
        "Docker access for k3d: {mounts} {features}"
    );
}

#[test]
fn devcontainer_commands_exist_in_the_repository() {
    let config = devcontainer();
    let post_create = config["postCreateCommand"].as_str().expect("postCreateCommand");
    assert!(post_create.contains("cargo xtask bootstrap"), "{post_create}");
    // Every `cargo xtask <sub>` it runs is a subcommand of this binary.
    let help = Command::new(env!("CARGO_BIN_EXE_xtask")).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let mut seen = 0;
    for part in post_create.split("cargo xtask ").skip(1) {
        let sub = part.split_whitespace().next().unwrap();
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(&format!("{sub} "))),
            "`cargo xtask {sub}` is not in `cargo xtask --help`:\n{help}"
        );
        seen += 1;
    }
    assert!(seen >= 1);
    // The `cargo xtask` alias it relies on, and any repository script it runs.
    let alias = std::fs::read_to_string(repo_root().join(".cargo/config.toml")).unwrap();
    assert!(alias.contains("xtask = \"run --package xtask --\""), "{alias}");
    for word in post_create.split_whitespace() {
        if let Some(rel) = word.strip_prefix("./").or_else(|| word.strip_prefix(".devcontainer/")) {
            let rel = if word.starts_with(".devcontainer/") {
                Path::new(".devcontainer").join(rel)
            } else {
                PathBuf::from(rel)
            };
            assert!(repo_root().join(&rel).exists(), "{} is missing", rel.display());
        }
    }
}
