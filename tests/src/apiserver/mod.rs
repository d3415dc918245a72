//! The fake Kubernetes API server: `testbed apiserver --state-dir D --port-file F`.
//!
//! HTTPS on 127.0.0.1 with the cluster's certificates (`crate::tls`; client
//! certificates are not checked). Objects are read and written as JSON, or as protobuf
//! for the kinds `protobuf` knows (`codec`: bodies by `Content-Type`, answers by
//! `Accept`); Table and discovery v2 requests get plain JSON and the legacy documents,
//! which clients fall back to. Errors are Kubernetes `Status` objects. Watches stream
//! from the event history (`watch/`).

pub mod codec;
pub mod controllers;
pub mod defaults;
pub mod discovery;
pub mod fieldset;
pub mod openapi;
pub mod protobuf;
pub mod resources;
pub mod selector;
pub mod ssa;
pub mod store;
pub mod strategic;
pub mod target;
pub mod watch;

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use ssa::Writer;
use store::{ApiError, PatchKind, Store, Target};

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
    let hub = watch::Hub::new(&lock(&store));
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
            hub.clone(),
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
                        let hub = hub.clone();
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
                                handle(store.clone(), hub.clone(), bound, req)
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
    hub: Arc<watch::Hub>,
    port: u16,
    req: Request<Incoming>,
) -> Result<watch::StreamReply, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if method == Method::GET
        && let Some((group, version, rest)) = watch::requested(&segs, &query)
    {
        let reply = watch::serve(&store, &hub, group, version, &rest, &query);
        eprintln!("WATCH {path}{} -> {}", query_suffix(&query), reply.status().as_u16());
        return Ok(reply);
    }
    let header =
        |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let (content_type, accept, user_agent) =
        (header("content-type"), header("accept"), header("user-agent"));
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let e = ApiError::bad_request(format!("reading body: {e}"));
            return Ok(watch::boxed(error_reply(&e)));
        }
    };
    let headers = Headers { content_type: &content_type, accept: &accept, user_agent: &user_agent };
    let reply = route(&store, &hub, port, &method, &path, &query, &headers, &body);
    // Which bodies were protobuf, so a log shows what a typed client sent and got.
    let answered = reply.headers().get("content-type").and_then(|v| v.to_str().ok());
    let proto = |ct: &str| ct.starts_with(protobuf::MEDIA_TYPE);
    let media = match (proto(&content_type), answered.is_some_and(proto)) {
        (true, true) => " (protobuf in and out)",
        (true, false) => " (protobuf in)",
        (false, true) => " (protobuf out)",
        (false, false) => "",
    };
    let code = reply.status().as_u16();
    eprintln!("{method} {path}{} -> {code}{media}", query_suffix(&query));
    Ok(watch::boxed(reply))
}

fn query_suffix(query: &[(String, String)]) -> String {
    if query.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("?{}", parts.join("&"))
}

#[allow(clippy::too_many_arguments)]
fn route(
    store: &Mutex<Store>,
    hub: &watch::Hub,
    port: u16,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    headers: &Headers,
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
            objects(store, hub, method, "", version, rest, query, headers, body)
        }
        (_, ["apis", group, version, rest @ ..]) => {
            objects(store, hub, method, group, version, rest, query, headers, body)
        }
        _ => not_found_path(path),
    }
}

/// The request headers the API reads.
struct Headers<'a> {
    content_type: &'a str,
    accept: &'a str,
    user_agent: &'a str,
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
    hub: &watch::Hub,
    method: &Method,
    group: &str,
    version: &str,
    rest: &[&str],
    query: &[(String, String)],
    headers: &Headers,
    body: &[u8],
) -> Reply {
    let (content_type, accept) = (headers.content_type, headers.accept);
    let Some(t) = target(group, version, rest) else {
        return not_found_path(&rest.join("/"));
    };
    let q = |k: &str| query.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let dry_run = q("dryRun").is_some();
    let mut store = lock(store);
    if !discovery::served(&store, group, version, &t.plural) {
        return not_found_path(&format!("/apis/{group}/{version}/{}", rest.join("/")));
    }
    let snapshot = (method != Method::GET && dry_run).then(|| store.data.clone());
    let parsed = || codec::parse_body(content_type, body);
    // A whole object must fit its Go type (the API server decodes into it).
    let typed =
        || parsed().and_then(|b| codec::check_typed(&t.api_version(), &t.kind(Some(&b)), b));
    let force = q("force").map(|f| f == "true");
    let writer = Writer::from_request(q("fieldManager"), headers.user_agent, force == Some(true));
    let mut code = if method == Method::POST { 201 } else { 200 };
    let result = match (method, t.name.is_some(), t.subresource.as_deref()) {
        (&Method::GET, true, Some("log")) => match store.pod_log(&t) {
            Ok(text) => return text_reply(text),
            Err(e) => Err(e),
        },
        (&Method::GET, true, _) => store.get(&t),
        (&Method::GET, false, _) => store.list(&t, q("labelSelector"), q("fieldSelector")),
        (&Method::POST, false, _) => typed().and_then(|b| store.create_by(&t, b, Some(&writer))),
        (&Method::PUT, true, _) => typed().and_then(|b| store.replace_by(&t, b, Some(&writer))),
        (&Method::PATCH, true, _) => {
            let kind = if content_type.starts_with("application/apply-patch") {
                PatchKind::Apply
            } else if content_type.starts_with("application/json-patch") {
                PatchKind::Json
            } else if content_type.starts_with("application/strategic-merge-patch") {
                PatchKind::Strategic
            } else {
                PatchKind::Merge
            };
            if let Some(e) =
                ssa::patch_options_error(kind == PatchKind::Apply, q("fieldManager"), force)
            {
                Err(e)
            } else {
                if kind == PatchKind::Apply && store.get(&t).is_err() {
                    code = 201;
                }
                parsed().and_then(|b| store.patch_by(&t, b, kind, Some(&writer)))
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
    } else if method != Method::GET && result.is_ok() {
        // Recorded under the same lock as the write: a list never sees a version whose
        // events a watch from it would miss.
        hub.record(&mut store);
        if let Err(e) = store.save() {
            return error_reply(&ApiError::new(
                500,
                "InternalError",
                format!("saving state: {e:#}"),
            ));
        }
    }
    match result {
        Ok(v) => codec::reply(accept, code, &v),
        Err(e) => codec::reply(accept, e.code, &e.to_status()),
    }
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
