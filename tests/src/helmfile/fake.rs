//! The fake `helmfile`: `[global flags] -f LAYER -e ENV sync|apply|list|status|destroy|template`.
//!
//! Reads the layer file (multi-document YAML: `environments:`, `releases:`, nested
//! `helmfiles:`), renders each release with the real helm (`helm template`, chart and
//! values paths relative to the layer file), stores the rendered objects in the fake
//! API and writes the release Secret as Helm does (revision n+1, the previous deployed
//! one `superseded`). Test hooks go into the release's `hooks` (run later by `helm
//! test`). Stand-ins for the cluster's controllers: Jobs succeed (with a completed Pod
//! and its log), a CronJob gets one Job `<cronjob>-<n>` owned by it, Deployments and
//! StatefulSets report ready replicas, ExternalSecrets are Ready and their target Secret
//! exists. Scenarios: `sync_fail` (the layer's first release fails like a failed helm
//! upgrade and is left `failed`), `vault_fail` (the Job of CronJob
//! `foundation-vault-bootstrap` fails), `secret_missing_key` (the first ExternalSecret
//! is not Ready: `SecretSyncedError` naming its missing remote key).
//!
//! Output follows helmfile 1.x (`Upgrading release=...`, helm's install text, the
//! `UPDATED RELEASES:` table); `list --output json` prints
//! `[{name, namespace, enabled, installed, labels: "k:v,...", chart, version}]`; `build`
//! prints the rendered state (`---`, `#  Source: <file>`, then `filepath` and `releases`
//! as written in the file, in JSON's flow style, which is YAML). Every verb, `list` and
//! `build` too, exits 3 with `no releases found` when nothing matches (`pkg/app`
//! `ForEachState`). The claimed version (scenario `helmfile-version`) decides which
//! flags exist and which files are Go templates (`crate::helmfile::version`); templates
//! are rendered with the `--state-values-file` values (`crate::helmfile::template`).
//! Releases run in file order (helmfile orders by `needs`; the layers list releases
//! after their needs) and `apply` is `sync` (no diff).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::helm::fake as fake_helm;
use crate::helm::records;
pub use crate::helm::records::{ManifestDoc, split_manifest};
use crate::helmfile::flags::{Command, check_flags, helm_timeout, matches, parse_args};
use crate::helmfile::install::*;
use crate::helmfile::state::state_documents;
pub use crate::helmfile::state::{ReleaseSpec, StateOptions, load_releases, load_state};
use crate::helmfile::template::{merge, read_values};
use crate::helmfile::version::HelmfileVersion;
use crate::kube_api::Client;
use crate::scenario::Scenario;

pub use crate::apiserver::controllers::VAULT_BOOTSTRAP;

pub fn main(args: Vec<String>) -> i32 {
    let scenario = fake_helm::prelude("helmfile", &args);
    if let Some(code) = crate::real_tools::exec_if_real("helmfile", &args) {
        return code;
    }
    let version = HelmfileVersion::parse(&scenario.helmfile_version);
    // cobra's `--version` (helmfile cmd/root.go sets `Version`) and the `version` verb.
    if args.first().is_some_and(|a| a == "--version" || a == "version") {
        println!("helmfile version {}", version.text());
        return 0;
    }
    let result = parse_args(&args)
        .and_then(|cmd| check_flags(&cmd, version).map(|()| cmd))
        .and_then(|cmd| fake_helm::run_async(run(cmd, scenario, version)));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e:#}");
            1
        }
    }
}

async fn run(cmd: Command, scenario: Scenario, version: HelmfileVersion) -> Result<i32> {
    let file = cmd.file.clone().unwrap_or_else(|| PathBuf::from("helmfile.yaml"));
    let mut state_values = json!({});
    for path in &cmd.state_values_files {
        merge(&mut state_values, &read_values(path)?);
    }
    let options = StateOptions {
        environment: cmd.environment.clone(),
        state_values,
        version,
        v1_mode: std::env::var("HELMFILE_V1MODE").ok(),
    };
    let mut releases = load_state(&file, &options)?;
    let helm_timeout = cmd.sync_args.as_deref().map(helm_timeout).transpose()?.flatten();
    if !cmd.selectors.is_empty() {
        releases.retain(|r| cmd.selectors.iter().any(|sel| matches(sel, r)));
    }
    for r in &mut releases {
        r.wait |= cmd.wait;
        r.wait_for_jobs |= cmd.wait_for_jobs;
        if let Some(t) = cmd.timeout.or(helm_timeout) {
            r.timeout = t;
        }
    }
    if releases.is_empty() {
        // helmfile pkg/app/errors.go NoMatchingHelmfileError; cmd/root.go: exit 3.
        let selectors: Vec<String> = cmd
            .selectors
            .iter()
            .map(|s| {
                let terms = s
                    .iter()
                    .map(|t| format!("{}{}={}", t.key, if t.negative { "!" } else { "" }, t.value));
                terms.collect::<Vec<_>>().join(",")
            })
            .collect();
        eprintln!(
            "err: no releases found that matches specified selector({}) and environment({}), in any helmfile",
            selectors.join(", "),
            cmd.environment
        );
        return Ok(if cmd.allow_no_match { 0 } else { 3 });
    }
    match cmd.verb.as_str() {
        "list" => list(&releases, cmd.output.as_deref()),
        "status" => status(&releases, cmd.kube_context.as_deref()).await,
        "destroy" => destroy(&releases, cmd.kube_context.as_deref()).await,
        "template" => template(&releases),
        "build" => build(&file, &options),
        _ => sync(&file, &releases, &scenario, cmd.kube_context.as_deref()).await,
    }
}

/// helmfile `TemplateReleases` (pkg/state/state.go) and helmexec `TemplateRelease`:
/// each installed release in turn, `Templating release=..., chart=...` on stderr (the
/// logger), `helm template NAME CHART` (values in order) on stdout, test hooks and
/// other hooks included (no `--skip-tests` / `--no-hooks` here).
fn template(releases: &[ReleaseSpec]) -> Result<i32> {
    let helm = fake_helm::real_helm().context(
        "the testbed's helmfile renders charts with the real helm, and TESTBED_REAL_HELM is not set",
    )?;
    for r in releases.iter().filter(|r| r.installed) {
        eprintln!("Templating release={}, chart={}", r.name, r.chart);
        print!("{}", render(&helm, r)?);
    }
    Ok(0)
}

/// helmfile `PrintState`: the rendered state of the file, releases as written there.
fn build(file: &Path, options: &StateOptions) -> Result<i32> {
    let releases: Vec<Value> = state_documents(file, options)?
        .iter()
        .filter_map(|doc| doc["releases"].as_array())
        .flatten()
        .cloned()
        .collect();
    let source = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    println!("---\n#  Source: {}\n", source.display());
    println!("filepath: {}", serde_json::to_string(&name)?);
    println!("releases: {}", serde_json::to_string(&releases)?);
    Ok(0)
}

fn list(releases: &[ReleaseSpec], output: Option<&str>) -> Result<i32> {
    if output == Some("json") {
        let rows: Vec<Value> = releases
            .iter()
            .map(|r| json!({"name": r.name, "namespace": r.namespace, "enabled": true, "installed": r.installed,
                            "labels": r.labels_text(), "chart": r.chart, "version": r.version}))
            .collect();
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(0);
    }
    let mut rows = vec![
        ["NAME", "NAMESPACE", "ENABLED", "INSTALLED", "LABELS", "CHART", "VERSION"]
            .map(String::from)
            .to_vec(),
    ];
    for r in releases {
        rows.push(vec![
            r.name.clone(),
            r.namespace.clone(),
            "true".into(),
            r.installed.to_string(),
            r.labels_text(),
            r.chart.clone(),
            r.version.clone(),
        ]);
    }
    print!("{}", table(&rows));
    Ok(0)
}

/// Columns separated by three spaces, as helmfile's tables.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r.get(c).map_or(0, String::len)).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> =
            row.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

async fn status(releases: &[ReleaseSpec], kube_context: Option<&str>) -> Result<i32> {
    let client = Client::for_context(kube_context)?;
    let mut code = 0;
    for r in releases.iter().filter(|r| r.installed) {
        println!("Getting status {}", r.name);
        match records::load(&client, &r.namespace, &r.name).await? {
            Some((_, rel)) => println!("{}", records::status_text(&rel)),
            None => {
                eprintln!(
                    "in {}: command \"helm\" exited with non-zero status:\n\nSTDERR:\n  Error: release: not found\n",
                    r.layer
                );
                code = 1;
            }
        }
    }
    Ok(code)
}

/// Uninstall `r` if it is installed, printing like helmfile and adding a row to `deleted`.
async fn uninstall(client: &Client, r: &ReleaseSpec, deleted: &mut Vec<Vec<String>>) -> Result<()> {
    let start = Instant::now();
    if records::uninstall(client, &r.namespace, &r.name).await? {
        println!("Deleting {}\nrelease \"{}\" uninstalled\n", r.name, r.name);
        deleted.push(vec![
            r.name.clone(),
            r.namespace.clone(),
            format!("{}s", start.elapsed().as_secs()),
        ]);
    }
    Ok(())
}

async fn destroy(releases: &[ReleaseSpec], kube_context: Option<&str>) -> Result<i32> {
    let client = Client::for_context(kube_context)?;
    let mut deleted = vec![vec!["NAME".to_owned(), "NAMESPACE".to_owned(), "DURATION".to_owned()]];
    for r in releases.iter().rev() {
        uninstall(&client, r, &mut deleted).await?;
    }
    if deleted.len() > 1 {
        print!("\nDELETED RELEASES:\n{}", table(&deleted));
    }
    Ok(0)
}

async fn sync(
    file: &Path,
    releases: &[ReleaseSpec],
    scenario: &Scenario,
    kube_context: Option<&str>,
) -> Result<i32> {
    let client = Client::for_context(kube_context)?;
    let helm = fake_helm::real_helm().context(
        "the testbed's helmfile renders charts with the real helm, and TESTBED_REAL_HELM is not set",
    )?;
    let mut updated =
        vec![["NAME", "NAMESPACE", "CHART", "VERSION", "DURATION"].map(String::from).to_vec()];
    let mut deleted = vec![vec!["NAME".to_owned(), "NAMESPACE".to_owned(), "DURATION".to_owned()]];
    for (index, r) in releases.iter().enumerate() {
        let start = Instant::now();
        if !r.installed {
            uninstall(&client, r, &mut deleted).await?;
            continue;
        }
        println!("Upgrading release={}, chart={}, namespace={}", r.name, r.chart, r.namespace);
        let fail = index == 0 && scenario.sync_fail.contains(&r.layer);
        match install(&client, &helm, r, fail).await {
            Ok(rel) => {
                updated.push(vec![
                    r.name.clone(),
                    r.namespace.clone(),
                    r.chart.clone(),
                    rel.chart_version().to_owned(),
                    format!("{}s", start.elapsed().as_secs()),
                ]);
            }
            Err(e) => {
                let text = format!("{e:#}");
                println!();
                if updated.len() > 1 {
                    print!("UPDATED RELEASES:\n{}\n", table(&updated));
                }
                let failed = vec![
                    updated[0].clone(),
                    vec![
                        r.name.clone(),
                        r.namespace.clone(),
                        r.chart.clone(),
                        r.version.clone(),
                        format!("{}s", start.elapsed().as_secs()),
                    ],
                ];
                print!("FAILED RELEASES:\n{}", table(&failed));
                eprintln!(
                    "in {}: failed processing release {}: command \"{}\" exited with non-zero status:\n\n\
                     PATH:\n  {}\n\nARGS:\n  0: helm\n  1: upgrade\n  2: --install\n  3: {}\n  4: {}\n\n\
                     ERROR:\n  exit status 1\n\nEXIT STATUS\n  1\n\nSTDERR:\n  Error: {text}\n\nCOMBINED OUTPUT:\n  Error: {text}",
                    file.display(),
                    r.name,
                    helm.display(),
                    helm.display(),
                    r.name,
                    r.chart
                );
                return Ok(1);
            }
        }
    }
    if updated.len() > 1 {
        print!("\nUPDATED RELEASES:\n{}", table(&updated));
    }
    if deleted.len() > 1 {
        print!("\nDELETED RELEASES:\n{}", table(&deleted));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_load_with_environment_checks() {
        let dir = std::env::temp_dir().join(format!("testbed-helmfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("24-auth.yaml");
        std::fs::write(&file, "environments:\n  local: {}\n---\nreleases:\n  - name: a\n    namespace: auth\n    chart: ../charts/x\n    labels: {gate: \"true\", layer: 24-auth}\n    values: [v.yaml, {k: 1}]\n  - name: b\n    chart: c\n    installed: false\n").unwrap();
        let rs = load_releases(&file, "local").unwrap();
        assert_eq!(rs.len(), 2);
        assert_eq!((rs[0].layer.as_str(), rs[0].namespace.as_str()), ("24-auth", "auth"));
        assert_eq!(rs[0].labels_text(), "gate:true,layer:24-auth");
        assert_eq!(rs[0].values[0], json!(dir.join("v.yaml").to_string_lossy()));
        assert_eq!(rs[0].values[1], json!({"k": 1}));
        assert!(!rs[1].installed && rs[1].namespace == "default");
        let err = load_releases(&file, "prod").unwrap_err().to_string();
        assert!(err.ends_with("environment \"prod\" is not defined"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn manifests_split_into_documents_with_sources() {
        let text = "---\n# Source: c/templates/a.yaml\napiVersion: v1\nkind: ConfigMap\n---\n# Source: c/templates/empty.yaml\n# nothing\n---\n# Source: c/templates/b.yaml\nkind: Pod\n";
        let docs = split_manifest(text);
        assert_eq!(docs.len(), 2);
        assert_eq!(
            docs[0],
            ManifestDoc {
                source: "c/templates/a.yaml".into(),
                text: "apiVersion: v1\nkind: ConfigMap".into()
            }
        );
        assert_eq!(docs[1].source, "c/templates/b.yaml");
    }

    #[test]
    fn tables_align_like_helmfile() {
        let t = table(&[vec!["NAME".into(), "NAMESPACE".into()], vec!["vault".into(), "v".into()]]);
        assert_eq!(t, "NAME    NAMESPACE\nvault   v\n");
    }
}
