//! The kubelet's image pulls on the node every Pod runs on (the testbed schedules all
//! Pods on k3d's first server). A container starts only once its image is in the node's
//! store (`node_images`); a missing one is pulled on demand (`imagePullPolicy:
//! IfNotPresent`, what the sample's charts set). k3s runs the kubelet with
//! `SerializeImagePulls=false`, so pulls start at once, in parallel, each taking its
//! time on the machine's shared link (`node_images::reserve_link`). An image that
//! appears in the store while its pull waits (an import, a `crictl pull`) ends that
//! wait. A reference the registry does not have fails: `ErrImagePull` with Events
//! `Pulling`, `Failed` (containerd's message) and `Failed` (`Error: ErrImagePull`), then
//! `ImagePullBackOff` (`BackOff` "Back-off pulling image", `Failed` `Error:
//! ImagePullBackOff`) until the next attempt, 10 s doubling up to 300 s later: the Pod
//! never starts and has no log.
//!
//! Upstream: kubernetes `pkg/kubelet/images/image_manager.go` (`EnsureImageExists`,
//! pull policy, `backOff.IsInBackOffSinceUpdate` → `ErrImagePullBackOff`, events
//! `Pulling`/`Failed`/`BackOff`), `pkg/kubelet/images/puller.go` (`parallelImagePuller`),
//! `pkg/kubelet/kubelet.go` (`backOffPeriod` 10 s, `MaxContainerBackOff` 300 s); k3s
//! `pkg/daemons/agent/agent_linux.go` (`SerializeImagePulls` false).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::docker::node_images;
use crate::scenario::Scenario;

const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

#[derive(Default)]
pub(super) struct Kubelet {
    /// The node's image store and name; `None` when the API server runs without a node
    /// (no image model then: every image is present).
    node: Option<(PathBuf, String)>,
    /// Image -> when its pull completes, and who to record a download from upstream as.
    pulling: HashMap<String, (Instant, Option<String>)>,
    /// Image -> its failed pulls: how many, when the last one failed, whether the
    /// back-off since then was reported.
    failures: HashMap<String, (u32, Instant, bool)>,
}

/// An Event the kubelet records about the Pod: (type, reason, message).
pub(super) type KubeletEvent = (&'static str, &'static str, String);

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Images {
    Present,
    Pulling,
    /// `reason` is `ErrImagePull` or `ImagePullBackOff`; `events` are new this pass.
    Failed {
        reason: &'static str,
        message: String,
        events: Vec<KubeletEvent>,
    },
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
        let Some((store, node)) = self.node.clone() else { return Images::Present };
        let mut state = Images::Present;
        for image in images {
            if node_images::node_has(&store, image) {
                self.pulling.remove(image);
                continue;
            }
            if let Some(failed) = self.failure(image, s, now) {
                return failed;
            }
            let (done, record) = self
                .pulling
                .entry(image.clone())
                .or_insert_with(|| {
                    let now_ms = node_images::unix_ms();
                    let (end_ms, record) = if node_images::unfetchable(s, image) {
                        (now_ms + s.pull_ms, None)
                    } else {
                        let by = format!("kubelet/{node}");
                        node_images::begin_node_pull(testbed_dir, &store, &by, image, s, now_ms)
                    };
                    (now + Duration::from_millis(end_ms.saturating_sub(now_ms)), record)
                })
                .clone();
            if now < done {
                state = Images::Pulling;
                continue;
            }
            self.pulling.remove(image);
            if node_images::unfetchable(s, image) {
                self.failures.insert(image.clone(), (1, now, false));
                return pull_failed(image);
            }
            if let (Some(dir), Some(by)) = (testbed_dir, record)
                && let Err(e) = node_images::record_pull(dir, &by, image)
            {
                eprintln!("testbed apiserver: kubelet: {e:#}");
            }
            if let Err(e) = node_images::node_add(&store, image) {
                eprintln!("testbed apiserver: kubelet: {e:#}");
                state = Images::Pulling;
            }
        }
        state
    }

    /// A Pod's wait for its images (from when the kubelet first saw it until every image
    /// was on the node), one line of `$TESTBED_DIR/image_waits.jsonl` (what the
    /// `cold_start` benchmark sums).
    pub(super) fn record_image_wait(
        &self,
        testbed_dir: Option<&Path>,
        pod: &str,
        waited: Duration,
    ) {
        let (Some(dir), Some(_)) = (testbed_dir, &self.node) else { return };
        let line = serde_json::json!({"pod": pod, "waited_ms": waited.as_millis() as u64});
        if let Err(e) = crate::calls::append(&dir.join(node_images::IMAGE_WAITS_FILE), &line) {
            eprintln!("testbed apiserver: kubelet: {e:#}");
        }
    }

    /// An image whose last pull failed: `ImagePullBackOff` until its back-off ends, then
    /// another attempt (`ErrImagePull` again while it still cannot be pulled).
    fn failure(&mut self, image: &str, s: &Scenario, now: Instant) -> Option<Images> {
        let (attempts, at, reported) = self.failures.get_mut(image)?;
        let backoff = BACKOFF_START.saturating_mul(1 << (*attempts - 1).min(8)).min(BACKOFF_MAX);
        if now < *at + backoff {
            let events = if *reported {
                Vec::new()
            } else {
                *reported = true;
                vec![
                    ("Normal", "BackOff", format!("Back-off pulling image \"{image}\"")),
                    ("Warning", "Failed", "Error: ImagePullBackOff".to_owned()),
                ]
            };
            let message = format!(
                "Back-off pulling image \"{image}\": ErrImagePull: {}",
                node_images::kubelet_pull_error(image)
            );
            return Some(Images::Failed { reason: "ImagePullBackOff", message, events });
        }
        if node_images::unfetchable(s, image) {
            (*attempts, *at, *reported) = (*attempts + 1, now, false);
            return Some(pull_failed(image));
        }
        self.failures.remove(image);
        None
    }
}

fn pull_failed(image: &str) -> Images {
    let message = node_images::kubelet_pull_error(image);
    Images::Failed {
        reason: "ErrImagePull",
        events: vec![
            ("Normal", "Pulling", format!("Pulling image \"{image}\"")),
            ("Warning", "Failed", message.clone()),
            ("Warning", "Failed", "Error: ErrImagePull".to_owned()),
        ],
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulls_run_in_parallel_and_an_import_ends_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let store = node_images::node_store(dir.path(), "c", "k3d-c-server-0");
        let mut k = Kubelet::new(Some(store.clone()));
        let s = Scenario { pull_ms: 1000, ..Scenario::default() };
        let t0 = Instant::now();
        let a = ["a:1".to_owned()];
        let b = ["b:1".to_owned()];
        assert_eq!(k.ensure(Some(dir.path()), &a, &s, t0), Images::Pulling);
        assert_eq!(k.ensure(Some(dir.path()), &b, &s, t0), Images::Pulling);
        // Both are done after one pull time (parallel pulls, size not counted).
        let t1 = t0 + Duration::from_millis(1100);
        assert_eq!(k.ensure(Some(dir.path()), &a, &s, t1), Images::Present);
        assert_eq!(node_images::pulls(dir.path()).unwrap().len(), 1);
        // An import of b ends its wait, and nothing more is downloaded.
        node_images::node_add(&store, "b:1").unwrap();
        assert_eq!(k.ensure(Some(dir.path()), &b, &s, t1), Images::Present);
        assert_eq!(node_images::pulls(dir.path()).unwrap().len(), 1);
    }

    #[test]
    fn an_unpullable_image_errs_then_backs_off_with_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = node_images::node_store(dir.path(), "c", "k3d-c-server-0");
        let mut k = Kubelet::new(Some(store));
        let s =
            Scenario { image_unfetchable: vec!["c:1".into()], pull_ms: 100, ..Scenario::default() };
        let c = ["c:1".to_owned()];
        assert_eq!(k.ensure(Some(dir.path()), &c, &s, Instant::now()), Images::Pulling);
        let t0 = Instant::now() + Duration::from_millis(200);
        let Images::Failed { reason, message, events } = k.ensure(Some(dir.path()), &c, &s, t0)
        else {
            panic!("the pull should fail")
        };
        assert_eq!(reason, "ErrImagePull");
        assert!(message.contains("docker.io/library/c:1: not found"), "{message}");
        let reasons: Vec<&str> = events.iter().map(|e| e.1).collect();
        assert_eq!(reasons, ["Pulling", "Failed", "Failed"]);
        let Images::Failed { reason, events, .. } = k.ensure(Some(dir.path()), &c, &s, t0) else {
            panic!("still failing")
        };
        assert_eq!((reason, events[0].1), ("ImagePullBackOff", "BackOff"));
        let Images::Failed { events, .. } = k.ensure(Some(dir.path()), &c, &s, t0) else {
            panic!("still failing")
        };
        assert!(events.is_empty(), "the back-off is reported once");
        // After the back-off, another attempt.
        let t1 = t0 + BACKOFF_START;
        assert!(matches!(
            k.ensure(Some(dir.path()), &c, &s, t1),
            Images::Failed { reason: "ErrImagePull", .. }
        ));
        assert!(node_images::pulls(dir.path()).unwrap().is_empty());
    }
}
