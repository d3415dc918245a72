//! `cargo xtask tools install` end to end.
//!
//! Release-like downloads are built here (a shell script "binary", and a tar.gz holding
//! one under `<os>-<arch>/`), served on 127.0.0.1 by `support::file_server`, which counts
//! requests, and pinned with their sha256s in a temp workspace's own Cargo.toml
//! (found through `BOOTSTRAP_ROOT`). The same server, asked with absolute-form request
//! targets, is the HTTP proxy of the proxy test. Every run starts with no proxy
//! variables of the test's environment; a test that wants a proxy sets one.

mod support;

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use support::file_server::FileServer;
use support::sha256;
use xtask::error::Exit;

/// This machine as the pins name it (`linux-amd64`), the test's platform.
fn platform() -> (&'static str, &'static str) {
    let os = if cfg!(target_os = "macos") { "darwin" } else { "linux" };
    let arch = if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" };
    (os, arch)
}

fn script(name: &str, version: &str) -> Vec<u8> {
    format!("#!/bin/sh\necho \"{name} version v{version}\"\n").into_bytes()
}

/// A gzip'd tar archive holding `files` (path, bytes), as release tarballs do.
fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_ustar();
        header.set_mode(0o755);
        header.set_size(data.len() as u64);
        tar.append_data(&mut header, path, *data).unwrap();
    }
    let tar = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

/// A pin as it would be written in Cargo.toml.
#[derive(Clone)]
struct Pin {
    name: &'static str,
    version: String,
    url: String,
    tar_binary: Option<&'static str>,
    sha256: Option<String>,
}

impl Pin {
    fn toml(&self) -> String {
        let (os, arch) = platform();
        let mut out = format!(
            "\n[workspace.metadata.bootstrap.tools.{}]\nversion = \"{}\"\nurl = \"{}\"\n",
            self.name, self.version, self.url
        );
        match self.tar_binary {
            Some(inner) => out.push_str(&format!("archive = \"tar.gz\"\nbinary = \"{inner}\"\n")),
            None => out.push_str("archive = \"binary\"\n"),
        }
        if let Some(sum) = &self.sha256 {
            out.push_str(&format!(
                "[workspace.metadata.bootstrap.tools.{}.sha256]\n{os}-{arch} = \"{sum}\"\n",
                self.name
            ));
        }
        out
    }
}

/// A workspace root whose settings pin tools.
struct Workspace(support::Workspace);

support::wraps_workspace!(Workspace);

impl Workspace {
    fn new(pins: &[Pin]) -> Workspace {
        let workspace = Workspace(support::Workspace::new(&[]));
        workspace.pin(pins);
        workspace
    }

    fn pin(&self, pins: &[Pin]) {
        let tables: Vec<String> = pins.iter().map(Pin::toml).collect();
        let mut settings = vec!["log = \"setup.log\""];
        settings.extend(tables.iter().map(String::as_str));
        self.write_settings(&settings);
    }

    /// The xtask binary run from this root, with no proxy variables.
    fn xtask(&self, args: &[&str]) -> Command {
        let mut cmd = self.bare_command(args);
        for name in support::PROXY_VARIABLES {
            cmd.env_remove(name);
        }
        cmd
    }

    /// `cargo xtask tools install`: exit code, stdout, stderr.
    fn install(&self) -> (Exit, String, String) {
        self.install_with(&[])
    }

    /// `cargo xtask tools install` with these environment variables (proxies).
    fn install_with(&self, env: &[(&str, &str)]) -> (Exit, String, String) {
        let output = self.xtask(&["tools", "install"]).envs(env.iter().copied()).output().unwrap();
        let run = (
            Exit::of(output.status),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        );
        eprintln!("$ xtask tools install {env:?} -> exit {:?}\n{}{}", run.0, run.1, run.2);
        run
    }

    /// Files under `.tools` (relative), to prove nothing was half-installed.
    fn tools_files(&self) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, base, out);
                } else {
                    out.push(path.strip_prefix(base).unwrap().display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.path(".tools"), &self.path(".tools"), &mut out);
        out.sort();
        out
    }

    fn run_tool(&self, name: &str) -> String {
        let output = Command::new(self.path(".tools/bin").join(name)).output().unwrap();
        assert!(output.status.success(), "{name} did not run");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// k3d as a bare executable, helm as a tar.gz with `<os>-<arch>/helm` inside.
fn release(server: &FileServer, helm_version: &str) -> Vec<Pin> {
    let (os, arch) = platform();
    let k3d = script("k3d", "5.7.5");
    let k3d_url = server.serve(&format!("/k3d/v5.7.5/k3d-{os}-{arch}"), k3d.clone());
    let helm = tar_gz(&[
        (&format!("{os}-{arch}/LICENSE"), b"Apache-2.0\n"),
        (&format!("{os}-{arch}/helm"), &script("helm", helm_version)),
    ]);
    let helm_sum = sha256(&helm);
    server.serve(&format!("/helm/helm-v{helm_version}-{os}-{arch}.tar.gz"), helm);
    let base = server.url();
    vec![
        Pin {
            name: "k3d",
            version: "5.7.5".into(),
            url: k3d_url.replace(&format!("k3d-{os}-{arch}"), "k3d-{os}-{arch}"),
            tar_binary: None,
            sha256: Some(sha256(&k3d)),
        },
        Pin {
            name: "helm",
            version: helm_version.into(),
            url: format!("{base}/helm/helm-v{{version}}-{{os}}-{{arch}}.tar.gz"),
            tar_binary: Some("{os}-{arch}/helm"),
            sha256: Some(helm_sum),
        },
    ]
}

#[test]
fn install_puts_runnable_tools_in_place_and_a_second_run_downloads_nothing() {
    let server = FileServer::start();
    let workspace = Workspace::new(&release(&server, "3.18.4"));

    let (code, stdout, stderr) = workspace.install();
    assert_eq!(code, Exit::Ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("k3d 5.7.5: installed (.tools/bin/k3d)"), "{stdout}");
    assert!(stdout.contains("helm 3.18.4: installed (.tools/bin/helm)"), "{stdout}");
    assert_eq!(workspace.run_tool("k3d"), "k3d version v5.7.5\n");
    assert_eq!(workspace.run_tool("helm"), "helm version v3.18.4\n");
    assert_eq!(server.requests().len(), 2);

    let (code, stdout, _) = workspace.install();
    assert_eq!(code, Exit::Ok);
    assert!(stdout.contains("k3d 5.7.5: already installed"), "{stdout}");
    assert!(stdout.contains("helm 3.18.4: already installed"), "{stdout}");
    assert_eq!(server.requests().len(), 2, "a second run must download nothing");

    // A new pinned version replaces only that tool.
    workspace.pin(&release(&server, "3.19.0"));
    let (code, stdout, stderr) = workspace.install();
    assert_eq!(code, Exit::Ok, "{stderr}");
    assert!(stdout.contains("helm 3.19.0: installed"), "{stdout}");
    assert!(stdout.contains("k3d 5.7.5: already installed"), "{stdout}");
    assert_eq!(workspace.run_tool("helm"), "helm version v3.19.0\n");
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn tampered_download_is_refused_and_nothing_is_installed() {
    let server = FileServer::start();
    let pins = release(&server, "3.18.4");
    let (os, arch) = platform();
    // The server now answers a different archive than the one pinned.
    let evil = tar_gz(&[(&format!("{os}-{arch}/helm"), b"#!/bin/sh\necho pwned\n")]);
    server.serve(&format!("/helm/helm-v3.18.4-{os}-{arch}.tar.gz"), evil.clone());
    let workspace = Workspace::new(&pins);

    let (code, stdout, stderr) = workspace.install();
    assert_eq!(code, Exit::Failed, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("helm 3.18.4: checksum mismatch"), "{stderr}");
    assert!(stderr.contains(&format!("got {}", sha256(&evil))), "{stderr}");
    assert!(stderr.contains("to install helm 3.18.4 by hand"), "{stderr}");
    // All or nothing: the good k3d download is not installed either.
    assert_eq!(workspace.tools_files(), Vec::<String>::new());
}

#[test]
fn unreachable_url_is_exit_3_naming_the_tool_with_a_hint() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let workspace = Workspace::new(&[Pin {
        name: "kubectl",
        version: "1.32.1".into(),
        url: format!("http://127.0.0.1:{port}/release/v{{version}}/bin/{{os}}/{{arch}}/kubectl"),
        tar_binary: None,
        sha256: Some("0".repeat(64)),
    }]);

    let (code, stdout, stderr) = workspace.install();
    assert_eq!(code, Exit::Missing, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let (os, arch) = platform();
    assert!(
        stderr.contains(&format!(
            "kubectl 1.32.1: cannot download http://127.0.0.1:{port}/release/v1.32.1/bin/{os}/{arch}/kubectl"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("to install kubectl 1.32.1 by hand: download"), "{stderr}");
    assert_eq!(workspace.tools_files(), Vec::<String>::new());
}

#[test]
fn a_mismatch_beside_an_unreachable_download_is_exit_1_listing_both() {
    let server = FileServer::start();
    let mut pins = release(&server, "3.18.4");
    let (os, arch) = platform();
    let evil = tar_gz(&[(&format!("{os}-{arch}/helm"), b"#!/bin/sh\necho pwned\n")]);
    server.serve(&format!("/helm/helm-v3.18.4-{os}-{arch}.tar.gz"), evil);
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    pins.push(Pin {
        name: "kubectl",
        version: "1.32.1".into(),
        url: format!("http://127.0.0.1:{port}/kubectl-{{version}}"),
        tar_binary: None,
        sha256: Some("0".repeat(64)),
    });
    let workspace = Workspace::new(&pins);

    // Unreachable alone would be 3 (retry later); a mismatch needs a person: 1.
    let (code, stdout, stderr) = workspace.install();
    assert_eq!(code, Exit::Failed, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("2 tools could not be installed"), "{stderr}");
    assert!(stderr.contains("helm 3.18.4: checksum mismatch"), "{stderr}");
    assert!(stderr.contains("kubectl 1.32.1: cannot download"), "{stderr}");
    assert_eq!(workspace.tools_files(), Vec::<String>::new());
}

#[test]
fn missing_download_and_unpinned_platform_are_exit_3() {
    let server = FileServer::start();
    let base = server.url();
    let not_there = Workspace::new(&[Pin {
        name: "helmfile",
        version: "1.6.0".into(),
        url: format!("{base}/helmfile_{{version}}_{{os}}_{{arch}}.tar.gz"),
        tar_binary: Some("helmfile"),
        sha256: Some("1".repeat(64)),
    }]);
    let (code, _, stderr) = not_there.install();
    assert_eq!(code, Exit::Missing, "{stderr}");
    assert!(stderr.contains("helmfile 1.6.0: cannot download"), "{stderr}");
    assert!(stderr.contains("404"), "{stderr}");

    let unpinned = Workspace::new(&[Pin {
        name: "tilt",
        version: "0.37.7".into(),
        url: format!("{base}/tilt.{{version}}.{{os}}.{{arch}}.tar.gz"),
        tar_binary: Some("tilt"),
        sha256: None,
    }]);
    let (code, _, stderr) = unpinned.install();
    let (os, arch) = platform();
    assert_eq!(code, Exit::Missing, "{stderr}");
    assert!(stderr.contains(&format!("tilt 0.37.7: no sha256 pinned for {os}-{arch}")), "{stderr}");
    assert!(stderr.contains("to install tilt 0.37.7 by hand"), "{stderr}");
    assert_eq!(server.requests().len(), 1, "an unpinned platform is refused before any download");
    assert_eq!(unpinned.tools_files(), Vec::<String>::new());
}

#[test]
fn a_host_only_a_proxy_reaches_is_installed_through_it_unless_no_proxy_names_it() {
    let proxy = FileServer::start();
    let (os, arch) = platform();
    let k3d = script("k3d", "5.7.5");
    // `.invalid` never resolves (RFC 6761): only the proxy can answer for it.
    let url = format!("http://tools.invalid/k3d/v5.7.5/k3d-{os}-{arch}");
    proxy.proxy_for(&url, k3d.clone());
    let workspace = Workspace::new(&[Pin {
        name: "k3d",
        version: "5.7.5".into(),
        url: "http://tools.invalid/k3d/v{version}/k3d-{os}-{arch}".into(),
        tar_binary: None,
        sha256: Some(sha256(&k3d)),
    }]);
    let http_proxy = proxy.url();

    // NO_PROXY names the host: asked directly, it cannot be reached.
    let bypassed = [("HTTP_PROXY", http_proxy.as_str()), ("NO_PROXY", "tools.invalid")];
    let (code, stdout, stderr) = workspace.install_with(&bypassed);
    assert_eq!(code, Exit::Missing, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains(&format!("k3d 5.7.5: cannot download {url}")), "{stderr}");
    assert_eq!(proxy.requests().len(), 0, "the proxy is not asked for a NO_PROXY host");
    assert_eq!(workspace.tools_files(), Vec::<String>::new());

    let (code, stdout, stderr) = workspace.install_with(&[("HTTP_PROXY", &http_proxy)]);
    assert_eq!(code, Exit::Ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("k3d 5.7.5: installed (.tools/bin/k3d)"), "{stdout}");
    assert_eq!(workspace.run_tool("k3d"), "k3d version v5.7.5\n");
    assert_eq!(proxy.requests(), [url], "one absolute-form request through the proxy");
}

#[test]
fn bad_pin_is_exit_2_naming_the_table() {
    let workspace = Workspace::new(&[Pin {
        name: "helm",
        version: "3.18.4".into(),
        url: "https://get.helm.sh/helm-v{version}-{os}-{arch}.tar.gz".into(),
        tar_binary: None,
        sha256: Some("not-a-checksum".into()),
    }]);
    let (code, _, stderr) = workspace.install();
    assert_eq!(code, Exit::BadInput, "{stderr}");
    assert!(stderr.contains("[workspace.metadata.bootstrap.tools.helm]"), "{stderr}");
    assert!(stderr.contains("64 lower-case hex"), "{stderr}");
}

#[test]
fn bootstrap_plans_the_pinned_tools_and_installs_them_only_when_it_applies() {
    let server = FileServer::start();
    let pins = release(&server, "3.18.4");
    // PATH without helmfile (not pinned here). What it printed: the summary (stdout)
    // then the progress and any error (stderr).
    let run = |workspace: &Workspace, args: &[&str], path: &str| {
        let output = workspace.xtask(args).env("PATH", path).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let printed = format!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
        eprintln!("$ xtask {args:?} -> {:?}\n{printed}", output.status);
        (Exit::of(output.status), stdout, printed)
    };
    let with_platform = |workspace: Workspace| {
        support::copy_dir(&support::repo_root().join("infra"), &workspace.path("infra"));
        workspace
    };
    let bare = "/usr/bin:/bin";

    let skipped = with_platform(Workspace::new(&pins));
    let (code, _, printed) = run(&skipped, &["bootstrap", "--no-install"], bare);
    assert_eq!(code, Exit::Missing, "{printed}");
    assert_eq!(skipped.tools_files(), Vec::<String>::new());
    assert_eq!(server.requests().len(), 0);

    // Bad input is found before anything is installed.
    let malformed = with_platform(Workspace::new(&pins));
    malformed.edit("infra/kubernetes/helmfiles/24-auth.yaml", |t| t.replace("chart:", "chrt:"));
    let (code, _, printed) = run(&malformed, &["bootstrap"], bare);
    assert_eq!(code, Exit::BadInput, "{printed}");
    assert_eq!(malformed.tools_files(), Vec::<String>::new());
    assert_eq!(server.requests().len(), 0);

    // A plan names what the run would install, and installs nothing; `cargo xtask plan`
    // prints the same plan.
    let planned = with_platform(Workspace::new(&pins));
    let (code, stdout, printed) = run(&planned, &["bootstrap", "--plan", "--format", "json"], bare);
    assert_eq!(code, Exit::Ok, "{printed}");
    let plan: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    let tools: Vec<(&str, &str)> = plan["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap(), t["version"].as_str().unwrap()))
        .collect();
    assert_eq!(tools, [("helm", "3.18.4"), ("k3d", "5.7.5")], "{plan}");
    assert!(plan["warnings"].to_string().contains("helmfile"), "{plan}");
    assert_eq!(planned.tools_files(), Vec::<String>::new());
    assert_eq!(server.requests().len(), 0);
    let (code, same, printed) = run(&planned, &["plan", "--format", "json"], bare);
    assert_eq!(code, Exit::Ok, "{printed}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&same).unwrap(), plan);
    assert_eq!(server.requests().len(), 0);

    // A tool the run needs and cannot install stops it before anything is installed.
    let (code, _, printed) = run(&planned, &["bootstrap"], bare);
    assert_eq!(code, Exit::Missing, "{printed}");
    assert!(printed.contains("not found on PATH: helmfile"), "{printed}");
    assert_eq!(planned.tools_files(), Vec::<String>::new());
    assert_eq!(server.requests().len(), 0);

    // With helmfile found (one that only says its version, so no Go-template layer),
    // applying installs the planned tools first.
    planned.edit("infra/kubernetes/helmfile.yaml", |t| {
        t.replace("  - helmfiles/45-data-plane-ext.yaml.gotmpl\n", "")
    });
    let helmfile = tempfile::tempdir().unwrap();
    let fake = helmfile.path().join("helmfile");
    let says_version = "#!/bin/sh\ncase \"$*\" in *version*) echo \"helmfile version v0.166.0\";; *) exit 1;; esac\n";
    std::fs::write(&fake, says_version).unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{bare}", helmfile.path().display());

    // Offline, with the planned tools on PATH: the run uses those and says so, and claims
    // to have installed nothing.
    let unreachable =
        |p: &Pin| Pin { url: p.url.replace(&server.url(), "http://127.0.0.1:9"), ..p.clone() };
    planned.pin(&pins.iter().map(unreachable).collect::<Vec<_>>());
    for (name, version) in [("k3d", "5.7.5"), ("helm", "3.18.4")] {
        std::fs::write(helmfile.path().join(name), script(name, version)).unwrap();
        std::fs::set_permissions(
            helmfile.path().join(name),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    }
    let (_, stdout, printed) = run(&planned, &["sync", "10-bootstrap"], &path);
    assert!(
        stdout.contains("warning: preflight: pinned tools not installed (downloads unreachable)"),
        "{printed}"
    );
    assert!(!stdout.contains("installed helm"), "{printed}");
    assert_eq!(planned.tools_files(), Vec::<String>::new());
    std::fs::remove_file(helmfile.path().join("k3d")).unwrap();
    std::fs::remove_file(helmfile.path().join("helm")).unwrap();
    planned.pin(&pins);

    let (_, _, printed) = run(&planned, &["sync", "10-bootstrap"], &path);
    assert_eq!(planned.run_tool("k3d"), "k3d version v5.7.5\n", "{printed}");
    assert_eq!(planned.run_tool("helm"), "helm version v3.18.4\n");
    assert_eq!(server.requests().len(), 2);
}
