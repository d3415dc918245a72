//! The kubelet's image pulls on the node every Pod runs on (the testbed schedules all
//! Pods on k3d's first server). A container starts only once its image is in the node's
//! store (`node_images`); a missing one is pulled on demand (`imagePullPolicy:
//! IfNotPresent`, what the sample's charts set), one image at a time per node (the
//! kubelet's default `serializeImagePulls: true`), each taking the scenario's `pull-ms`.
//! An image that appears in the store while its pull waits (a `k3d image import`) ends
//! that wait. A reference the registry does not have fails (`ErrImagePull`, then
//! `ImagePullBackOff`): the Pod never starts.
//!
//! Upstream: kubernetes `pkg/kubelet/images/image_manager.go` (`EnsureImageExists`,
//! pull policy), `pkg/kubelet/images/puller.go` (`serialImagePuller`),
//! `pkg/kubelet/apis/config/v1beta1/defaults.go` (`SerializeImagePulls` true).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::node_images;
use crate::scenario::Scenario;

#[derive(Default)]
pub(super) struct Kubelet {
    /// The node's image store and name; `None` when the API server runs without a node
    /// (no image model then: every image is present).
    node: Option<(PathBuf, String)>,
    /// Image -> when its pull completes.
    pulling: HashMap<String, Instant>,
    /// When the last queued pull completes (pulls are serial).
    queue_end: Option<Instant>,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Images {
    Present,
    Pulling,
    Failed(String),
}

impl Kubelet {
    pub(super) fn new(node_store: Option<PathBuf>) -> Kubelet {
        let node = node_store.map(|store| {
            let name = store
                .parent()
                .and_then(Path::file_name)
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (store, name)
        });
        Kubelet { node, ..Kubelet::default() }
    }

    /// The node's name (`k3d-<cluster>-server-0`), when the API server has a node.
    pub(super) fn node_name(&self) -> Option<&str> {
        self.node.as_ref().map(|(_, name)| name.as_str())
    }

    /// Whether every image of a Pod is in the node's store, pulling what is missing.
    pub(super) fn ensure(
        &mut self,
        testbed_dir: Option<&Path>,
        images: &[String],
        s: &Scenario,
        now: Instant,
    ) -> Images {
        let Some((store, node)) = &self.node else { return Images::Present };
        let mut state = Images::Present;
        for image in images {
            if node_images::node_has(store, image) {
                self.pulling.remove(image);
                continue;
            }
            if node_images::unfetchable(s, image) {
                return Images::Failed(node_images::kubelet_pull_error(image));
            }
            let done = *self.pulling.entry(image.clone()).or_insert_with(|| {
                let start = self.queue_end.filter(|end| *end > now).unwrap_or(now);
                let done = start + Duration::from_millis(s.pull_ms);
                self.queue_end = Some(done);
                done
            });
            if now < done {
                state = Images::Pulling;
                continue;
            }
            self.pulling.remove(image);
            if let Some(dir) = testbed_dir {
                let by = format!("kubelet/{node}");
                if let Err(e) = node_images::record_pull(dir, &by, image) {
                    eprintln!("testbed apiserver: kubelet: {e:#}");
                }
            }
            if let Err(e) = node_images::node_add(store, image) {
                eprintln!("testbed apiserver: kubelet: {e:#}");
                state = Images::Pulling;
            }
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulls_are_serial_and_an_import_ends_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let store = node_images::node_store(dir.path(), "c", "k3d-c-server-0");
        let mut k = Kubelet::new(Some(store.clone()));
        let s = Scenario { pull_ms: 1000, ..Scenario::default() };
        let t0 = Instant::now();
        let a = ["a:1".to_owned()];
        let b = ["b:1".to_owned()];
        assert_eq!(k.ensure(Some(dir.path()), &a, &s, t0), Images::Pulling);
        assert_eq!(k.ensure(Some(dir.path()), &b, &s, t0), Images::Pulling);
        // a is done after one pull time, b only after two (serial pulls).
        let t1 = t0 + Duration::from_millis(1000);
        assert_eq!(k.ensure(Some(dir.path()), &a, &s, t1), Images::Present);
        assert_eq!(k.ensure(Some(dir.path()), &b, &s, t1), Images::Pulling);
        assert_eq!(node_images::pulls(dir.path()).unwrap().len(), 1);
        // An import of b ends its wait at once, and nothing more is downloaded.
        node_images::node_add(&store, "b:1").unwrap();
        assert_eq!(k.ensure(Some(dir.path()), &b, &s, t1), Images::Present);
        assert_eq!(node_images::pulls(dir.path()).unwrap().len(), 1);
        let s = Scenario { image_unfetchable: vec!["c:1".into()], ..s };
        assert!(matches!(
            k.ensure(Some(dir.path()), &["c:1".to_owned()], &s, t1),
            Images::Failed(e) if e.contains("docker.io/library/c:1")
        ));
    }
}
