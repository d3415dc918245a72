//! Pods that cannot pull an image. A container that cannot get its image never starts:
//! it waits `ErrImagePull`, then `ImagePullBackOff`, and has no log; the kubelet's
//! reason is in the Pod's Warning Events (`Failed`: `Failed to pull image "x": ...`),
//! written by `pkg/kubelet/images/image_manager.go`. A reference the registry does not
//! have, or refuses, does not get better by waiting, so a gate whose test Pod is in
//! that state fails at once, naming the image and that reason, instead of sitting out
//! its timeout.

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use crate::error::{Context as _, Result};

/// One container of one Pod that cannot pull its image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullFailure {
    pub pod: String,
    pub image: String,
    /// `ErrImagePull` or `ImagePullBackOff`.
    pub reason: String,
    /// The kubelet's words: its newest Warning `Failed` Event naming the pull, else the
    /// container's waiting message.
    pub message: String,
}

impl PullFailure {
    /// Waiting cannot help: the registry says the reference does not exist, or refuses it.
    pub fn permanent(&self) -> bool {
        let m = self.message.to_ascii_lowercase();
        ["not found", "manifest unknown", "notfound", "unauthorized", "denied", "invalid reference"]
            .iter()
            .any(|word| m.contains(word))
    }

    pub fn describe(&self) -> String {
        format!(
            "Pod {} cannot pull image {} ({}): {}",
            self.pod, self.image, self.reason, self.message
        )
    }
}

const PULL_REASONS: [&str; 2] = ["ErrImagePull", "ImagePullBackOff"];

/// The containers of `pod` waiting for an image that cannot be pulled, with the
/// kubelet's message from `events` (the Pod's Events) when one names the image.
pub fn pull_failures(pod: &Pod, events: &[Event]) -> Vec<PullFailure> {
    let Some(status) = pod.status.as_ref() else { return Vec::new() };
    let statuses = status.init_container_statuses.iter().flatten();
    let statuses = statuses.chain(status.container_statuses.iter().flatten());
    statuses
        .filter_map(|c| {
            let waiting = c.state.as_ref()?.waiting.as_ref()?;
            let reason = waiting.reason.as_deref().filter(|r| PULL_REASONS.contains(r))?;
            let image = &c.image;
            let event = events
                .iter()
                .filter(|e| {
                    e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some("Failed")
                })
                .filter_map(|e| e.message.as_deref())
                .rfind(|m| m.starts_with("Failed to pull image") && m.contains(image.as_str()));
            let message = event
                .or(waiting.message.as_deref())
                .unwrap_or("no message from the kubelet")
                .to_owned();
            Some(PullFailure {
                pod: pod.name_any(),
                image: image.clone(),
                reason: reason.to_owned(),
                message,
            })
        })
        .collect()
}

/// The pull failures of the Pods in `namespace` that `ours` selects.
pub async fn find(
    client: &kube::Client,
    namespace: &str,
    ours: impl Fn(&Pod) -> bool,
) -> Result<Vec<PullFailure>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let listed = pods
        .list(&ListParams::default())
        .await
        .with_context(|| format!("listing Pods in namespace {namespace}"))?;
    let mut out = Vec::new();
    for pod in listed.items.iter().filter(|p| ours(p)) {
        let waiting_for_image =
            pod.status.iter().flat_map(|s| s.container_statuses.iter().flatten()).any(|c| {
                c.state
                    .as_ref()
                    .and_then(|s| s.waiting.as_ref())
                    .and_then(|w| w.reason.as_deref())
                    .is_some_and(|r| PULL_REASONS.contains(&r))
            });
        if !waiting_for_image {
            continue;
        }
        let events: Api<Event> = Api::namespaced(client.clone(), namespace);
        let params =
            ListParams::default().fields(&format!("involvedObject.name={}", pod.name_any()));
        let events = events
            .list(&params)
            .await
            .with_context(|| format!("listing Events of Pod {namespace}/{}", pod.name_any()))?;
        out.extend(pull_failures(pod, &events.items));
    }
    Ok(out)
}

/// What to do about an image that cannot be pulled (the start of a remediation).
pub const PULLABLE: &str = "make the image(s) pullable (check the name and tag, `docker pull` it, `docker login` to its registry)";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_waiting_container_names_its_image_and_the_kubelets_event() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "smoke", "namespace": "ameide"},
            "status": {"containerStatuses": [{
                "name": "check", "image": "busybox:9", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"busybox:9\""}}
            }]}
        }))
        .unwrap();
        let event = |reason: &str, message: &str| -> Event {
            serde_json::from_value(json!({
                "metadata": {"name": "e"}, "involvedObject": {}, "type": "Warning",
                "reason": reason, "message": message
            }))
            .unwrap()
        };
        let events = [
            event(
                "Failed",
                "Failed to pull image \"busybox:9\": rpc error: code = NotFound desc = ...: not found",
            ),
            event("Failed", "Error: ImagePullBackOff"),
        ];
        let failures = pull_failures(&pod, &events);
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].image, "busybox:9");
        assert_eq!(failures[0].reason, "ImagePullBackOff");
        assert!(failures[0].message.starts_with("Failed to pull image \"busybox:9\""));
        assert!(failures[0].permanent());
        assert_eq!(
            failures[0].describe(),
            format!(
                "Pod smoke cannot pull image busybox:9 (ImagePullBackOff): {}",
                failures[0].message
            )
        );
        // Without the Event, the container's own message; a timeout may pass.
        let slow = pull_failures(&pod, &[]);
        assert_eq!(slow[0].message, "Back-off pulling image \"busybox:9\"");
        let timeout = PullFailure { message: "i/o timeout".into(), ..slow[0].clone() };
        assert!(!timeout.permanent());
    }
}
