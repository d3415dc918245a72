//! Unit tests of the watch history, parameters and filters.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::history::{FRESH_FOR, KEEP_AT_LEAST};
use super::params::{Params, Start};
use super::stream::Watcher;
use super::*;

fn configmaps(ns: Option<&str>) -> Target {
    Target::collection("", "v1", "configmaps", ns)
}

fn cm(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default", "labels": labels}})
}

fn rv(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap()
}

fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[test]
fn writes_become_events_in_order_and_deletions_get_their_own_version() {
    let mut store = Store::in_memory();
    let mut history = History::new(&store);
    let start = history.synced();
    let t = configmaps(Some("default"));
    let a = store.create(&t, cm("a", json!({}))).unwrap();
    assert!(!history.record(&mut store, Instant::now()), "no deletion, no new version");
    let named = |n: &str| Target { name: Some(n.into()), ..t.clone() };
    let a2 = store.patch(&named("a"), json!({"data": {"k": "v"}}), false).unwrap();
    history.record(&mut store, Instant::now());
    let b = store.create(&t, cm("b", json!({}))).unwrap();
    store.delete(&named("a")).unwrap();
    let before_delete = store.data.resource_version;
    assert!(history.record(&mut store, Instant::now()), "the deletion took a version");
    assert_eq!(store.data.resource_version, before_delete + 1);
    assert_eq!(history.synced(), store.data.resource_version);

    let events = history.since("core/configmaps", start).unwrap();
    let seen: Vec<(Kind, &str, u64)> = events
        .iter()
        .map(|e| (e.kind, e.object["metadata"]["name"].as_str().unwrap(), e.resource_version))
        .collect();
    assert_eq!(
        seen,
        [
            (Kind::Added, "a", rv(&a)),
            (Kind::Modified, "a", rv(&a2)),
            (Kind::Added, "b", rv(&b)),
            (Kind::Deleted, "a", store.data.resource_version),
        ]
    );
    assert_eq!(
        events[1].previous.as_ref().unwrap()["metadata"]["resourceVersion"],
        a["metadata"]["resourceVersion"]
    );
    let deleted = &events[3];
    assert_eq!(
        rv(&deleted.object),
        deleted.resource_version,
        "the final state carries the deletion's version"
    );
    assert_eq!(deleted.object["data"]["k"], "v");

    let after_first = history.since("core/configmaps", rv(&a)).unwrap();
    assert_eq!(after_first.len(), 3);
    assert!(history.since("core/secrets", start).unwrap().is_empty());
}

#[test]
fn a_version_before_the_history_is_too_old() {
    let mut store = Store::in_memory();
    let t = configmaps(Some("default"));
    store.create(&t, cm("before", json!({}))).unwrap();
    let history = History::new(&store);
    let start = history.synced();
    let too_old = history.since("core/configmaps", start - 1).unwrap_err();
    assert_eq!(too_old, TooOld { asked: start - 1, oldest: start });
    assert!(history.since("core/configmaps", start).is_ok());
    assert!(history.since("core/configmaps", start + 100).unwrap().is_empty());
}

#[test]
fn old_events_go_once_more_than_the_floor_are_kept() {
    let mut store = Store::in_memory();
    let mut history = History::new(&store);
    let t = configmaps(Some("default"));
    let long_ago = Instant::now();
    let first = store.create(&t, cm("c0", json!({}))).unwrap();
    history.record(&mut store, long_ago);
    for i in 1..KEEP_AT_LEAST {
        store.create(&t, cm(&format!("c{i}"), json!({}))).unwrap();
        history.record(&mut store, long_ago);
    }
    assert!(history.since("core/configmaps", rv(&first) - 1).is_ok(), "{KEEP_AT_LEAST} kept");
    // One more, later than the fresh window: the oldest goes.
    store.create(&t, cm("late", json!({}))).unwrap();
    history.record(&mut store, long_ago + FRESH_FOR + Duration::from_secs(1));
    let err = history.since("core/configmaps", rv(&first) - 1).unwrap_err();
    assert_eq!(err.asked, rv(&first) - 1);
    assert!(err.oldest >= rv(&first), "{err:?}");
    assert_eq!(history.since("core/configmaps", rv(&first)).unwrap().len(), KEEP_AT_LEAST);
}

#[test]
fn deleted_and_created_again_between_records_is_two_events() {
    let mut store = Store::in_memory();
    let t = configmaps(Some("default"));
    store.create(&t, cm("a", json!({}))).unwrap();
    let mut history = History::new(&store);
    let start = history.synced();
    store.delete(&Target { name: Some("a".into()), ..t.clone() }).unwrap();
    store.create(&t, cm("a", json!({}))).unwrap();
    history.record(&mut store, Instant::now());
    let kinds: Vec<Kind> =
        history.since("core/configmaps", start).unwrap().iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [Kind::Deleted, Kind::Added]);
}

#[test]
fn watch_requests_are_recognised() {
    let segs = |p: &'static str| p.split('/').filter(|s| !s.is_empty()).collect::<Vec<_>>();
    let w = query(&[("watch", "true")]);
    assert_eq!(
        requested(&segs("/api/v1/namespaces/default/pods"), &w),
        Some(("", "v1", vec!["namespaces", "default", "pods"]))
    );
    assert!(requested(&segs("/apis/apps/v1/deployments"), &query(&[("watch", "1")])).is_some());
    assert_eq!(
        requested(&segs("/api/v1/watch/namespaces/default/pods/x"), &[]),
        Some(("", "v1", vec!["namespaces", "default", "pods", "x"]))
    );
    // On one object's path `watch` is no list parameter: a plain GET.
    assert_eq!(requested(&segs("/api/v1/namespaces/default/pods/x"), &w), None);
    assert_eq!(requested(&segs("/api/v1/pods"), &query(&[("watch", "false")])), None);
    assert_eq!(requested(&segs("/api/v1/pods"), &[]), None);
}

#[test]
fn where_a_watch_begins() {
    let start = |pairs: &[(&str, &str)]| Params::parse(&query(pairs), None).unwrap().start;
    let initial = Start::InitialEvents { at_least: None, end_bookmark: false };
    assert_eq!(start(&[]), initial);
    assert_eq!(start(&[("resourceVersion", "0")]), initial);
    assert_eq!(
        start(&[("resourceVersion", "0"), ("allowWatchBookmarks", "true")]),
        Start::InitialEvents { at_least: None, end_bookmark: true }
    );
    assert_eq!(start(&[("resourceVersion", "12")]), Start::After(12));
    let streaming = [
        ("sendInitialEvents", "true"),
        ("resourceVersionMatch", "NotOlderThan"),
        ("allowWatchBookmarks", "true"),
    ];
    assert_eq!(start(&streaming), Start::InitialEvents { at_least: None, end_bookmark: true });
    let mut at = streaming.to_vec();
    at.push(("resourceVersion", "7"));
    assert_eq!(start(&at), Start::InitialEvents { at_least: Some(7), end_bookmark: true });
    assert_eq!(
        start(&[("sendInitialEvents", "false"), ("resourceVersionMatch", "NotOlderThan")]),
        Start::Now
    );
    let by_name = query(&[("fieldSelector", "metadata.name=y")]);
    assert_eq!(Params::parse(&by_name, Some("x")).unwrap_err().code, 400);
    let named = Params::parse(&[], Some("x")).unwrap();
    assert_eq!(
        named.fields,
        [(vec!["metadata".to_owned(), "name".to_owned()], false, "x".to_owned())]
    );
    assert_eq!(
        Params::parse(&query(&[("timeoutSeconds", "5")]), None).unwrap().timeout,
        Some(Duration::from_secs(5))
    );
}

#[test]
fn invalid_watch_options_are_422_as_upstream_words_them() {
    let err = |pairs: &[(&str, &str)]| Params::parse(&query(pairs), None).unwrap_err();
    let e = err(&[("resourceVersionMatch", "NotOlderThan")]);
    assert_eq!((e.code, e.reason), (422, "Invalid"));
    assert_eq!(
        e.message,
        "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"
    );
    let e = err(&[("sendInitialEvents", "true"), ("resourceVersionMatch", "Exact")]);
    assert_eq!(
        e.message,
        "ListOptions.meta.k8s.io \"\" is invalid: [resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan, resourceVersionMatch: Unsupported value: \"Exact\": supported values: \"NotOlderThan\"]"
    );
    assert_eq!(err(&[("resourceVersion", "abc")]).code, 400);
    assert_eq!(err(&[("labelSelector", "a in (b")]).code, 400);
}

#[test]
fn a_selector_watch_sees_an_object_leave_as_deleted() {
    let mut store = Store::in_memory();
    let hub = Hub::new(&store);
    let start = hub.history().synced();
    let t = configmaps(Some("default"));
    store.create(&t, cm("a", json!({"tier": "web"}))).unwrap();
    hub.record(&mut store);
    store
        .create(&Target::collection("", "v1", "configmaps", Some("kube-system")), {
            let mut o = cm("other-ns", json!({"tier": "web"}));
            o["metadata"]["namespace"] = json!("kube-system");
            o
        })
        .unwrap();
    let named = Target { name: Some("a".into()), ..t.clone() };
    hub.record(&mut store);
    let away = store.patch(&named, json!({"metadata": {"labels": {"tier": "db"}}}), false).unwrap();
    hub.record(&mut store);
    store.patch(&named, json!({"metadata": {"labels": {"tier": "web"}}}), false).unwrap();
    hub.record(&mut store);
    store.delete(&named).unwrap();
    hub.record(&mut store);

    let params = Params::parse(&query(&[("labelSelector", "tier=web")]), None).unwrap();
    let w = Watcher::new(hub.clone(), &t, "ConfigMap".into(), params);
    let lines: Vec<Value> = hub
        .history()
        .since("core/configmaps", start)
        .unwrap()
        .iter()
        .filter_map(|e| w.convert(e))
        .map(|line| serde_json::from_slice(&line).unwrap())
        .collect();
    let seen: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["type"].as_str().unwrap(),
                l["object"]["metadata"]["labels"]["tier"].as_str().unwrap(),
            )
        })
        .collect();
    // Created, relabelled away (DELETED, its last matching state), back (ADDED), deleted.
    assert_eq!(seen, [("ADDED", "web"), ("DELETED", "web"), ("ADDED", "web"), ("DELETED", "web")]);
    // The relabelled object's last matching state, at the version of the relabelling.
    assert_eq!(
        lines[1]["object"]["metadata"]["resourceVersion"],
        away["metadata"]["resourceVersion"]
    );
    assert!(lines.iter().all(|l| l["object"]["metadata"]["namespace"] == "default"));
}
