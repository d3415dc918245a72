//! The testbed's one HTTP client: reqwest, the engine's own (`xtask/src/http.rs`), set
//! up for the testbed's servers on this machine. Never through a proxy (`HTTP_PROXY`
//! and the like are ignored: they cannot reach these ports); no connection kept between
//! requests, so a server restarted on the same port (`k3d cluster stop`/`start`) is never
//! met on a stale one; https:// trusts only the CA given (the cluster's, `crate::tls`),
//! no system roots. `kube_api` talks to the fake API server through [`client`]; [`get`]
//! is a blocking GET for tests and the fake k3d: `/readyz`, a registry's `/v2/`, Tilt's
//! web server.

use std::time::Duration;

use anyhow::{Context, Result};

/// How long [`get`] waits for each read of the answer.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A client for the testbed's servers: `tls` for https:// ones (see the module doc).
pub fn client(tls: Option<rustls::ClientConfig>) -> Result<reqwest::Client> {
    builder(tls).build().context("setting up the HTTP client")
}

fn builder(tls: Option<rustls::ClientConfig>) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0);
    match tls {
        Some(config) => builder.use_preconfigured_tls(config),
        None => builder.tls_built_in_root_certs(false),
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }
}

/// `GET url` with extra request headers, waiting at most 10 s for each read. Blocking,
/// and callable from async code too (it runs on a thread of its own).
pub fn get(url: &str, headers: &[(&str, &str)]) -> Result<Response> {
    std::thread::scope(|scope| {
        let asked = scope.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting a runtime for an HTTP GET")?
                .block_on(get_async(url, headers))
        });
        asked.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

async fn get_async(url: &str, headers: &[(&str, &str)]) -> Result<Response> {
    let client =
        builder(None).read_timeout(READ_TIMEOUT).build().context("setting up the HTTP client")?;
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let answer = request.send().await.with_context(|| format!("GET {url}"))?;
    let status = answer.status().as_u16();
    let headers = answer
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = answer.bytes().await.with_context(|| format!("reading the answer of {url}"))?;
    Ok(Response { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// A server for one request: reads the head, answers `answer`; the head it read.
    fn serve_once(answer: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v2/", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
                head.push(byte[0]);
            }
            stream.write_all(answer.as_bytes()).unwrap();
            String::from_utf8_lossy(&head).into_owned()
        });
        (url, server)
    }

    #[test]
    fn gets_status_headers_and_a_chunked_body_from_sync_and_async_code() {
        let answer = "HTTP/1.1 200 OK\r\nSet-Cookie: a=b\r\nTransfer-Encoding: chunked\r\n\r\n\
                      3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let (url, server) = serve_once(answer);
        let r = get(&url, &[("X-Tilt-Token", "t")]).unwrap();
        assert_eq!(
            (r.status, r.header("set-cookie"), r.body.as_str()),
            (200, Some("a=b"), "abcde")
        );
        assert!(server.join().unwrap().to_ascii_lowercase().contains("x-tilt-token: t\r\n"));
        // The fake k3d asks from inside its runtime.
        let (url, server) = serve_once("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert_eq!(runtime.block_on(async { get(&url, &[]) }).unwrap().status, 404);
        server.join().unwrap();
    }

    #[test]
    fn a_closed_port_is_an_error_naming_the_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = get(&format!("http://127.0.0.1:{port}/readyz"), &[]).unwrap_err();
        assert!(format!("{err:#}").contains(&format!("GET http://127.0.0.1:{port}/readyz")));
    }
}
