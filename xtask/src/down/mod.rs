//! `cargo xtask down`: take the platform down, keeping what makes the next bootstrap
//! fast. observe ([`observe`]: Docker, the kubeconfig, our Tilt record, our download
//! record) -> [`plan::decide`] (pure) -> apply, in order: stop the Tilt we started,
//! `k3d cluster delete` (nodes, registry, network, volumes, kubeconfig entries), a kube
//! context left behind; with `--purge` also the images the bootstrap downloaded and
//! `.tools`. A second `down` finds nothing to do and exits 0.

mod apply;
mod lifecycle;
pub mod plan;

use std::path::PathBuf;
use std::time::Instant;

use bollard::query_parameters::ListContainersOptions;
use serde::Serialize;

use crate::config::Context;
use crate::error::{Context as _, Result, bad_input, failed};
use crate::events::{Event, Rendered};
use crate::outcome::{Document, Finding, Status, WithStatus};
pub use lifecycle::lifecycle;
pub use plan::{Action, Observed, Plan, TiltSeen};

const TAG: &str = "down";

/// How `cargo xtask down` was asked to run (the CLI's flags, `xtask/src/flags.rs`).
#[derive(Debug, Default)]
pub struct Args {
    /// Print what would be stopped and removed, and change nothing.
    pub plan: bool,
    /// Also remove the downloaded images and `.tools`; the log files are kept.
    pub purge: bool,
}

/// What Docker, the kubeconfig and our records show.
pub async fn observe(ctx: &Context) -> Result<Observed> {
    let root = &ctx.root;
    let cluster = ctx.settings.cluster.clone();
    // A k3d config that cannot be read stops `down` before any change (exit 2).
    let (config, desired) = crate::cluster::desired(ctx)?;
    let docker = crate::cluster::docker().await?;
    let mut filters = std::collections::HashMap::new();
    filters
        .insert("label".to_owned(), vec!["app=k3d".to_owned(), format!("k3d.cluster={cluster}")]);
    let listed = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .context("listing the cluster's containers")?;
    let mut containers: Vec<String> = listed
        .iter()
        .filter_map(|c| c.names.as_ref()?.first().map(|n| n.trim_start_matches('/').to_owned()))
        .collect();
    containers.sort();
    let foreign_registry = match &desired.registry {
        Some(name) if !containers.contains(name) => {
            docker.inspect_container(name, None).await.ok().map(|_| name.clone())
        }
        _ => None,
    };
    let context = crate::config::default_kube_context(&ctx.settings);
    let tilt = match crate::tilt::record::recorded(root) {
        Some(record) if crate::tilt::record::is_running(&record) => {
            TiltSeen::Ours { pid: record.pid, port: record.port }
        }
        Some(record) => TiltSeen::Gone { pid: record.pid },
        None => {
            let port = ctx.settings.tilt_port;
            let probe = crate::tilt::probe(port).await;
            TiltSeen::NotOurs { answering: !matches!(probe, crate::tilt::Probe::Down(_)), port }
        }
    };
    let mut pulled_images = Vec::new();
    for image in crate::images::pulled::recorded(root)? {
        if docker.inspect_image(&image).await.is_ok() {
            pulled_images.push(image);
        }
    }
    let mut image_caches = Vec::new();
    for cache in crate::cluster::image_cache::caches(&config)? {
        if docker.inspect_container(&cache.container, None).await.is_ok() {
            image_caches.push(cache.container);
        }
    }
    let tools = root.join(crate::pins::TOOLS_DIR);
    Ok(Observed {
        image_caches,
        cluster,
        context_present: crate::k8s::has_context(&context),
        context,
        containers,
        foreign_registry,
        tilt,
        pulled_images,
        tools_dir: tools.is_dir().then_some(tools),
    })
}

/// `cargo xtask down [--plan] [--purge]`.
pub async fn run(ctx: &Context, args: &Args) -> Result<()> {
    if !ctx.targets_own_cluster() {
        return Err(bad_input(format!(
            "`cargo xtask down` deletes the k3d cluster `{}` (context `{}`); --context `{}` names another cluster, which down never deletes: drop --context",
            ctx.settings.cluster,
            crate::config::default_kube_context(&ctx.settings),
            ctx.kube_context
        )));
    }
    let started = Instant::now();
    let session = &ctx.session;
    let mode = match (args.plan, args.purge) {
        (true, _) => "plan only",
        (false, true) => "purge",
        (false, false) => "keeping caches",
    };
    let detail = format!("cluster {}, {mode}", ctx.settings.cluster);
    session.events.emit(Event::CommandStarted { command: TAG, detail: &detail });
    let observed = observe(ctx).await?;
    let plan = plan::decide(&observed, args.purge);
    for action in &plan.actions {
        session.line(TAG, &format!("plan: {action}"));
    }
    let mut result = Down::new(&observed, &plan, args);
    if !args.plan {
        apply::apply(ctx, &plan, args.purge, &mut result).await?;
    }
    result.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    result.log = session.log_path.clone();
    session.events.emit(Event::Result { result: &result });
    match &result.failure {
        Some(finding) => {
            Err(failed(format!("down failed: {finding}"))
                .with_remediation(finding.remediation.clone()))
        }
        None => Ok(()),
    }
}

/// One action as done (or planned).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Step {
    #[serde(flatten)]
    pub action: Action,
    /// `planned`, `done`, `failed`, or `not_run` (after a failure).
    pub status: &'static str,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// The version of the JSON shape (`schemas/down.schema.json`).
pub const SCHEMA_VERSION: u32 = 1;

/// What `down` shows: each action and how it went, what was kept, what was not ours.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Down {
    pub cluster: String,
    pub planned: bool,
    pub purge: bool,
    pub nothing_to_do: bool,
    pub actions: Vec<Step>,
    pub kept: Vec<String>,
    pub left_alone: Vec<String>,
    pub warnings: Vec<String>,
    pub failure: Option<Finding>,
    pub duration_ms: u64,
    /// The log file (none with `--plan`).
    pub log: Option<PathBuf>,
}

impl Down {
    fn new(observed: &Observed, plan: &Plan, args: &Args) -> Down {
        let status = if args.plan { "planned" } else { "not_run" };
        Down {
            cluster: observed.cluster.clone(),
            planned: args.plan,
            purge: args.purge,
            nothing_to_do: plan.actions.is_empty(),
            actions: plan
                .actions
                .iter()
                .map(|action| Step { action: action.clone(), status, detail: String::new() })
                .collect(),
            kept: plan.kept.clone(),
            left_alone: plan.left_alone.clone(),
            warnings: Vec::new(),
            failure: None,
            duration_ms: 0,
            log: None,
        }
    }

    fn status(&self) -> Status {
        match (self.failure.is_some(), self.planned) {
            (true, _) => Status::Failed,
            (false, true) => Status::Planned,
            (false, false) => Status::Ok,
        }
    }
}

impl Rendered for Down {
    fn human(&self) -> String {
        let mut out = String::new();
        if self.nothing_to_do {
            out.push_str(&format!(
                "down: nothing to do: no cluster `{}`, no kube context k3d-{}, no Tilt of ours{}\n",
                self.cluster,
                self.cluster,
                if self.purge { ", nothing downloaded or installed by the bootstrap" } else { "" }
            ));
        }
        for step in &self.actions {
            let line = match step.status {
                "planned" => format!("down: would {}\n", step.action),
                status => format!("down: {}: {status}\n", step.action),
            };
            out.push_str(&line);
            if !step.detail.is_empty() {
                out.push_str(&format!("  {}\n", step.detail));
            }
        }
        let keep = if self.planned { "would keep" } else { "kept" };
        for kept in &self.kept {
            out.push_str(&format!("down: {keep} (until `cargo xtask down --purge`): {kept}\n"));
        }
        for other in &self.left_alone {
            out.push_str(&format!("down: left alone: {other}\n"));
        }
        for warning in &self.warnings {
            out.push_str(&format!("down: warning: {warning}\n"));
        }
        if let Some(finding) = &self.failure {
            out.push_str(&format!(
                "down: FAILED: {finding}\nwhat to do: {}\n",
                finding.remediation
            ));
        }
        let log = self.log.as_ref().map_or(String::new(), |p| format!("; log: {}", p.display()));
        let secs = self.duration_ms as f64 / 1000.0;
        match self.planned {
            true => out.push_str("down: plan only: nothing was changed\n"),
            false => out.push_str(&format!("down: {} in {secs:.1}s{log}\n", self.status().word())),
        }
        out
    }

    fn json(&self) -> serde_json::Value {
        Document::new(SCHEMA_VERSION, WithStatus { status: self.status(), body: self }).json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed() -> Observed {
        Observed {
            cluster: "ameide".into(),
            context: "k3d-ameide".into(),
            containers: vec!["k3d-ameide-server-0".into()],
            foreign_registry: None,
            context_present: true,
            tilt: TiltSeen::NotOurs { answering: false, port: 1 },
            pulled_images: vec!["busybox:1.37.0".into()],
            image_caches: vec![],
            tools_dir: None,
        }
    }

    #[test]
    fn a_plan_says_what_it_would_do_and_keep() {
        let args = Args { plan: true, purge: false };
        let down = Down::new(&observed(), &plan::decide(&observed(), false), &args);
        let text = down.human();
        assert!(
            text.starts_with("down: would delete k3d cluster `ameide` (k3d-ameide-server-0)"),
            "{text}"
        );
        assert!(
            text.contains("down: would keep (until `cargo xtask down --purge`): 1 image(s) the bootstrap downloaded"),
            "{text}"
        );
        assert!(text.ends_with("down: plan only: nothing was changed\n"), "{text}");
        let json = down.json();
        assert_eq!(json["status"], "planned");
        assert_eq!(json["actions"][0]["action"], "delete_cluster");
        assert_eq!(json["actions"][0]["status"], "planned");
        assert_eq!(json["nothing_to_do"], false);
    }

    #[test]
    fn nothing_to_do_is_said_and_is_ok() {
        let bare = Observed {
            containers: vec![],
            context_present: false,
            pulled_images: vec![],
            image_caches: vec![],
            ..observed()
        };
        let args = Args::default();
        let mut down = Down::new(&bare, &plan::decide(&bare, false), &args);
        down.log = Some("/l".into());
        let text = down.human();
        assert!(
            text.starts_with(
                "down: nothing to do: no cluster `ameide`, no kube context k3d-ameide"
            ),
            "{text}"
        );
        assert!(text.ends_with("down: ok in 0.0s; log: /l\n"), "{text}");
        assert_eq!(down.json()["status"], "ok");
        assert_eq!(down.json()["nothing_to_do"], true);
    }
}
