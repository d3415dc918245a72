//! Which Helmfile layer a Helm test hook belongs to, so per-layer scenarios
//! (`gate-fail=24-auth`, `gate-leak=40-data-plane`) reach test Pods whoever created
//! them (real helm, the fake helm, kubectl), from what the cluster and the repository
//! hold, not from a label a fake tool writes:
//!
//! 1. the hook's release: the Helm release record (Secret `helm.sh/release.v1`, or a
//!    ConfigMap with label `owner=helm` under `HELM_DRIVER=configmap`) in the Pod's
//!    namespace whose `hooks[]` names this object (kind and name);
//! 2. the release's layer: the Helmfile layer file that declares a release of that
//!    name (and namespace), found from the scenario's `helmfiles` (a root helmfile with
//!    `helmfiles:` entries, one layer file, or a directory of them; default the sample
//!    platform's `infra/kubernetes/helmfile.yaml`). Layer = the file name without
//!    `.gotmpl` and `.yaml`. Go template lines of a `.gotmpl` layer are skipped: only
//!    release names and namespaces are read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::meta;
use crate::apiserver::store::Store;
use crate::release::{self, Release, SECRET_TYPE};

/// The sample platform's root helmfile, in the repository this testbed was built from.
pub const SAMPLE_HELMFILE: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/kubernetes/helmfile.yaml");

/// A release record's release name and its hooks' (kind, name).
type RecordHooks = (String, Vec<(String, String)>);

/// Decoded release records, by `uid@resourceVersion`.
#[derive(Default)]
pub(super) struct ReleaseHooks {
    cache: HashMap<String, Option<RecordHooks>>,
}

impl ReleaseHooks {
    /// The release in `namespace` one of whose hooks is the `kind` object `name`.
    pub(super) fn release_of(
        &mut self,
        store: &Store,
        namespace: &str,
        kind: &str,
        name: &str,
    ) -> Option<String> {
        if self.cache.len() > 1000 {
            self.cache.clear(); // records of old revisions; the live ones decode again
        }
        let secrets =
            store.objects_of("", "secrets").into_iter().filter(|(_, s)| s["type"] == SECRET_TYPE);
        let config_maps = store
            .objects_of("", "configmaps")
            .into_iter()
            .filter(|(_, c)| c["metadata"]["labels"]["owner"] == "helm");
        for (_, record) in secrets.chain(config_maps) {
            if meta(&record, "namespace") != namespace {
                continue;
            }
            let key = format!("{}@{}", meta(&record, "uid"), meta(&record, "resourceVersion"));
            let entry = self.cache.entry(key).or_insert_with(|| {
                decode_record(&record)
                    .map(|r| (r.name, r.hooks.into_iter().map(|h| (h.kind, h.name)).collect()))
            });
            if let Some((release, hooks)) = entry
                && hooks.iter().any(|(k, n)| k == kind && n == name)
            {
                return Some(release.clone());
            }
        }
        None
    }
}

/// A release record as the Secret or ConfigMap driver stores it.
fn decode_record(record: &Value) -> Option<Release> {
    if record["kind"] == "Secret" || record["type"] == SECRET_TYPE {
        return Release::from_secret(record).ok();
    }
    release::decode(record["data"]["release"].as_str()?.as_bytes()).ok()
}

/// The layer (file stem) that declares release `name` in `namespace`, reading the
/// helmfiles under `root` (see the module docs).
pub(super) fn layer_of_release(root: &Path, namespace: &str, name: &str) -> Option<String> {
    let mut files = Vec::new();
    collect_files(root, &mut files, 0);
    files.into_iter().find_map(|file| {
        let text = std::fs::read_to_string(&file).ok()?;
        let declares =
            releases(&text).iter().any(|(n, ns)| n == name && (ns.is_empty() || ns == namespace));
        declares.then(|| layer_name(&file))
    })
}

fn layer_name(file: &Path) -> String {
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let name = name.strip_suffix(".gotmpl").unwrap_or(name);
    let name = name.strip_suffix(".yaml").or_else(|| name.strip_suffix(".yml")).unwrap_or(name);
    name.to_owned()
}

/// The helmfile layer files under `path`: the file itself and what its `helmfiles:`
/// entries name (globs in the file name allowed), or every layer file of a directory.
fn collect_files(path: &Path, out: &mut Vec<PathBuf>, depth: u32) {
    if depth > 4 {
        return;
    }
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && is_helmfile(p))
            .collect();
        entries.sort();
        for e in entries {
            collect_files(&e, out, depth + 1);
        }
        return;
    }
    let Ok(text) = std::fs::read_to_string(path) else { return };
    out.push(path.to_path_buf());
    let base = path.parent().unwrap_or(Path::new("."));
    for doc in documents(&text) {
        for entry in doc["helmfiles"].as_array().into_iter().flatten() {
            let Some(rel) = entry.as_str().or_else(|| entry["path"].as_str()) else { continue };
            for file in expand(&base.join(rel)) {
                collect_files(&file, out, depth + 1);
            }
        }
    }
}

fn is_helmfile(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    [".yaml", ".yml", ".yaml.gotmpl", ".gotmpl"].iter().any(|s| name.ends_with(s))
}

/// A path whose file name may hold `*` (helmfile takes globs): the matching files.
fn expand(path: &Path) -> Vec<PathBuf> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !name.contains('*') {
        return vec![path.to_path_buf()];
    }
    let (prefix, suffix) = name.split_once('*').unwrap_or((name, ""));
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            n.len() >= prefix.len() + suffix.len() && n.starts_with(prefix) && n.ends_with(suffix)
        })
        .collect();
    found.sort();
    found
}

/// The YAML documents of a helmfile, Go template lines dropped and inline actions
/// blanked (only names and namespaces are read).
fn documents(text: &str) -> Vec<Value> {
    let plain: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("{{"))
        .map(|l| {
            let mut line = l.to_owned();
            while let (Some(a), Some(b)) = (line.find("{{"), line.find("}}")) {
                if b < a {
                    break;
                }
                line.replace_range(a..b + 2, "x");
            }
            line + "\n"
        })
        .collect();
    plain
        .split("\n---")
        .filter_map(|doc| serde_saphyr::from_str::<Value>(doc).ok())
        .filter(Value::is_object)
        .collect()
}

/// `(name, namespace)` of every release a helmfile declares (namespace "" when unset).
fn releases(text: &str) -> Vec<(String, String)> {
    documents(text)
        .iter()
        .flat_map(|d| d["releases"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| {
            let name = r["name"].as_str()?.to_owned();
            Some((name, r["namespace"].as_str().unwrap_or("").to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_layers_name_their_gate_releases() {
        let root = Path::new(SAMPLE_HELMFILE);
        assert_eq!(layer_of_release(root, "ameide", "auth-smoke").as_deref(), Some("24-auth"));
        assert_eq!(
            layer_of_release(root, "ameide", "data-plane-smoke").as_deref(),
            Some("40-data-plane")
        );
        assert_eq!(layer_of_release(root, "other", "auth-smoke"), None);
        assert_eq!(layer_of_release(root, "ameide", "nope"), None);
    }

    #[test]
    fn templated_layers_and_directories_are_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("30-demo.yaml.gotmpl"),
            "environments:\n  local: {}\n---\nreleases:\n{{- if has \"x\" .Values.bundles }}\n  - name: demo\n    \
             namespace: ameide\n    installed: {{ .Values.on }}\n{{- end }}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("root.yaml"), "helmfiles:\n  - path: 3*.gotmpl\n").unwrap();
        let layer = layer_of_release(&dir.path().join("root.yaml"), "ameide", "demo");
        assert_eq!(layer.as_deref(), Some("30-demo"));
        assert_eq!(layer_of_release(dir.path(), "ameide", "demo").as_deref(), Some("30-demo"));
    }
}
