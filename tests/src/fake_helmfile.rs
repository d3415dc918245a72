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
//! flags exist and which files are Go templates (`crate::helmfile_version`); templates
//! are rendered with the `--state-values-file` values (`crate::helmfile_template`).
//! Releases run in file order (helmfile orders by `needs`; the layers list releases
//! after their needs) and `apply` is `sync` (no diff).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::fake_helm;
use crate::helmfile_install::*;
pub use crate::helmfile_install::{ManifestDoc, split_manifest};
use crate::helmfile_state::state_documents;
pub use crate::helmfile_state::{ReleaseSpec, StateOptions, load_releases, load_state};
use crate::helmfile_template::{merge, read_values};
use crate::helmfile_version::HelmfileVersion;
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

#[derive(Debug, Default, PartialEq)]
struct Command {
    verb: String,
    file: Option<PathBuf>,
    environment: String,
    output: Option<String>,
    /// `-l key=value[,key!=value]` (repeatable: any of them).
    selectors: Vec<Vec<Term>>,
    /// `--kube-context`: passed on to every helm call (else helm's own default).
    kube_context: Option<String>,
    /// `--wait`, `--wait-for-jobs`: override every release's `wait` / `waitForJobs`.
    wait: bool,
    wait_for_jobs: bool,
    /// `--timeout N` (seconds): overrides `helmDefaults.timeout` and release `timeout`.
    timeout: Option<u64>,
    /// `--allow-no-matching-release`: no releases is exit 0 instead of 3.
    allow_no_match: bool,
    /// `--state-values-file` (repeatable, merged in order).
    state_values_files: Vec<PathBuf>,
    /// `--sync-args`: extra helm flags for `helm upgrade` (only `--timeout` is read).
    sync_args: Option<String>,
}

/// Flags taken (and ignored) with a value, and without, so the engine's command lines
/// parse as with the real helmfile.
const VALUE_FLAGS: &[&str] = &[
    "--log-level",
    "--kube-context",
    "--namespace",
    "-n",
    "--chart",
    "-c",
    "--helm-binary",
    "-b",
    "--state-values-set",
    "--args",
    "--concurrency",
    "--set",
    "--values",
    "--kubeconfig",
];
const BOOL_FLAGS: &[&str] = &[
    "--quiet",
    "-q",
    "--debug",
    "--skip-deps",
    "--sequential-helmfiles",
    "--no-color",
    "--color",
    "--interactive",
    "-i",
    "--enable-live-output",
    "--skip-needs",
    "--include-needs",
    "--include-transitive-needs",
    "--skip-diff-on-install",
    "--suppress-diff",
    "--include-tests",
    "--skip-tests",
    "--skip-crds",
    "--skip-refresh",
    "--reset-values",
    "--reuse-values",
    "--suppress-secrets",
    "--strip-args-values-on-exit-error",
    "--skip-charts",
    "--include-crds",
    "--skip-cleanup",
];

/// One term of a selector: `key=value`, or `key!=value` (`negative`).
#[derive(Debug, Clone, PartialEq)]
struct Term {
    key: String,
    value: String,
    negative: bool,
}

/// helmfile `pkg/state/release_filters.go` ParseLabels: comma-separated `k=v` / `k!=v`.
fn parse_selector(sel: &str) -> Result<Vec<Term>> {
    sel.split(',')
        .map(|t| {
            let (key, value, negative) = match t.split_once("!=") {
                Some((k, v)) => (k, v, true),
                None => {
                    let (k, v) = t.split_once('=').with_context(|| {
                        format!("malformed label: {t}. Expected label in form k=v or k!=v")
                    })?;
                    (k, v, false)
                }
            };
            Ok(Term { key: key.to_owned(), value: value.to_owned(), negative })
        })
        .collect()
}

/// helmfile LabelFilter.Match: every positive term's label is present and equal; no
/// negative term's label is present with that value (an absent label matches `!=`).
/// `name` and `namespace` are labels of every release (helmfile adds them).
fn matches(sel: &[Term], r: &ReleaseSpec) -> bool {
    sel.iter().all(|t| {
        let value = match t.key.as_str() {
            "name" => Some(&r.name),
            "namespace" => Some(&r.namespace),
            key => r.labels.get(key),
        };
        match t.negative {
            false => value == Some(&t.value),
            true => value != Some(&t.value),
        }
    })
}

fn parse_args(args: &[String]) -> Result<Command> {
    let mut c = Command { environment: "default".into(), ..Command::default() };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with('-') => (f, Some(v.to_owned())),
            _ => (a.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .with_context(|| format!("flag needs an argument: {flag}"))
        };
        match flag {
            "-f" | "--file" => c.file = Some(PathBuf::from(value()?)),
            "-e" | "--environment" => c.environment = value()?,
            "--output" | "-o" => c.output = Some(value()?),
            "-l" | "--selector" => {
                let sel = value()?;
                c.selectors.push(parse_selector(&sel)?);
            }
            "--kube-context" => c.kube_context = Some(value()?),
            "--wait" => c.wait = true,
            "--wait-for-jobs" => c.wait_for_jobs = true,
            "--allow-no-matching-release" => c.allow_no_match = true,
            "--state-values-file" => c.state_values_files.push(PathBuf::from(value()?)),
            "--sync-args" => c.sync_args = Some(value()?),
            "--timeout" => {
                let v = value()?;
                c.timeout = Some(v.parse().with_context(|| {
                    format!("invalid argument {v:?} for \"--timeout\" flag: expected seconds")
                })?);
            }
            f if VALUE_FLAGS.contains(&f) => {
                value()?;
            }
            f if BOOL_FLAGS.contains(&f) => {}
            f if f.starts_with('-') => bail!("Error: unknown flag: {f}"),
            verb if c.verb.is_empty() => c.verb = verb.to_owned(),
            other => bail!("Error: unexpected argument {other:?} after {}", c.verb),
        }
    }
    if !["sync", "apply", "list", "status", "destroy", "template", "build"]
        .contains(&c.verb.as_str())
    {
        bail!(
            "Error: unknown command {:?} for \"helmfile\" (the testbed's helmfile knows sync, apply, list, status, destroy, template, build)",
            c.verb
        );
    }
    Ok(c)
}

/// The flags the claimed version does not have are refused as cobra refuses them.
fn check_flags(c: &Command, version: HelmfileVersion) -> Result<()> {
    if c.timeout.is_some() && c.verb == "sync" && !version.has_sync_timeout() {
        bail!("Error: unknown flag: --timeout");
    }
    if c.sync_args.is_some() && !version.has_sync_args() {
        bail!("Error: unknown flag: --sync-args");
    }
    Ok(())
}

/// helm's `--timeout` among `--sync-args` (`--timeout=900s` or `--timeout 15m`), in
/// seconds (Go durations of whole seconds, minutes or hours).
fn helm_timeout(sync_args: &str) -> Result<Option<u64>> {
    let words: Vec<&str> = sync_args.split_whitespace().collect();
    let value = words.iter().enumerate().find_map(|(i, w)| match w.split_once('=') {
        Some(("--timeout", v)) => Some(v.to_owned()),
        None if *w == "--timeout" => words.get(i + 1).map(|v| (*v).to_owned()),
        _ => None,
    });
    let Some(value) = value else { return Ok(None) };
    let (number, unit) =
        value.split_at(value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len()));
    let number: u64 = number.parse().with_context(|| format!("invalid duration {value:?}"))?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => bail!(
            "Error: invalid argument {value:?} for \"--timeout\" flag: time: missing unit in duration"
        ),
    };
    Ok(Some(number * factor))
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
        match fake_helm::load(&client, &r.namespace, &r.name).await? {
            Some((_, rel)) => println!("{}", fake_helm::status_text(&rel)),
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
    if fake_helm::uninstall(client, &r.namespace, &r.name).await? {
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

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn command_lines_parse_like_helmfile() {
        let c = parse_args(&args(
            "--quiet -f layer.yaml --environment local --skip-deps sync --sequential-helmfiles",
        ))
        .unwrap();
        assert_eq!((c.verb.as_str(), c.environment.as_str()), ("sync", "local"));
        assert_eq!(c.file.as_deref(), Some(Path::new("layer.yaml")));
        let c = parse_args(&args("-f x.yaml -e local list --output json -l gate=true")).unwrap();
        assert_eq!(c.output.as_deref(), Some("json"));
        let term = |key: &str, value: &str, negative| Term {
            key: key.into(),
            value: value.into(),
            negative,
        };
        assert_eq!(c.selectors, vec![vec![term("gate", "true", false)]]);
        let c = parse_args(&args("-f x.yaml -l bundle!=obs,gate=true sync")).unwrap();
        assert_eq!(
            c.selectors,
            vec![vec![term("bundle", "obs", true), term("gate", "true", false)]]
        );
        assert!(
            parse_args(&args("-f x.yaml --bogus sync"))
                .unwrap_err()
                .to_string()
                .contains("unknown flag: --bogus")
        );
        assert!(parse_args(&args("-f x.yaml")).is_err());
    }

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
