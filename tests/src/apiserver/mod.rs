//! The fake Kubernetes API server: `testbed apiserver --state-dir D --port-file F`.
//!
//! HTTPS on 127.0.0.1 with the cluster's certificates (`crate::tls`; client
//! certificates are not checked), JSON only whatever `Accept` prefers
//! (kubectl and helm accept JSON when they asked for Table or protobuf; discovery v2
//! requests get the legacy documents, which clients fall back to). Errors are
//! Kubernetes `Status` objects. Watch is not served (405).

pub mod controllers;
pub mod defaults;
pub mod discovery;
pub mod openapi;
pub mod resources;
pub mod selector;
pub mod store;
pub mod target;

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use store::{ApiError, Store, Target};

/// How an API server process is run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub state_dir: PathBuf,
    pub port_file: PathBuf,
    /// Listen on this port (k3d keeps a cluster's API port across stop/start); else the
    /// port of an existing port file; else a free one.
    pub port: Option<u16>,
    /// The server node container: serve only while it runs, exit when it is removed.
    pub container: Option<String>,
}

/// What the server node container is doing.
enum Node {
    Running,
    Stopped,
    Gone,
}

async fn node_state(docker: &bollard::Docker, name: &str) -> Node {
    match docker.inspect_container(name, None).await {
        Ok(c) if c.state.as_ref().and_then(|s| s.running).unwrap_or(false) => Node::Running,
        Ok(_) => Node::Stopped,
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
            Node::Gone
        }
        // The daemon did not answer: keep serving rather than guess.
        Err(_) => Node::Running,
    }
}

async fn bind(port: u16) -> Result<tokio::net::TcpListener> {
    let mut last = None;
    for _ in 0..50 {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        match socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], port))) {
            Ok(()) => return Ok(socket.listen(1024)?),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(last.map(anyhow::Error::from).unwrap_or_else(|| anyhow::anyhow!("bind failed")))
        .with_context(|| format!("listening on 127.0.0.1:{port}"))
}

/// Serve HTTPS until killed, or (with a node container) while the node runs: a stopped
/// node stops the API (connections refused), a started one brings it back on the same
/// port, a removed one ends the process. The process runs in its own session, so killing
/// the session of whatever started it (a shell, a test, the engine) leaves the cluster up.
pub fn run(o: &Options) -> Result<()> {
    // Fails only when already a session or group leader, which is fine.
    let _ = nix::unistd::setsid();
    let store = Arc::new(Mutex::new(Store::open(&o.state_dir)?));
    let certs = crate::tls::ensure(&o.state_dir)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(crate::tls::server_config(&certs)?);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let serving = Arc::new(std::sync::atomic::AtomicBool::new(o.container.is_none()));
        // The node's image store: `clusters/<c>/nodes/<node>/images` beside `api/`.
        let node_store = o
            .container
            .as_ref()
            .and_then(|node| Some(o.state_dir.parent()?.join("nodes").join(node).join("images")));
        controllers::spawn(
            store.clone(),
            std::env::var_os("TESTBED_DIR").map(PathBuf::from),
            node_store,
            serving.clone(),
        );
        let docker = match &o.container {
            Some(_) => Some(crate::docker::connect().await?),
            None => None,
        };
        let mut port = o.port.or_else(|| {
            std::fs::read_to_string(&o.port_file).ok().and_then(|p| p.trim().parse().ok())
        });
        loop {
            if let (Some(d), Some(name)) = (&docker, &o.container) {
                loop {
                    match node_state(d, name).await {
                        Node::Running => break,
                        Node::Gone => {
                            eprintln!("testbed apiserver: node {name} was removed; exiting");
                            return Ok(());
                        }
                        Node::Stopped => {
                            tokio::time::sleep(std::time::Duration::from_millis(300)).await
                        }
                    }
                }
            }
            let listener = bind(port.unwrap_or(0)).await?;
            let bound = listener.local_addr()?.port();
            port = Some(bound);
            let tmp = o.port_file.with_extension("tmp");
            std::fs::write(&tmp, format!("{bound}\n"))
                .with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &o.port_file)
                .with_context(|| format!("writing {}", o.port_file.display()))?;
            eprintln!(
                "testbed apiserver: listening on https://127.0.0.1:{bound}, state in {}",
                o.state_dir.display()
            );
            serving.store(true, std::sync::atomic::Ordering::SeqCst);
            let mut conns = tokio::task::JoinSet::new();
            let mut check = tokio::time::interval(std::time::Duration::from_millis(300));
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let (stream, _) = accepted?;
                        let store = store.clone();
                        let acceptor = acceptor.clone();
                        conns.spawn(async move {
                            let stream = match acceptor.accept(stream).await {
                                Ok(s) => s,
                                Err(e) => {
                                    eprintln!("testbed apiserver: TLS handshake: {e}");
                                    return;
                                }
                            };
                            let service = hyper::service::service_fn(move |req| {
                                handle(store.clone(), bound, req)
                            });
                            let io = hyper_util::rt::TokioIo::new(stream);
                            if let Err(e) = hyper::server::conn::http1::Builder::new()
                                .serve_connection(io, service)
                                .await
                            {
                                eprintln!("testbed apiserver: connection: {e}");
                            }
                        });
                    }
                    _ = check.tick(), if docker.is_some() => {
                        let (Some(d), Some(name)) = (&docker, &o.container) else { continue };
                        if !matches!(node_state(d, name).await, Node::Running) {
                            break;
                        }
                    }
                }
            }
            serving.store(false, std::sync::atomic::Ordering::SeqCst);
            conns.abort_all();
            drop(listener);
            eprintln!("testbed apiserver: node stopped; the API is down until it starts again");
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
        (&Method::GET, ["apis"]) => json_reply(200, &discovery::group_list(&lock(store))),
        (&Method::GET, ["openapi", "v3"]) => json_reply(200, &openapi::root(&lock(store))),
        (&Method::GET, ["openapi", "v3", rest @ ..]) => {
            match openapi::group_version(&lock(store), &rest.join("/")) {
                Some(doc) => json_reply(200, &doc),
                None => not_found_path(path),
            }
        }
        (&Method::GET, ["api", "v1"]) => {
            json_reply(200, &discovery::resource_list(&lock(store), "", "v1"))
        }
        (&Method::GET, ["apis", group]) => match discovery::group_list(&lock(store))["groups"]
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
            let list = discovery::resource_list(&lock(store), group, version);
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

fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|p| p.into_inner())
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
    let mut store = lock(store);
    if !discovery::served(&store, group, version, &t.plural) {
        return not_found_path(&format!("/apis/{group}/{version}/{}", rest.join("/")));
    }
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
mod tests;
