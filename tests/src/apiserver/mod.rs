//! The fake Kubernetes API server: `testbed apiserver --state-dir D --port-file F`.
//!
//! Plain HTTP on 127.0.0.1 (no TLS, no auth), JSON only whatever `Accept` prefers
//! (kubectl and helm accept JSON when they asked for Table or protobuf; discovery v2
//! requests get the legacy documents, which clients fall back to). Errors are
//! Kubernetes `Status` objects. Watch is not served (405).

pub mod resources;
pub mod selector;
pub mod store;
pub mod controllers;
pub mod openapi;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use resources::RESOURCES;
use store::{ApiError, Store, Target};

/// `apiserver --state-dir D --port-file F`; returns the process exit code.
pub fn main(args: &[String]) -> i32 {
    let mut state_dir = None;
    let mut port_file = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--state-dir" => state_dir = it.next().map(PathBuf::from),
            "--port-file" => port_file = it.next().map(PathBuf::from),
            other => {
                eprintln!(
                    "testbed apiserver: unexpected argument `{other}`; usage: apiserver --state-dir D --port-file F"
                );
                return 2;
            }
        }
    }
    let (Some(state_dir), Some(port_file)) = (state_dir, port_file) else {
        eprintln!("testbed apiserver: usage: apiserver --state-dir D --port-file F");
        return 2;
    };
    match run(&state_dir, &port_file) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("testbed apiserver: {e:#}");
            1
        }
    }
}

/// Serve until killed. The port file is written (atomically) once the socket listens.
pub fn run(state_dir: &Path, port_file: &Path) -> Result<()> {
    let store = Arc::new(Mutex::new(Store::open(state_dir)?));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        controllers::spawn(store.clone(), std::env::var_os("TESTBED_DIR").map(PathBuf::from));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let tmp = port_file.with_extension("tmp");
        std::fs::write(&tmp, format!("{port}\n"))
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, port_file)
            .with_context(|| format!("writing {}", port_file.display()))?;
        eprintln!(
            "testbed apiserver: listening on 127.0.0.1:{port}, state in {}",
            state_dir.display()
        );
        loop {
            let (stream, _) = listener.accept().await?;
            let store = store.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req| handle(store.clone(), port, req));
                let io = hyper_util::rt::TokioIo::new(stream);
                if let Err(e) =
                    hyper::server::conn::http1::Builder::new().serve_connection(io, service).await
                {
                    eprintln!("testbed apiserver: connection: {e}");
                }
            });
        }
    })
}

type Reply = Response<Full<Bytes>>;

fn json_reply(code: u16, body: &Value) -> Reply {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(body).unwrap_or_default())))
        .expect("static response parts")
}

fn text_reply(body: String) -> Reply {
    Response::builder()
        .header("Content-Type", "text/plain")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts")
}

fn error_reply(e: &ApiError) -> Reply {
    json_reply(e.code, &e.to_status())
}

async fn handle(
    store: Arc<Mutex<Store>>,
    port: u16,
    req: Request<Incoming>,
) -> Result<Reply, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let content_type =
        req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(error_reply(&ApiError::bad_request(format!("reading body: {e}")))),
    };
    let reply = route(&store, port, &method, &path, &query, &content_type, &body);
    eprintln!("{method} {path}{} -> {}", query_suffix(&query), reply.status().as_u16());
    Ok(reply)
}

fn query_suffix(query: &[(String, String)]) -> String {
    if query.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("?{}", parts.join("&"))
}

fn route(
    store: &Mutex<Store>,
    port: u16,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    content_type: &str,
    body: &[u8],
) -> Reply {
    let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    match (method, segs.as_slice()) {
        (&Method::GET, ["version"]) => json_reply(200, &version()),
        (&Method::GET, ["readyz" | "livez" | "healthz", ..]) => text_reply("ok".into()),
        (&Method::GET, ["api"]) => json_reply(
            200,
            &json!({
                "kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": format!("127.0.0.1:{port}")}],
            }),
        ),
        (&Method::GET, ["apis"]) => json_reply(200, &group_list()),
        (&Method::GET, ["openapi", "v3"]) => json_reply(200, &openapi::root()),
        (&Method::GET, ["openapi", "v3", rest @ ..]) => match openapi::group_version(&rest.join("/")) {
            Some(doc) => json_reply(200, &doc),
            None => not_found_path(path),
        },
        (&Method::GET, ["api", "v1"]) => json_reply(200, &resource_list("", "v1")),
        (&Method::GET, ["apis", group]) => match group_list()["groups"]
            .as_array()
            .and_then(|gs| gs.iter().find(|g| g["name"] == *group))
        {
            Some(g) => {
                let mut g = g.clone();
                g["kind"] = json!("APIGroup");
                g["apiVersion"] = json!("v1");
                json_reply(200, &g)
            }
            None => not_found_path(path),
        },
        (&Method::GET, ["apis", group, version]) => {
            let list = resource_list(group, version);
            if list["resources"].as_array().is_some_and(|r| r.is_empty()) {
                not_found_path(path)
            } else {
                json_reply(200, &list)
            }
        }
        (_, ["api", version, rest @ ..]) => {
            objects(store, method, "", version, rest, query, content_type, body)
        }
        (_, ["apis", group, version, rest @ ..]) => {
            objects(store, method, group, version, rest, query, content_type, body)
        }
        _ => not_found_path(path),
    }
}

fn not_found_path(path: &str) -> Reply {
    let mut e = ApiError::new(404, "NotFound", "the server could not find the requested resource");
    e.details = json!({ "causes": [{"reason": "UnexpectedServerResponse", "message": format!("404 page not found: {path}")}] });
    error_reply(&e)
}

fn version() -> Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0+testbed", "gitCommit": "testbed",
        "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24.0",
        "compiler": "gc", "platform": "linux/amd64",
    })
}

fn group_list() -> Value {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, vs)) => {
                for v in r.versions {
                    if !vs.contains(v) {
                        vs.push(v);
                    }
                }
            }
            None => groups.push((r.group, r.versions.to_vec())),
        }
    }
    let groups: Vec<Value> = groups
        .iter()
        .map(|(g, vs)| {
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            json!({"name": g, "versions": versions, "preferredVersion": versions[0]})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_list(group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for r in RESOURCES.iter().filter(|r| r.group == group && r.versions.contains(&version)) {
        resources.push(json!({
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
            "kind": r.kind, "verbs": resources::VERBS, "shortNames": r.short_names,
        }));
        for sub in r.subresources {
            let (kind, verbs) = if *sub == "log" {
                ("Pod", vec!["get"])
            } else {
                (r.kind, vec!["get", "patch", "update"])
            };
            resources.push(json!({
                "name": format!("{}/{sub}", r.plural), "singularName": "", "namespaced": r.namespaced,
                "kind": kind, "verbs": verbs,
            }));
        }
    }
    let group_version =
        if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
}

/// The path below `/api/v1` or `/apis/G/V`: `[namespaces/NS/]PLURAL[/NAME[/SUB]]`.
fn target(group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    let owned = |s: &&str| (*s).to_owned();
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if !(group.is_empty() && *plural == "status" || *plural == "finalize") =>
        {
            (Some((*ns).to_owned()), [&[*plural][..], tail].concat())
        }
        _ => (None, rest.to_vec()),
    };
    let (plural, name, subresource) = match rest.as_slice() {
        [plural] => (owned(plural), None, None),
        [plural, name] => (owned(plural), Some(owned(name)), None),
        [plural, name, sub] => (owned(plural), Some(owned(name)), Some(owned(sub))),
        _ => return None,
    };
    Some(Target {
        group: group.to_owned(),
        version: version.to_owned(),
        plural,
        namespace,
        name,
        subresource,
    })
}

#[allow(clippy::too_many_arguments)]
fn objects(
    store: &Mutex<Store>,
    method: &Method,
    group: &str,
    version: &str,
    rest: &[&str],
    query: &[(String, String)],
    content_type: &str,
    body: &[u8],
) -> Reply {
    let Some(t) = target(group, version, rest) else {
        return not_found_path(&rest.join("/"));
    };
    let q = |k: &str| query.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    if q("watch").is_some_and(|w| w == "true" || w == "1") {
        return error_reply(&ApiError::new(
            405,
            "MethodNotAllowed",
            "the testbed API server does not serve watch",
        ));
    }
    if !body.is_empty() && (content_type.contains("protobuf") || content_type.contains("cbor")) {
        // client-go falls back to JSON on 415 (kubectl sends protobuf first).
        return error_reply(&ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/apply-patch+yaml, application/merge-patch+json; got {content_type}"
            ),
        ));
    }
    let dry_run = q("dryRun").is_some();
    let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
    let snapshot = (method != Method::GET && dry_run).then(|| store.data.clone());
    let parsed = || parse_body(body);
    let result = match (method, t.name.is_some(), t.subresource.as_deref()) {
        (&Method::GET, true, Some("log")) => match store.pod_log(&t) {
            Ok(text) => return text_reply(text),
            Err(e) => Err(e),
        },
        (&Method::GET, true, _) => store.get(&t),
        (&Method::GET, false, _) => store.list(&t, q("labelSelector"), q("fieldSelector")),
        (&Method::POST, false, _) => parsed().and_then(|b| store.create(&t, b)),
        (&Method::PUT, true, _) => parsed().and_then(|b| store.replace(&t, b)),
        (&Method::PATCH, true, _) => {
            let apply = content_type.starts_with("application/apply-patch");
            if !apply && content_type.starts_with("application/json-patch") {
                Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    "the testbed API server does not support JSON patch",
                ))
            } else {
                parsed().and_then(|b| store.patch(&t, b, apply))
            }
        }
        (&Method::DELETE, true, _) => store.delete(&t),
        (&Method::DELETE, false, _) => {
            store.delete_collection(&t, q("labelSelector"), q("fieldSelector"))
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )),
    };
    if let Some(snapshot) = snapshot {
        store.data = snapshot;
    } else if method != Method::GET
        && result.is_ok()
        && let Err(e) = store.save()
    {
        return error_reply(&ApiError::new(500, "InternalError", format!("saving state: {e:#}")));
    }
    match result {
        Ok(v) => json_reply(if method == Method::POST { 201 } else { 200 }, &v),
        Err(e) => error_reply(&e),
    }
}

/// JSON, or YAML for `application/apply-patch+yaml` (YAML is a superset of JSON).
fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
    serde_saphyr::from_str::<Value>(text)
        .map_err(|e| ApiError::bad_request(format!("the body is neither JSON nor YAML: {e}")))
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_targets() {
        let t = target("", "v1", &["namespaces", "ameide", "secrets", "x"]).unwrap();
        assert_eq!(
            (t.namespace.as_deref(), t.plural.as_str(), t.name.as_deref()),
            (Some("ameide"), "secrets", Some("x"))
        );
        let t = target("", "v1", &["namespaces", "ameide"]).unwrap();
        assert_eq!(
            (t.namespace, t.plural.as_str(), t.name.as_deref()),
            (None, "namespaces", Some("ameide"))
        );
        let t = target("", "v1", &["namespaces", "ameide", "status"]).unwrap();
        assert_eq!((t.plural.as_str(), t.subresource.as_deref()), ("namespaces", Some("status")));
        let t = target("", "v1", &["namespaces", "a", "pods", "p", "log"]).unwrap();
        assert_eq!(t.subresource.as_deref(), Some("log"));
        let t = target("batch", "v1", &["jobs"]).unwrap();
        assert_eq!((t.namespace, t.name), (None, None));
    }

    #[test]
    fn queries_are_decoded() {
        assert_eq!(
            parse_query("labelSelector=name%3Dx%2Cowner%3Dhelm&limit=500"),
            [
                ("labelSelector".to_owned(), "name=x,owner=helm".to_owned()),
                ("limit".to_owned(), "500".to_owned())
            ]
        );
        assert_eq!(percent_decode("a%2"), "a%2");
    }

    #[test]
    fn discovery_lists_externalsecrets_in_both_versions() {
        for v in ["v1", "v1beta1"] {
            let list = resource_list("external-secrets.io", v);
            assert!(
                list["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["name"] == "externalsecrets" && r["namespaced"] == true)
            );
        }
        let groups = group_list();
        assert!(groups["groups"].as_array().unwrap().iter().any(|g| g["name"] == "batch"));
    }
}
