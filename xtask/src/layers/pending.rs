//! Releases a killed run left pending. helm marks a revision `pending-install`,
//! `pending-upgrade` or `pending-rollback` while it works and only then `deployed` or
//! `failed`; a helm killed in between (Ctrl-C, `kill -9`, a closed terminal) leaves it
//! pending, and every later `helm upgrade` of that release refuses with "another
//! operation (install/upgrade/rollback) is in progress" (helm `pkg/action/upgrade.go`
//! `prepareUpgrade`: the last revision `IsPending` is `errPending`, a pessimistic lock
//! that nothing ever releases).
//!
//! A pending release is brought back before its layer syncs, when no helm holds it: the
//! run lock says no other bootstrap or sync of this checkout runs, and no live `helm
//! install`/`upgrade`/`rollback`/`uninstall` on this machine names the release (unless
//! it names another cluster's `--kube-context`). Then
//! - a release with an earlier revision is rolled back to the newest `deployed` one (else
//!   the newest one that is neither pending nor uninstalled): `helm rollback <release>
//!   <revision>`, which needs no lock (`pkg/action/rollback.go` only reads the history);
//! - a pending first install (no earlier revision) is uninstalled: `helm uninstall`.
//!
//! A release some live helm names is left alone with a warning naming the process.
//!
//! A release whose newest revision is `failed` over an earlier `deployed` one is rolled
//! back to that one too, for a reason of helm 3's own: its next upgrade patches from the
//! *deployed* revision's manifest (`pkg/action/upgrade.go` `prepareUpgrade`:
//! `Releases.Deployed`), so a field only the failed revision added is in neither the
//! original nor the new manifest, the three-way patch (`pkg/kube/client.go`
//! `createPatch`) never removes it, and the fixed chart stays broken (helm issues 10363,
//! 12645). `helm rollback` patches from the newest revision (`pkg/action/rollback.go`:
//! `Releases.Last`), which removes it. A failed first install needs nothing: its upgrade
//! patches from the failed revision itself.

use std::fmt;

use crate::error::Result;
use crate::platform::helmfile::Layer;
use crate::release::{HelmRelease, ReleaseStatus};

/// What to do with one pending release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// `helm rollback <release> <to>`.
    Rollback { to: u32, to_status: ReleaseStatus },
    /// `helm uninstall <release>`: a first install that never finished.
    Uninstall,
    /// A live helm works on it (`pid N: helm ...`): left alone.
    Held { by: String },
}

/// A pending release and what the run does about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recover {
    pub release: String,
    pub namespace: String,
    /// The pending revision and its status.
    pub revision: u32,
    pub status: ReleaseStatus,
    pub action: Recovery,
}

impl fmt::Display for Recover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, rev, status) = (&self.release, self.revision, &self.status);
        match &self.action {
            Recovery::Rollback { to, to_status } if *status == ReleaseStatus::Failed => write!(
                f,
                "roll back {name} from revision {rev} ({status}) to revision {to} ({to_status}), so the sync also undoes what revision {rev} applied"
            ),
            Recovery::Rollback { to, to_status } => write!(
                f,
                "roll back {name} from revision {rev} ({status}, left by a run that was stopped) to revision {to} ({to_status})"
            ),
            Recovery::Uninstall => write!(
                f,
                "uninstall {name} (revision {rev} is {status}: a first install that was stopped)"
            ),
            Recovery::Held { by } => write!(
                f,
                "leave {name} ({status} at revision {rev}): a running helm works on it ({by})"
            ),
        }
    }
}

impl Recover {
    /// What the summary says once it was done.
    pub fn done(&self) -> String {
        let (name, rev, status) = (&self.release, self.revision, &self.status);
        match &self.action {
            Recovery::Rollback { to, .. } if *status == ReleaseStatus::Failed => format!(
                "release {name} was {status} at revision {rev}: rolled back to revision {to}, so the sync also undoes what revision {rev} applied"
            ),
            Recovery::Rollback { to, .. } => format!(
                "release {name} was left {status} at revision {rev} by a run that was stopped: rolled back to revision {to}"
            ),
            Recovery::Uninstall => format!(
                "release {name} was left {status} at revision {rev} by a run that was stopped: uninstalled, the sync installs it again"
            ),
            Recovery::Held { .. } => self.to_string(),
        }
    }
}

/// What to do about release `history` (every revision Helm keeps, any order), given the
/// live helm process that names it, if any. `None` unless its newest revision is pending,
/// or `failed` over an earlier `deployed` one.
pub fn decide(history: &[HelmRelease], held_by: Option<String>) -> Option<Recover> {
    let latest = history.iter().max_by_key(|r| r.version)?;
    let earlier = || history.iter().filter(|r| r.version < latest.version);
    let newest = |keep: &dyn Fn(&ReleaseStatus) -> bool| {
        earlier().filter(|r| keep(&r.info.status)).max_by_key(|r| r.version)
    };
    let deployed = newest(&|s| *s == ReleaseStatus::Deployed);
    let target = match latest.info.status {
        ReleaseStatus::PendingInstall
        | ReleaseStatus::PendingUpgrade
        | ReleaseStatus::PendingRollback => deployed.or_else(|| {
            newest(&|s| {
                matches!(
                    s,
                    ReleaseStatus::Superseded | ReleaseStatus::Failed | ReleaseStatus::Unknown
                )
            })
        }),
        ReleaseStatus::Failed => Some(deployed?),
        _ => return None,
    };
    let action = match (held_by, target) {
        (Some(by), _) => Recovery::Held { by },
        (None, Some(target)) => {
            Recovery::Rollback { to: target.version, to_status: target.info.status.clone() }
        }
        (None, None) => Recovery::Uninstall,
    };
    Some(Recover {
        release: latest.name.clone(),
        namespace: latest.namespace.clone(),
        revision: latest.version,
        status: latest.info.status.clone(),
        action,
    })
}

/// helm's commands that write a release (`pkg/cmd`: `install`, `upgrade`, `rollback`,
/// `uninstall` and its aliases). Others (`template`, `status`, `test`, ...) never leave a
/// revision pending, so a `helm template auth` elsewhere on the machine holds nothing.
const WRITES: [&str; 7] = ["install", "upgrade", "rollback", "uninstall", "delete", "del", "un"];

/// The first process (`pid`, argv) that is a `helm` writing `release` (a command of
/// [`WRITES`] with the release named after it) and not on another cluster's context than
/// `kube_context` (`--kube-context`: a helm on another cluster holds a release of the
/// same name there, not here): `pid N: helm upgrade --install auth ...`. A helm naming no
/// context may work on any cluster, so it counts.
pub fn held_by(
    processes: &[(u32, Vec<String>)],
    release: &str,
    kube_context: &str,
) -> Option<String> {
    processes.iter().find_map(|(pid, argv)| {
        let program = argv.first()?;
        let is_helm = std::path::Path::new(program).file_name().is_some_and(|n| n == "helm");
        let args = &argv[1..];
        let verb = args.iter().position(|a| WRITES.contains(&a.as_str()));
        let writes_release = verb.is_some_and(|v| args[v + 1..].iter().any(|a| a == release));
        let elsewhere = named_context(args).is_some_and(|c| c != kube_context);
        (is_helm && writes_release && !elsewhere).then(|| format!("pid {pid}: {}", argv.join(" ")))
    })
}

/// The `--kube-context` a helm command line names (`--kube-context X` or `=X`).
fn named_context(args: &[String]) -> Option<&str> {
    args.iter().enumerate().find_map(|(i, a)| match a.strip_prefix("--kube-context") {
        Some("") => args.get(i + 1).map(String::as_str),
        Some(rest) => rest.strip_prefix('='),
        None => None,
    })
}

/// Every process on this machine whose command line can be read: (pid, argv).
pub fn processes() -> Vec<(u32, Vec<String>)> {
    use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};
    let mut system = System::new();
    system.refresh_processes_specifics(
        ProcessesToUpdate::All,
        true,
        ProcessRefreshKind::nothing().with_cmd(UpdateKind::Always),
    );
    system
        .processes()
        .iter()
        .map(|(pid, p)| {
            let argv = p.cmd().iter().map(|a| a.to_string_lossy().into_owned()).collect();
            (pid.as_u32(), argv)
        })
        .filter(|(_, argv): &(u32, Vec<String>)| !argv.is_empty())
        .collect()
}

/// The installed releases of `layer` whose newest revision a stopped run left pending
/// (or `failed` over a deployed one), and what to do about each ([`decide`]). The
/// process table is read only when one is.
pub async fn releases(
    client: &kube::Client,
    layer: &Layer,
    kube_context: &str,
) -> Result<Vec<Recover>> {
    let mut histories = Vec::new();
    for release in layer.releases.as_slice().iter().filter(|r| r.installed) {
        let history =
            crate::release::history(client, super::namespace_of(release), &release.name).await?;
        if decide(&history, None).is_some() {
            histories.push((release.name.clone(), history));
        }
    }
    if histories.is_empty() {
        return Ok(Vec::new());
    }
    let processes = processes();
    Ok(histories
        .into_iter()
        .filter_map(|(name, history)| decide(&history, held_by(&processes, &name, kube_context)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::Info;

    fn rev(version: u32, status: &str) -> HelmRelease {
        HelmRelease {
            name: "auth".into(),
            namespace: "ameide".into(),
            version,
            info: Info { status: ReleaseStatus::parse(status), ..Info::default() },
            hooks: Vec::new(),
        }
    }

    /// A failed upgrade is rolled back too: helm 3 would upgrade it from the deployed
    /// revision's manifest and keep what the failed one added.
    #[test]
    fn a_pending_or_failed_upgrade_rolls_back_to_the_last_deployed_revision() {
        for (status, said, done) in [
            (
                "pending-upgrade",
                "roll back auth from revision 3 (pending-upgrade, left by a run that was stopped) to revision 2 (deployed)",
                "release auth was left pending-upgrade at revision 3 by a run that was stopped: rolled back to revision 2",
            ),
            (
                "failed",
                "roll back auth from revision 3 (failed) to revision 2 (deployed), so the sync also undoes what revision 3 applied",
                "release auth was failed at revision 3: rolled back to revision 2, so the sync also undoes what revision 3 applied",
            ),
        ] {
            let history = [rev(1, "superseded"), rev(3, status), rev(2, "deployed")];
            let recover = decide(&history, None).unwrap();
            assert_eq!(
                recover.action,
                Recovery::Rollback { to: 2, to_status: ReleaseStatus::Deployed }
            );
            assert_eq!(recover.to_string(), said);
            assert_eq!(recover.done(), done);
            let by = Some("pid 7: helm upgrade auth".to_owned());
            assert!(matches!(decide(&history, by).unwrap().action, Recovery::Held { .. }));
        }
    }

    #[test]
    fn without_a_deployed_revision_the_newest_settled_one_is_the_target() {
        let history = [rev(1, "failed"), rev(2, "pending-rollback")];
        let recover = decide(&history, None).unwrap();
        assert_eq!(recover.action, Recovery::Rollback { to: 1, to_status: ReleaseStatus::Failed });
        let history = [rev(1, "uninstalled"), rev(2, "pending-install")];
        assert_eq!(decide(&history, None).unwrap().action, Recovery::Uninstall);
    }

    #[test]
    fn a_pending_first_install_is_uninstalled() {
        let recover = decide(&[rev(1, "pending-install")], None).unwrap();
        assert_eq!(recover.action, Recovery::Uninstall);
        assert_eq!(
            recover.to_string(),
            "uninstall auth (revision 1 is pending-install: a first install that was stopped)"
        );
    }

    #[test]
    fn settled_releases_need_nothing() {
        assert_eq!(decide(&[rev(1, "superseded"), rev(2, "deployed")], None), None);
        assert_eq!(decide(&[rev(1, "failed")], None), None);
        assert_eq!(decide(&[rev(1, "superseded"), rev(2, "failed")], None), None);
        assert_eq!(decide(&[], None), None);
    }

    #[test]
    fn a_release_a_live_helm_names_is_left_alone() {
        let processes = vec![
            (10, vec!["/usr/bin/bash".to_owned(), "auth".to_owned()]),
            (11, vec!["helm".to_owned(), "status".to_owned(), "authx".to_owned()]),
            // Another checkout rendering a chart of the same name writes no release.
            (13, ["helm", "template", "auth", "../charts/a"].map(str::to_owned).to_vec()),
            (14, ["helm", "test", "auth", "-n", "ameide"].map(str::to_owned).to_vec()),
            (
                12,
                ["/x/helm", "upgrade", "--install", "auth", "../charts/a"]
                    .map(str::to_owned)
                    .to_vec(),
            ),
        ];
        let by = held_by(&processes, "auth", "k3d-ameide");
        assert_eq!(by.as_deref(), Some("pid 12: /x/helm upgrade --install auth ../charts/a"));
        assert_eq!(held_by(&processes, "vault", "k3d-ameide"), None);
        let recover = decide(&[rev(1, "deployed"), rev(2, "pending-upgrade")], by).unwrap();
        assert!(matches!(recover.action, Recovery::Held { .. }));
        assert!(recover.to_string().contains("a running helm works on it (pid 12: "), "{recover}");
    }

    #[test]
    fn a_helm_on_another_clusters_context_holds_nothing_here() {
        let helm = |context: &str| {
            ["helm", "rollback", "auth", "1", "-n", "ameide", context].map(str::to_owned).to_vec()
        };
        let other = vec![(20, helm("--kube-context=k3d-other"))];
        assert_eq!(held_by(&other, "auth", "k3d-ameide"), None);
        let mut split = helm("--kube-context");
        split.push("k3d-other".into());
        assert_eq!(held_by(&[(21, split.clone())], "auth", "k3d-ameide"), None);
        assert!(held_by(&[(21, split)], "auth", "k3d-other").is_some());
        let ours = vec![(22, helm("--kube-context=k3d-ameide"))];
        assert!(held_by(&ours, "auth", "k3d-ameide").is_some());
    }
}
