//! `cargo xtask vendor`: Helm charts locked by version and digest in `charts.lock.yaml`,
//! archived in the repository, verified before use, so Helmfile runs offline.
//!
//! Error kinds: a repository that cannot be reached or answers an HTTP error, or a
//! failing `helm pull`, is a missing prerequisite; an unknown chart or version, a
//! malformed lock or index is bad input; a digest that does not match the lock and
//! every `--check` problem is a failure. When several charts fail, the kind is the
//! most severe of theirs whatever order the downloads finished in ([`combine`]): any
//! failure is a failure, and missing means every chart was unreachable. A failed run
//! changes no file: downloads go to memory, and archives and the lock are only written
//! (atomically, temp file + rename) once every download of the run succeeded and was
//! verified.
//!
//! Owns: the `vendor` command and its result ([`Vendored`]), the lock's upkeep
//! (`add`, `update`, `refresh`) and the offline [`check`] bootstrap runs. Downloads
//! are [`fetch`]'s, index resolution [`index`]'s, the pure decisions [`plan`]'s.

pub mod fetch;
pub mod index;
pub mod plan;

use std::path::{Path, PathBuf};

use futures::StreamExt;
use serde::Serialize;

use crate::config::Context;
use crate::error::{Error, Result, bad_input, combine, failed};
use crate::events::{Event, Rendered};
use crate::fsutil::write_atomically;
use crate::outcome::{Document, Status, WithStatus};
use crate::platform::charts_lock::{ChartsLock, LockedChart};
use crate::session::Session;
use fetch::{Fetched, Fetcher};
pub use plan::ReleaseChart;
use plan::{ArchiveState, Observed};

/// `cargo xtask vendor [--check | --prune]`, `vendor add`, `vendor update`.
/// (The CLI's flags are in `xtask/src/flags.rs`.)
#[derive(Debug, Default)]
pub struct Args {
    /// Verify offline, changing nothing ([`check`]).
    pub check: bool,
    /// Also delete archives beside the lock that it does not list.
    pub prune: bool,
    /// `vendor add` / `vendor update` instead of the refresh.
    pub command: Option<VendorCommand>,
}

/// The `vendor` subcommands.
#[derive(Debug)]
pub enum VendorCommand {
    /// Lock chart `name` at `version` from `repo` (a Helm repository or `oci://` path).
    Add { name: String, repo: String, version: String },
    /// Move a locked chart to `version` (default: the repository's newest stable one).
    Update { name: String, version: Option<String> },
}

/// The CLI entry: the lock from the settings, the Helmfile for `--check`. Emits one
/// result ([`Vendored`]); every problem is an error.
pub async fn run(ctx: &Context, args: &Args) -> Result<()> {
    let lock_path = &ctx.settings.charts_lock;
    let session = &ctx.session;
    let lock = ctx.display_path(lock_path);
    let result = if args.check {
        let (releases, unread) = helmfile_release_charts(ctx).await?;
        let (charts, releases) = check(lock_path, &releases, &unread)?;
        Vendored::Checked { lock, charts, releases }
    } else {
        match &args.command {
            Some(VendorCommand::Add { name, repo, version }) => {
                let chart = add(lock_path, session, name, repo, version).await?;
                Vendored::Locked { lock, chart, previous: None }
            }
            Some(VendorCommand::Update { name, version }) => {
                let previous = ChartsLock::read(lock_path)?.get(name).map(|c| c.version.clone());
                let chart = update(lock_path, session, name, version.as_deref()).await?;
                Vendored::Locked { lock, chart, previous }
            }
            None => {
                let done = refresh(lock_path, session, args.prune).await?;
                let shown = |paths: &[PathBuf]| paths.iter().map(|p| ctx.display_path(p)).collect();
                Vendored::Refreshed {
                    lock,
                    fetched: done.fetched,
                    up_to_date: done.up_to_date,
                    pruned: shown(&done.pruned),
                    unlocked: shown(&done.unlocked),
                }
            }
        }
    };
    session.events.emit(Event::Result { result: &result });
    Ok(())
}

/// The version of the JSON shape (`schemas/vendor.schema.json`).
pub const SCHEMA_VERSION: u32 = 1;

/// What a `vendor` command did, for the sinks. Paths are shown relative to the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "action")]
pub enum Vendored {
    /// `vendor --check` passed.
    #[serde(rename = "check")]
    Checked { lock: String, charts: usize, releases: usize },
    /// `vendor add` / `vendor update` locked `chart` (`previous`: the version it had).
    #[serde(rename = "lock")]
    Locked {
        lock: String,
        chart: LockedChart,
        #[serde(rename = "previous_version")]
        previous: Option<String>,
    },
    /// `vendor [--prune]`.
    #[serde(rename = "refresh")]
    Refreshed {
        lock: String,
        /// `name version` of each archive written.
        fetched: Vec<String>,
        up_to_date: usize,
        pruned: Vec<String>,
        /// Archives the lock does not list, left in place.
        unlocked: Vec<String>,
    },
}

impl Rendered for Vendored {
    fn human(&self) -> String {
        match self {
            Vendored::Checked { lock, charts, releases } => format!(
                "vendored charts ok: {charts} archive(s) match {lock}, {releases} release chart(s) are local or locked\n"
            ),
            Vendored::Locked { lock, chart, .. } => {
                format!("locked {} {} ({}) in {lock}\n", chart.name, chart.version, chart.digest)
            }
            Vendored::Refreshed { lock, fetched, up_to_date, pruned, unlocked } => {
                let mut out = format!(
                    "vendored charts: {} fetched, {up_to_date} already up to date ({lock})\n",
                    fetched.len()
                );
                for path in pruned {
                    out.push_str(&format!("removed unlocked archive {path}\n"));
                }
                for path in unlocked {
                    out.push_str(&format!(
                        "warning: {path} is not in the lock (remove it with --prune)\n"
                    ));
                }
                out
            }
        }
    }

    fn json(&self) -> serde_json::Value {
        Document::new(SCHEMA_VERSION, WithStatus { status: Status::Ok, body: self }).json()
    }

    fn log_lines(&self) -> Vec<(String, String)> {
        self.human().lines().map(|line| ("vendor".to_owned(), line.to_owned())).collect()
    }
}

/// Every release chart of the platform's Helmfile layers, and one problem per layer
/// that could not be read: unread means unproven.
async fn helmfile_release_charts(ctx: &Context) -> Result<(Vec<ReleaseChart>, Vec<String>)> {
    let platform = crate::helmfile_list::read_platform(ctx).await?;
    let (mut charts, mut unread) = (Vec::new(), Vec::new());
    for layer in &platform.layers {
        if let Some(reason) = layer.releases.not_read_reason() {
            unread.push(format!("{}: release charts not checked: {reason}", layer.file.display()));
        }
        charts.extend(layer.releases.as_slice().iter().map(|release| ReleaseChart {
            layer_file: layer.file.clone(),
            release: release.name.clone(),
            chart: release.chart.clone(),
        }));
    }
    Ok((charts, unread))
}

/// How many archives are downloaded at once.
const PARALLEL_DOWNLOADS: usize = 4;

/// What a refresh did.
#[derive(Debug, Default)]
pub struct Refreshed {
    /// Charts whose archive was (re)written, as `name version`.
    pub fetched: Vec<String>,
    /// Charts whose archive already matched the lock.
    pub up_to_date: usize,
    /// Archives beside the lock that it does not list (left in place without `--prune`).
    pub unlocked: Vec<PathBuf>,
    pub pruned: Vec<PathBuf>,
}

/// A progress line (terminal and log).
fn say(session: &Session, text: &str) {
    session.events.progress("vendor", text);
}

/// Lock `name` at `version` from `repository`: download, write the archive, record it.
pub async fn add(
    lock_path: &Path,
    session: &Session,
    name: &str,
    repository: &str,
    version: &str,
) -> Result<LockedChart> {
    check_name_and_repository(name, repository)?;
    let mut lock = ChartsLock::read(lock_path)?;
    if let Some(existing) = lock.get(name) {
        return Err(bad_input(format!(
            "chart `{name}` is already in {} ({} from {}); use `cargo xtask vendor update {name} --version {version}`",
            lock_path.display(),
            existing.version,
            existing.repository
        )));
    }
    say(session, &format!("fetching {name} {version} from {repository}"));
    let fetched = Fetcher::new(session)?.fetch(repository, name, Some(version)).await?;
    let entry = LockedChart {
        name: name.to_owned(),
        repository: repository.trim_end_matches('/').to_owned(),
        version: fetched.version.clone(),
        digest: fetched.digest.clone(),
        archive: format!("{name}-{}.tgz", fetched.version),
    };
    write_archive(lock_path, &entry, &fetched)?;
    lock.upsert(entry.clone());
    lock.write(lock_path)?;
    session.line("vendor", &format!("locked {name} {} {}", entry.version, entry.digest));
    Ok(entry)
}

/// Move `name` to `version` (or the repository's newest stable version) and re-lock.
/// The previous archive is removed once the lock names the new one.
pub async fn update(
    lock_path: &Path,
    session: &Session,
    name: &str,
    version: Option<&str>,
) -> Result<LockedChart> {
    let mut lock = ChartsLock::read(lock_path)?;
    let old = lock.get(name).cloned().ok_or_else(|| {
        bad_input(format!(
            "chart `{name}` is not in {}; add it with `cargo xtask vendor add {name} --repo URL --version V`",
            lock_path.display()
        ))
    })?;
    let wanted = version.unwrap_or("(newest)");
    say(session, &format!("fetching {name} {wanted} from {}", old.repository));
    let fetched = Fetcher::new(session)?.fetch(&old.repository, name, version).await?;
    let folder = Path::new(&old.archive).parent().unwrap_or(Path::new(""));
    let entry = LockedChart {
        version: fetched.version.clone(),
        digest: fetched.digest.clone(),
        archive: folder
            .join(format!("{name}-{}.tgz", fetched.version))
            .to_string_lossy()
            .into_owned(),
        ..old.clone()
    };
    if entry.version == old.version && entry.digest != old.digest {
        return Err(mismatch(&old, &fetched));
    }
    write_archive(lock_path, &entry, &fetched)?;
    lock.upsert(entry.clone());
    lock.write(lock_path)?;
    if entry.archive != old.archive {
        let _ = std::fs::remove_file(ChartsLock::archive_path(lock_path, &old));
    }
    session.line(
        "vendor",
        &format!("updated {name} {} -> {} {}", old.version, entry.version, entry.digest),
    );
    Ok(entry)
}

/// Fetch every missing or mismatching archive; each must match its locked digest.
/// Archives the lock does not list are reported, and removed with `prune`.
pub async fn refresh(lock_path: &Path, session: &Session, prune: bool) -> Result<Refreshed> {
    let lock = ChartsLock::read(lock_path)?;
    let observed = plan::observe(lock_path, &lock);
    let wanted = plan::to_fetch(&observed);
    let mut refreshed =
        Refreshed { up_to_date: observed.len() - wanted.len(), ..Refreshed::default() };
    if !wanted.is_empty() {
        let fetcher = Fetcher::new(session)?;
        let mut results: Vec<(&Observed, Result<Fetched>)> = futures::stream::iter(wanted)
            .map(|o| {
                let fetcher = &fetcher;
                async move {
                    let chart = &o.chart;
                    let why =
                        if o.state == ArchiveState::Missing { "missing" } else { "digest differs" };
                    say(session, &format!("fetching {} {} ({why})", chart.name, chart.version));
                    let result =
                        fetcher.fetch(&chart.repository, &chart.name, Some(&chart.version)).await;
                    (o, result)
                }
            })
            .buffer_unordered(PARALLEL_DOWNLOADS)
            .collect()
            .await;
        // Verify everything before writing anything: a failed run changes nothing.
        // Downloads finish in any order; report them in the lock's order.
        results.sort_by(|a, b| a.0.chart.name.cmp(&b.0.chart.name));
        let mut errors = Vec::new();
        let mut verified = Vec::new();
        for (o, result) in results {
            match result {
                Ok(fetched) if fetched.digest == o.chart.digest => verified.push((o, fetched)),
                Ok(fetched) => errors.push(mismatch(&o.chart, &fetched)),
                // An interruption stops the run; it is not one chart's problem.
                Err(err) if err.kind().is_interrupted() => return Err(err),
                Err(err) => errors
                    .push(err.context(format!("chart `{}` {}", o.chart.name, o.chart.version))),
            }
        }
        combine("charts could not be vendored", errors)?;
        for (o, fetched) in verified {
            write_archive(lock_path, &o.chart, &fetched)?;
            session.line(
                "vendor",
                &format!("restored {} {} {}", o.chart.name, o.chart.version, o.chart.digest),
            );
            say(session, &format!("wrote {}", o.path.display()));
            refreshed.fetched.push(format!("{} {}", o.chart.name, o.chart.version));
        }
    }
    for path in plan::unlocked_archives(lock_path, &lock) {
        if prune {
            std::fs::remove_file(&path)
                .map_err(|e| failed(format!("cannot remove {}: {e}", path.display())))?;
            session.line("vendor", &format!("pruned {}", path.display()));
            refreshed.pruned.push(path);
        } else {
            refreshed.unlocked.push(path);
        }
    }
    Ok(refreshed)
}

/// Offline verification: every archive exists and matches its digest, and every
/// release chart is a local chart or a locked archive. Exit 1 listing each problem;
/// returns how many charts and releases were checked. `unread` are problems found
/// while reading the Helmfile (layers that could not be read).
pub fn check(
    lock_path: &Path,
    releases: &[ReleaseChart],
    unread: &[String],
) -> Result<(usize, usize)> {
    let lock = ChartsLock::read(lock_path)?;
    let observed = plan::observe(lock_path, &lock);
    let mut problems = plan::archive_problems(&observed);
    problems.extend(unread.iter().cloned());
    problems.extend(plan::release_problems(lock_path, &lock, releases));
    if problems.is_empty() {
        return Ok((lock.charts.len(), releases.len()));
    }
    let list: Vec<String> = problems.iter().map(|p| format!("  - {p}")).collect();
    Err(failed(format!("vendored charts: {} problem(s):\n{}", problems.len(), list.join("\n"))))
}

fn check_name_and_repository(name: &str, repository: &str) -> Result<()> {
    let name_ok = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.');
    if !name_ok {
        return Err(bad_input(format!(
            "chart name `{name}`: expected letters, digits, `-`, `_` or `.` (a Helm chart name)"
        )));
    }
    let scheme_ok = ["https://", "http://", "oci://"].iter().any(|s| repository.starts_with(s));
    if !scheme_ok {
        return Err(bad_input(format!(
            "--repo `{repository}`: expected an https://, http:// Helm repository or an oci:// registry path"
        )));
    }
    Ok(())
}

fn mismatch(chart: &LockedChart, fetched: &Fetched) -> Error {
    failed(format!(
        "chart `{}` {}: the downloaded archive ({}) has digest {} but the lock says {}; the existing file was left untouched",
        chart.name, chart.version, fetched.source, fetched.digest, chart.digest
    ))
}

fn write_archive(lock_path: &Path, chart: &LockedChart, fetched: &Fetched) -> Result<()> {
    let path = ChartsLock::archive_path(lock_path, chart);
    write_atomically(&path, &fetched.bytes, 0o644)
        .map_err(|e| failed(format!("cannot write {}: {e:#}", path.display())))
}
