//! Optional bundles: a release labelled `bundle: <name>` is installed only when its
//! bundle is on (the `bundles` setting, `--bundle`). Pure: which bundles exist, which
//! releases are off, what a layer's sync selects and what its digest covers.

use std::collections::BTreeSet;

use super::helmfile::{Layer, Platform, Release};
use crate::error::{Result, bad_input};

/// The label that puts a release in an optional bundle.
pub const BUNDLE_LABEL: &str = "bundle";

impl Release {
    /// The optional bundle the release belongs to, if any.
    pub fn bundle(&self) -> Option<&str> {
        self.labels.get(BUNDLE_LABEL).map(String::as_str).filter(|b| !b.is_empty())
    }
}

/// Every bundle some release of the platform belongs to.
pub fn available(platform: &Platform) -> BTreeSet<String> {
    let releases = platform.layers.iter().flat_map(|l| l.releases.as_slice());
    releases.filter_map(Release::bundle).map(str::to_owned).collect()
}

/// A bundle turned on that no release belongs to is a typo: bad input.
pub fn check_enabled(platform: &Platform, enabled: &BTreeSet<String>) -> Result<()> {
    let known = available(platform);
    match enabled.iter().find(|b| !known.contains(*b)) {
        None => Ok(()),
        Some(unknown) => Err(bad_input(format!(
            "bundle `{unknown}` (--bundle or the `bundles` setting): no release in {} is labelled `{BUNDLE_LABEL}: {unknown}`; expected one of: {}",
            platform.file.display(),
            if known.is_empty() {
                "(none: no release has a bundle label)".into()
            } else {
                known.into_iter().collect::<Vec<_>>().join(", ")
            }
        ))),
    }
}

/// Releases of bundles that are off are not installed (so no gate or status check
/// looks for them).
pub fn switch_off(platform: &mut Platform, enabled: &BTreeSet<String>) {
    for layer in &mut platform.layers {
        if let super::helmfile::LayerReleases::Parsed { releases }
        | super::helmfile::LayerReleases::Listed { releases } = &mut layer.releases
        {
            for release in releases {
                if release.bundle().is_some_and(|b| !enabled.contains(b)) {
                    release.installed = false;
                }
            }
        }
    }
}

/// The bundles of `layer` that are off.
pub fn off_in(layer: &Layer, enabled: &BTreeSet<String>) -> BTreeSet<String> {
    let bundles = layer.releases.as_slice().iter().filter_map(Release::bundle);
    bundles.filter(|b| !enabled.contains(*b)).map(str::to_owned).collect()
}

/// The releases of `layer` whose bundle is off.
pub fn off_releases<'l>(layer: &'l Layer, enabled: &BTreeSet<String>) -> Vec<&'l Release> {
    let off = |r: &&Release| r.bundle().is_some_and(|b| !enabled.contains(b));
    layer.releases.as_slice().iter().filter(off).collect()
}

/// helmfile's selector leaving out the releases of the off bundles (`bundle!=a,bundle!=b`:
/// a release without the label matches), or `None` when the layer holds none.
pub fn sync_selector(off: &BTreeSet<String>) -> Option<String> {
    let terms: Vec<String> = off.iter().map(|b| format!("{BUNDLE_LABEL}!={b}")).collect();
    (!terms.is_empty()).then(|| terms.join(","))
}

/// Whether every release of the layer is in a bundle that is off (nothing to sync).
pub fn all_off(layer: &Layer, enabled: &BTreeSet<String>) -> bool {
    let releases = layer.releases.as_slice();
    !releases.is_empty() && off_releases(layer, enabled).len() == releases.len()
}

/// What of the enabled set a layer's digest covers: the bundles it holds that are on,
/// and all of them when its file reads the state value `bundles` (a seeding job that
/// seeds only what is on). Turning a bundle on re-syncs only these layers.
pub fn digest_part(layer: &Layer, layer_text: &str, enabled: &BTreeSet<String>) -> String {
    let reads_state_value = layer_text.contains(".Values.bundles")
        || layer_text.contains(".StateValues.bundles")
        || layer_text.contains("\"bundles\"");
    let held: BTreeSet<&str> =
        layer.releases.as_slice().iter().filter_map(Release::bundle).collect();
    let covered: Vec<&str> = enabled
        .iter()
        .map(String::as_str)
        .filter(|b| reads_state_value || held.contains(b))
        .collect();
    format!("bundles={}", covered.join(","))
}

/// The state values file helmfile reads (`--state-values-file`): `bundles: [..]`.
pub fn state_values(enabled: &BTreeSet<String>) -> String {
    let list: Vec<String> = enabled.iter().map(|b| format!("\"{b}\"")).collect();
    format!("bundles: [{}]\n", list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn platform(dir: &Path) -> Platform {
        let w = |p: &str, t: &str| std::fs::write(dir.join(p), t).unwrap();
        w(
            "helmfile.yaml",
            "environments:\n  local: {}\n---\nhelmfiles:\n  - 10-a.yaml\n  - 20-b.yaml\n",
        );
        w(
            "10-a.yaml",
            "releases:\n  - name: app\n    chart: ./c\n  - name: grafana\n    chart: ./c\n    labels:\n      bundle: observability\n  - name: grafana-smoke\n    chart: ./c\n    labels:\n      bundle: observability\n      gate: \"true\"\n",
        );
        w("20-b.yaml", "releases:\n  - name: seed\n    chart: ./c\n");
        Platform::read(&dir.join("helmfile.yaml")).unwrap()
    }

    fn on(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn off_bundles_are_not_installed_and_their_gates_do_not_run() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = platform(dir.path());
        assert_eq!(available(&p), on(&["observability"]));
        switch_off(&mut p, &on(&[]));
        let installed: Vec<&str> = p.layers[0]
            .releases
            .as_slice()
            .iter()
            .filter(|r| r.installed)
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(installed, ["app"]);
        assert_eq!(p.layers[0].gates().filter(|r| r.installed).count(), 0);
        let mut p = platform(dir.path());
        switch_off(&mut p, &on(&["observability"]));
        assert_eq!(p.layers[0].gates().filter(|r| r.installed).count(), 1);
    }

    #[test]
    fn a_layer_syncs_without_its_off_bundles() {
        let dir = tempfile::tempdir().unwrap();
        let p = platform(dir.path());
        let off = off_in(&p.layers[0], &on(&[]));
        assert_eq!(sync_selector(&off).as_deref(), Some("bundle!=observability"));
        assert_eq!(sync_selector(&off_in(&p.layers[0], &on(&["observability"]))), None);
        assert_eq!(sync_selector(&off_in(&p.layers[1], &on(&[]))), None);
        let names: Vec<&str> =
            off_releases(&p.layers[0], &on(&[])).iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["grafana", "grafana-smoke"]);
        assert!(!all_off(&p.layers[0], &on(&[])));
    }

    #[test]
    fn turning_a_bundle_on_changes_only_the_digests_of_layers_holding_or_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = platform(dir.path());
        let (a, b) = (&p.layers[0], &p.layers[1]);
        assert_ne!(digest_part(a, "", &on(&[])), digest_part(a, "", &on(&["observability"])));
        assert_eq!(digest_part(b, "", &on(&[])), digest_part(b, "", &on(&["observability"])));
        let reads = "seed: {{ .Values.bundles | toJson }}";
        assert_ne!(digest_part(b, reads, &on(&[])), digest_part(b, reads, &on(&["observability"])));
    }

    #[test]
    fn unknown_bundles_are_bad_input_listing_the_known_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = platform(dir.path());
        assert!(check_enabled(&p, &on(&["observability"])).is_ok());
        let err = check_enabled(&p, &on(&["observabilty"])).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::BadInput);
        assert!(err.to_string().contains("bundle `observabilty`"), "{err}");
        assert!(err.to_string().contains("expected one of: observability"), "{err}");
        assert_eq!(state_values(&on(&["a", "b"])), "bundles: [\"a\", \"b\"]\n");
        assert_eq!(state_values(&on(&[])), "bundles: []\n");
    }
}
