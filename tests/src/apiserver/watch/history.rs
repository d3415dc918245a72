//! The event history watches are served from, as the API server's watch cache keeps it
//! (`k8s.io/apiserver/pkg/storage/cacher`: `watch_cache.go`, `watch_cache_interval.go`).
//!
//! The store is a map of objects and a global resourceVersion counter, and whatever
//! writes it (a request, a controller tick) changes it in place. [`History::record`],
//! called with the store locked after every write, compares the store with the state it
//! saw last and turns the difference into events: an object that is new is ADDED, one
//! whose resourceVersion changed is MODIFIED, one that is gone is DELETED. A deletion has
//! no resourceVersion of its own in the store, so `record` gives each one the next value
//! of the global counter (as etcd gives each delete its own revision); the deleted object
//! is sent with it, as the cacher sends the last state with the deletion's version.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::super::store::Store;

/// The cacher's `defaultLowerBoundCapacity`: at least this many events per resource
/// are kept, however old.
pub const KEEP_AT_LEAST: usize = 100;
/// The cacher's `defaultUpperBoundCapacity`.
pub const KEEP_AT_MOST: usize = 100 * 1024;
/// The cacher's `eventFreshDuration`: the watch cache grows to keep every event this young.
pub const FRESH_FOR: Duration = Duration::from_secs(75);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Added,
    Modified,
    Deleted,
}

impl Kind {
    pub fn wire(self) -> &'static str {
        match self {
            Kind::Added => "ADDED",
            Kind::Modified => "MODIFIED",
            Kind::Deleted => "DELETED",
        }
    }
}

/// One change of one object.
#[derive(Debug)]
pub struct Event {
    pub kind: Kind,
    pub resource_version: u64,
    /// The store key: `group/plural/namespace/name`.
    pub key: String,
    /// The object after the change; for DELETED its last state, carrying the deletion's
    /// resourceVersion.
    pub object: Arc<Value>,
    /// The object before the change (MODIFIED, DELETED): a watch whose selector matched
    /// it but not the new state sees the change as DELETED.
    pub previous: Option<Arc<Value>>,
    at: Instant,
}

/// A watch asked for a resourceVersion older than the history: `410 Expired`, with
/// `too old resource version: <asked> (<oldest kept - 1>)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooOld {
    pub asked: u64,
    pub oldest: u64,
}

#[derive(Default)]
struct Ring {
    events: VecDeque<Arc<Event>>,
    /// Whether an event was ever dropped (else the history reaches back to the start).
    evicted: bool,
}

pub struct History {
    /// Every object as of `synced`.
    objects: BTreeMap<String, Arc<Value>>,
    synced: u64,
    /// The resourceVersion the history begins at (the state when the server started,
    /// the cacher's `listResourceVersion`).
    start: u64,
    /// Per resource (`group/plural`), as the watch cache is per resource.
    rings: HashMap<String, Ring>,
}

/// `group/plural` of a store key.
pub fn resource_of(key: &str) -> &str {
    let mut slashes = key.match_indices('/').map(|(i, _)| i);
    let _ = slashes.next();
    slashes.next().map_or(key, |i| &key[..i])
}

fn version_of(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"].as_str().and_then(|v| v.parse().ok()).unwrap_or(0)
}

impl History {
    /// The history of `store` starting now: nothing to replay before its current state.
    pub fn new(store: &Store) -> History {
        History {
            objects: store
                .data
                .objects
                .iter()
                .map(|(k, v)| (k.clone(), Arc::new(v.clone())))
                .collect(),
            synced: store.data.resource_version,
            start: store.data.resource_version,
            rings: HashMap::new(),
        }
    }

    /// The resourceVersion every recorded event is at or below.
    pub fn synced(&self) -> u64 {
        self.synced
    }

    /// Record what changed in `store` since the last call. Returns whether the store's
    /// counter moved (deletions took versions), i.e. whether it must be saved again.
    pub fn record(&mut self, store: &mut Store, now: Instant) -> bool {
        if store.data.resource_version == self.synced {
            return false;
        }
        let mut changes: Vec<Event> = Vec::new();
        for (key, obj) in &store.data.objects {
            let rv = version_of(obj);
            let event = |kind, object: &Value, previous: Option<&Arc<Value>>| Event {
                kind,
                resource_version: rv,
                key: key.clone(),
                object: Arc::new(object.clone()),
                previous: previous.cloned(),
                at: now,
            };
            match self.objects.get(key) {
                None => changes.push(event(Kind::Added, obj, None)),
                Some(old) if version_of(old) == rv => {}
                Some(old) if old["metadata"]["uid"] != obj["metadata"]["uid"] => {
                    // Deleted and created again between two records (one controller
                    // tick): two events, as the two writes would have made.
                    let mut last = (**old).clone();
                    last["metadata"]["resourceVersion"] = json!(rv.to_string());
                    changes.push(event(Kind::Deleted, &last, Some(old)));
                    changes.push(event(Kind::Added, obj, None));
                }
                Some(old) => changes.push(event(Kind::Modified, obj, Some(old))),
            }
        }
        // Stable: a deletion stays before the creation that shares its version.
        changes.sort_by_key(|e| e.resource_version);
        let gone: Vec<String> =
            self.objects.keys().filter(|k| !store.data.objects.contains_key(*k)).cloned().collect();
        let bumped = !gone.is_empty();
        for key in gone {
            let previous = self.objects.get(&key).cloned().expect("listed above");
            store.data.resource_version += 1;
            let rv = store.data.resource_version;
            let mut last = (*previous).clone();
            last["metadata"]["resourceVersion"] = json!(rv.to_string());
            changes.push(Event {
                kind: Kind::Deleted,
                resource_version: rv,
                key,
                object: Arc::new(last),
                previous: Some(previous),
                at: now,
            });
        }
        for event in changes {
            match event.kind {
                Kind::Deleted => self.objects.remove(&event.key),
                _ => self.objects.insert(event.key.clone(), event.object.clone()),
            };
            let ring = self.rings.entry(resource_of(&event.key).to_owned()).or_default();
            ring.events.push_back(Arc::new(event));
            while ring.events.len() > KEEP_AT_LEAST
                && (ring.events.len() > KEEP_AT_MOST
                    || ring.events.front().is_some_and(|e| now.duration_since(e.at) > FRESH_FOR))
            {
                ring.events.pop_front();
                ring.evicted = true;
            }
        }
        self.synced = store.data.resource_version;
        bumped
    }

    /// The events of `resource` after `resource_version`, in order. `TooOld` when the
    /// history no longer reaches back there (`getAllEventsSinceLocked`: the oldest event
    /// kept, or the start when none was dropped; a version one below it is still fine).
    pub fn since(&self, resource: &str, resource_version: u64) -> Result<Vec<Arc<Event>>, TooOld> {
        let ring = self.rings.get(resource);
        let oldest = match ring.filter(|r| r.evicted).and_then(|r| r.events.front()) {
            Some(first) => first.resource_version,
            None => self.start + 1,
        };
        if resource_version < oldest - 1 {
            return Err(TooOld { asked: resource_version, oldest: oldest - 1 });
        }
        Ok(ring
            .map(|r| {
                r.events.iter().filter(|e| e.resource_version > resource_version).cloned().collect()
            })
            .unwrap_or_default())
    }

    /// The objects whose keys start with `prefix`, as of [`History::synced`].
    pub fn snapshot(&self, prefix: &str) -> Vec<(String, Arc<Value>)> {
        self.objects
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}
