//! Rendering the layers (`helmfile template`) and fetching their images into the
//! cluster's nodes (`docker exec <node> crictl pull <image>`: the node's containerd
//! pulls, through the image cache when the k3d config names one), bounded by the
//! `parallel` setting.

use std::collections::HashSet;
use std::time::Instant;

use futures::StreamExt;

use super::warm::Warming;
use super::{FetchReport, ImageResult, LayerImages, Outcome};
use crate::config::Context;
use crate::error::Result;
use crate::exec::{self, Cmd};
use crate::helmfile_list::StateValues;
use crate::layers;
use crate::platform::bundles;
use crate::platform::helmfile::Layer;
use crate::platform::images::images_in_manifests;
use crate::spans::{SpanKind, SpanOutcome};

const TAG: &str = "images";

/// The images `layer` runs, from `helmfile template` with the run's environment, state
/// values and bundles (what its `helmfile sync` would install, test hooks included). A
/// failed render is an error whose text says why.
pub async fn render(ctx: &Context, layer: &Layer) -> Result<Vec<String>> {
    if bundles::all_off(layer, &ctx.bundles) {
        return Ok(Vec::new());
    }
    let state_values = StateValues::write(&ctx.bundles)?;
    let mut cmd =
        layers::template_command(ctx, layer, &state_values, ctx.settings.images.fetch_timeout())
            .quiet();
    cmd.tag = format!("{TAG}/{}", layer.name);
    // The rendered manifests hold Secrets' values: they are read, never logged.
    let output = exec::run(&ctx.session.quiet(), &cmd).await?;
    if !output.success() {
        return Err(crate::error::failed(format!(
            "`helmfile template` of {} failed: {}",
            layer.file.display(),
            reason(&output.stderr)
        )));
    }
    let images = images_in_manifests(&output.stdout).map_err(crate::error::failed)?;
    ctx.session.line(
        &format!("{TAG}/{}", layer.name),
        &format!("`{}` rendered {} image(s): {}", cmd.display(), images.len(), images.join(", ")),
    );
    Ok(images)
}

/// The line of a tool's error output that says what went wrong: the last one naming an
/// error, else the last one.
pub(super) fn reason(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let named = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("ERRO") || l.starts_with("FATA") || l.contains("Error"));
    named.or(lines.last()).map_or_else(|| "no error output".into(), |l| (*l).to_owned())
}

/// A layer's images, or why they are not known.
fn layer_images(layer: &Layer, rendered: Result<Vec<String>>) -> LayerImages {
    match rendered {
        Ok(images) => LayerImages { layer: layer.name.clone(), images, note: None },
        Err(e) => {
            LayerImages { layer: layer.name.clone(), images: Vec::new(), note: Some(e.to_string()) }
        }
    }
}

/// One layer's images, or why they are not known.
pub(super) async fn render_layer(ctx: &Context, layer: &Layer) -> LayerImages {
    layer_images(layer, render(ctx, layer).await)
}

/// The images of every layer (rendered `parallel` at a time), in layer order.
pub async fn render_layers(ctx: &Context, layers: &[Layer]) -> Vec<LayerImages> {
    let parallel = ctx.settings.images.parallel.max(1) as usize;
    futures::stream::iter(layers)
        .map(|layer| render_layer(ctx, layer))
        .buffered(parallel)
        .collect()
        .await
}

/// Render `layers` (or take what `warming` rendered) and fetch every image they run,
/// each once, in the order the layers first need them, into the nodes of the run's k3d
/// cluster; an image being warmed in the image cache is pulled into the nodes once its
/// warming ended. Never fails: what went wrong is in the report.
pub async fn fetch_ahead(ctx: &Context, layers: &[Layer], warming: Option<Warming>) -> FetchReport {
    let started = Instant::now();
    let session = &ctx.session;
    let parallel = ctx.settings.images.parallel.max(1) as usize;
    session.progress(TAG, &format!("fetching the images of {} layer(s) ahead", layers.len()));
    let nodes = match crate::cluster::docker().await {
        Ok(docker) => node_names(&docker, &ctx.settings.cluster).await,
        Err(e) => Err(e.to_string()),
    };
    let rendered = match warming.clone() {
        Some(mut warming) => warming.rendered().await,
        None => None,
    };
    let by_layer = match rendered {
        Some(rendered) => rendered,
        None => render_layers(ctx, layers).await,
    };
    let mut seen = HashSet::new();
    let ordered: Vec<String> = by_layer
        .iter()
        .flat_map(|l| l.images.iter())
        .filter(|i| seen.insert((*i).clone()))
        .cloned()
        .collect();
    let images: Vec<ImageResult> = futures::stream::iter(ordered)
        .map(|image| {
            let nodes = nodes.as_ref();
            let warming = warming.clone();
            async move {
                if let Some(mut warming) = warming {
                    warming.warmed(&image).await;
                }
                let span = ctx.session.events.span(SpanKind::Image, TAG, &image);
                let outcome = match nodes {
                    Ok(nodes) => fetch_one(ctx, nodes, &image).await,
                    Err(e) => Outcome::Failed { reason: e.clone() },
                };
                span.finish(match outcome {
                    Outcome::Fetched | Outcome::Present => SpanOutcome::Ok,
                    Outcome::Failed { .. } => SpanOutcome::Failed,
                    Outcome::Interrupted => SpanOutcome::Stopped,
                });
                ImageResult { image, outcome }
            }
        })
        .buffered(parallel)
        .collect()
        .await;
    let warm_warnings = match warming {
        Some(mut warming) => warming.warnings().await,
        None => Vec::new(),
    };
    let report =
        FetchReport { layers: by_layer, images, warm_warnings, duration: started.elapsed() };
    // Its warnings are the caller's to emit, with the stage they belong to.
    session.progress(TAG, &format!("images: {}", report.line()));
    report
}

/// The server and agent node containers of `cluster` (k3d's labels).
async fn node_names(
    docker: &bollard::Docker,
    cluster: &str,
) -> std::result::Result<Vec<String>, String> {
    let filters = std::collections::HashMap::from([(
        "label".to_owned(),
        vec!["app=k3d".to_owned(), format!("k3d.cluster={cluster}")],
    )]);
    let options = bollard::query_parameters::ListContainersOptions {
        all: true,
        filters: Some(filters),
        ..Default::default()
    };
    let listed = docker.list_containers(Some(options)).await.map_err(|e| e.to_string())?;
    let mut nodes: Vec<String> = listed
        .iter()
        .filter(|c| {
            let role = c.labels.as_ref().and_then(|l| l.get("k3d.role")).map(String::as_str);
            matches!(role, Some("server" | "agent"))
        })
        .filter_map(|c| c.names.as_ref()?.first().map(|n| n.trim_start_matches('/').to_owned()))
        .collect();
    nodes.sort();
    if nodes.is_empty() {
        return Err(format!("no server or agent node of cluster {cluster} found"));
    }
    Ok(nodes)
}

/// One image, pulled by each node's containerd (`crictl pull`, what the kubelet asks
/// containerd for; through the cluster's registry mirrors, so from the image cache when
/// there is one). Digest-pinned references pull like tagged ones.
async fn fetch_one(ctx: &Context, nodes: &[String], image: &str) -> Outcome {
    let timeout = ctx.settings.images.fetch_timeout();
    for node in nodes {
        let pull = Cmd::new(TAG, "docker", timeout).args(["exec", node, "crictl", "pull", image]);
        if let Err(outcome) = step(ctx, &pull, &format!("crictl pull in {node}")).await {
            return outcome;
        }
    }
    ctx.session.line(TAG, &format!("{image}: pulled into {}", nodes.join(", ")));
    Outcome::Fetched
}

/// Run one tool call of a fetch; a failure is the image's outcome, naming the call.
async fn step(ctx: &Context, cmd: &Cmd, what: &str) -> std::result::Result<(), Outcome> {
    match exec::run(&ctx.session, cmd).await {
        Ok(out) if out.success() => Ok(()),
        Ok(out) => Err(Outcome::Failed { reason: format!("{what}: {}", reason(&out.stderr)) }),
        Err(e) if e.kind().is_interrupted() => Err(Outcome::Interrupted),
        Err(e) => Err(Outcome::Failed { reason: format!("{what}: {e}") }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_is_the_line_naming_the_error() {
        let k3d = "INFO[0000] Importing image(s) into cluster 'a'\nWARN[0000] Image 'x:1' is not a file\nERRO[0000] Failed to import image(s) into cluster 'a': no valid images specified\nWARN[0000] At least one error occured";
        assert_eq!(
            reason(k3d),
            "ERRO[0000] Failed to import image(s) into cluster 'a': no valid images specified"
        );
        assert_eq!(reason("one\ntwo\n"), "two");
        assert_eq!(reason(""), "no error output");
    }
}
