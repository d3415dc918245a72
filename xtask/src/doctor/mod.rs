//! `cargo xtask doctor`: are the prerequisites here, and new enough?
//!
//! Minimum versions and why:
//!
//! | tool | minimum | why |
//! |---|---|---|
//! | docker daemon | 20.10 | API 1.41, the oldest the engine's Docker client negotiates down to here |
//! | k3d | 5.5.0 | first release reading `apiVersion: k3d.io/v1alpha5` configs |
//! | helm | 3.8.0 | OCI chart references (`oci://`) without the experimental flag; v4 works |
//! | helmfile | 0.163.0 | `sync --sync-args` (helm's timeout; `--timeout` only since 1.1.6): see `crate::helmfile_cli` |
//! | kubectl | 1.30.0 | within the supported skew of the pinned k3s 1.33 |
//! | tilt | 0.33.0 | `/api/view` with the `Tilt-Token` cookie (optional: only the tilt stage needs it) |
//!
//! Tools are looked for in `<root>/.tools/bin` first, then on `PATH`. A required tool
//! that is missing or older than its minimum is exit 3 with how to install it; a tool
//! whose version cannot be read, or tilt missing, is a warning.

//!
//! The kube context shown is the one every command uses (`k3d-<cluster>`, or
//! `--context`), never the kubeconfig's current one.

mod requirements;

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

pub use requirements::{DOCKER_HINT, DOCKER_MINIMUM, Requirement, TOOLS, Version};

use crate::config::Context;
use crate::error::{Result, failed, missing};
use crate::events::{Event, Rendered};
use crate::exec::{self, Cmd, Output};
use crate::outcome::Document;
use crate::probe;
use crate::session::Session;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// Usable but something is off (version unreadable, optional tool missing).
    Warning,
    /// Not found, not reachable, or too old.
    Missing,
}

/// One row of the report.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
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

/// The kube context the commands use, and whether the kubeconfig has it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct KubeContext {
    /// `k3d-<cluster>`, or `--context`.
    pub name: String,
    /// The kubeconfig (`KUBECONFIG` or `~/.kube/config`) has it.
    pub present: bool,
    pub detail: String,
}

/// The version of the JSON shape (`schemas/doctor.schema.json`).
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
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
        minimum: req.minimum.clone(),
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
    match &check.version {
        None => {
            check.status = Status::Warning;
            let printed = output.stdout.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            check.detail = format!(
                "{}: version not recognised (expected `N.N[.N]` in what `{} {}` printed: `{}`)",
                path.display(),
                req.name,
                req.version_args.join(" "),
                printed.chars().take(80).collect::<String>()
            );
        }
        Some(version) if *version < req.minimum => {
            check.status = if req.required { Status::Missing } else { Status::Warning };
            check.detail = format!("{}: older than {}", path.display(), req.minimum);
            check.hint = Some(format!(
                "upgrade {}: `cargo xtask tools install {}` (the pinned version, into .tools/bin), or {}",
                req.name, req.name, req.hint
            ));
        }
        Some(_) => {}
    }
    check
}

fn tool_version(name: &str, stdout: &str) -> Option<Version> {
    if name == "kubectl" {
        // `kubectl version -o json` also names a Go version; take the client's own.
        let json: serde_json::Value = serde_json::from_str(stdout).ok()?;
        return crate::version::find_in(json["clientVersion"]["gitVersion"].as_str()?);
    }
    crate::version::find_in(stdout)
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
            check.version = version.as_deref().and_then(crate::version::find_in);
            match &check.version {
                Some(v) if *v < DOCKER_MINIMUM => {
                    check.status = Status::Missing;
                    check.detail = format!("daemon older than {DOCKER_MINIMUM}");
                    check.hint = Some(DOCKER_HINT.into());
                }
                Some(_) => check.detail = "daemon reachable".into(),
                None => {
                    check.status = Status::Warning;
                    check.detail = match &version {
                        Some(text) => format!(
                            "daemon reachable, version not recognised (expected `N.N[.N]`, \
                             the daemon reported `{text}`)"
                        ),
                        None => "daemon reachable, version not recognised (none reported)".into(),
                    };
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
        Ok::<_, crate::error::Error>(version.version)
    };
    tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| failed(format!("no answer within {}s", timeout.as_secs())))?
}

fn kube_context(ctx: &Context) -> KubeContext {
    let name = ctx.kube_context.clone();
    let present = crate::k8s::has_context(&name);
    let detail = match (present, ctx.targets_own_cluster()) {
        (true, true) => "in the kubeconfig: the local cluster".to_string(),
        (true, false) => "in the kubeconfig (named by --context)".to_string(),
        (false, true) => "not in the kubeconfig yet; `cargo xtask cluster` writes it".to_string(),
        (false, false) => "not in the kubeconfig (named by --context)".to_string(),
    };
    KubeContext { name, present, detail }
}

/// Look at every prerequisite (read-only). Only an interruption is an error.
pub async fn inspect(ctx: &Context) -> Result<Report> {
    let timeout = ctx.settings.timeouts.tool_call();
    let session = &ctx.session;
    let docker = session.cancel.unless_interrupted(docker_server_version(timeout)).await?;
    let mut checks = vec![assess_docker(docker)];
    for req in TOOLS {
        let path = probe::find_tool(&ctx.root, req.name);
        let output = match path.as_deref() {
            Some(path) => {
                let output = version_output(session, path, req, timeout).await;
                if let Err(e) = &output
                    && e.kind().is_interrupted()
                {
                    return Err(e.clone());
                }
                Some(output)
            }
            None => None,
        };
        let mut check = assess_tool(req, path.as_deref(), output);
        check.pinned = ctx.settings.tools.get(req.name).map(|pin| pin.version.clone());
        checks.push(check);
    }
    let ok = checks.iter().all(|c| c.status != Status::Missing);
    Ok(Report { ok, checks, kube_context: kube_context(ctx) })
}

/// What doctor requires of the tool called `name` (one of [`TOOLS`]).
pub fn requirement(name: &str) -> &'static Requirement {
    TOOLS.iter().find(|r| r.name == name).expect("a tool doctor knows")
}

/// What `<tool> <version_args>` printed: not echoed, and not logged.
pub async fn version_output(
    session: &Session,
    path: &Path,
    req: &Requirement,
    timeout: Duration,
) -> Result<Output> {
    let cmd = Cmd::new("doctor", &path.to_string_lossy(), timeout)
        .args(req.version_args.iter().copied())
        .quiet();
    exec::run(&session.quiet(), &cmd).await
}

/// `cargo xtask doctor`: the report as the result (a table, or JSON), then exit 3 when
/// a required prerequisite is missing.
pub async fn run(ctx: &Context) -> Result<()> {
    let report = inspect(ctx).await?;
    ctx.session.events.emit(Event::Result { result: &report });
    verdict(&report)
}

impl Rendered for Report {
    fn human(&self) -> String {
        render(self)
    }

    fn json(&self) -> serde_json::Value {
        Document::new(SCHEMA_VERSION, self).json()
    }
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

/// The report as a table, the kube context, then hints and what is missing.
pub fn render(report: &Report) -> String {
    let rows: Vec<Vec<String>> = report
        .checks
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                match c.status {
                    Status::Ok => "ok",
                    Status::Warning => "warning",
                    Status::Missing => "MISSING",
                }
                .to_string(),
                c.version.as_ref().map_or("-".to_string(), |v| v.to_string()),
                c.pinned.clone().unwrap_or_else(|| "-".to_string()),
                format!(">= {}", c.minimum),
                c.detail.clone(),
            ]
        })
        .collect();
    let mut out =
        crate::table::render(&["TOOL", "STATUS", "VERSION", "PINNED", "MINIMUM", "DETAIL"], &rows);
    let kube = &report.kube_context;
    let _ = writeln!(out, "\nkube context: {} ({})", kube.name, kube.detail);
    let hints: Vec<&Check> = report.checks.iter().filter(|c| c.hint.is_some()).collect();
    if !hints.is_empty() {
        let _ = writeln!(out);
        for c in hints {
            let _ = writeln!(out, "{}: {}", c.name, c.hint.as_deref().unwrap_or(""));
        }
    }
    let missing_ones: Vec<String> = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Missing)
        .map(|c| format!("{} ({})", c.name, c.detail))
        .collect();
    if !missing_ones.is_empty() {
        let _ = writeln!(out, "\nmissing prerequisites: {}", missing_ones.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

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
    fn kubectl_version_comes_from_client_git_version() {
        let json = r#"{"clientVersion":{"major":"1","minor":"35","gitVersion":"v1.35.2","goVersion":"go1.24.1"},"kustomizeVersion":"v5.7.1"}"#;
        let check =
            assess_tool(req("kubectl"), Some(Path::new("/usr/local/bin/kubectl")), ran(json));
        assert_eq!(check.version, Some(Version::new(1, 35, 2)));
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
                name: "k3d-ameide".into(),
                present: false,
                detail: String::new(),
            },
        };
        let err = verdict(&report).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Missing);
        let text = err.to_string();
        assert!(
            text.contains("k3d (not found on PATH); install k3d: `cargo xtask tools install k3d`"),
            "{text}"
        );
        assert!(text.contains("https://k3d.io"), "{text}");
        let table = render(&report);
        assert!(table.contains("MISSING"), "{table}");
        assert!(table.ends_with("missing prerequisites: k3d (not found on PATH)\n"), "{table}");
        assert!(table.contains("kube context: k3d-ameide"), "{table}");
    }

    #[test]
    fn table_shows_pinned_next_to_found_version() {
        let mut k3d = assess_tool(req("k3d"), Some(Path::new("/r/.tools/bin/k3d")), ran("v5.7.5"));
        k3d.pinned = Some("5.7.5".into());
        let report = Report {
            ok: true,
            checks: vec![k3d],
            kube_context: KubeContext { name: "k3d-x".into(), present: true, detail: "-".into() },
        };
        let table = render(&report);
        let header = table.lines().next().unwrap();
        assert!(header.starts_with("TOOL  STATUS  VERSION  PINNED  MINIMUM"), "{table}");
        let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(row[..4], ["k3d", "ok", "5.7.5", "5.7.5"], "{table}");
    }

    #[test]
    fn helmfile_is_judged_against_the_supported_range() {
        let path = Some(Path::new("/bin/helmfile"));
        // `helmfile --version` of 0.166.0 and of the pinned 1.6.0 (cobra's template).
        let v0 = assess_tool(req("helmfile"), path, ran("helmfile version 0.166.0\n"));
        assert_eq!((v0.status, v0.version), (Status::Ok, Some(Version::new(0, 166, 0))));
        let v1 = assess_tool(req("helmfile"), path, ran("helmfile version 1.6.0\n"));
        assert_eq!(v1.status, Status::Ok);
        let old = assess_tool(req("helmfile"), path, ran("helmfile version 0.162.1\n"));
        assert_eq!(old.status, Status::Missing);
        assert_eq!(old.detail, "/bin/helmfile: older than 0.163.0");
        assert!(old.hint.unwrap().contains("github.com/helmfile/helmfile/releases"));
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
        let output = version_output(&Session::silent(), &helm, req("helm"), timeout).await;
        let check = assess_tool(req("helm"), Some(&helm), Some(output));
        assert_eq!((check.status, check.version), (Status::Ok, Some(Version::new(3, 15, 2))));

        let k3d = tool("k3d", "echo 'cannot start' >&2; exit 1");
        let output = version_output(&Session::silent(), &k3d, req("k3d"), timeout).await;
        let check = assess_tool(req("k3d"), Some(&k3d), Some(output));
        assert_eq!(check.status, Status::Warning);
        assert!(check.detail.ends_with("`version` failed: cannot start"), "{}", check.detail);
    }

    #[test]
    fn docker_is_judged_by_its_server_version() {
        assert_eq!(assess_docker(Ok(Some("20.10.24+dfsg1".into()))).status, Status::Ok);
        assert_eq!(assess_docker(Ok(Some("19.03.1".into()))).status, Status::Missing);
        let down = assess_docker(Err(failed("connection refused")));
        assert_eq!(down.status, Status::Missing);
        assert!(down.detail.contains("connection refused"));
        let odd = assess_docker(Ok(Some("dev-build".into())));
        assert_eq!(odd.status, Status::Warning);
        assert!(odd.detail.contains("expected `N.N[.N]`, the daemon reported `dev-build`"));
    }

    #[test]
    fn an_unreadable_version_says_what_was_printed() {
        let check = assess_tool(req("k3d"), Some(Path::new("/bin/k3d")), ran("k3d dev\n"));
        assert_eq!((check.status, check.version), (Status::Warning, None));
        let expected = "/bin/k3d: version not recognised (expected `N.N[.N]` in what \
                        `k3d version` printed: `k3d dev`)";
        assert_eq!(check.detail, expected);
    }
}
