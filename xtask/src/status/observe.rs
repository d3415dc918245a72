//! Reading the platform for `status`, all at once and read-only: Docker (the cluster
//! stage's observe and decision), the API's `/readyz`, the recorded layer digests, each
//! release's Helm record, the Vault bootstrap, db-migrations-local, ExternalSecrets and
//! Tilt. No tool is run (Go-template layers aside: `helmfile list`, which only lists).

use futures::future::join_all;

use super::judge::{LayerFacts, ReleaseFact};
use crate::config::Context;
use crate::error::Result;
use crate::outcome::Check;
use crate::platform::helmfile::Platform;
use crate::secrets::VaultBootstrapState;

/// The cluster as the cluster stage sees it.
#[derive(Debug, Clone)]
pub enum ClusterFacts {
    /// The run's context is not the k3d cluster's: not managed by `cargo xtask`.
    NotManaged,
    /// Docker could not be asked: why.
    Unreachable(String),
    Decided(crate::cluster::Action),
}

/// Everything `status` judges.
#[derive(Debug)]
pub struct Facts {
    pub cluster: ClusterFacts,
    /// `/readyz` through the context: `Err(why)` when it does not answer ok (`None`: not
    /// asked, the cluster is not up).
    pub api: Option<std::result::Result<(), String>>,
    /// One per layer, once the API answered.
    pub layers: Option<std::result::Result<Vec<LayerFacts>, String>>,
    pub vault: Option<std::result::Result<VaultBootstrapState, String>>,
    pub db_migrations: Option<std::result::Result<Check, String>>,
    pub external_secrets: Option<std::result::Result<Check, String>>,
    /// `None` with `--no-tilt`.
    pub tilt: Option<crate::tilt::Probe>,
}

/// The layer digests (as preflight computes them) for the platform at `ctx.root`.
fn digests(ctx: &Context, platform: &Platform) -> Result<Vec<String>> {
    platform
        .layers
        .iter()
        .map(|l| crate::layers::digest(&ctx.root, platform, l, &ctx.environment, &ctx.bundles))
        .collect()
}

pub async fn observe(ctx: &Context, platform: &Platform, tilt: bool) -> Result<Facts> {
    let digests = digests(ctx, platform)?;
    let cluster = cluster(ctx).await?;
    let up = matches!(
        cluster,
        ClusterFacts::NotManaged | ClusterFacts::Decided(crate::cluster::Action::Noop)
    );
    let tilt_probe = async {
        match tilt {
            true => Some(crate::tilt::probe(ctx.settings.tilt_port).await),
            false => None,
        }
    };
    if !up {
        return Ok(Facts {
            cluster,
            api: None,
            layers: None,
            vault: None,
            db_migrations: None,
            external_secrets: None,
            tilt: tilt_probe.await,
        });
    }
    let api = crate::k8s::readyz(&ctx.kube_context).await.map_err(|e| format!("{e:#}"));
    let client = match (&api, crate::k8s::client(&ctx.kube_context).await) {
        (Ok(()), Ok(client)) => client,
        (Ok(()), Err(e)) => {
            let api = Some(Err(format!("{e:#}")));
            return Ok(Facts { cluster, api, ..Facts::unread(tilt_probe.await) });
        }
        (Err(_), _) => {
            return Ok(Facts { cluster, api: Some(api), ..Facts::unread(tilt_probe.await) });
        }
    };
    let text = |e: crate::error::Error| format!("{e:#}");
    let (layers, vault, db_migrations, external_secrets, tilt) = tokio::join!(
        layers(ctx, &client, platform, &digests),
        crate::secrets::vault_bootstrap_state(ctx, &client),
        crate::secrets::check_db_migrations(ctx, &client),
        async {
            let found = crate::secrets::list_external_secrets(&client).await?;
            Ok::<_, crate::error::Error>(crate::secrets::judge_external_secrets(
                &found,
                &ctx.kube_context,
            ))
        },
        tilt_probe,
    );
    Ok(Facts {
        cluster,
        api: Some(Ok(())),
        layers: Some(layers.map_err(text)),
        vault: Some(vault.map_err(text)),
        db_migrations: Some(db_migrations.map_err(text)),
        external_secrets: Some(external_secrets.map_err(text)),
        tilt,
    })
}

impl Facts {
    fn unread(tilt: Option<crate::tilt::Probe>) -> Facts {
        Facts {
            cluster: ClusterFacts::NotManaged,
            api: None,
            layers: None,
            vault: None,
            db_migrations: None,
            external_secrets: None,
            tilt,
        }
    }
}

/// The cluster stage's observe + decide, changing nothing.
async fn cluster(ctx: &Context) -> Result<ClusterFacts> {
    if !ctx.targets_own_cluster() {
        return Ok(ClusterFacts::NotManaged);
    }
    let (_, desired) = crate::cluster::desired(ctx)?;
    let docker = match crate::cluster::docker().await {
        Ok(docker) => docker,
        Err(e) => return Ok(ClusterFacts::Unreachable(format!("{e:#}"))),
    };
    let observed = match crate::cluster::observe(&docker, &desired).await {
        Ok(observed) => observed,
        Err(e) => return Ok(ClusterFacts::Unreachable(format!("{e:#}"))),
    };
    Ok(ClusterFacts::Decided(crate::cluster::decide(&desired, &observed).action))
}

/// Each layer's facts: every release read once, all at the same time.
async fn layers(
    ctx: &Context,
    client: &kube::Client,
    platform: &Platform,
    digests: &[String],
) -> Result<Vec<LayerFacts>> {
    let recorded = crate::layers::recorded_digests(client).await?;
    let mut reads = Vec::new();
    for (index, layer) in platform.layers.iter().enumerate() {
        for release in layer.releases.as_slice() {
            let namespace = crate::layers::namespace_of(release).to_owned();
            let name = release.name.clone();
            reads.push(async move {
                let read = crate::release::read(client, &namespace, &name).await;
                (index, release, namespace, read)
            });
        }
    }
    let mut facts: Vec<LayerFacts> = platform
        .layers
        .iter()
        .zip(digests)
        .map(|(layer, digest)| LayerFacts {
            name: layer.name.clone(),
            digest: digest.clone(),
            recorded: recorded.get(&layer.name).cloned(),
            releases: Vec::new(),
            off_present: Vec::new(),
        })
        .collect();
    let off = |r: &crate::platform::helmfile::Release| {
        r.bundle().is_some_and(|b| !ctx.bundles.contains(b))
    };
    for (index, release, namespace, read) in join_all(reads).await {
        let read = read?;
        if off(release) {
            if read.is_some() {
                let bundle = release.bundle().unwrap_or_default();
                facts[index].off_present.push(format!("{} (bundle {bundle})", release.name));
            }
        } else if release.installed {
            facts[index].releases.push(ReleaseFact {
                name: release.name.clone(),
                namespace,
                gate: release.gate,
                release: read,
            });
        }
    }
    Ok(facts)
}
