//! Watch, as the API server serves it from its watch cache
//! (`k8s.io/apiserver/pkg/endpoints/handlers/get.go` `ListResource` and `watch.go`,
//! `pkg/storage/cacher/cacher.go` `Watch`, `cache_watcher.go`).
//!
//! `GET <collection>?watch=true` (or `1`), or any path under the old `/watch/` prefix
//! (where a name watches one object), answers `200` and streams newline-delimited JSON
//! events, `{"type":"ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK"|"ERROR","object":{...}}`,
//! over chunked HTTP/1.1 until `timeoutSeconds` (else the server's randomised
//! 30-60 minutes) has passed. Every write, from a request or a controller, is recorded
//! in the [`Hub`] under the store lock (`history.rs`), so a list's resourceVersion and
//! the events after it never miss or repeat a change.

mod history;
mod params;
mod stream;

use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use http_body_util::combinators::BoxBody;
use hyper::Response;
use hyper::body::Bytes;

use super::store::{ApiError, Store, Target};
pub use history::{Event, History, Kind, TooOld};

/// The event history of one API server and a signal to its watchers when it grows.
pub struct Hub {
    history: Mutex<History>,
    changed: tokio::sync::watch::Sender<u64>,
}

impl Hub {
    pub fn new(store: &Store) -> Arc<Hub> {
        let history = History::new(store);
        let (changed, _) = tokio::sync::watch::channel(history.synced());
        Arc::new(Hub { history: Mutex::new(history), changed })
    }

    /// Record what every write since the last call changed. Call it with the store
    /// locked after writing and before saving; returns whether the store changed again
    /// (deletions take resourceVersions) and must be saved.
    pub fn record(&self, store: &mut Store) -> bool {
        let mut history = self.history();
        let bumped = history.record(store, Instant::now());
        self.changed.send_replace(history.synced());
        bumped
    }

    fn history(&self) -> MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub type StreamReply = Response<BoxBody<Bytes, Infallible>>;

/// The watch a GET asks for, if it asks for one: `(group, version, path below the
/// group version)`, without the `watch` segment of the old `/watch/` paths.
pub fn requested<'a>(
    segments: &[&'a str],
    query: &[(String, String)],
) -> Option<(&'a str, &'a str, Vec<&'a str>)> {
    let (group, version, rest) = match segments {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    if let ["watch", rest @ ..] = rest {
        return Some((group, version, rest.to_vec()));
    }
    let flag = query.iter().find(|(k, _)| k == "watch").map(|(_, v)| v.as_str());
    if !flag.and_then(params::parse_bool).unwrap_or(false) {
        return None;
    }
    // `?watch=true` is a list parameter: on one object's path it is a plain GET.
    let t = super::target(group, version, rest)?;
    (t.name.is_none() && t.subresource.is_none()).then(|| (group, version, rest.to_vec()))
}

/// Serve a watch on `group`/`version`/`rest` (see [`requested`]).
pub fn serve(
    store: &Mutex<Store>,
    hub: &Arc<Hub>,
    group: &str,
    version: &str,
    rest: &[&str],
    query: &[(String, String)],
) -> StreamReply {
    let Some(t) = super::target(group, version, rest).filter(|t| t.subresource.is_none()) else {
        return boxed(super::not_found_path(&rest.join("/")));
    };
    let kind = {
        let mut store = super::lock(store);
        if !super::discovery::served(&store, group, version, &t.plural) {
            return boxed(super::not_found_path(&format!(
                "/apis/{group}/{version}/{}",
                rest.join("/")
            )));
        }
        // Every write records itself; this only makes sure nothing is left behind.
        if hub.record(&mut store) {
            let _ = store.save();
        }
        kind_of(&store, &t)
    };
    let params = match params::Params::parse(query, t.name.as_deref()) {
        Ok(p) => p,
        Err(e) => return boxed(super::error_reply(&e)),
    };
    stream::reply(stream::Watcher::new(hub.clone(), &t, kind, params))
}

/// The kind a bookmark names (a custom resource's from its CRD).
fn kind_of(store: &Store, t: &Target) -> String {
    super::discovery::crds(store)
        .into_iter()
        .find(|c| c.group == t.group && c.plural == t.plural)
        .map(|c| c.kind)
        .unwrap_or_else(|| t.kind(None))
}

/// A `Status` failure sent as the one event of a watch stream (the cacher's
/// `newErrWatcher`: once the request is accepted, errors travel as ERROR events).
fn error_event(e: &ApiError) -> serde_json::Value {
    serde_json::json!({"type": "ERROR", "object": e.to_status()})
}

pub fn boxed(reply: super::Reply) -> StreamReply {
    use http_body_util::BodyExt;
    reply.map(|body| body.boxed())
}

#[cfg(test)]
mod tests;
