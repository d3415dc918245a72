//! Watch on the fake API server, driven by the clients that watch: real kubectl
//! (`get --watch`, `wait`, `rollout status`), real helm (`helm test` waits for its test
//! Pod with list+watch) and kube-rs (its `watcher`, and raw watch streams).

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{Api, eventually, real_binary, rt, text};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{
    Api as KubeApi, DeleteParams, ListParams, Patch, PatchParams, WatchEvent, WatchParams,
};
use kube::runtime::watcher;
use serde_json::{Value, json};

/// Where `.ci/install-real-tools` puts the real binaries.
/// Hang guard for one awaited step (never reached when the server works).
const STEP: Duration = Duration::from_secs(60);

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
           "spec": {"containers": [{"name": "main", "image": "busybox"}]}})
}

fn create(api: &Api, collection: &str, object: &Value) -> Value {
    rt().block_on(api.client().create(collection, object)).unwrap()
}

fn delete(api: &Api, path: &str) {
    assert!(rt().block_on(api.client().delete(path)).unwrap(), "{path} was there");
}

/// How many watches whose request line contains `needle` the API server has served.
fn watches(api: &Api, needle: &str) -> usize {
    let log = std::fs::read_to_string(api.dir.path().join("apiserver.log")).unwrap_or_default();
    log.lines().filter(|l| l.starts_with("WATCH ") && l.contains(needle)).count()
}

/// Wait until the API server serves one more such watch than `before`.
fn await_watch(api: &Api, needle: &str, before: usize) {
    eventually(STEP, &format!("a watch with {needle}"), || {
        (watches(api, needle) > before).then_some(())
    });
}

/// Kill and reap a child that streams forever (`get --watch`).
fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn kubectl_get_watch_sees_a_pod_created_and_deleted() {
    let Some(kubectl) = real_binary("kubectl") else { return };
    let api = Api::start();
    create(&api, "/api/v1/namespaces/default/pods", &pod("before"));
    let mut watch = api
        .command(&kubectl)
        .args(["get", "pods", "--watch", "--output-watch-events", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let (lines, events) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let next = || -> (String, String) {
        let line = events.recv_timeout(STEP).expect("kubectl's watch printed no more events");
        let e: Value = serde_json::from_str(&line).unwrap();
        (
            e["type"].as_str().unwrap().to_owned(),
            e["object"]["metadata"]["name"].as_str().unwrap().to_owned(),
        )
    };
    // The list kubectl starts with; the watch goes on from its resourceVersion.
    assert_eq!(next(), ("ADDED".into(), "before".into()));
    create(&api, "/api/v1/namespaces/default/pods", &pod("x"));
    // The kubelet may write the first Pod's status meanwhile: its MODIFIED events may come first.
    let added = std::iter::repeat_with(next).find(|e| *e != ("MODIFIED".into(), "before".into()));
    assert_eq!(added, Some(("ADDED".into(), "x".into())));
    delete(&api, "/api/v1/namespaces/default/pods/x");
    let mut seen = Vec::new();
    loop {
        let event = next();
        seen.push(event.clone());
        if event.0 == "DELETED" {
            break;
        }
    }
    // The kubelet's status updates of both Pods may come in between; then the deletion.
    assert!(seen.iter().all(|(kind, _)| kind == "MODIFIED" || kind == "DELETED"), "{seen:?}");
    assert_eq!(seen.last().unwrap(), &("DELETED".to_owned(), "x".to_owned()));
    stop(watch);
}

#[test]
fn kubectl_waits_for_ready_and_for_delete_by_watching() {
    let Some(kubectl) = real_binary("kubectl") else { return };
    let api = Api::start();
    create(&api, "/api/v1/namespaces/default/pods", &pod("x"));
    // Ready only after the kubelet's startup delay: kubectl must see the change.
    let out = api.run(&kubectl, &["wait", "--for=condition=Ready", "pod/x", "--timeout=30s"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "pod/x condition met");
    // A watch that failed would show as client-go's "Failed to watch" errors.
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");

    let needle = "fieldSelector=metadata.name=x";
    let before = watches(&api, needle);
    let waiting = api
        .command(&kubectl)
        .args(["wait", "--for=delete", "pod/x", "--timeout=30s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    await_watch(&api, needle, before);
    delete(&api, "/api/v1/namespaces/default/pods/x");
    let out = waiting.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "pod/x condition met");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn kubectl_rollout_status_follows_a_deployment() {
    let Some(kubectl) = real_binary("kubectl") else { return };
    let api = Api::start();
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "main", "image": "busybox"}]}}}});
    create(&api, "/apis/apps/v1/namespaces/default/deployments", &deployment);
    let out = api.run(&kubectl, &["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Waiting for deployment \"web\" rollout to finish"), "{stdout}");
    assert!(stdout.trim_end().ends_with("deployment \"web\" successfully rolled out"), "{stdout}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

async fn step<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f).await.unwrap_or_else(|_| panic!("hung: {what}"))
}

fn configmap(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "1"}}),
    )
    .unwrap()
}

#[test]
fn kube_rs_watcher_sees_changes_with_list_watch_and_streaming_lists() {
    let api = Api::start();
    rt().block_on(async {
        let client = api.kube_client().await;
        let cms: KubeApi<ConfigMap> = KubeApi::namespaced(client, "default");
        let pp = Default::default();
        cms.create(&pp, &configmap("old", json!({}))).await.unwrap();
        for (n, config) in
            [watcher::Config::default(), watcher::Config::default().streaming_lists()]
                .into_iter()
                .enumerate()
        {
            let mut events = watcher(cms.clone(), config).boxed();
            let mut initial = Vec::new();
            loop {
                match step("initial list", events.try_next()).await.unwrap().unwrap() {
                    watcher::Event::Init => {}
                    watcher::Event::InitApply(cm) => initial.push(cm.metadata.name.unwrap()),
                    watcher::Event::InitDone => break,
                    other => panic!("before InitDone: {other:?}"),
                }
            }
            assert!(initial.contains(&"old".to_owned()), "{initial:?}");
            let name = format!("new-{n}");
            cms.create(&pp, &configmap(&name, json!({}))).await.unwrap();
            let patch = Patch::Merge(json!({"data": {"k": "2"}}));
            cms.patch(&name, &PatchParams::default(), &patch).await.unwrap();
            cms.delete(&name, &DeleteParams::default()).await.unwrap();
            let mut seen = Vec::new();
            while seen.len() < 3 {
                match step("a change", events.try_next()).await.unwrap().unwrap() {
                    watcher::Event::Apply(cm) => {
                        seen.push(("apply", cm.data.unwrap()["k"].clone()))
                    }
                    watcher::Event::Delete(cm) => {
                        seen.push(("delete", cm.data.unwrap()["k"].clone()))
                    }
                    other => panic!("after InitDone: {other:?}"),
                }
            }
            let expected: Vec<(&str, String)> =
                vec![("apply", "1".into()), ("apply", "2".into()), ("delete", "2".into())];
            assert_eq!(seen, expected);
        }
    });
}

#[test]
fn raw_watch_events_selectors_bookmarks_and_the_timeout() {
    let api = Api::start();
    rt().block_on(async {
        let client = api.kube_client().await;
        let cms: KubeApi<ConfigMap> = KubeApi::namespaced(client.clone(), "default");
        let pods: KubeApi<Pod> = KubeApi::namespaced(client.clone(), "default");
        let pp = Default::default();
        let from =
            cms.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
        cms.create(&pp, &configmap("web", json!({"tier": "web"}))).await.unwrap();
        cms.create(&pp, &configmap("db", json!({"tier": "db"}))).await.unwrap();
        let relabel = Patch::Merge(json!({"metadata": {"labels": {"tier": "cache"}}}));
        let relabelled = cms.patch("web", &PatchParams::default(), &relabel).await.unwrap();
        cms.patch("db", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "2"}})))
            .await
            .unwrap();
        cms.delete("db", &DeleteParams::default()).await.unwrap();

        // Every change since the list, in order, as the stream's event types.
        let wp = WatchParams::default().timeout(1);
        let all: Vec<(String, String)> =
            step("the watch", cms.watch(&wp, &from).await.unwrap().try_collect::<Vec<_>>())
                .await
                .unwrap()
                .into_iter()
                .filter_map(|e| match e {
                    WatchEvent::Added(c) => Some(("ADDED".into(), c.metadata.name.unwrap())),
                    WatchEvent::Modified(c) => Some(("MODIFIED".into(), c.metadata.name.unwrap())),
                    WatchEvent::Deleted(c) => Some(("DELETED".into(), c.metadata.name.unwrap())),
                    WatchEvent::Bookmark(_) => None,
                    WatchEvent::Error(e) => panic!("{e:?}"),
                })
                .collect();
        let pairs = |v: &[(&str, &str)]| {
            v.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect::<Vec<_>>()
        };
        assert_eq!(
            all,
            pairs(&[
                ("ADDED", "web"),
                ("ADDED", "db"),
                ("MODIFIED", "web"),
                ("MODIFIED", "db"),
                ("DELETED", "db")
            ])
        );

        // A label selector: the relabelled object leaves as DELETED, at the relabelling's version.
        let web = WatchParams::default().labels("tier=web").timeout(1);
        let events: Vec<_> = step(
            "the selector watch",
            cms.watch(&web, &from).await.unwrap().try_collect::<Vec<_>>(),
        )
        .await
        .unwrap();
        let kinds: Vec<String> = events
            .iter()
            .filter(|e| !matches!(e, WatchEvent::Bookmark(_)))
            .map(|e| format!("{e:?}"))
            .collect();
        assert_eq!(kinds, ["Added event", "Deleted event"]);
        let Some(WatchEvent::Deleted(gone)) =
            events.iter().find(|e| matches!(e, WatchEvent::Deleted(_)))
        else {
            unreachable!()
        };
        assert_eq!(gone.metadata.resource_version, relabelled.metadata.resource_version);
        assert_eq!(
            gone.metadata.labels.as_ref().unwrap()["tier"],
            "web",
            "its last matching state"
        );

        // A field selector on one name; and on the namespace, across all namespaces.
        let one = WatchParams::default().fields("metadata.name=db").timeout(1);
        let db: Vec<_> =
            step("by name", cms.watch(&one, &from).await.unwrap().try_collect::<Vec<_>>())
                .await
                .unwrap();
        assert_eq!(
            db.iter().filter(|e| !matches!(e, WatchEvent::Bookmark(_))).count(),
            3,
            "{db:?}"
        );
        let everywhere: KubeApi<ConfigMap> = KubeApi::all(client.clone());
        let elsewhere = WatchParams::default().fields("metadata.namespace=kube-system").timeout(1);
        let none: Vec<_> = step(
            "elsewhere",
            everywhere.watch(&elsewhere, &from).await.unwrap().try_collect::<Vec<_>>(),
        )
        .await
        .unwrap();
        assert!(none.iter().all(|e| matches!(e, WatchEvent::Bookmark(_))), "{none:?}");

        // No Pod changed, but the ConfigMaps moved the resourceVersion: a Pod watch hears
        // of it in a bookmark (2 s before its timeout), then the server ends the stream.
        let current =
            cms.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
        let bookmarked = WatchParams::default().timeout(3);
        let events: Vec<_> = step(
            "the pod watch",
            pods.watch(&bookmarked, &from).await.unwrap().try_collect::<Vec<_>>(),
        )
        .await
        .unwrap();
        let version = |v: &str| v.parse::<u64>().unwrap();
        match events.as_slice() {
            [WatchEvent::Bookmark(b)] => {
                let at = &b.metadata.resource_version;
                assert!(version(at) >= version(&current), "bookmark at {at}, list at {current}");
            }
            other => panic!("expected one bookmark, got {other:?}"),
        }
        // Without allowWatchBookmarks, none.
        let quiet = WatchParams { bookmarks: false, ..WatchParams::default().timeout(3) };
        let events: Vec<_> =
            step("a quiet watch", pods.watch(&quiet, &from).await.unwrap().try_collect::<Vec<_>>())
                .await
                .unwrap();
        assert!(events.is_empty(), "{events:?}");
    });
}

#[test]
fn a_version_from_before_a_restart_is_410_gone() {
    let mut api = Api::start();
    let from = rt().block_on(async {
        let cms: KubeApi<ConfigMap> = KubeApi::namespaced(api.kube_client().await, "default");
        let from =
            cms.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
        cms.create(&Default::default(), &configmap("a", json!({}))).await.unwrap();
        from
    });
    // A restarted API server's watch cache starts from the current state.
    api.restart();
    rt().block_on(async {
        let cms: KubeApi<ConfigMap> = KubeApi::namespaced(api.kube_client().await, "default");
        let current =
            cms.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
        let events: Vec<_> = step(
            "the old watch",
            cms.watch(&WatchParams::default(), &from).await.unwrap().try_collect::<Vec<_>>(),
        )
        .await
        .unwrap();
        match events.as_slice() {
            [WatchEvent::Error(status)] => {
                assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
                assert_eq!(status.message, format!("too old resource version: {from} ({current})"));
            }
            other => panic!("expected one 410 ERROR event, got {other:?}"),
        }
        // From the new list's version the watch is fine.
        let wp = WatchParams::default().timeout(1);
        let fine: Vec<_> = step(
            "a current watch",
            cms.watch(&wp, &current).await.unwrap().try_collect::<Vec<_>>(),
        )
        .await
        .unwrap();
        assert!(fine.iter().all(|e| !matches!(e, WatchEvent::Error(_))), "{fine:?}");
    });
}

/// A chart with one ConfigMap and a test hook Pod (`helm.sh/hook: test`).
fn smoke_chart(dir: &std::path::Path) -> PathBuf {
    let chart = dir.join("smoke");
    std::fs::create_dir_all(chart.join("templates/tests")).unwrap();
    std::fs::write(chart.join("Chart.yaml"), "apiVersion: v2\nname: smoke\nversion: 0.1.0\n")
        .unwrap();
    std::fs::write(
        chart.join("templates/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: smoke\ndata:\n  a: b\n",
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/tests/test.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: smoke-test\n  annotations:\n    helm.sh/hook: test\n\
         spec:\n  restartPolicy: Never\n  containers:\n    - name: t\n      image: busybox\n",
    )
    .unwrap();
    chart
}

#[test]
fn real_helm_test_returns_when_its_test_pod_ends() {
    // helm 3.15.3 (helmfile's) sends JSON bodies; later ones need protobuf.
    let Some(helm) = real_binary("helmfile-0.166.0/helm") else { return };
    let api = Api::start();
    let chart = smoke_chart(api.dir.path());
    let chart = chart.to_str().unwrap();
    api.ok(&helm, &["install", "smoke", chart, "-n", "default"]);
    let needle = "fieldSelector=metadata.name=smoke-test";
    for (phase, succeeds) in [("Succeeded", true), ("Failed", false)] {
        let before = watches(&api, needle);
        let testing = api
            .command(&helm)
            .args(["test", "smoke", "-n", "default", "--timeout", "120s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // helm creates the test Pod, then watches it; the kubelet of this test ends it.
        await_watch(&api, needle, before);
        let status = json!({"status": {"phase": phase}});
        rt().block_on(
            api.client().merge_patch("/api/v1/namespaces/default/pods/smoke-test/status", &status),
        )
        .unwrap();
        let out = testing.wait_with_output().unwrap();
        let said = text(&out);
        assert_eq!(out.status.success(), succeeds, "{said}");
        assert!(
            said.contains(if succeeds {
                "Phase:          Succeeded"
            } else {
                "pod smoke-test failed"
            }),
            "{said}"
        );
        assert!(!said.contains("Failed to watch"), "{said}");
    }
}
