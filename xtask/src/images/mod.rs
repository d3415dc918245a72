//! Images fetched ahead: the container images of the layers a run syncs, brought into
//! the k3d cluster's nodes as soon as the cluster is up, while earlier layers sync, so
//! a layer's Pods find their images present instead of pulling them one layer after
//! another.
//!
//! Mechanism (the README's "Images" says why): the images a layer runs come from its
//! rendered manifests (`helmfile template`, the same view `helmfile sync` installs, with
//! the run's environment; `platform::images` reads them). When the cluster is created,
//! the cluster stage renders them early and warms the image cache with them from the
//! host while k3d creates the cluster ([`warm`]). Each image is then pulled by every
//! server and agent node's containerd (`docker exec <node> crictl pull <image>`), which
//! goes through the cluster's registry mirrors: with the pull-through cache the k3d
//! config names ([`crate::cluster::image_cache`], kept outside the cluster's lifecycle) each image is
//! downloaded from upstream once per machine, and a recreated cluster copies it from
//! the cache. At most `parallel` renders and fetches run at once. A failed fetch is a
//! warning naming the image: the kubelet's own pull still tries.

mod fetch;
pub mod pulled;
pub mod warm;

use std::time::Duration;

use serde::Serialize;

pub use fetch::{fetch_ahead, render, render_layers};

use crate::error::Error;
use crate::outcome::Finding;
use crate::pull_failures::PULLABLE;

/// What happened to one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// Pulled into every node (through the image cache when there is one).
    Fetched,
    /// Already on every node (no pull).
    Present,
    Failed {
        reason: String,
    },
    /// Not finished: the run was interrupted.
    Interrupted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageResult {
    pub image: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// The images one layer runs, or why they are not known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerImages {
    pub layer: String,
    pub images: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The fetch of one run, for the summary and the layers' findings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchReport {
    pub layers: Vec<LayerImages>,
    pub images: Vec<ImageResult>,
    /// Images that could not be warmed in the image cache while the cluster was made.
    pub warm_warnings: Vec<String>,
    pub duration: Duration,
}

impl FetchReport {
    fn count(&self, want: fn(&Outcome) -> bool) -> usize {
        self.images.iter().filter(|i| want(&i.outcome)).count()
    }

    pub fn fetched(&self) -> usize {
        self.count(|o| *o == Outcome::Fetched)
    }

    pub fn present(&self) -> usize {
        self.count(|o| *o == Outcome::Present)
    }

    pub fn failed(&self) -> impl Iterator<Item = (&str, &str)> {
        self.images.iter().filter_map(|i| match &i.outcome {
            Outcome::Failed { reason } => Some((i.image.as_str(), reason.as_str())),
            _ => None,
        })
    }

    /// `3 fetched, 1 already present, 0 failed in 4.2s`.
    pub fn line(&self) -> String {
        let interrupted = self.count(|o| *o == Outcome::Interrupted);
        format!(
            "{} fetched, {} already present, {} failed{} in {:.1}s",
            self.fetched(),
            self.present(),
            self.failed().count(),
            if interrupted > 0 { format!(", {interrupted} interrupted") } else { String::new() },
            self.duration.as_secs_f64()
        )
    }

    /// One warning per failed image and per layer whose images are unknown.
    pub fn warnings(&self) -> Vec<String> {
        let failed = self.failed().map(|(image, reason)| {
            format!(
                "image {image} was not fetched ahead: {reason}; its Pods will pull it themselves"
            )
        });
        let unknown = self.layers.iter().filter_map(|l| {
            l.note
                .as_ref()
                .map(|note| format!("images of layer {} not fetched ahead: {note}", l.layer))
        });
        failed.chain(unknown).chain(self.warm_warnings.iter().cloned()).collect()
    }

    /// The JSON the summary carries.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "fetched": self.fetched(),
            "present": self.present(),
            "failed": self.failed().map(|(image, reason)| serde_json::json!({"image": image, "reason": reason})).collect::<Vec<_>>(),
            "duration_ms": self.duration.as_millis() as u64,
            "images": self.images,
            "layers": self.layers,
        })
    }

    /// `image X could not be fetched (why)` for each image of `layer` that failed.
    fn failed_in(&self, layer: &str) -> Vec<String> {
        let Some(images) = self.layers.iter().find(|l| l.layer == layer) else { return Vec::new() };
        self.failed()
            .filter(|(image, _)| images.images.iter().any(|i| i == image))
            .map(|(image, reason)| format!("image {image} could not be fetched ({reason})"))
            .collect()
    }

    /// A layer that failed while one of its images could not be fetched: its finding
    /// names the image (the likely cause: its Pods cannot start without it).
    pub fn explain(&self, layer: &str, mut finding: Finding) -> Finding {
        let failed = self.failed_in(layer);
        if failed.is_empty() {
            return finding;
        }
        finding.found = format!("{}; {}", finding.found, failed.join("; "));
        finding.remediation = format!("{PULLABLE}; {}", finding.remediation);
        finding
    }

    /// The same for an error that stopped the layer (its sync timed out, ...).
    pub fn explain_error(&self, layer: &str, error: Error) -> Error {
        let failed = self.failed_in(layer);
        if failed.is_empty() || error.kind().is_interrupted() {
            return error;
        }
        let remediation = match error.remediation() {
            Some(own) => format!("{PULLABLE}; {own}"),
            None => format!("{PULLABLE}; then run again"),
        };
        error.context(failed.join("; ")).with_remediation(remediation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> FetchReport {
        FetchReport {
            layers: vec![
                LayerImages { layer: "10-a".into(), images: vec!["busybox:1".into()], note: None },
                LayerImages {
                    layer: "15-b".into(),
                    images: vec!["vault:9".into(), "busybox:1".into()],
                    note: None,
                },
                LayerImages {
                    layer: "20-c".into(),
                    images: vec![],
                    note: Some("helmfile template failed: x".into()),
                },
            ],
            images: vec![
                ImageResult { image: "busybox:1".into(), outcome: Outcome::Present },
                ImageResult {
                    image: "vault:9".into(),
                    outcome: Outcome::Failed { reason: "docker pull: manifest unknown".into() },
                },
            ],
            warm_warnings: Vec::new(),
            duration: Duration::from_millis(4200),
        }
    }

    #[test]
    fn the_line_and_warnings_name_counts_and_failed_images() {
        let r = report();
        assert_eq!(r.line(), "0 fetched, 1 already present, 1 failed in 4.2s");
        let warnings = r.warnings();
        assert_eq!(warnings.len(), 2);
        assert!(
            warnings[0]
                .starts_with("image vault:9 was not fetched ahead: docker pull: manifest unknown")
        );
        assert!(warnings[1].contains("layer 20-c"));
        let json = r.json();
        assert_eq!(json["failed"][0]["image"], "vault:9");
        assert_eq!(json["duration_ms"], 4200);
        assert_eq!(json["images"][0]["outcome"], "present");
    }

    #[test]
    fn a_failed_layer_names_its_unfetched_image() {
        let r = report();
        let finding = Finding::new(
            "layer 15-b",
            "sync to succeed",
            "exit 1: context deadline exceeded",
            "fix it",
        );
        let explained = r.explain("15-b", finding.clone());
        assert!(
            explained
                .found
                .ends_with("; image vault:9 could not be fetched (docker pull: manifest unknown)"),
            "{}",
            explained.found
        );
        assert!(explained.remediation.starts_with("make the image(s) pullable"));
        // Another layer's failure is not blamed on it.
        assert_eq!(r.explain("10-a", finding.clone()), finding);
        let timed_out = crate::error::failed("`helmfile sync` timed out after 20s");
        let explained = r.explain_error("15-b", timed_out.clone());
        assert_eq!(
            format!("{explained:#}"),
            "image vault:9 could not be fetched (docker pull: manifest unknown): `helmfile sync` timed out after 20s"
        );
        assert!(explained.remediation().unwrap().starts_with("make the image(s) pullable"));
        assert_eq!(r.explain_error("10-a", timed_out.clone()), timed_out);
    }
}
