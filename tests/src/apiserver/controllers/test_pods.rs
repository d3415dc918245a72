//! What a Helm test hook's container does when the kubelet runs it (`pods.rs`): the
//! testbed runs no containers, so its check is evaluated against the cluster as it is
//! when the container starts (`gate_probe.rs`: a Service host named in its command
//! must exist with a Ready Pod behind it, else busybox `wget`'s message is its log),
//! and the per-layer scenarios reach it through its release's layer (`layers.rs`):
//!
//! - `gate-leak=<layer>`: the container prints the Postgres credentials it has in its
//!   environment (`PGPASSWORD`/`PGHOST`, else the `password`/`host` keys an `envFrom`
//!   of the Secret gives it, as the kubelet resolved them) and a PEM private key, then
//!   fails (`crate::leaks`);
//! - `gate-fail=<layer>`: the check fails (`<pod>: check failed: exit status 1`).
//!
//! A test hook is a Pod annotated `helm.sh/hook: test` (or `test-success`), or a Pod of
//! a Job so annotated, whoever created it. Other Helm hooks (`pre-install`, ...) run the
//! same check, without the scenarios.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use super::layers::{self, SAMPLE_HELMFILE};
use super::{Controllers, meta};
use crate::apiserver::store::Store;
use crate::scenario::Scenario;

/// Whether an object is a Helm hook (any event): helm waits for it to end.
pub fn is_hook(obj: &Value) -> bool {
    obj["metadata"]["annotations"]["helm.sh/hook"].as_str().is_some_and(|h| !h.trim().is_empty())
}

/// Whether an object's `helm.sh/hook` annotation makes it a test hook.
pub fn is_test_hook(obj: &Value) -> bool {
    obj["metadata"]["annotations"]["helm.sh/hook"]
        .as_str()
        .is_some_and(|h| h.split(',').any(|e| matches!(e.trim(), "test" | "test-success")))
}

/// How a finished container ended, and what it printed.
pub(super) struct Outcome {
    pub ok: bool,
    pub log: String,
}

/// Run a hook Pod's check now. `hook`: the hook object as its release records it (kind
/// and name: the Pod, or the Job that owns it); `test`: a test hook (the per-layer
/// scenarios apply); `env`: the first container's environment as the kubelet resolved it.
pub(super) fn run_check(
    c: &mut Controllers,
    store: &Store,
    s: &Scenario,
    pod: &Value,
    hook: (&str, &str),
    test: bool,
    env: &BTreeMap<String, String>,
) -> Outcome {
    let name = meta(pod, "name");
    let layer = if !test || s.gate_fail.is_empty() && s.gate_leak.is_empty() {
        None
    } else {
        layer_of_hook(c, store, s, meta(pod, "namespace"), hook)
    };
    let in_layer = |list: &[String]| layer.as_ref().is_some_and(|l| list.contains(l));
    if in_layer(&s.gate_leak) {
        let var = |a: &str, b: &str| env.get(a).or_else(|| env.get(b)).cloned().unwrap_or_default();
        let log = crate::leaks::gate_leak_log(
            name,
            &var("PGHOST", "host"),
            &var("PGPASSWORD", "password"),
        );
        return Outcome { ok: false, log };
    }
    if let Some(log) = super::gate_probe::failure(store, &pod["spec"]) {
        return Outcome { ok: false, log };
    }
    if in_layer(&s.gate_fail) {
        return Outcome { ok: false, log: format!("{name}: check failed: exit status 1\n") };
    }
    Outcome { ok: true, log: format!("{name}: check passed\n") }
}

/// The Helmfile layer of the release whose hook this is.
fn layer_of_hook(
    c: &mut Controllers,
    store: &Store,
    s: &Scenario,
    namespace: &str,
    (kind, name): (&str, &str),
) -> Option<String> {
    let release = c.release_hooks.release_of(store, namespace, kind, name)?;
    release_layer(s, namespace, &release)
}

/// The Helmfile layer that declares `release` in `namespace`, among the scenario's
/// `helmfiles` (default: the sample platform's).
pub fn release_layer(s: &Scenario, namespace: &str, release: &str) -> Option<String> {
    let root = match s.helmfiles.as_str() {
        "" => PathBuf::from(SAMPLE_HELMFILE),
        path => PathBuf::from(path),
    };
    layers::layer_of_release(&root, namespace, release)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn test_hooks_are_known_by_their_annotation() {
        let pod = |hook: &str| json!({"metadata": {"annotations": {"helm.sh/hook": hook}}});
        assert!(is_test_hook(&pod("test")));
        assert!(is_test_hook(&pod("pre-install, test-success")));
        assert!(!is_test_hook(&pod("post-install")));
        assert!(!is_test_hook(&json!({"metadata": {}})));
        assert!(is_hook(&pod("post-install")) && !is_hook(&json!({"metadata": {}})));
    }
}
