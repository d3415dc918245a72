//! `[workspace.metadata.bootstrap.images]`: fetching the layers' images ahead of their
//! syncs (the `images` module).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImagesSettings {
    /// Bring the images of the layers a run syncs into the cluster's nodes as soon as
    /// the cluster is up, while earlier layers sync. `false`: each layer's Pods pull
    /// their images when the layer syncs (the kubelet's on-demand pull).
    pub fetch_ahead: bool,
    /// How many images are rendered, downloaded and imported at once.
    pub parallel: u32,
    /// Seconds one image's `docker pull` (or `k3d image import`) may take.
    pub fetch_timeout: u64,
}

impl Default for ImagesSettings {
    fn default() -> Self {
        ImagesSettings { fetch_ahead: true, parallel: 4, fetch_timeout: 600 }
    }
}

impl ImagesSettings {
    pub fn fetch_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.fetch_timeout)
    }

    /// The first rule a value breaks, as `key: what is expected`.
    pub(super) fn invalid(&self) -> Option<String> {
        if self.parallel == 0 {
            return Some("`parallel` must be at least 1".into());
        }
        if self.fetch_timeout == 0 {
            return Some("`fetch_timeout` must be at least 1 (seconds)".into());
        }
        None
    }
}
