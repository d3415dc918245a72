//! `cargo xtask vendor` end to end: charts packaged with the real `helm` (or, where
//! there is none, archived and indexed here the way `helm package` and `helm repo
//! index` do), served by a loopback Helm repository (`support::file_server`,
//! counting requests) or pushed with `helm push` to a real registry (Debian's
//! `docker-registry`), vendored by the xtask binary in a temp workspace found through
//! `BOOTSTRAP_ROOT`.
//!
//! The OCI test needs helm and the registry: it fails when `CI` is set and they are
//! missing, and otherwise prints that it was skipped.

mod support;

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use support::file_server::FileServer;
use support::sha256;
use xtask::error::Exit;

/// True when `tool` runs; else fail under CI, or say it is skipped.
fn have(tool: &str, probe: &[&str], test: &str) -> bool {
    let found = Command::new(tool).args(probe).output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: `{tool}` is required under CI but was not found"
        );
        eprintln!("SKIPPED {test}: `{tool}` not found");
    }
    found
}

/// A temp workspace: settings point at `charts/charts.lock.yaml` and a one-layer
/// Helmfile whose releases use a local chart and the vendored `demo` archive.
struct Workspace(support::Workspace);

support::wraps_workspace!(Workspace);

impl Workspace {
    fn new(extra_release_chart: Option<&str>) -> Workspace {
        let workspace = Workspace(support::Workspace::new(&[
            "charts_lock = \"charts/charts.lock.yaml\"",
            "helmfile = \"helmfile.yaml\"",
            "log = \"setup.log\"",
        ]));
        let write = |path: &str, text: &str| workspace.write(path, text);
        write(
            "charts/charts.lock.yaml",
            "# Vendored charts (cargo xtask vendor add).\ncharts: []\n",
        );
        write("charts/own/Chart.yaml", "apiVersion: v2\nname: own\nversion: 0.1.0\n");
        write(
            "helmfile.yaml",
            "environments:\n  local: {}\n---\nhelmfiles:\n  - helmfiles/10-apps.yaml\n",
        );
        let mut layer = String::from(
            "releases:\n  - name: own\n    namespace: apps\n    chart: ../charts/own\n  - name: demo\n    namespace: apps\n    chart: ../charts/demo-0.1.0.tgz\n",
        );
        if let Some(chart) = extra_release_chart {
            layer.push_str(&format!("  - name: extra\n    namespace: apps\n    chart: {chart}\n"));
        }
        write("helmfiles/10-apps.yaml", &layer);
        workspace
    }

    /// Run from this root with no proxy variables (a developer's or CI's proxy must
    /// not change what a test sees).
    fn xtask(&self, args: &[&str]) -> Run {
        let mut cmd = self.bare_command(args);
        for name in support::PROXY_VARIABLES {
            cmd.env_remove(name);
        }
        Run::from(args, cmd.output().unwrap())
    }

    fn archive(&self) -> Vec<u8> {
        std::fs::read(self.path("charts/demo-0.1.0.tgz")).unwrap()
    }

    fn lock(&self) -> String {
        std::fs::read_to_string(self.path("charts/charts.lock.yaml")).unwrap()
    }
}

struct Run {
    code: Exit,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(args: &[&str], output: Output) -> Run {
        let run = Run {
            code: Exit::of(output.status),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        eprintln!(
            "$ xtask {} -> exit {:?}\n{}{}",
            args.join(" "),
            run.code,
            run.stdout,
            run.stderr
        );
        run
    }
}

/// `helm package` a tiny chart `demo` 0.1.0 into `<repo>/charts/`, then
/// `helm repo index <repo>` (relative URLs: `charts/demo-0.1.0.tgz`).
fn helm_repository(repo: &Path) -> Vec<u8> {
    helm_repository_with(repo, &["0.1.0"]).remove(0)
}

/// Like [`helm_repository`], one archive per version: packaged and indexed by helm
/// when it is installed, else by [`hand_made_repository`].
fn helm_repository_with(repo: &Path, versions: &[&str]) -> Vec<Vec<u8>> {
    let found = Command::new("helm").arg("version").output().is_ok_and(|o| o.status.success());
    if !found {
        return hand_made_repository(repo, versions);
    }
    let out = repo.join("charts");
    let archives = versions
        .iter()
        .map(|version| {
            let src = tempfile::tempdir().unwrap();
            let chart = src.path().join("demo");
            std::fs::create_dir_all(chart.join("templates")).unwrap();
            std::fs::write(
                chart.join("Chart.yaml"),
                format!("apiVersion: v2\nname: demo\nversion: {version}\n"),
            )
            .unwrap();
            std::fs::write(chart.join("templates/cm.yaml"), CONFIGMAP_TEMPLATE).unwrap();
            helm(&["package", chart.to_str().unwrap(), "--destination", out.to_str().unwrap()]);
            std::fs::read(out.join(format!("demo-{version}.tgz"))).unwrap()
        })
        .collect();
    helm(&["repo", "index", repo.to_str().unwrap()]);
    archives
}

const CONFIGMAP_TEMPLATE: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n";

/// What `helm package` and `helm repo index` make of chart `demo`, without helm: a
/// gzip'd tar of `demo/Chart.yaml` and `demo/templates/`, and an index listing each
/// version with its sha256 and a URL relative to the repository.
fn hand_made_repository(repo: &Path, versions: &[&str]) -> Vec<Vec<u8>> {
    let out = repo.join("charts");
    std::fs::create_dir_all(&out).unwrap();
    let mut entries = String::new();
    let archives = versions
        .iter()
        .map(|version| {
            let chart = format!("apiVersion: v2\nname: demo\nversion: {version}\n");
            let mut tar = tar::Builder::new(Vec::new());
            for (path, text) in
                [("demo/Chart.yaml", chart.as_str()), ("demo/templates/cm.yaml", CONFIGMAP_TEMPLATE)]
            {
                let mut header = tar::Header::new_ustar();
                header.set_mode(0o644);
                header.set_size(text.len() as u64);
                tar.append_data(&mut header, path, text.as_bytes()).unwrap();
            }
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(&tar.into_inner().unwrap()).unwrap();
            let archive = gz.finish().unwrap();
            std::fs::write(out.join(format!("demo-{version}.tgz")), &archive).unwrap();
            entries.push_str(&format!(
                "  - apiVersion: v2\n    name: demo\n    version: {version}\n    digest: {}\n    urls:\n      - charts/demo-{version}.tgz\n",
                sha256(&archive)
            ));
            archive
        })
        .collect();
    let index = format!(
        "apiVersion: v1\nentries:\n  demo:\n{entries}generated: \"2026-01-01T00:00:00Z\"\n"
    );
    std::fs::write(repo.join("index.yaml"), index).unwrap();
    archives
}

fn helm(args: &[&str]) -> String {
    let output = Command::new("helm").args(args).output().unwrap();
    assert!(output.status.success(), "helm {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn flip_a_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn http_repository_add_refresh_restore_and_offline_check() {
    let repo = tempfile::tempdir().unwrap();
    let packaged = helm_repository(repo.path());
    let mut server = FileServer::serving(repo.path());
    let ws = Workspace::new(None);

    // Before anything is vendored, the release's archive is not there.
    let before = ws.xtask(&["vendor", "--check"]);
    assert_eq!(before.code, Exit::Failed);
    assert!(before.stderr.contains("release `demo`") && before.stderr.contains("does not exist"));

    let add = ws.xtask(&["vendor", "add", "demo", "--repo", &server.url(), "--version", "0.1.0"]);
    assert_eq!(add.code, Exit::Ok);
    assert_eq!(ws.archive(), packaged, "the archive is the one the repository serves");
    let digest = format!("sha256:{}", sha256(&packaged));
    assert!(ws.lock().contains(&format!("digest: {digest}")), "{}", ws.lock());
    assert!(ws.lock().starts_with("# Vendored charts"), "the header comment is kept");
    assert!(ws.lock().contains("archive: demo-0.1.0.tgz"));
    assert_eq!(server.requests(), ["/index.yaml", "/charts/demo-0.1.0.tgz"]);

    // Nothing to do: nothing downloaded.
    let again = ws.xtask(&["vendor"]);
    assert_eq!(again.code, Exit::Ok);
    assert!(again.stdout.contains("0 fetched, 1 already up to date"), "{}", again.stdout);
    assert_eq!(server.requests().len(), 2);
    let check = ws.xtask(&["vendor", "--check", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&check.stdout).unwrap();
    support::assert_matches_schema("vendor", &json);
    assert_eq!(
        (check.code, &json["action"], &json["charts"]),
        (Exit::Ok, &"check".into(), &1.into())
    );

    // A flipped byte: --check names the chart, vendor restores it.
    flip_a_byte(&ws.path("charts/demo-0.1.0.tgz"));
    let check = ws.xtask(&["vendor", "--check"]);
    assert_eq!(check.code, Exit::Failed);
    assert!(
        check.stderr.contains("chart `demo` 0.1.0") && check.stderr.contains(&digest),
        "{}",
        check.stderr
    );
    let restore = ws.xtask(&["vendor"]);
    assert_eq!(restore.code, Exit::Ok);
    assert!(restore.stdout.contains("1 fetched"));
    assert_eq!(ws.archive(), packaged);

    // Offline: --check needs no repository.
    server.stop();
    assert_eq!(ws.xtask(&["vendor", "--check"]).code, Exit::Ok);

    // An unreachable repository: clear error, exit 3, the damaged file left as it was.
    flip_a_byte(&ws.path("charts/demo-0.1.0.tgz"));
    let damaged = ws.archive();
    let unreachable = ws.xtask(&["vendor"]);
    assert_eq!(unreachable.code, Exit::Missing);
    assert!(
        unreachable.stderr.contains("repository unreachable")
            && unreachable.stderr.contains("`demo`")
    );
    assert_eq!(ws.archive(), damaged);

    // An archive the lock does not list is reported, and removed with --prune.
    std::fs::write(ws.path("charts/old-1.0.0.tgz"), b"stale").unwrap();
    flip_a_byte(&ws.path("charts/demo-0.1.0.tgz")); // back to the good bytes
    let report = ws.xtask(&["vendor"]);
    assert!(
        report.code == Exit::Ok && report.stdout.contains("old-1.0.0.tgz is not in the lock"),
        "{}",
        report.stdout
    );
    assert_eq!(ws.xtask(&["vendor", "--prune"]).code, Exit::Ok);
    assert!(!ws.path("charts/old-1.0.0.tgz").exists());
}

#[test]
fn wrong_locked_digest_fails_naming_chart_and_both_digests() {
    let repo = tempfile::tempdir().unwrap();
    let packaged = helm_repository(repo.path());
    let server = FileServer::serving(repo.path());
    let ws = Workspace::new(None);
    assert_eq!(
        ws.xtask(&["vendor", "add", "demo", "--repo", &server.url(), "--version", "0.1.0"]).code,
        Exit::Ok
    );

    let real = format!("sha256:{}", sha256(&packaged));
    let wrong = format!("sha256:{}", "0".repeat(64));
    std::fs::write(ws.path("charts/charts.lock.yaml"), ws.lock().replace(&real, &wrong)).unwrap();
    let run = ws.xtask(&["vendor"]);
    assert_eq!(run.code, Exit::Failed);
    assert!(
        run.stderr.contains("chart `demo` 0.1.0")
            && run.stderr.contains(&real)
            && run.stderr.contains(&wrong),
        "{}",
        run.stderr
    );
    assert_eq!(ws.archive(), packaged, "the existing file is untouched");
}

#[test]
fn a_mismatch_beside_an_unreachable_repository_exits_1_listing_both() {
    let repo = tempfile::tempdir().unwrap();
    helm_repository(repo.path());
    let server = FileServer::serving(repo.path());
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let ws = Workspace::new(None);
    let wrong = format!("sha256:{}", "0".repeat(64));
    let lock = format!(
        "charts:\n  - name: demo\n    repository: {}\n    version: 0.1.0\n    digest: {wrong}\n    archive: demo-0.1.0.tgz\n  - name: gone\n    repository: {closed}\n    version: 1.0.0\n    digest: {wrong}\n    archive: gone-1.0.0.tgz\n",
        server.url()
    );
    ws.write("charts/charts.lock.yaml", &lock);

    // Whichever download finishes first, the mismatch decides: 1, not 3.
    let run = ws.xtask(&["vendor"]);
    assert_eq!(run.code, Exit::Failed, "{}", run.stderr);
    let demo = run.stderr.find("chart `demo` 0.1.0").expect("the mismatch is listed");
    let gone = run.stderr.find("chart `gone` 1.0.0").expect("the unreachable one is listed");
    assert!(run.stderr.contains("2 charts could not be vendored"), "{}", run.stderr);
    assert!(demo < gone, "listed in the lock's order: {}", run.stderr);
    assert!(!ws.path("charts/demo-0.1.0.tgz").exists(), "nothing written");
}

#[test]
fn update_moves_to_the_newest_version_and_drops_the_old_archive() {
    let repo = tempfile::tempdir().unwrap();
    let archives = helm_repository_with(repo.path(), &["0.1.0", "0.2.0"]);
    let server = FileServer::serving(repo.path());
    let ws = Workspace::new(None);
    assert_eq!(
        ws.xtask(&["vendor", "add", "demo", "--repo", &server.url(), "--version", "0.1.0"]).code,
        Exit::Ok
    );

    let update = ws.xtask(&["vendor", "update", "demo"]);
    assert_eq!(update.code, Exit::Ok);
    assert!(update.stdout.contains("locked demo 0.2.0"), "{}", update.stdout);
    assert_eq!(std::fs::read(ws.path("charts/demo-0.2.0.tgz")).unwrap(), archives[1]);
    assert!(!ws.path("charts/demo-0.1.0.tgz").exists(), "the old archive is removed");
    let lock = ws.lock();
    assert!(lock.contains("version: 0.2.0") && lock.contains(&sha256(&archives[1])), "{lock}");

    let unknown = ws.xtask(&["vendor", "update", "demo", "--version", "9.9.9"]);
    assert_eq!(unknown.code, Exit::BadInput);
    assert!(unknown.stderr.contains("no version `9.9.9`") && unknown.stderr.contains("0.2.0"));
    assert_eq!(ws.lock(), lock, "nothing changed");
}

#[test]
fn check_rejects_remote_release_charts_and_bad_arguments() {
    let ws = Workspace::new(Some("bitnami/postgresql"));
    std::fs::write(ws.path("charts/demo-0.1.0.tgz"), b"not locked").unwrap();
    let check = ws.xtask(&["vendor", "--check"]);
    assert_eq!(check.code, Exit::Failed);
    assert!(check.stderr.contains("2 problem(s)"), "{}", check.stderr);
    assert!(
        check.stderr.contains(
            "release `extra`: chart `bitnami/postgresql` is a remote repository reference"
        )
    );
    assert!(check.stderr.contains("release `demo`") && check.stderr.contains("is not in the lock"));

    let bad_repo = ws.xtask(&["vendor", "add", "demo", "--repo", "ftp://x", "--version", "1"]);
    assert_eq!(bad_repo.code, Exit::BadInput);
    assert!(bad_repo.stderr.contains("ftp://x"));
    let unknown = ws.xtask(&["vendor", "update", "nope"]);
    assert_eq!(unknown.code, Exit::BadInput);
    assert!(
        unknown.stderr.contains("`nope` is not in") && unknown.stderr.contains("charts.lock.yaml")
    );
    assert_eq!(
        ws.lock(),
        "# Vendored charts (cargo xtask vendor add).\ncharts: []\n",
        "nothing changed"
    );
}

/// A `testbed/registry:2` container (Debian's docker-registry) published on a free
/// loopback port; removed on drop.
struct RegistryContainer {
    runtime: tokio::runtime::Runtime,
    docker: bollard::Docker,
    id: String,
    port: u16,
}

impl RegistryContainer {
    fn start() -> RegistryContainer {
        use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
        use bollard::query_parameters::{CreateContainerOptions, StartContainerOptions};
        let runtime = testbed::docker::runtime().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (docker, id) = runtime.block_on(async {
            let docker = testbed::docker::connect().await.unwrap();
            testbed::docker::images::ensure_images(&docker).await.unwrap();
            let body = ContainerCreateBody {
                image: Some(testbed::docker::images::REGISTRY_IMAGE.to_owned()),
                cmd: Some(testbed::docker::images::registry_command()),
                exposed_ports: Some(vec!["5000/tcp".to_owned()]),
                host_config: Some(HostConfig {
                    port_bindings: Some(std::collections::HashMap::from([(
                        "5000/tcp".to_owned(),
                        Some(vec![PortBinding {
                            host_ip: Some("127.0.0.1".to_owned()),
                            host_port: Some(port.to_string()),
                        }]),
                    )])),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let name = format!("xtask-vendor-test-{port}");
            let created = docker
                .create_container(
                    Some(CreateContainerOptions { name: Some(name), ..Default::default() }),
                    body,
                )
                .await
                .unwrap();
            docker.start_container(&created.id, None::<StartContainerOptions>).await.unwrap();
            (docker, created.id)
        });
        let registry = RegistryContainer { runtime, docker, id, port };
        registry.wait_until_it_answers();
        registry
    }

    /// `GET /v2/` answers 200 once the registry is up (bounded: about 30 s).
    fn wait_until_it_answers(&self) {
        let url = format!("http://127.0.0.1:{}/v2/", self.port);
        for _ in 0..300 {
            if testbed::http::get(&url, &[]).is_ok_and(|answer| answer.status == 200) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the registry container on port {} never answered GET /v2/ with 200", self.port);
    }
}

impl Drop for RegistryContainer {
    fn drop(&mut self) {
        let _ = self.runtime.block_on(testbed::docker::remove_container(&self.docker, &self.id));
    }
}

#[test]
fn oci_chart_pushed_to_a_registry_container_is_vendored() {
    let test = "oci_chart_pushed_to_a_registry_container_is_vendored";
    if !have("helm", &["version"], test) {
        return;
    }
    if !testbed::docker::daemon_answers() {
        assert!(std::env::var_os("CI").is_none(), "{test}: a Docker daemon is required under CI");
        eprintln!("SKIPPED {test}: no Docker daemon");
        return;
    }
    let repo = tempfile::tempdir().unwrap();
    let packaged = helm_repository(repo.path());
    let registry = RegistryContainer::start();
    let repository = format!("oci://127.0.0.1:{}/charts", registry.port);
    let archive = repo.path().join("charts/demo-0.1.0.tgz");
    helm(&["push", archive.to_str().unwrap(), &repository, "--plain-http"]);

    let ws = Workspace::new(None);
    let add = ws.xtask(&["vendor", "add", "demo", "--repo", &repository, "--version", "0.1.0"]);
    assert_eq!(add.code, Exit::Ok);
    assert!(
        add.stderr.contains("$ helm pull") && add.stderr.contains("--plain-http"),
        "the call is echoed"
    );
    assert_eq!(ws.archive(), packaged, "helm pull returns the pushed archive");
    assert!(ws.lock().contains(&format!("digest: sha256:{}", sha256(&packaged))));
    assert!(ws.lock().contains(&format!("repository: {repository}")));

    flip_a_byte(&ws.path("charts/demo-0.1.0.tgz"));
    assert_eq!(ws.xtask(&["vendor", "--check"]).code, Exit::Failed);
    assert_eq!(ws.xtask(&["vendor"]).code, Exit::Ok);
    assert_eq!(ws.archive(), packaged);
    drop(registry);
    assert_eq!(ws.xtask(&["vendor", "--check"]).code, Exit::Ok, "offline once vendored");
}
