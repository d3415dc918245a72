//! The fake `helmfile`: `[global flags] -f LAYER -e ENV sync|apply|list|status|destroy`.
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
//! `[{name, namespace, enabled, installed, labels: "k:v,...", chart, version}]`.
//! Releases run in file order (helmfile orders by `needs`; the layers list releases
//! after their needs) and `apply` is `sync` (no diff).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::apiserver::controllers::workload_ready;
use crate::apiserver::resources;
use crate::fake_helm;
use crate::kube_api::{self, Client};
use crate::release::{self, Hook, Info, LastRun, Release};
use crate::scenario::Scenario;

pub use crate::apiserver::controllers::VAULT_BOOTSTRAP;

pub fn main(args: Vec<String>) -> i32 {
    let scenario = fake_helm::prelude("helmfile", &args);
    let result = parse_args(&args).and_then(|cmd| fake_helm::run_async(run(cmd, scenario)));
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
    /// `-l key=value[,key=value]` (repeatable: any of them).
    selectors: Vec<Vec<(String, String)>>,
    /// `--wait`, `--wait-for-jobs`: override every release's `wait` / `waitForJobs`.
    wait: bool,
    wait_for_jobs: bool,
    /// `--timeout N` (seconds): overrides `helmDefaults.timeout` and release `timeout`.
    timeout: Option<u64>,
    /// `--allow-no-matching-release`: no releases is exit 0 instead of 3.
    allow_no_match: bool,
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
    "--state-values-file",
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
];

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
                let terms = sel
                    .split(',')
                    .filter_map(|t| t.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()));
                c.selectors.push(terms.collect());
            }
            "--wait" => c.wait = true,
            "--wait-for-jobs" => c.wait_for_jobs = true,
            "--allow-no-matching-release" => c.allow_no_match = true,
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
    if !["sync", "apply", "list", "status", "destroy"].contains(&c.verb.as_str()) {
        bail!(
            "Error: unknown command {:?} for \"helmfile\" (the testbed's helmfile knows sync, apply, list, status, destroy)",
            c.verb
        );
    }
    Ok(c)
}

/// One release of a layer file, with what the fake needs of it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseSpec {
    pub name: String,
    pub namespace: String,
    pub chart: String,
    pub version: String,
    pub labels: BTreeMap<String, String>,
    pub installed: bool,
    pub create_namespace: bool,
    /// Values files (absolute) and inline values (written to temp files when rendering).
    pub values: Vec<Value>,
    /// The layer file's directory (charts and values are relative to it).
    pub base_dir: PathBuf,
    /// The layer: the stem of the file that declares the release.
    pub layer: String,
    /// `wait` (else `helmDefaults.wait`): helm waits for the release's workloads.
    pub wait: bool,
    /// `waitForJobs` (else `helmDefaults.waitForJobs`): and for its Jobs.
    pub wait_for_jobs: bool,
    /// `timeout` (else `helmDefaults.timeout`, else helm's 300), seconds.
    pub timeout: u64,
}

/// The releases of a helmfile (and of its nested `helmfiles:`), in order. Fails as
/// helmfile does when `environment` is not defined in a file that declares environments.
pub fn load_releases(file: &Path, environment: &str) -> Result<Vec<ReleaseSpec>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).with_context(|| {
        format!("in {}: failed to read {}: expected YAML documents", file.display(), file.display())
    })?;
    let base_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let layer = file.file_stem().and_then(|s| s.to_str()).unwrap_or("").to_owned();
    let mut defaults = &Value::Null;
    for doc in docs.iter().filter(|d| d["helmDefaults"].is_object()) {
        defaults = &doc["helmDefaults"];
    }
    let mut envs_declared = false;
    let mut env_found = environment == "default";
    let mut out = Vec::new();
    for doc in docs.iter().filter(|d| d.is_object()) {
        if let Some(envs) = doc.get("environments").and_then(Value::as_object) {
            envs_declared = true;
            env_found |= envs.contains_key(environment);
        }
    }
    if envs_declared && !env_found || !envs_declared && environment != "default" {
        bail!("in {}: environment \"{environment}\" is not defined", file.display());
    }
    for doc in docs.iter().filter(|d| d.is_object()) {
        for sub in doc.get("helmfiles").and_then(Value::as_array).into_iter().flatten() {
            let path = sub
                .as_str()
                .or_else(|| sub["path"].as_str())
                .context("helmfiles: entry without a path")?;
            out.extend(load_releases(&base_dir.join(path), environment)?);
        }
        for r in doc.get("releases").and_then(Value::as_array).into_iter().flatten() {
            let field = |k: &str| r[k].as_str().unwrap_or("").to_owned();
            let name = field("name");
            if name.is_empty() {
                bail!("in {}: a release without a name", file.display());
            }
            let labels = r["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let values = r["values"]
                .as_array()
                .map(|vs| {
                    vs.iter()
                        .map(|v| match v.as_str() {
                            Some(path) => json!(base_dir.join(path).to_string_lossy()),
                            None => v.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(ReleaseSpec {
                namespace: Some(field("namespace"))
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| "default".into()),
                chart: field("chart"),
                version: field("version"),
                installed: r["installed"].as_bool().unwrap_or(true),
                create_namespace: r["createNamespace"].as_bool().unwrap_or(true),
                labels,
                values,
                base_dir: base_dir.clone(),
                layer: layer.clone(),
                wait: r["wait"].as_bool().or(defaults["wait"].as_bool()).unwrap_or(false),
                wait_for_jobs: r["waitForJobs"]
                    .as_bool()
                    .or(defaults["waitForJobs"].as_bool())
                    .unwrap_or(false),
                timeout: r["timeout"].as_u64().or(defaults["timeout"].as_u64()).unwrap_or(300),
                name,
            });
        }
    }
    Ok(out)
}

impl ReleaseSpec {
    fn chart_path(&self) -> PathBuf {
        self.base_dir.join(&self.chart)
    }

    fn labels_text(&self) -> String {
        self.labels.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join(",")
    }
}

async fn run(cmd: Command, scenario: Scenario) -> Result<i32> {
    let file = cmd.file.clone().unwrap_or_else(|| PathBuf::from("helmfile.yaml"));
    let mut releases = load_releases(&file, &cmd.environment)?;
    if !cmd.selectors.is_empty() {
        releases.retain(|r| {
            cmd.selectors.iter().any(|sel| {
                sel.iter().all(|(k, v)| {
                    r.labels.get(k) == Some(v)
                        || (k == "name" && &r.name == v)
                        || (k == "namespace" && &r.namespace == v)
                })
            })
        });
    }
    for r in &mut releases {
        r.wait |= cmd.wait;
        r.wait_for_jobs |= cmd.wait_for_jobs;
        if let Some(t) = cmd.timeout {
            r.timeout = t;
        }
    }
    if releases.is_empty() && cmd.verb != "list" {
        // helmfile pkg/app/errors.go NoMatchingHelmfileError; cmd/root.go: exit 3.
        let selectors: Vec<String> = cmd
            .selectors
            .iter()
            .map(|s| s.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
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
        "status" => status(&releases).await,
        "destroy" => destroy(&releases).await,
        _ => sync(&file, &releases, &scenario).await,
    }
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

async fn status(releases: &[ReleaseSpec]) -> Result<i32> {
    let client = Client::from_env()?;
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

async fn destroy(releases: &[ReleaseSpec]) -> Result<i32> {
    let client = Client::from_env()?;
    let mut deleted = vec![vec!["NAME".to_owned(), "NAMESPACE".to_owned(), "DURATION".to_owned()]];
    for r in releases.iter().rev() {
        uninstall(&client, r, &mut deleted).await?;
    }
    if deleted.len() > 1 {
        print!("\nDELETED RELEASES:\n{}", table(&deleted));
    }
    Ok(0)
}

/// helm's `--wait` (and `--wait-for-jobs`): every applied workload Ready (all replicas,
/// current generation), every Job complete, within the release's timeout.
async fn wait_ready(client: &Client, applied: &[String], r: &ReleaseSpec) -> Result<(), String> {
    let deadline = Instant::now() + std::time::Duration::from_secs(r.timeout);
    loop {
        let mut pending = Vec::new();
        for path in applied {
            let Ok(Some(obj)) = client.get_opt(path).await else { continue };
            let kind = obj["kind"].as_str().unwrap_or("");
            let ns = obj["metadata"]["namespace"].as_str().unwrap_or("");
            let name = obj["metadata"]["name"].as_str().unwrap_or("");
            let ready = match kind {
                "Job" if r.wait_for_jobs => {
                    let conds = obj["status"]["conditions"].as_array().cloned().unwrap_or_default();
                    if conds.iter().any(|c| c["type"] == "Failed" && c["status"] == "True") {
                        return Err(format!("job {name} failed: BackoffLimitExceeded"));
                    }
                    conds.iter().any(|c| c["type"] == "Complete" && c["status"] == "True")
                }
                "Deployment" | "StatefulSet" | "DaemonSet" | "Pod" => workload_ready(&obj),
                _ => true,
            };
            if !ready {
                pending.push(format!("{kind}/{ns}/{name}"));
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err("context deadline exceeded".into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

async fn sync(file: &Path, releases: &[ReleaseSpec], scenario: &Scenario) -> Result<i32> {
    let client = Client::from_env()?;
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

/// One `helm upgrade --install`: render, store objects, write the release revision.
async fn install(client: &Client, helm: &Path, r: &ReleaseSpec, fail: bool) -> Result<Release> {
    let chart_meta = chart_metadata(helm, r)?;
    let rendered = render(helm, r)?;
    if r.create_namespace {
        client.ensure_namespace(&r.namespace).await?;
    } else if client.get_opt(&format!("/api/v1/namespaces/{}", r.namespace)).await?.is_none() {
        bail!("create: failed to create: namespaces \"{}\" not found", r.namespace);
    }
    let previous = fake_helm::load(client, &r.namespace, &r.name).await?;
    let version = previous.as_ref().map_or(0, |(_, p)| p.version) + 1;
    let now = release::timestamp_now();
    let mut rel = Release {
        name: r.name.clone(),
        namespace: r.namespace.clone(),
        version,
        info: Info {
            first_deployed: previous
                .as_ref()
                .map_or(now.clone(), |(_, p)| p.info.first_deployed.clone()),
            last_deployed: now,
            description: if version == 1 {
                "Install complete".into()
            } else {
                "Upgrade complete".into()
            },
            status: "deployed".into(),
            ..Info::default()
        },
        chart: json!({ "metadata": chart_meta, "lock": null, "templates": [], "values": {}, "schema": null, "files": [] }),
        config: json!({}),
        apply_method: "ssa".into(),
        ..Release::default()
    };
    let mut manifest = String::new();
    let mut objects = Vec::new();
    for doc in split_manifest(&rendered) {
        let obj: Value = serde_saphyr::from_str(&doc.text)
            .with_context(|| format!("{}: rendered YAML", doc.source))?;
        if !obj.is_object() {
            continue;
        }
        let annotations = &obj["metadata"]["annotations"];
        if let Some(events) = annotations["helm.sh/hook"].as_str() {
            let policies = annotations["helm.sh/hook-delete-policy"].as_str().unwrap_or("");
            rel.hooks.push(Hook {
                name: obj["metadata"]["name"].as_str().unwrap_or("").to_owned(),
                kind: obj["kind"].as_str().unwrap_or("").to_owned(),
                path: doc.source.clone(),
                manifest: doc.text.clone(),
                events: split_list(events),
                last_run: LastRun::default(),
                delete_policies: split_list(policies),
                weight: annotations["helm.sh/hook-weight"]
                    .as_str()
                    .and_then(|w| w.trim().parse().ok())
                    .unwrap_or(0),
            });
            continue;
        }
        manifest.push_str(&format!("---\n# Source: {}\n{}\n", doc.source, doc.text));
        objects.push(obj);
    }
    rel.manifest = manifest;
    if fail {
        rel.info.status = "failed".into();
        rel.info.description = format!("Upgrade \"{}\" failed: context deadline exceeded", r.name);
        write_revision(client, &rel, previous.as_ref().map(|(s, _)| s.as_slice()), &r.layer)
            .await?;
        bail!("UPGRADE FAILED: context deadline exceeded");
    }
    let mut applied = Vec::new();
    for mut obj in objects {
        let (group, _) = resources::split_api_version(obj["apiVersion"].as_str().unwrap_or(""));
        let kind = obj["kind"].as_str().unwrap_or("").to_owned();
        if resources::cluster_scoped(group, &kind) {
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("namespace");
            }
        } else if obj["metadata"]["namespace"].as_str().is_none_or(str::is_empty) {
            obj["metadata"]["namespace"] = json!(r.namespace);
        }
        obj["metadata"]["annotations"]["meta.helm.sh/release-name"] = json!(r.name);
        obj["metadata"]["annotations"]["meta.helm.sh/release-namespace"] = json!(r.namespace);
        if let Some(ns) = obj["metadata"]["namespace"].as_str()
            && r.create_namespace
        {
            client.ensure_namespace(ns).await?;
        }
        let stored = client
            .apply_object(&obj)
            .await
            .with_context(|| format!("applying {kind} {}", obj["metadata"]["name"]))?;
        applied.push(kube_api::path_of(&stored)?);
    }
    // Objects of the previous revision that the new one no longer renders are deleted.
    if let Some((_, prev)) = &previous {
        for doc in split_manifest(&prev.manifest) {
            if let Ok(mut obj) = serde_saphyr::from_str::<Value>(&doc.text)
                && obj.is_object()
            {
                if obj["metadata"]["namespace"].is_null() {
                    obj["metadata"]["namespace"] = json!(r.namespace);
                }
                let path = kube_api::path_of(&obj)?;
                if !applied.contains(&path) && !fake_helm::kept(&obj) {
                    client.delete(&path).await?;
                }
            }
        }
    }
    for hook in rel.hooks.iter_mut().filter(|h| !h.events.iter().any(|e| e == "test")) {
        // Install/upgrade hooks ran and succeeded; their objects are not kept.
        hook.last_run = LastRun {
            started_at: release::timestamp_now(),
            completed_at: release::timestamp_now(),
            phase: "Succeeded".into(),
        };
    }
    if r.wait || r.wait_for_jobs {
        // As helm: the revision is pending while it waits, failed if the wait times out.
        let deployed = std::mem::replace(
            &mut rel.info.status,
            if version == 1 { "pending-install" } else { "pending-upgrade" }.into(),
        );
        write_revision(client, &rel, previous.as_ref().map(|(s, _)| s.as_slice()), &r.layer)
            .await?;
        if let Err(e) = wait_ready(client, &applied, r).await {
            rel.info.status = "failed".into();
            rel.info.description = format!("Upgrade \"{}\" failed: {e}", r.name);
            fake_helm::store(client, &rel, Some(&r.layer)).await?;
            bail!("UPGRADE FAILED: {e}");
        }
        rel.info.status = deployed;
        fake_helm::store(client, &rel, Some(&r.layer)).await?;
    } else {
        write_revision(client, &rel, previous.as_ref().map(|(s, _)| s.as_slice()), &r.layer)
            .await?;
    }
    if version == 1 {
        println!("Release \"{}\" does not exist. Installing it now.", r.name);
    } else {
        println!("Release \"{}\" has been upgraded. Happy Helming!", r.name);
    }
    print!("{}", fake_helm::status_text(&rel));
    println!();
    Ok(rel)
}

/// Store revision n (and mark the previously deployed revision `superseded`).
async fn write_revision(
    client: &Client,
    rel: &Release,
    previous: Option<&[Value]>,
    layer: &str,
) -> Result<()> {
    for secret in previous.unwrap_or_default() {
        if secret["metadata"]["labels"]["status"] == "deployed" {
            let mut old = Release::from_secret(secret)?;
            old.info.status = "superseded".into();
            let old_layer =
                secret["metadata"]["labels"][release::LAYER_LABEL].as_str().map(str::to_owned);
            fake_helm::store(client, &old, old_layer.as_deref()).await?;
        }
    }
    fake_helm::store(client, rel, Some(layer)).await
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect()
}

/// The chart's `Chart.yaml` (as `helm show chart` prints it) as JSON.
fn chart_metadata(helm: &Path, r: &ReleaseSpec) -> Result<Value> {
    let out = std::process::Command::new(helm)
        .args(["show", "chart"])
        .arg(r.chart_path())
        .output()
        .with_context(|| format!("running {}", helm.display()))?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim().trim_start_matches("Error: "));
    }
    serde_saphyr::from_str(&String::from_utf8_lossy(&out.stdout))
        .context("helm show chart: not YAML")
}

/// `helm template NAME CHART -n NS -f values...` (inline values go through temp files).
fn render(helm: &Path, r: &ReleaseSpec) -> Result<String> {
    let tmp =
        std::env::temp_dir().join(format!("testbed-values-{}-{}", std::process::id(), r.name));
    let mut cmd = std::process::Command::new(helm);
    cmd.arg("template").arg(&r.name).arg(r.chart_path()).args(["--namespace", &r.namespace]);
    let mut temps = Vec::new();
    for (i, v) in r.values.iter().enumerate() {
        match v.as_str() {
            Some(path) => {
                cmd.arg("--values").arg(path);
            }
            None => {
                let path = tmp.with_extension(format!("{i}.json"));
                std::fs::write(&path, serde_json::to_vec(v)?)?;
                cmd.arg("--values").arg(&path);
                temps.push(path);
            }
        }
    }
    let out = cmd.output().with_context(|| format!("running {}", helm.display()));
    for t in temps {
        let _ = std::fs::remove_file(t);
    }
    let out = out?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim().trim_start_matches("Error: "));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One document of a rendered manifest: its `# Source:` path and its YAML text.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestDoc {
    pub source: String,
    pub text: String,
}

/// Split `helm template` output (or a release manifest) into its documents.
pub fn split_manifest(text: &str) -> Vec<ManifestDoc> {
    let mut docs = Vec::new();
    let mut source = String::new();
    let mut body = Vec::new();
    let mut flush = |source: &mut String, body: &mut Vec<&str>| {
        let text = body.join("\n").trim().to_owned();
        if !text.is_empty()
            && text.lines().any(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        {
            docs.push(ManifestDoc { source: std::mem::take(source), text });
        }
        source.clear();
        body.clear();
    };
    for line in text.lines() {
        if line.trim_end() == "---" {
            flush(&mut source, &mut body);
        } else if let Some(s) = line.strip_prefix("# Source: ") {
            source = s.trim().to_owned();
        } else {
            body.push(line);
        }
    }
    flush(&mut source, &mut body);
    docs
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
        assert_eq!(c.selectors, vec![vec![("gate".to_owned(), "true".to_owned())]]);
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
