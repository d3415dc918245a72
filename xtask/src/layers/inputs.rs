//! What decides a layer's sync, read before anything changes: the digest of its
//! inputs, and their validation (every values file YAML, every layer with releases,
//! every local chart path present), so bad input stops the run with exit 2.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Result, bad_input};
use crate::platform::helmfile::{Layer, LayerReleases, Platform, Values};

// ---- digest ------------------------------------------------------------------------

/// sha256 over everything that decides what a layer's sync does: the layer file, the
/// values files its releases name, the files of its local charts (dirs or archives),
/// the environment's name and values, and the bundles that are on which the layer holds
/// or reads. Paths are taken relative to `root` so the same checkout hashes the same
/// wherever it lives. A values file that does not exist is bad input (helmfile would
/// refuse it too).
pub fn digest(
    root: &Path,
    platform: &Platform,
    layer: &Layer,
    environment: &str,
    bundles: &BTreeSet<String>,
) -> Result<String> {
    let mut files: BTreeMap<PathBuf, &'static str> = BTreeMap::new();
    files.insert(layer.file.clone(), "layer");
    let layer_dir = layer.file.parent().unwrap_or(Path::new("."));
    let mut inline = Vec::new();
    for release in layer.releases.as_slice() {
        for values in &release.values {
            match values {
                Values::Path(path) => {
                    let file = layer_dir.join(path);
                    if !file.is_file() {
                        return Err(bad_input(format!(
                            "{}: release `{}`: values file `{path}` does not exist ({})",
                            layer.file.display(),
                            release.name,
                            file.display()
                        )));
                    }
                    files.insert(file, "values");
                }
                Values::Inline(value) => inline.push(value.to_string()),
            }
        }
        if let Some(chart) = layer.local_chart(release) {
            if chart.is_dir() {
                for file in crate::fsutil::files_under(&chart)? {
                    files.insert(file, "chart");
                }
            } else if chart.is_file() {
                files.insert(chart, "chart");
            }
        }
    }
    let root_dir = platform.file.parent().unwrap_or(Path::new("."));
    if let Some(env) = platform.environments.get(environment) {
        for values in &env.values {
            match values {
                Values::Path(path) => {
                    let file = root_dir.join(path);
                    if file.is_file() {
                        files.insert(file, "environment");
                    }
                }
                Values::Inline(value) => inline.push(value.to_string()),
            }
        }
    }
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    field(format!("environment={environment}").as_bytes());
    let layer_text = std::fs::read_to_string(&layer.file).unwrap_or_default();
    field(crate::platform::bundles::digest_part(layer, &layer_text, bundles).as_bytes());
    for text in &inline {
        field(text.as_bytes());
    }
    for (file, kind) in &files {
        // Two spellings of one chart path hash alike.
        let shown = crate::fsutil::normalize(file.strip_prefix(root).unwrap_or(file));
        let bytes = std::fs::read(file)
            .map_err(|e| bad_input(format!("{}: cannot read: {e}", file.display())))?;
        field(format!("{kind}:{}", shown.display()).as_bytes());
        field(&bytes);
    }
    let sum = hasher.finalize();
    Ok(format!("sha256:{}", crate::digest::hex(&sum)))
}

/// Every input a sync would read, checked before anything changes: each layer lists
/// releases (helmfile exits 3 on a file with none), each values file is a file of
/// UTF-8 YAML, each local chart path exists. Bad input names the file and line.
pub fn validate_inputs(platform: &Platform) -> Result<()> {
    for layer in &platform.layers {
        let file = layer.file.display();
        if let LayerReleases::Parsed { releases } | LayerReleases::Listed { releases } =
            &layer.releases
            && releases.is_empty()
        {
            return Err(bad_input(format!(
                "{file}: no releases: expected a `releases:` list with at least one release (helmfile refuses a file with none)"
            )));
        }
        let layer_dir = layer.file.parent().unwrap_or(Path::new("."));
        for release in layer.releases.as_slice() {
            let name = &release.name;
            for values in &release.values {
                let Values::Path(path) = values else { continue };
                let values_file = layer_dir.join(path);
                check_values_file(&values_file).map_err(|why| {
                    bad_input(format!("{file}: release `{name}`: values file `{path}`: {why}"))
                })?;
            }
            if let Some(chart) = layer.local_chart(release)
                && !chart.exists()
            {
                return Err(bad_input(format!(
                    "{file}: release `{name}`: local chart path `{}` does not exist ({}); check the path (a chart from a repository is named `repo/chart` and vendored with `cargo xtask vendor add`)",
                    release.chart,
                    chart.display()
                )));
            }
        }
    }
    Ok(())
}

/// Why a values file is unusable, or `Ok` when helm could read it.
fn check_values_file(path: &Path) -> std::result::Result<(), String> {
    if path.is_dir() {
        return Err(format!("{} is a folder, expected a YAML file", path.display()));
    }
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("does not exist ({})", path.display()),
        _ => format!("cannot read {}: {e}", path.display()),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        format!("{}:{line}: not UTF-8 text (byte {at}); expected a UTF-8 YAML file", path.display())
    })?;
    crate::platform::parse_yaml::<serde_json::Value>(path, &text)
        .map(drop)
        .map_err(|e| format!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let w = |p: &str, text: &str| {
                let path = dir.path().join(p);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, text).unwrap();
            };
            w(
                "k/helmfile.yaml",
                "environments:\n  local: {}\nhelmfiles:\n  - helmfiles/10-a.yaml\n  - helmfiles/20-b.yaml\n",
            );
            w(
                "k/helmfiles/10-a.yaml",
                "releases:\n  - name: a\n    namespace: n\n    chart: ../charts/c\n    values: [../values/a.yaml]\n",
            );
            w(
                "k/helmfiles/20-b.yaml",
                "releases:\n  - name: b\n    chart: ../charts/d\n    values: [../values/b.yaml]\n",
            );
            w("k/charts/c/Chart.yaml", "name: c\n");
            w("k/charts/c/templates/x.yaml", "kind: ConfigMap\n");
            w("k/charts/d/Chart.yaml", "name: d\n");
            w("k/values/a.yaml", "x: 1\n");
            w("k/values/b.yaml", "y: 1\n");
            Fixture { dir }
        }

        fn digests(&self, env: &str) -> Vec<String> {
            let platform = Platform::read(&self.dir.path().join("k/helmfile.yaml")).unwrap();
            platform
                .layers
                .iter()
                .map(|l| digest(self.dir.path(), &platform, l, env, &BTreeSet::new()).unwrap())
                .collect()
        }

        fn write(&self, p: &str, text: &str) {
            std::fs::write(self.dir.path().join(p), text).unwrap();
        }
    }

    #[test]
    fn digest_follows_values_chart_files_and_environment_only() {
        let f = Fixture::new();
        let base = f.digests("local");
        assert!(base[0].starts_with("sha256:") && base[0] != base[1]);
        assert_eq!(f.digests("local"), base, "stable");

        f.write("k/values/a.yaml", "x: 2\n");
        let after_values = f.digests("local");
        assert_ne!(after_values[0], base[0]);
        assert_eq!(after_values[1], base[1], "another layer's values do not touch this one");

        f.write("k/charts/d/templates-new.yaml", "kind: Secret\n");
        let after_chart = f.digests("local");
        assert_eq!(after_chart[0], after_values[0]);
        assert_ne!(after_chart[1], after_values[1], "a new file in a chart dir counts");

        assert_ne!(f.digests("staging")[0], after_chart[0], "the environment counts");

        // A copy of the checkout elsewhere hashes the same: paths are root-relative.
        let copy = Fixture::new();
        copy.write("k/values/a.yaml", "x: 2\n");
        copy.write("k/charts/d/templates-new.yaml", "kind: Secret\n");
        assert_eq!(copy.digests("local"), after_chart);
    }

    #[test]
    fn missing_values_file_is_bad_input_naming_layer_and_release() {
        let f = Fixture::new();
        std::fs::remove_file(f.dir.path().join("k/values/b.yaml")).unwrap();
        let platform = Platform::read(&f.dir.path().join("k/helmfile.yaml")).unwrap();
        let err = digest(f.dir.path(), &platform, &platform.layers[1], "local", &BTreeSet::new())
            .unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::BadInput);
        assert!(
            err.to_string()
                .contains("20-b.yaml: release `b`: values file `../values/b.yaml` does not exist"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_files_and_chart_paths_are_named() {
        let f = Fixture::new();
        let read = |f: &Fixture| {
            let platform = Platform::read(&f.dir.path().join("k/helmfile.yaml")).unwrap();
            validate_inputs(&platform)
        };
        assert!(read(&f).is_ok());
        f.write("k/values/a.yaml", "x: [1,\n");
        let err = read(&f).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::BadInput);
        assert!(
            err.to_string().contains("10-a.yaml: release `a`: values file `../values/a.yaml`"),
            "{err}"
        );
        assert!(err.to_string().contains("a.yaml:"), "the values file and line: {err}");
        std::fs::write(f.dir.path().join("k/values/a.yaml"), b"x: \xff\n").unwrap();
        assert!(read(&f).unwrap_err().to_string().contains("not UTF-8"));
        std::fs::remove_file(f.dir.path().join("k/values/a.yaml")).unwrap();
        std::fs::create_dir(f.dir.path().join("k/values/a.yaml")).unwrap();
        assert!(read(&f).unwrap_err().to_string().contains("is a folder"));
    }

    #[test]
    fn empty_layers_and_missing_local_charts_are_bad_input() {
        let f = Fixture::new();
        let read = |f: &Fixture| {
            let platform = Platform::read(&f.dir.path().join("k/helmfile.yaml")).unwrap();
            validate_inputs(&platform)
        };
        f.write("k/helmfiles/20-b.yaml", "releases:\n  - name: b\n    chart: ../charts/typo\n");
        let err = read(&f).unwrap_err();
        assert!(
            err.to_string().contains("local chart path `../charts/typo` does not exist"),
            "{err}"
        );
        f.write("k/helmfiles/20-b.yaml", "releases: []\n");
        assert!(read(&f).unwrap_err().to_string().contains("20-b.yaml: no releases"));
    }
}
