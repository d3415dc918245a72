//! Helpers shared by the API and Helm integration tests: a fake API server process on a
//! temp dir, a kubeconfig for it, and the real tools (skipped, or failed under `CI`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// A real tool on PATH. Without it: panic when `CI` is set, else print "skipped" and None.
pub fn real_tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("`{name}` is not on PATH, and CI is set: this test needs the real {name}");
        }
        eprintln!("skipped: `{name}` is not on PATH");
    }
    found
}

/// Where the real helm, kubectl and helmfile builds are (`.ci/install-real-tools`):
/// `$TESTBED_REAL_TOOLS`, default `/usr/local/lib/bootstrap-tools`.
pub fn real_tools_dir() -> PathBuf {
    testbed::real_tools::tools_dir()
}

/// A real binary below `real_tools_dir()` (`helm-3.17.2/helm`). Without it: panic when
/// `CI` is set, else print "skipped" and None.
pub fn real_binary(relative: &str) -> Option<PathBuf> {
    let path = real_tools_dir().join(relative);
    if path.is_file() {
        return Some(path);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{} is missing, and CI is set: this test needs it (.ci/install-real-tools)",
            path.display()
        );
    }
    eprintln!("skipped: {} is missing (.ci/install-real-tools installs it)", path.display());
    None
}

/// Write `text` to `name` in `dir`; its path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// One fake API server on a temp state dir, killed on drop.
pub struct Api {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl Api {
    pub fn start() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let (child, port) = spawn(dir.path());
        let api = Api { dir, port, child };
        std::fs::write(api.kubeconfig(), kubeconfig(port, &api.dir.path().join("api"))).unwrap();
        api
    }

    /// Stop the process and start another on the same state.
    pub fn restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let (child, port) = spawn(self.dir.path());
        self.child = child;
        self.port = port;
        std::fs::write(self.kubeconfig(), kubeconfig(port, &self.dir.path().join("api"))).unwrap();
    }

    pub fn server(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    pub fn client(&self) -> testbed::kube_api::Client {
        testbed::kube_api::Client::from_kubeconfig(&self.kubeconfig()).unwrap()
    }

    /// A kube-rs client from this API's kubeconfig, as a controller would make it.
    pub async fn kube_client(&self) -> kube::Client {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(self.kubeconfig()).unwrap(),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        kube::Client::try_from(config).unwrap()
    }

    /// A command with this API's kubeconfig and private helm/kubectl caches.
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        let home = self.dir.path().join("home");
        cmd.env("KUBECONFIG", self.kubeconfig())
            .env("HOME", &home)
            .env("HELM_CACHE_HOME", home.join("helm-cache"))
            .env("HELM_CONFIG_HOME", home.join("helm-config"))
            .env("HELM_DATA_HOME", home.join("helm-data"));
        cmd
    }

    pub fn run(&self, program: &Path, args: &[&str]) -> Output {
        let out = self.command(program).args(args).output().unwrap();
        eprintln!(
            "$ {} {}\n{}{}",
            program.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Run and expect success; the stdout.
    pub fn ok(&self, program: &Path, args: &[&str]) -> String {
        let out = self.run(program, args);
        assert!(out.status.success(), "{} {args:?} failed", program.display());
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// The child is returned to `Api`, which kills and waits for it on drop.
#[allow(clippy::zombie_processes)]
fn spawn(dir: &Path) -> (Child, u16) {
    let port_file = dir.join("apiserver.port");
    let _ = std::fs::remove_file(&port_file);
    let child = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .env("TESTBED_DIR", dir)
        .args(["apiserver", "--state-dir"])
        .arg(dir.join("api"))
        .arg("--port-file")
        .arg(&port_file)
        .stderr(std::fs::File::create(dir.join("apiserver.log")).unwrap())
        .spawn()
        .unwrap();
    // Not a timed assertion: a generous bound so a broken server fails instead of hanging.
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&port_file)
            && let Ok(port) = text.trim().parse()
        {
            return (child, port);
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the API server wrote no port file");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A kubeconfig for the API on `port` with the certificates in `<state>/tls`, as k3d's.
pub fn kubeconfig(port: u16, state: &Path) -> String {
    let mut config = testbed::kubeconfig::empty();
    let certs = testbed::tls::ensure(state).unwrap();
    let creds = testbed::kubeconfig::Credentials {
        ca: certs.ca.into_bytes(),
        client_cert: Some(certs.client_cert.into_bytes()),
        client_key: Some(certs.client_key.into_bytes()),
    };
    testbed::kubeconfig::upsert_cluster_tls(
        &mut config,
        "test",
        &format!("https://127.0.0.1:{port}"),
        Some(&creds),
    );
    serde_saphyr::to_string(&config).unwrap()
}

/// An API plus a TESTBED_DIR with `helmfile`/`helm` symlinks to the testbed binary.
pub struct Bed {
    pub api: Api,
    pub real_helm: PathBuf,
}

impl Bed {
    pub fn new() -> Option<Bed> {
        let real_helm = real_tool("helm")?;
        let api = Api::start();
        let bin = api.dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for tool in ["helmfile", "helm"] {
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_testbed"), bin.join(tool)).unwrap();
        }
        Some(Bed { api, real_helm })
    }

    pub fn dir(&self) -> &Path {
        self.api.dir.path()
    }

    /// Apply scenario words (as `testbed set`).
    pub fn set(&self, words: &[&str]) {
        let words: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
        testbed::cli::set(self.dir(), &words).unwrap();
    }

    pub fn fake(&self, tool: &str, args: &[&str]) -> Output {
        let mut cmd = self.api.command(&self.dir().join("bin").join(tool));
        let out = cmd
            .args(args)
            .env("TESTBED_DIR", self.dir())
            .env("TESTBED_REAL_HELM", &self.real_helm)
            .output()
            .unwrap();
        eprintln!(
            "$ {tool} {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn releases(&self) -> serde_json::Value {
        serde_json::from_str(&self.api.ok(&self.real_helm, &["list", "-A", "-o", "json"])).unwrap()
    }

    /// GET an API path (None when 404).
    pub fn get(&self, path: &str) -> Option<serde_json::Value> {
        rt().block_on(self.api.client().get_opt(path)).unwrap()
    }

    pub fn list(&self, path: &str, selector: Option<&str>) -> Vec<serde_json::Value> {
        rt().block_on(self.api.client().list(path, selector)).unwrap()
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Poll `done` every 100 ms; panics after `limit` (a generous upper bound, not a timing
/// assertion) with `what`.
pub fn eventually<T>(limit: Duration, what: &str, mut done: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = done() {
            return v;
        }
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
