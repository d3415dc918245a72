//! Carrying out `down`'s plan, in order; the first action that fails stops it (a second
//! `down` observes again and goes on from there).

use std::time::Duration;

use bollard::query_parameters::{RemoveContainerOptions, RemoveImageOptions};

use super::{Action, Down, Plan, TAG};
use crate::config::Context;
use crate::error::{Result, failed, missing};
use crate::exec::{self, Cmd};
use crate::outcome::Finding;

/// How long Tilt gets to stop after SIGTERM before SIGKILL.
const TILT_GRACE: Duration = Duration::from_secs(10);

pub async fn apply(ctx: &Context, plan: &Plan, purge: bool, result: &mut Down) -> Result<()> {
    for (index, action) in plan.actions.iter().enumerate() {
        ctx.session.cancel.check()?;
        ctx.session.progress(TAG, &format!("down: {action}"));
        match one(ctx, action, purge, result).await {
            Ok(detail) => {
                result.actions[index].status = "done";
                result.actions[index].detail = detail;
            }
            Err(e) if e.kind().is_interrupted() => return Err(e),
            Err(e) => {
                result.actions[index].status = "failed";
                let remediation = e.remediation().map_or_else(
                    || "fix the cause named above, then run `cargo xtask down` again (it goes on from what is left)".to_owned(),
                    str::to_owned,
                );
                result.failure =
                    Some(Finding::new(action.to_string(), "done", format!("{e:#}"), remediation));
                return Ok(());
            }
        }
    }
    Ok(())
}

/// One action; its `Ok` is a detail line (empty: nothing to add).
async fn one(ctx: &Context, action: &Action, purge: bool, result: &mut Down) -> Result<String> {
    match action {
        Action::StopTilt { pid, .. } => {
            let Some(record) = crate::tilt::record::recorded(&ctx.root).filter(|r| r.pid == *pid)
            else {
                return Ok("its record is gone: nothing stopped".into());
            };
            let stopped = crate::tilt::record::stop(&record, TILT_GRACE).await?;
            crate::tilt::record::forget(&ctx.root)?;
            Ok(if stopped { String::new() } else { "it had ended already".into() })
        }
        Action::ForgetTilt { .. } => crate::tilt::record::forget(&ctx.root).map(|()| String::new()),
        Action::DeleteCluster { cluster, .. } => {
            let timeout = ctx.settings.timeouts.cluster_ready();
            let delete = Cmd::new(TAG, "k3d", timeout).args(["cluster", "delete", cluster]);
            exec::run_ok(&ctx.session, &delete).await?;
            after_delete(ctx, purge, result).await
        }
        Action::RemoveContext { context } => {
            remove_context(ctx, context).await.map(|()| String::new())
        }
        Action::RemoveImages { images } => {
            let docker = crate::cluster::docker().await?;
            let mut kept = std::collections::BTreeSet::new();
            for image in images {
                let options =
                    RemoveImageOptions { force: false, noprune: false, ..Default::default() };
                if let Err(e) = docker.remove_image(image, Some(options), None).await {
                    result.warnings.push(format!("image {image} was not removed: {e}"));
                    kept.insert(image.clone());
                }
            }
            crate::images::pulled::write(&ctx.root, &kept)?;
            Ok(String::new())
        }
        Action::RemoveImageCaches { containers } => {
            let docker = crate::cluster::docker().await?;
            for name in containers {
                let options = RemoveContainerOptions { force: true, ..Default::default() };
                docker
                    .remove_container(name, Some(options))
                    .await
                    .map_err(|e| failed(format!("removing image cache {name}: {e}")))?;
                let volume = format!("{name}-data");
                if let Err(e) = docker
                    .remove_volume(&volume, None::<bollard::query_parameters::RemoveVolumeOptions>)
                    .await
                    && !matches!(
                        e,
                        bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }
                    )
                {
                    result.warnings.push(format!("volume {volume} was not removed: {e}"));
                }
            }
            Ok(String::new())
        }
        Action::RemoveTools { dir } => std::fs::remove_dir_all(dir)
            .map(|()| String::new())
            .map_err(|e| failed(format!("removing {}: {e}", dir.display()))),
    }
}

/// What `k3d cluster delete` may leave: a registry connected to other networks (k3d
/// only disconnects it), and, with a kubeconfig of several files, the context. With
/// `--purge` a registry left so is removed; otherwise it is a warning.
async fn after_delete(ctx: &Context, purge: bool, result: &mut Down) -> Result<String> {
    let left = super::observe(ctx).await?;
    let mut detail = Vec::new();
    if !left.containers.is_empty() {
        let names = left.containers.join(", ");
        match purge {
            true => {
                let docker = crate::cluster::docker().await?;
                for name in &left.containers {
                    let options = RemoveContainerOptions { force: true, ..Default::default() };
                    docker.remove_container(name, Some(options)).await.map_err(|e| {
                        failed(format!("removing container {name}, which k3d left: {e}"))
                    })?;
                }
                detail.push(format!("removed what k3d left: {names}"));
            }
            false => result.warnings.push(format!(
                "k3d left {names} (a registry connected to other networks is only disconnected): `cargo xtask down --purge` removes it"
            )),
        }
    }
    if left.context_present {
        remove_context(ctx, &left.context).await?;
        detail.push(format!("removed kube context {} that k3d left", left.context));
    }
    Ok(detail.join("; "))
}

/// `kubectl config delete-context`, then the cluster and user entries it named when no
/// other context uses them (kubectl edits whichever kubeconfig file holds each).
async fn remove_context(ctx: &Context, context: &str) -> Result<()> {
    let config = kube::config::Kubeconfig::read()
        .map_err(|e| missing(format!("the kubeconfig cannot be read: {e}")))?;
    let named = config.contexts.iter().find(|c| c.name == context);
    let (cluster, user) = named
        .and_then(|c| c.context.as_ref())
        .map(|c| (c.cluster.clone(), c.user.clone().unwrap_or_default()))
        .unwrap_or_default();
    let used_elsewhere = |pick: &dyn Fn(&kube::config::Context) -> Option<String>, name: &str| {
        config
            .contexts
            .iter()
            .filter(|c| c.name != context)
            .any(|c| c.context.as_ref().and_then(pick).is_some_and(|n| n == name))
    };
    let mut calls = vec![vec!["config", "delete-context", context]];
    if !cluster.is_empty() && !used_elsewhere(&|c| Some(c.cluster.clone()), &cluster) {
        calls.push(vec!["config", "delete-cluster", &cluster]);
    }
    if !user.is_empty() && !used_elsewhere(&|c| c.user.clone(), &user) {
        calls.push(vec!["config", "delete-user", &user]);
    }
    let timeout = ctx.settings.timeouts.tool_call();
    for args in calls {
        let cmd = Cmd::new(TAG, "kubectl", timeout).args(args.iter().copied());
        exec::run_ok(&ctx.session, &cmd).await.map_err(|e| {
            e.with_remediation(format!(
                "remove it by hand: `kubectl config delete-context {context}`"
            ))
        })?;
    }
    Ok(())
}
