//! One watcher: its filter, its place in the history, bookmarks and the deadline, and
//! the chunked response that carries its events (the cacher's `cacheWatcher`).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::params::{FieldTerm, Params, Start};
use super::{Event, Hub, Kind, StreamReply, TooOld, error_event};
use crate::apiserver::selector::{self, Requirement};
use crate::apiserver::store::{ApiError, Target};

/// `--min-request-timeout`: a watch without `timeoutSeconds` ends after this times a
/// random factor in [1, 2) (`handlers/get.go`).
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(1800);
/// The cacher's `bookmarkFrequency`.
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);
/// A bookmark is also sent this long before the deadline (`nextBookmarkTime`).
const BOOKMARK_BEFORE_DEADLINE: Duration = Duration::from_secs(2);
/// How long a watch waits for a resourceVersion newer than the store's before it fails
/// (`blockTimeout` of `waitUntilFreshAndBlock`).
const FRESH_WAIT: Duration = Duration::from_secs(3);

pub struct Watcher {
    hub: Arc<Hub>,
    /// `group/plural`: the history this watch reads.
    resource: String,
    /// The key prefix of the objects it may see (the resource, and the namespace).
    scope: String,
    api_version: String,
    kind: String,
    labels: Vec<Requirement>,
    fields: Vec<FieldTerm>,
    start: Start,
    bookmarks: bool,
    deadline: Instant,
}

impl Watcher {
    pub fn new(hub: Arc<Hub>, t: &Target, kind: String, p: Params) -> Watcher {
        let scope = match (&t.namespace, t.namespaced()) {
            (Some(ns), true) => format!("{}{ns}/", t.prefix()),
            _ => t.prefix(),
        };
        let timeout = p.timeout.unwrap_or_else(|| MIN_REQUEST_TIMEOUT.mul_f64(1.0 + jitter()));
        Watcher {
            hub,
            resource: t.prefix().trim_end_matches('/').to_owned(),
            scope,
            api_version: t.api_version(),
            kind,
            labels: p.labels,
            fields: p.fields,
            start: p.start,
            bookmarks: p.bookmarks,
            deadline: Instant::now() + timeout,
        }
    }

    fn selects(&self, obj: &Value) -> bool {
        selector::matches(&self.labels, &obj["metadata"]["labels"])
            && selector::matches_fields(&self.fields, obj)
    }

    /// The event this watcher sees for `e`, if any (`convertToWatchEvent`: an object
    /// that starts to match is ADDED, one that stops matching is DELETED).
    pub(super) fn convert(&self, e: &Event) -> Option<Bytes> {
        if !e.key.starts_with(&self.scope) {
            return None;
        }
        let now = e.kind != Kind::Deleted && self.selects(&e.object);
        let before = e.previous.as_deref().is_some_and(|p| self.selects(p));
        match (now, before) {
            (true, false) => Some(self.line("ADDED", &e.object)),
            (true, true) => Some(self.line("MODIFIED", &e.object)),
            (false, true) if e.kind == Kind::Deleted => Some(self.line("DELETED", &e.object)),
            (false, true) => {
                let mut last = e.previous.as_deref().cloned().unwrap_or_default();
                last["metadata"]["resourceVersion"] = json!(e.resource_version.to_string());
                Some(self.line("DELETED", &last))
            }
            (false, false) => None,
        }
    }

    /// One event line, the object under the apiVersion the watch asked for.
    fn line(&self, kind: &str, obj: &Value) -> Bytes {
        let mut obj = obj.clone();
        obj["apiVersion"] = json!(self.api_version);
        encode(&json!({"type": kind, "object": obj}))
    }

    /// A BOOKMARK: only the kind and the resourceVersion.
    fn bookmark(&self, resource_version: u64, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": resource_version.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        encode(&json!({"type": "BOOKMARK",
            "object": {"kind": self.kind, "apiVersion": self.api_version, "metadata": metadata}}))
    }

    /// When the next periodic bookmark is due after `now`, if one is.
    fn next_bookmark(&self, now: Instant) -> Option<Instant> {
        if !self.bookmarks {
            return None;
        }
        let at = (now + BOOKMARK_EVERY).min(self.deadline.checked_sub(BOOKMARK_BEFORE_DEADLINE)?);
        (at >= now).then_some(at)
    }
}

fn encode(v: &Value) -> Bytes {
    let mut line = serde_json::to_vec(v).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// A fraction in [0, 1) from the clock (spreads the default deadlines apart).
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    f64::from(nanos) / 1e9
}

enum Phase {
    Begin,
    Running,
    Done,
}

struct State {
    w: Watcher,
    changed: tokio::sync::watch::Receiver<u64>,
    /// Every event of the resource up to here has been considered.
    cursor: u64,
    /// Where the watch began: a bookmark is sent only past it.
    began_at: u64,
    pending: VecDeque<Bytes>,
    next_bookmark: Option<Instant>,
    phase: Phase,
}

/// The `200` response streaming `w`'s events.
pub fn reply(w: Watcher) -> StreamReply {
    let changed = w.hub.changed.subscribe();
    let next_bookmark = w.next_bookmark(Instant::now());
    let state = State {
        w,
        changed,
        cursor: 0,
        began_at: 0,
        pending: VecDeque::new(),
        next_bookmark,
        phase: Phase::Begin,
    };
    let frames = futures::stream::unfold(state, |mut s| async move {
        let line = s.next_line().await?;
        Some((Ok::<_, Infallible>(Frame::data(line)), s))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/json")
        .header("Cache-Control", "no-cache, private")
        .body(StreamBody::new(frames).boxed())
        .expect("static response parts")
}

impl State {
    async fn next_line(&mut self) -> Option<Bytes> {
        loop {
            if let Some(line) = self.pending.pop_front() {
                return Some(line);
            }
            match self.phase {
                Phase::Done => return None,
                Phase::Begin => {
                    self.begin().await;
                    continue;
                }
                Phase::Running => {}
            }
            if self.catch_up().is_err() {
                // Fell behind what the history keeps: the cacher closes such a watcher,
                // the client watches again from its last version.
                self.phase = Phase::Done;
                continue;
            }
            if !self.pending.is_empty() {
                continue;
            }
            let deadline = self.w.deadline;
            let bookmark_at = self.next_bookmark.unwrap_or(deadline);
            // In this order when several are ready: the bookmark due before the deadline
            // goes out, and a stream of changes cannot hold the deadline off.
            tokio::select! {
                biased;
                _ = tokio::time::sleep_until(bookmark_at), if self.next_bookmark.is_some() => {
                    self.send_bookmark();
                }
                _ = tokio::time::sleep_until(deadline) => self.phase = Phase::Done,
                changed = self.changed.changed() => {
                    if changed.is_err() {
                        self.phase = Phase::Done;
                    }
                }
            }
        }
    }

    /// Queue the events after the cursor; returns the version they reach.
    fn catch_up(&mut self) -> Result<u64, TooOld> {
        let (events, synced) = {
            let history = self.w.hub.history();
            (history.since(&self.w.resource, self.cursor)?, history.synced())
        };
        for e in events {
            self.cursor = e.resource_version;
            if let Some(line) = self.w.convert(&e) {
                self.pending.push_back(line);
            }
        }
        Ok(synced)
    }

    fn send_bookmark(&mut self) {
        let now = Instant::now();
        self.next_bookmark = self.w.next_bookmark(now);
        let Ok(synced) = self.catch_up() else {
            self.phase = Phase::Done;
            return;
        };
        // As the cacher, a bookmark tells of a version the watch has not reached yet.
        if synced > self.began_at {
            self.pending.push_back(self.w.bookmark(synced, false));
            self.cursor = self.cursor.max(synced);
        }
    }

    async fn begin(&mut self) {
        self.phase = Phase::Running;
        match self.w.start.clone() {
            Start::After(rv) => {
                let checked = self.w.hub.history().since(&self.w.resource, rv).map(|_| ());
                if let Err(too_old) = checked {
                    return self.fail(&ApiError::new(
                        410,
                        "Expired",
                        format!("too old resource version: {} ({})", too_old.asked, too_old.oldest),
                    ));
                }
                self.cursor = rv;
            }
            Start::Now => self.cursor = self.w.hub.history().synced(),
            Start::InitialEvents { at_least, end_bookmark } => {
                if let Some(rv) = at_least
                    && let Err(current) = self.wait_for(rv).await
                {
                    let mut e = ApiError::new(
                        504,
                        "Timeout",
                        format!("Timeout: Too large resource version: {rv}, current: {current}"),
                    );
                    e.details = json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1});
                    return self.fail(&e);
                }
                let (objects, synced) = {
                    let history = self.w.hub.history();
                    (history.snapshot(&self.w.scope), history.synced())
                };
                for (_, obj) in objects {
                    if self.w.selects(&obj) {
                        self.pending.push_back(self.w.line("ADDED", &obj));
                    }
                }
                self.cursor = synced;
                if end_bookmark {
                    self.pending.push_back(self.w.bookmark(synced, true));
                }
            }
        }
        self.began_at = self.cursor;
    }

    /// Wait (up to [`FRESH_WAIT`]) until the history reaches `rv`; else the current one.
    async fn wait_for(&mut self, rv: u64) -> Result<(), u64> {
        let until = Instant::now() + FRESH_WAIT;
        loop {
            let synced = *self.changed.borrow_and_update();
            if synced >= rv {
                return Ok(());
            }
            tokio::select! {
                changed = self.changed.changed() => if changed.is_err() { return Err(synced) },
                _ = tokio::time::sleep_until(until) => return Err(synced),
            }
        }
    }

    fn fail(&mut self, e: &ApiError) {
        self.pending.push_back(encode(&error_event(e)));
        self.phase = Phase::Done;
    }
}
