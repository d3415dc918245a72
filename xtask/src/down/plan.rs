//! What `down` finds and decides: [`Observed`] (plain data, read by the command) and
//! [`decide`] (pure), so every branch is unit-tested without a daemon.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// Tilt, as far as `down` cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TiltSeen {
    /// The `tilt up` the tilt stage started, still running.
    Ours { pid: u32, port: u16 },
    /// A record of ours whose process has ended.
    Gone { pid: u32 },
    /// No record: whatever answers on the port is not ours.
    NotOurs { answering: bool, port: u16 },
}

/// What is there now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub cluster: String,
    /// `k3d-<cluster>`.
    pub context: String,
    /// Containers labelled `app=k3d`, `k3d.cluster=<cluster>` (nodes and its registry).
    pub containers: Vec<String>,
    /// The registry container the k3d config names, when it exists but is not the
    /// cluster's (no `k3d.cluster` label): someone else's, left alone.
    pub foreign_registry: Option<String>,
    /// The kubeconfig holds the context.
    pub context_present: bool,
    pub tilt: TiltSeen,
    /// Images the bootstrap downloaded that the host's Docker still has.
    pub pulled_images: Vec<String>,
    /// `.tools` (pinned tools, step records, the download record), when it exists.
    pub tools_dir: Option<PathBuf>,
    /// The image caches the k3d config names that exist (containers).
    pub image_caches: Vec<String>,
}

/// One thing `down` does, in the order it does them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// SIGTERM to the session of the `tilt up` we started (SIGKILL after a grace).
    StopTilt { pid: u32, port: u16 },
    /// Our record of a Tilt that no longer runs.
    ForgetTilt { pid: u32 },
    /// `k3d cluster delete <cluster>`: its nodes, its registry, network and volumes,
    /// and its kubeconfig entries.
    DeleteCluster { cluster: String, containers: Vec<String> },
    /// The kube context (and its cluster and user entries) of a cluster that is gone.
    RemoveContext { context: String },
    /// `--purge`: the images the bootstrap downloaded, from the host's Docker.
    RemoveImages { images: Vec<String> },
    /// `--purge`: `.tools`.
    RemoveTools { dir: PathBuf },
    /// `--purge`: the image caches (containers and their `<container>-data` volumes).
    RemoveImageCaches { containers: Vec<String> },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::StopTilt { pid, port } => {
                write!(f, "stop Tilt (pid {pid}, port {port}), started by `cargo xtask`")
            }
            Action::ForgetTilt { pid } => {
                write!(f, "forget the record of Tilt pid {pid} (it no longer runs)")
            }
            Action::DeleteCluster { cluster, containers } => write!(
                f,
                "delete k3d cluster `{cluster}` ({}) with its kube context",
                containers.join(", ")
            ),
            Action::RemoveContext { context } => {
                write!(f, "remove kube context `{context}` (its cluster is gone)")
            }
            Action::RemoveImages { images } => {
                write!(
                    f,
                    "remove {} image(s) the bootstrap downloaded: {}",
                    images.len(),
                    images.join(", ")
                )
            }
            Action::RemoveTools { dir } => {
                write!(f, "remove {} (pinned tools, step records, download record)", dir.display())
            }
            Action::RemoveImageCaches { containers } => {
                write!(f, "remove image cache(s) {} and their volumes", containers.join(", "))
            }
        }
    }
}

/// The decision: what to do, what is kept on purpose, and what is not ours to touch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Kept so the next bootstrap is fast (without `--purge`).
    pub kept: Vec<String>,
    /// Found but not ours: left alone.
    pub left_alone: Vec<String>,
}

/// Observed + `purge` -> the plan. Pure.
pub fn decide(observed: &Observed, purge: bool) -> Plan {
    let mut plan = Plan::default();
    match &observed.tilt {
        TiltSeen::Ours { pid, port } => {
            plan.actions.push(Action::StopTilt { pid: *pid, port: *port })
        }
        TiltSeen::Gone { pid } => plan.actions.push(Action::ForgetTilt { pid: *pid }),
        TiltSeen::NotOurs { answering: true, port } => plan.left_alone.push(format!(
            "a Tilt on port {port} that `cargo xtask` did not start (stop it where it runs)"
        )),
        TiltSeen::NotOurs { answering: false, .. } => {}
    }
    if !observed.containers.is_empty() {
        plan.actions.push(Action::DeleteCluster {
            cluster: observed.cluster.clone(),
            containers: observed.containers.clone(),
        });
    } else if observed.context_present {
        plan.actions.push(Action::RemoveContext { context: observed.context.clone() });
    }
    if let Some(registry) = &observed.foreign_registry {
        plan.left_alone.push(format!(
            "container `{registry}`: named like the config's registry but not part of cluster `{}` (no k3d.cluster label)",
            observed.cluster
        ));
    }
    let images = &observed.pulled_images;
    match (purge, images.is_empty()) {
        (true, false) => plan.actions.push(Action::RemoveImages { images: images.clone() }),
        (false, false) => plan.kept.push(format!(
            "{} image(s) the bootstrap downloaded, in Docker's image store: the next bootstrap imports them with no download",
            images.len()
        )),
        (_, true) => {}
    }
    let caches = &observed.image_caches;
    match (purge, caches.is_empty()) {
        (true, false) => {
            plan.actions.push(Action::RemoveImageCaches { containers: caches.clone() })
        }
        (false, false) => plan.kept.push(format!(
            "image cache(s) {}: the next bootstrap downloads nothing they hold",
            caches.join(", ")
        )),
        (_, true) => {}
    }
    match (&observed.tools_dir, purge) {
        (Some(dir), true) => plan.actions.push(Action::RemoveTools { dir: dir.clone() }),
        (Some(dir), false) => plan.kept.push(format!(
            "{} (pinned tools, step records): the next bootstrap installs and reruns nothing that is there",
            dir.display()
        )),
        (None, _) => {}
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up() -> Observed {
        Observed {
            cluster: "ameide".into(),
            context: "k3d-ameide".into(),
            containers: vec!["k3d-ameide-server-0".into(), "k3d-dev-reg".into()],
            foreign_registry: None,
            context_present: true,
            tilt: TiltSeen::Ours { pid: 42, port: 10350 },
            pulled_images: vec!["busybox:1.37.0".into()],
            image_caches: vec![],
            tools_dir: Some(".tools".into()),
        }
    }

    fn gone() -> Observed {
        Observed {
            containers: vec![],
            context_present: false,
            tilt: TiltSeen::NotOurs { answering: false, port: 10350 },
            ..up()
        }
    }

    #[test]
    fn a_running_platform_stops_tilt_then_deletes_the_cluster_and_keeps_the_caches() {
        let plan = decide(&up(), false);
        assert_eq!(
            plan.actions,
            [
                Action::StopTilt { pid: 42, port: 10350 },
                Action::DeleteCluster {
                    cluster: "ameide".into(),
                    containers: vec!["k3d-ameide-server-0".into(), "k3d-dev-reg".into()],
                },
            ]
        );
        assert_eq!(plan.kept.len(), 2, "{:?}", plan.kept);
        assert!(plan.kept[0].starts_with("1 image(s) the bootstrap downloaded"), "{:?}", plan.kept);
        assert!(plan.kept[1].starts_with(".tools (pinned tools, step records)"), "{:?}", plan.kept);
        assert!(plan.left_alone.is_empty());
    }

    #[test]
    fn purge_also_removes_the_downloads_and_tools_last() {
        let plan = decide(&up(), true);
        assert_eq!(plan.actions.len(), 4);
        assert_eq!(plan.actions[2], Action::RemoveImages { images: vec!["busybox:1.37.0".into()] });
        assert_eq!(plan.actions[3], Action::RemoveTools { dir: ".tools".into() });
        assert!(plan.kept.is_empty());
    }

    #[test]
    fn image_caches_are_kept_unless_purged() {
        let cached = Observed { image_caches: vec!["k3d-c-cache".into()], ..gone() };
        let kept = decide(&cached, false);
        assert!(kept.kept.iter().any(|k| k.starts_with("image cache(s) k3d-c-cache")));
        assert!(!kept.actions.iter().any(|a| matches!(a, Action::RemoveImageCaches { .. })));
        let purged = decide(&cached, true);
        assert!(
            purged
                .actions
                .contains(&Action::RemoveImageCaches { containers: vec!["k3d-c-cache".into()] })
        );
    }

    #[test]
    fn when_everything_is_gone_there_is_nothing_to_do() {
        let bare = Observed { pulled_images: vec![], tools_dir: None, ..gone() };
        assert_eq!(decide(&bare, false), Plan::default());
        assert_eq!(decide(&bare, true), Plan::default());
        // Caches alone are nothing to do without --purge: they are kept on purpose.
        assert!(decide(&gone(), false).actions.is_empty());
    }

    #[test]
    fn a_context_left_behind_is_removed_and_a_dead_tilt_forgotten() {
        let observed =
            Observed { context_present: true, tilt: TiltSeen::Gone { pid: 7 }, ..gone() };
        assert_eq!(
            decide(&observed, false).actions,
            [Action::ForgetTilt { pid: 7 }, Action::RemoveContext { context: "k3d-ameide".into() }]
        );
    }

    #[test]
    fn what_is_not_ours_is_left_alone_and_said() {
        let observed = Observed {
            tilt: TiltSeen::NotOurs { answering: true, port: 10350 },
            foreign_registry: Some("k3d-dev-reg".into()),
            ..gone()
        };
        let plan = decide(&observed, true);
        assert!(
            plan.actions
                .iter()
                .all(|a| !matches!(a, Action::StopTilt { .. } | Action::DeleteCluster { .. }))
        );
        assert_eq!(plan.left_alone.len(), 2, "{:?}", plan.left_alone);
        assert!(plan.left_alone[0].contains("did not start"));
        assert!(plan.left_alone[1].contains("no k3d.cluster label"));
    }

    #[test]
    fn actions_read_as_what_they_do() {
        let delete = Action::DeleteCluster {
            cluster: "ameide".into(),
            containers: vec!["a".into(), "b".into()],
        };
        assert_eq!(delete.to_string(), "delete k3d cluster `ameide` (a, b) with its kube context");
        let json = serde_json::to_value(&delete).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"action": "delete_cluster", "cluster": "ameide", "containers": ["a", "b"]})
        );
    }
}
