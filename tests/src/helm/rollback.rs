//! The fake `helm rollback RELEASE [REVISION]`, as helm `pkg/action/rollback.go` does it
//! (v3.17.2): the target is REVISION (else the one before the latest) and must be in the
//! history (`release has no N version`); a new revision (latest + 1) is written
//! `pending-rollback` with the target's chart, values, manifest and hooks, its objects
//! are applied and those of the latest revision it no longer has deleted (unless kept),
//! then the latest revision and every `deployed` one become `superseded` and the new one
//! `deployed`, described `Rollback to N`. A pending latest revision is no obstacle:
//! rollback takes no lock. Left out: hooks (`--no-hooks` is implied), `--wait`,
//! `--recreate-pods`, `--cleanup-on-fail`.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::helm::records::{kept, load, split_manifest, store};
use crate::kube_api::{self, Client};
use crate::release::{self, Release};

pub(crate) async fn rollback_cmd(args: &[String]) -> Result<i32> {
    let mut namespace = std::env::var("HELM_NAMESPACE").ok().filter(|n| !n.is_empty());
    let mut kube_context = None;
    let mut positional = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (a.as_str(), None),
        };
        let mut value =
            || inline.clone().or_else(|| it.next().cloned()).context("flag needs an argument");
        match flag {
            "-n" | "--namespace" => namespace = Some(value()?),
            "--kube-context" => kube_context = Some(value()?),
            "--timeout" | "--kubeconfig" => drop(value()?),
            "--wait" | "--debug" | "--no-hooks" | "--force" | "--cleanup-on-fail" => {}
            f if f.starts_with('-') => bail!("unknown flag: {f}"),
            _ => positional.push(a.clone()),
        }
    }
    if positional.first().is_some_and(|v| v == "rollback") {
        positional.remove(0);
    }
    let (name, revision) = match positional.as_slice() {
        [name] => (name.clone(), None),
        [name, rev] => (
            name.clone(),
            Some(rev.parse::<u32>().with_context(|| format!("invalid revision {rev:?}"))?),
        ),
        _ => bail!("\"helm rollback\" requires at least 1 argument"),
    };
    let namespace = namespace.unwrap_or_else(|| "default".into());
    let client = Client::for_context(kube_context.as_deref())?;
    let Some((records, current)) = load(&client, &namespace, &name).await? else {
        bail!("release: not found");
    };
    let target_version = revision.unwrap_or(current.version.saturating_sub(1));
    let history: Vec<Release> = records.iter().map(Release::from_record).collect::<Result<_>>()?;
    let Some(target) = history.iter().find(|r| r.version == target_version).cloned() else {
        bail!("release has no {target_version} version");
    };
    let mut rolled = Release {
        version: current.version + 1,
        info: release::Info {
            first_deployed: current.info.first_deployed.clone(),
            last_deployed: release::timestamp_now(),
            status: "pending-rollback".into(),
            description: format!("Rollback to {target_version}"),
            ..target.info.clone()
        },
        ..target.clone()
    };
    store(&client, &rolled).await?;
    let applied = apply_manifest(&client, &target.manifest, &namespace, &name).await?;
    for doc in split_manifest(&current.manifest) {
        let Ok(mut obj) = serde_saphyr::from_str::<Value>(&doc.text) else { continue };
        if !obj.is_object() {
            continue;
        }
        if obj["metadata"]["namespace"].is_null() {
            obj["metadata"]["namespace"] = json!(namespace);
        }
        let path = kube_api::path_of(&obj)?;
        if !applied.contains(&path) && !kept(&obj) {
            client.delete(&path).await?;
        }
    }
    for mut old in
        history.into_iter().filter(|r| r.version == current.version || r.info.status == "deployed")
    {
        old.info.status = "superseded".into();
        store(&client, &old).await?;
    }
    rolled.info.status = "deployed".into();
    store(&client, &rolled).await?;
    println!("Rollback was a success! Happy Helming!");
    Ok(0)
}

/// Apply every object of a release manifest (namespaced into `namespace` unless it says
/// otherwise, with helm's ownership annotations); the API paths applied.
async fn apply_manifest(
    client: &Client,
    manifest: &str,
    namespace: &str,
    release: &str,
) -> Result<Vec<String>> {
    let mut applied = Vec::new();
    for doc in split_manifest(manifest) {
        let mut obj: Value = serde_saphyr::from_str(&doc.text)
            .with_context(|| format!("{}: manifest YAML", doc.source))?;
        if !obj.is_object() {
            continue;
        }
        let (group, _) = crate::apiserver::resources::split_api_version(
            obj["apiVersion"].as_str().unwrap_or(""),
        );
        let kind = obj["kind"].as_str().unwrap_or("").to_owned();
        if crate::apiserver::resources::cluster_scoped(group, &kind) {
            obj["metadata"].as_object_mut().map(|m| m.remove("namespace"));
        } else if obj["metadata"]["namespace"].as_str().is_none_or(str::is_empty) {
            obj["metadata"]["namespace"] = json!(namespace);
        }
        obj["metadata"]["annotations"]["meta.helm.sh/release-name"] = json!(release);
        obj["metadata"]["annotations"]["meta.helm.sh/release-namespace"] = json!(namespace);
        let stored = client.apply_object(&obj).await?;
        applied.push(kube_api::path_of(&stored)?);
    }
    Ok(applied)
}
