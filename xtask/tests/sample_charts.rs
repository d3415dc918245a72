//! The sample platform under `infra/` is something real tools accept: every chart of ours
//! passes the real `helm lint` and `helm template` with the values its releases use, the
//! nine layers are listed in order, and each layer is plain YAML with a gate release. What
//! it renders runs on a real cluster: every image is public and pinned, and every Helm
//! test hook (a gate check) retries until its target answers, within a deadline.
//!
//! Needs `helm` on PATH for the chart test: without it the test fails when `CI` is set
//! and prints "skipped: helm not found" otherwise.

#[path = "sample_charts/real_cluster.rs"]
mod real_cluster;
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use real_cluster::runs_on_a_real_cluster;
use serde_json::Value;
use support::{LAYERS, repo_root};

/// Charts the platform relies on by name (other issues read what they create).
const REQUIRED_CHARTS: [&str; 5] =
    ["namespaces", "helm-test-jobs", "postgres", "vault-bootstrap", "external-secrets-config"];

fn kubernetes_dir() -> PathBuf {
    repo_root().join("infra/kubernetes")
}

/// The layers that are Go templates (`<layer>.yaml.gotmpl`); the others are plain YAML.
const TEMPLATE_LAYERS: [&str; 1] = ["45-data-plane-ext"];

fn layer_file(layer: &str) -> PathBuf {
    let suffix = if TEMPLATE_LAYERS.contains(&layer) { "yaml.gotmpl" } else { "yaml" };
    kubernetes_dir().join("helmfiles").join(format!("{layer}.{suffix}"))
}

/// A template layer as helmfile renders it with every bundle on (the testbed's
/// renderer, as the fake helmfile reads it), its parts' top-level keys merged.
fn render_template_layer(path: &Path) -> serde_json::Map<String, Value> {
    let options = testbed::helmfile::state::StateOptions {
        state_values: serde_json::json!({ "bundles": ["observability"] }),
        ..testbed::helmfile::state::StateOptions::new("local")
    };
    let documents = testbed::helmfile::state::state_documents(path, &options)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let mut merged = serde_json::Map::new();
    for document in documents {
        if let Value::Object(map) = document {
            merged.extend(map);
        }
    }
    merged
}

/// A Helmfile release as the layer file declares it, with paths resolved.
#[derive(Debug)]
struct Release {
    layer: String,
    name: String,
    namespace: String,
    chart_dir: PathBuf,
    values: Vec<PathBuf>,
    gate: bool,
}

/// Parse a (possibly multi-document) YAML file with the engine's reader, one document at a
/// time. Lines of the other documents are blanked rather than cut so the parser's line
/// numbers still point into the file.
fn parse_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: cannot read: {e}", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    let mut starts = vec![0];
    starts.extend(
        lines.iter().enumerate().filter(|(_, line)| line.trim_end() == "---").map(|(i, _)| i + 1),
    );
    let mut documents = Vec::new();
    for (index, &start) in starts.iter().enumerate() {
        let end = starts.get(index + 1).map_or(lines.len(), |next| next - 1);
        let masked: Vec<&str> = lines
            .iter()
            .enumerate()
            .map(|(i, line)| if (start..end).contains(&i) { *line } else { "" })
            .collect();
        let document: Value = xtask::platform::parse_yaml(path, &masked.join("\n"))
            .unwrap_or_else(|e| panic!("{e:#}"));
        if !document.is_null() {
            documents.push(document);
        }
    }
    documents
}

/// The top-level keys of every document of a Helmfile, merged (Helmfile merges its parts).
fn parse_helmfile(path: &Path) -> serde_json::Map<String, Value> {
    let mut merged = serde_json::Map::new();
    for document in parse_documents(path) {
        let Value::Object(map) = document else {
            panic!("{}: expected a mapping at the top of every YAML document", path.display());
        };
        merged.extend(map);
    }
    merged
}

fn string_field<'a>(release: &'a Value, key: &str, file: &Path) -> &'a str {
    release
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{}: release {release} has no string `{key}`", file.display()))
}

fn read_layer(layer: &str) -> Vec<Release> {
    let file = layer_file(layer);
    let dir = file.parent().unwrap();
    let helmfile = match TEMPLATE_LAYERS.contains(&layer) {
        true => render_template_layer(&file),
        false => parse_helmfile(&file),
    };
    assert!(
        helmfile.get("environments").and_then(|envs| envs.get("local")).is_some(),
        "{}: expected `environments: {{local: {{}}}}` so the layer runs standalone with -e local",
        file.display()
    );
    let releases = helmfile
        .get("releases")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{}: expected a `releases:` list", file.display()));
    assert!(!releases.is_empty(), "{}: `releases:` is empty", file.display());
    releases
        .iter()
        .map(|release| {
            let values = release
                .get("values")
                .and_then(Value::as_array)
                .map(|values| {
                    values
                        .iter()
                        .map(|v| {
                            dir.join(v.as_str().unwrap_or_else(|| {
                                panic!("{}: values entries must be file paths", file.display())
                            }))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let gate = release.pointer("/labels/gate").and_then(Value::as_str) == Some("true");
            Release {
                layer: layer.to_string(),
                name: string_field(release, "name", &file).to_string(),
                namespace: string_field(release, "namespace", &file).to_string(),
                chart_dir: dir.join(string_field(release, "chart", &file)),
                values,
                gate,
            }
        })
        .collect()
}

fn all_releases() -> Vec<Release> {
    LAYERS.iter().flat_map(|layer| read_layer(layer)).collect()
}

fn chart_name(dir: &Path) -> String {
    dir.file_name().unwrap().to_string_lossy().into_owned()
}

/// Chart directories (those with a Chart.yaml) under infra/kubernetes/charts.
fn chart_dirs() -> Vec<PathBuf> {
    let charts = kubernetes_dir().join("charts");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&charts)
        .unwrap_or_else(|e| panic!("{}: cannot list: {e}", charts.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("Chart.yaml").is_file())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn helmfile_lists_the_nine_layers_in_order() {
    let path = kubernetes_dir().join("helmfile.yaml");
    let helmfile = parse_helmfile(&path);
    assert!(
        helmfile.get("environments").and_then(|envs| envs.get("local")).is_some(),
        "{}: expected environment `local`",
        path.display()
    );
    let listed: Vec<String> = helmfile
        .get("helmfiles")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{}: expected a `helmfiles:` list", path.display()))
        .iter()
        .map(|entry| {
            let path = entry.as_str().or_else(|| entry.get("path").and_then(Value::as_str));
            path.unwrap_or_else(|| panic!("helmfiles entry {entry} has no path")).to_string()
        })
        .collect();
    let expected: Vec<String> = LAYERS
        .iter()
        .map(|layer| {
            let file = layer_file(layer);
            format!("helmfiles/{}", file.file_name().unwrap().to_string_lossy())
        })
        .collect();
    assert_eq!(listed, expected, "{}: layers missing or out of order", path.display());
}

#[test]
fn every_layer_is_plain_yaml_or_a_gotmpl_template_with_a_gate_release() {
    for layer in LAYERS {
        let file = layer_file(layer);
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{}: cannot read: {e}", file.display()));
        // helmfile 1.x renders only `*.gotmpl` files: a `{{` elsewhere would be literal
        // text there and a template on 0.x.
        assert_eq!(
            text.contains("{{"),
            TEMPLATE_LAYERS.contains(&layer),
            "{}: Go template actions belong in the `.gotmpl` layers only",
            file.display()
        );
        let releases = read_layer(layer);
        let gates: Vec<&Release> = releases.iter().filter(|release| release.gate).collect();
        assert!(!gates.is_empty(), "{}: no release labelled gate: \"true\"", file.display());
        for gate in gates {
            assert!(
                gate.name.ends_with("-smoke"),
                "{}: gate release `{}` should be named <something>-smoke",
                file.display(),
                gate.name
            );
            assert_eq!(
                chart_name(&gate.chart_dir),
                "helm-test-jobs",
                "{}: gate release `{}` should use ../charts/helm-test-jobs",
                file.display(),
                gate.name
            );
        }
    }
}

#[test]
fn every_release_points_at_a_chart_and_values_that_exist() {
    let releases = all_releases();
    let mut names = BTreeMap::new();
    for release in &releases {
        let file = layer_file(&release.layer);
        assert!(
            release.chart_dir.join("Chart.yaml").is_file(),
            "{}: release `{}`: chart {} has no Chart.yaml",
            file.display(),
            release.name,
            release.chart_dir.display()
        );
        for values in &release.values {
            assert!(
                values.is_file(),
                "{}: release `{}`: values file {} does not exist",
                file.display(),
                release.name,
                values.display()
            );
        }
        let key = (release.namespace.clone(), release.name.clone());
        if let Some(other) = names.insert(key, release.layer.clone()) {
            panic!(
                "release {}/{} is declared in both {other} and {}",
                release.namespace, release.name, release.layer
            );
        }
    }
    let charts: Vec<String> = chart_dirs().iter().map(|dir| chart_name(dir)).collect();
    for required in REQUIRED_CHARTS {
        assert!(charts.iter().any(|c| c == required), "chart `{required}` is missing: {charts:?}");
    }
}

#[test]
fn sample_k3d_config_and_charts_lock_are_what_the_bootstrap_expects() {
    let path = repo_root().join("infra/docker/local/k3d.yaml");
    let config = parse_helmfile(&path);
    let field = |pointer: &str| Value::Object(config.clone()).pointer(pointer).cloned();
    assert_eq!(field("/apiVersion"), Some(Value::from("k3d.io/v1alpha5")), "{}", path.display());
    assert_eq!(field("/kind"), Some(Value::from("Simple")), "{}", path.display());
    assert_eq!(field("/metadata/name"), Some(Value::from("ameide")), "{}", path.display());
    assert_eq!(
        field("/registries/create/name"),
        Some(Value::from("k3d-dev-reg")),
        "{}",
        path.display()
    );

    let lock_path = kubernetes_dir().join("charts/third_party/charts.lock.yaml");
    assert!(lock_path.is_file(), "{} is missing", lock_path.display());
    let lock = xtask::platform::charts_lock::ChartsLock::read(&lock_path)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(lock.charts.is_empty(), "the sample vendors no third-party chart yet");
}

/// Runs `helm` with `args`; Err carries what a user needs to see (never the rendered
/// manifests, which hold fixture secrets).
fn helm(args: &[&str], show_stdout: bool) -> Result<String, String> {
    let output = Command::new("helm")
        .args(args)
        .output()
        .map_err(|e| format!("$ helm {}: cannot run: {e}", args.join(" ")))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let shown = if show_stdout { format!("{stdout}{stderr}") } else { stderr.into_owned() };
    Err(format!("$ helm {}\n{}\n{}", args.join(" "), output.status, shown.trim_end()))
}

fn helm_available() -> bool {
    match Command::new("helm").arg("version").arg("--short").output() {
        Ok(output) if output.status.success() => true,
        _ if std::env::var_os("CI").is_some() => {
            panic!("helm not found on PATH, and CI is set: install helm (see .ci/run)")
        }
        _ => {
            println!("skipped: helm not found");
            false
        }
    }
}

#[test]
fn every_chart_passes_helm_lint_and_template() {
    if !helm_available() {
        return;
    }
    let releases = all_releases();
    let mut failures = Vec::new();
    let mut checked = 0;
    for dir in chart_dirs() {
        let chart = dir.to_string_lossy().into_owned();
        if let Err(failure) = helm(&["lint", &chart], true) {
            failures.push(failure);
        }
        let users: Vec<&Release> =
            releases.iter().filter(|release| same_dir(&release.chart_dir, &dir)).collect();
        if users.is_empty() {
            // A chart no release uses must still render with its defaults.
            if let Err(failure) = helm(&["template", &chart_name(&dir), &chart], false) {
                failures.push(failure);
            }
        }
        for release in users {
            let mut args =
                vec!["template", &release.name, &chart, "--namespace", &release.namespace];
            let values: Vec<String> =
                release.values.iter().map(|v| v.to_string_lossy().into_owned()).collect();
            for v in &values {
                args.extend(["--values", v.as_str()]);
            }
            let mut lint = vec!["lint", chart.as_str()];
            for v in &values {
                lint.extend(["--values", v.as_str()]);
            }
            if let Err(failure) = helm(&lint, true) {
                failures.push(format!("release `{}`: {failure}", release.name));
            }
            match helm(&args, false) {
                Err(failure) => failures.push(format!("release `{}`: {failure}", release.name)),
                Ok(rendered) if release.gate && !rendered.contains("\"helm.sh/hook\": test") => {
                    failures.push(format!(
                        "gate release `{}` ({}) renders no Helm test hook: give it at least one check",
                        release.name, release.layer
                    ));
                }
                Ok(rendered) => {
                    let what = format!("release `{}` ({})", release.name, release.layer);
                    failures.extend(runs_on_a_real_cluster(&what, &rendered));
                }
            }
            checked += 1;
        }
    }
    assert!(failures.is_empty(), "helm rejected the sample platform:\n\n{}", failures.join("\n\n"));
    assert_eq!(checked, releases.len(), "every release's chart was rendered");
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[test]
fn the_template_layer_installs_the_observability_bundle_only_when_it_is_on() {
    let file = layer_file("45-data-plane-ext");
    let installed = |bundles: Value| -> Vec<(String, bool)> {
        let options = testbed::helmfile::state::StateOptions {
            state_values: serde_json::json!({ "bundles": bundles }),
            ..testbed::helmfile::state::StateOptions::new("local")
        };
        let releases = testbed::helmfile::state::load_state(&file, &options)
            .unwrap_or_else(|e| panic!("{e:#}"));
        releases.into_iter().map(|r| (r.name, r.installed)).collect()
    };
    let pair = |name: &str, on: bool| (name.to_owned(), on);
    assert_eq!(
        installed(serde_json::json!([])),
        [
            pair("object-storage", true),
            pair("data-plane-ext-smoke", true),
            pair("metrics", false),
            pair("metrics-smoke", false)
        ]
    );
    let on = installed(serde_json::json!(["observability"]));
    assert!(on.iter().all(|(_, installed)| *installed), "{on:?}");
}
