//! `cargo xtask doctor`: are the prerequisites here, and new enough?
//!
//! Minimum versions and why:
//!
//! | tool | minimum | why |
//! |---|---|---|
//! | docker daemon | 20.10 | API 1.41, the oldest the engine's Docker client negotiates down to here |
//! | k3d | 5.5.0 | first release reading `apiVersion: k3d.io/v1alpha5` configs |
//! | helm | 3.8.0 | OCI chart references (`oci://`) without the experimental flag; v4 works |
//! | helmfile | 1.0.0 | v1 layout (environments in their own `---` part), `list --output json` |
//! | kubectl | 1.30.0 | within the supported skew of the pinned k3s 1.33 |
//! | tilt | 0.33.0 | `/api/view` with the `Tilt-Token` cookie (optional: only the tilt stage needs it) |
//!
//! Tools are looked for in `<root>/.tools/bin` first, then on `PATH`. A required tool
//! that is missing or older than its minimum is exit 3 with how to install it; a tool
//! whose version cannot be read, or tilt missing, is a warning.

use std::fmt::{self, Write as _};
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::config::{Context, Format};
use crate::error::missing;
use crate::exec::{self, Cmd, Output};
use crate::probe;
use crate::report::Log;

/// Check that docker, k3d, helm, helmfile, kubectl (and optionally tilt) are usable.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// A dotted version `major.minor.patch` (missing parts are 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u64, pub u64, pub u64);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

impl Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Version {
    /// The first `N.N[.N]` in `text` (a leading `v` is fine): `k3d version v5.8.3`,
    /// `v4.1.4+g05fa379`, `helmfile version 1.1.2`, `v0.33.17, built 2024-06-10`.
    pub fn find_in(text: &str) -> Option<Version> {
        let bytes = text.as_bytes();
        // A version starts a word, or follows a `v` that does: not `k8s`, not `go1.24`.
        let starts_version = |i: usize| match i.checked_sub(1).map(|p| bytes[p]) {
            _ if !bytes[i].is_ascii_digit() => false,
            None => true,
            Some(b'v') => i < 2 || !bytes[i - 2].is_ascii_alphanumeric(),
            Some(prev) => !(prev.is_ascii_alphanumeric() || prev == b'.'),
        };
        (0..bytes.len())
            .filter(|&i| starts_version(i))
            .find_map(|i| Version::parse_prefix(&text[i..]))
    }

    fn parse_prefix(text: &str) -> Option<Version> {
        let end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
        let mut parts = text[..end].split('.').map(|p| p.parse::<u64>().ok());
        let major = parts.next()??;
        let minor = parts.next()??;
        let patch = parts.next().flatten().unwrap_or(0);
        Some(Version(major, minor, patch))
    }
}

/// What we need of one command-line tool.
#[derive(Debug, Clone)]
pub struct Requirement {
    pub name: &'static str,
    pub required: bool,
    pub minimum: Version,
    pub version_args: &'static [&'static str],
    pub hint: &'static str,
}

pub const DOCKER_MINIMUM: Version = Version(20, 10, 0);
pub const DOCKER_HINT: &str = "install Docker Engine (https://docs.docker.com/engine/install/, or `apt-get install docker.io`) and start the daemon; in a devcontainer add the docker-in-docker feature";

/// The command-line tools, in the order they are shown.
pub const TOOLS: &[Requirement] = &[
    Requirement {
        name: "k3d",
        required: true,
        minimum: Version(5, 5, 0),
        version_args: &["version"],
        hint: "https://k3d.io/stable/#installation (`curl -s https://raw.githubusercontent.com/k3d-io/k3d/main/install.sh | bash`)",
    },
    Requirement {
        name: "helm",
        required: true,
        minimum: Version(3, 8, 0),
        version_args: &["version", "--short"],
        hint: "https://helm.sh/docs/intro/install/",
    },
    Requirement {
        name: "helmfile",
        required: true,
        minimum: Version(1, 0, 0),
        version_args: &["--version"],
        hint: "https://github.com/helmfile/helmfile/releases (unpack `helmfile` onto PATH)",
    },
    Requirement {
        name: "kubectl",
        required: true,
        minimum: Version(1, 30, 0),
        version_args: &["version", "--client", "--output=json"],
        hint: "https://kubernetes.io/docs/tasks/tools/#kubectl",
    },
    Requirement {
        name: "tilt",
        required: false,
        minimum: Version(0, 33, 0),
        version_args: &["version"],
        hint: "https://docs.tilt.dev/install.html",
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// Usable but something is off (version unreadable, optional tool missing).
    Warning,
    /// Not found, not reachable, or too old.
    Missing,
}

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub required: bool,
    pub status: Status,
    pub version: Option<Version>,
    pub minimum: Version,
    /// What was found or went wrong, in a few words.
    pub detail: String,
    /// How to install or fix it; set when the status is not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The version pinned in `[workspace.metadata.bootstrap.tools]`, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KubeContext {
    pub current: Option<String>,
    /// The context k3d writes for our cluster.
    pub expected: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// No required prerequisite is missing.
    pub ok: bool,
    pub checks: Vec<Check>,
    pub kube_context: KubeContext,
}

/// Judge a command-line tool from where it was found and what `<tool> <version_args>`
/// printed.
pub fn assess_tool(
    req: &Requirement,
    path: Option<&Path>,
    output: Option<Result<Output>>,
) -> Check {
    let mut check = Check {
        name: req.name.to_string(),
        required: req.required,
        status: Status::Ok,
        version: None,
        minimum: req.minimum,
        detail: String::new(),
        hint: None,
        pinned: None,
    };
    let hint = Some(format!(
        "install {}: `cargo xtask tools install {}` (the pinned version, into .tools/bin), or {}",
        req.name, req.name, req.hint
    ));
    let (Some(path), Some(output)) = (path, output) else {
        check.status = if req.required { Status::Missing } else { Status::Warning };
        check.detail =
            if req.required { "not found on PATH" } else { "not found on PATH (optional)" }.into();
        check.hint = hint;
        return check;
    };
    let output = match output {
        Ok(out) if out.success() => out,
        Ok(out) => {
            let why = out.stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("no output");
            check.status = Status::Warning;
            check.detail =
                format!("{}: `{}` failed: {why}", path.display(), req.version_args.join(" "));
            return check;
        }
        Err(err) => {
            check.status = Status::Warning;
            check.detail = format!("{}: {err}", path.display());
            return check;
        }
    };
    check.version = tool_version(req.name, &output.stdout);
    check.detail = path.display().to_string();
    match check.version {
        None => {
            check.status = Status::Warning;
            check.detail = format!("{}: version not recognised", path.display());
        }
        Some(version) if version < req.minimum => {
            check.status = if req.required { Status::Missing } else { Status::Warning };
            check.detail = format!("{}: older than {}", path.display(), req.minimum);
            check.hint = Some(format!("upgrade {}: {}", req.name, req.hint));
        }
        Some(_) => {}
    }
    check
}

fn tool_version(name: &str, stdout: &str) -> Option<Version> {
    if name == "kubectl" {
        // `kubectl version -o json` also names a Go version; take the client's own.
        let json: serde_json::Value = serde_json::from_str(stdout).ok()?;
        return Version::find_in(json["clientVersion"]["gitVersion"].as_str()?);
    }
    Version::find_in(stdout)
}

/// Judge the Docker daemon from its reported server version (or why it did not answer).
pub fn assess_docker(server: Result<Option<String>>) -> Check {
    let mut check = Check {
        name: "docker".into(),
        required: true,
        status: Status::Ok,
        version: None,
        minimum: DOCKER_MINIMUM,
        detail: String::new(),
        hint: None,
        pinned: None,
    };
    match server {
        Err(err) => {
            check.status = Status::Missing;
            check.detail = format!("daemon not reachable: {}", first_line(&format!("{err:#}")));
            check.hint = Some(DOCKER_HINT.into());
        }
        Ok(version) => {
            check.version = version.as_deref().and_then(Version::find_in);
            match check.version {
                Some(v) if v < DOCKER_MINIMUM => {
                    check.status = Status::Missing;
                    check.detail = format!("daemon older than {DOCKER_MINIMUM}");
                    check.hint = Some(DOCKER_HINT.into());
                }
                Some(_) => check.detail = "daemon reachable".into(),
                None => {
                    check.status = Status::Warning;
                    check.detail = "daemon reachable, version not recognised".into();
                }
            }
        }
    }
    check
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

async fn docker_server_version(timeout: Duration) -> Result<Option<String>> {
    let ask = async {
        let docker = bollard::Docker::connect_with_local_defaults()?.negotiate_version().await?;
        let version = docker.version().await?;
        anyhow::Ok(version.version)
    };
    tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {}s", timeout.as_secs()))?
}

fn kube_context(cluster: &str) -> KubeContext {
    let expected = format!("k3d-{cluster}");
    match kube::config::Kubeconfig::read() {
        Err(_) => KubeContext {
            current: None,
            expected,
            detail: "no kubeconfig readable (KUBECONFIG or ~/.kube/config); bootstrap writes one"
                .to_string(),
        },
        Ok(config) => {
            let detail = match config.current_context.as_deref() {
                None => "no current context; `cargo xtask bootstrap` sets one".to_string(),
                Some(current) if current == expected => "the local cluster".to_string(),
                Some(_) => format!("not the local cluster ({expected}); bootstrap switches to it"),
            };
            KubeContext { current: config.current_context, expected, detail }
        }
    }
}

/// Look at every prerequisite (read-only).
pub async fn inspect(ctx: &Context) -> Report {
    let timeout = ctx.settings.timeouts.tool_call();
    let mut checks = vec![assess_docker(docker_server_version(timeout).await)];
    for req in TOOLS {
        let path = probe::find_tool(&ctx.root, req.name);
        let output = match path.as_deref() {
            Some(path) => Some(version_output(path, req, timeout).await),
            None => None,
        };
        let mut check = assess_tool(req, path.as_deref(), output);
        check.pinned = ctx.settings.tools.get(req.name).map(|pin| pin.version.clone());
        checks.push(check);
    }
    let ok = checks.iter().all(|c| c.status != Status::Missing);
    Report { ok, checks, kube_context: kube_context(&ctx.settings.cluster) }
}

/// What `<tool> <version_args>` printed: not echoed, and doctor keeps no log.
async fn version_output(path: &Path, req: &Requirement, timeout: Duration) -> Result<Output> {
    let cmd = Cmd::new("doctor", &path.to_string_lossy(), timeout)
        .args(req.version_args.iter().copied())
        .quiet();
    exec::run(&Log::none(), &cmd).await
}

pub async fn run(ctx: &Context, args: &Args) -> Result<()> {
    let report = inspect(ctx).await;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Human => print!("{}", render(&report)),
    }
    verdict(&report)
}

/// Exit 3 naming every missing required prerequisite and how to get it.
pub fn verdict(report: &Report) -> Result<()> {
    let missing_ones: Vec<String> = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Missing)
        .map(|c| format!("{} ({}); {}", c.name, c.detail, c.hint.as_deref().unwrap_or("")))
        .collect();
    if missing_ones.is_empty() {
        Ok(())
    } else {
        Err(missing(format!("missing prerequisites:\n  {}", missing_ones.join("\n  "))))
    }
}

/// The report as an aligned table, then hints.
pub fn render(report: &Report) -> String {
    let rows: Vec<[String; 6]> = report
        .checks
        .iter()
        .map(|c| {
            [
                c.name.clone(),
                match c.status {
                    Status::Ok => "ok",
                    Status::Warning => "warning",
                    Status::Missing => "MISSING",
                }
                .to_string(),
                c.version.map_or("-".to_string(), |v| v.to_string()),
                c.pinned.clone().unwrap_or_else(|| "-".to_string()),
                format!(">= {}", c.minimum),
                c.detail.clone(),
            ]
        })
        .collect();
    let header = ["TOOL", "STATUS", "VERSION", "PINNED", "MINIMUM", "DETAIL"].map(String::from);
    let mut widths = [0usize; 6];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> =
            row.iter().zip(widths).map(|(cell, width)| format!("{cell:width$}")).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    let kube = &report.kube_context;
    let _ = writeln!(
        out,
        "\nkube context: {} ({})",
        kube.current.as_deref().unwrap_or("none"),
        kube.detail
    );
    let hints: Vec<&Check> = report.checks.iter().filter(|c| c.hint.is_some()).collect();
    if !hints.is_empty() {
        let _ = writeln!(out);
        for c in hints {
            let _ = writeln!(out, "{}: {}", c.name, c.hint.as_deref().unwrap_or(""));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit_code;

    fn ran(stdout: &str) -> Option<Result<Output>> {
        Some(Ok(Output {
            code: Some(0),
            stdout: stdout.into(),
            stderr: String::new(),
            duration: Duration::ZERO,
        }))
    }

    fn req(name: &str) -> &'static Requirement {
        TOOLS.iter().find(|r| r.name == name).unwrap()
    }

    #[test]
    fn versions_are_found_in_real_tool_output() {
        assert_eq!(
            Version::find_in("k3d version v5.8.3\nk3s version v1.31.5-k3s1 (default)"),
            Some(Version(5, 8, 3))
        );
        assert_eq!(Version::find_in("v4.1.4+g05fa379"), Some(Version(4, 1, 4)));
        assert_eq!(Version::find_in("helmfile version 1.1.2"), Some(Version(1, 1, 2)));
        assert_eq!(Version::find_in("v0.33.17, built 2024-06-10"), Some(Version(0, 33, 17)));
        assert_eq!(Version::find_in("Docker 20.10"), Some(Version(20, 10, 0)));
        assert_eq!(Version::find_in("k8s.io/v2 x"), None);
        assert_eq!(Version::find_in("no version here"), None);
        assert!(Version(1, 10, 0) > Version(1, 9, 9));
    }

    #[test]
    fn kubectl_version_comes_from_client_git_version() {
        let json = r#"{"clientVersion":{"major":"1","minor":"35","gitVersion":"v1.35.2","goVersion":"go1.24.1"},"kustomizeVersion":"v5.7.1"}"#;
        let check =
            assess_tool(req("kubectl"), Some(Path::new("/usr/local/bin/kubectl")), ran(json));
        assert_eq!(check.version, Some(Version(1, 35, 2)));
        assert_eq!(check.status, Status::Ok);
    }

    #[test]
    fn missing_required_tool_is_exit_3_with_install_hint() {
        let k3d = assess_tool(req("k3d"), None, None);
        assert_eq!(k3d.status, Status::Missing);
        let report = Report {
            ok: false,
            checks: vec![k3d],
            kube_context: KubeContext {
                current: None,
                expected: "k3d-ameide".into(),
                detail: String::new(),
            },
        };
        let err = verdict(&report).unwrap_err();
        assert_eq!(exit_code(&err), 3);
        let text = err.to_string();
        assert!(
            text.contains("k3d (not found on PATH); install k3d: `cargo xtask tools install k3d`"),
            "{text}"
        );
        assert!(text.contains("https://k3d.io"), "{text}");
        assert!(render(&report).contains("MISSING"));
    }

    #[test]
    fn table_shows_pinned_next_to_found_version() {
        let mut k3d = assess_tool(req("k3d"), Some(Path::new("/r/.tools/bin/k3d")), ran("v5.7.5"));
        k3d.pinned = Some("5.7.5".into());
        let report = Report {
            ok: true,
            checks: vec![k3d],
            kube_context: KubeContext {
                current: None,
                expected: "k3d-x".into(),
                detail: "-".into(),
            },
        };
        let table = render(&report);
        let header = table.lines().next().unwrap();
        assert!(header.starts_with("TOOL  STATUS  VERSION  PINNED  MINIMUM"), "{table}");
        let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(row[..4], ["k3d", "ok", "5.7.5", "5.7.5"], "{table}");
    }

    #[test]
    fn missing_tilt_and_odd_versions_are_warnings() {
        assert_eq!(assess_tool(req("tilt"), None, None).status, Status::Warning);
        let odd = assess_tool(req("helm"), Some(Path::new("/bin/helm")), ran("dev build"));
        assert_eq!(odd.status, Status::Warning);
        let old = assess_tool(req("helm"), Some(Path::new("/bin/helm")), ran("v3.7.2+gabc"));
        assert_eq!(old.status, Status::Missing);
        assert!(old.hint.unwrap().starts_with("upgrade helm"));
    }

    #[tokio::test]
    async fn version_probe_runs_the_tool_found() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let tool = |name: &str, script: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path
        };
        let timeout = Duration::from_secs(20);

        let helm = tool("helm", r#"[ "$*" = "version --short" ] && echo v3.15.2+g1a500d5"#);
        let output = version_output(&helm, req("helm"), timeout).await;
        let check = assess_tool(req("helm"), Some(&helm), Some(output));
        assert_eq!((check.status, check.version), (Status::Ok, Some(Version(3, 15, 2))));

        let k3d = tool("k3d", "echo 'cannot start' >&2; exit 1");
        let output = version_output(&k3d, req("k3d"), timeout).await;
        let check = assess_tool(req("k3d"), Some(&k3d), Some(output));
        assert_eq!(check.status, Status::Warning);
        assert!(check.detail.ends_with("`version` failed: cannot start"), "{}", check.detail);
    }

    #[test]
    fn docker_is_judged_by_its_server_version() {
        assert_eq!(assess_docker(Ok(Some("20.10.24+dfsg1".into()))).status, Status::Ok);
        assert_eq!(assess_docker(Ok(Some("19.03.1".into()))).status, Status::Missing);
        let down = assess_docker(Err(anyhow::anyhow!("connection refused")));
        assert_eq!(down.status, Status::Missing);
        assert!(down.detail.contains("connection refused"));
    }
}
