//! One small HTTP(S) GET client (hyper-util over hyper-rustls) for everything we ask
//! over HTTP: chart repositories, tool downloads, Tilt's API, the registry's `/v2/`.
//!
//! Errors carry exit codes: a malformed URL is bad input (2); no connection, no answer
//! in time or too many redirects is a missing prerequisite (3). Any status is an
//! answer: callers judge it ([`Response::success`] makes a non-2xx a 3).

use std::time::Duration;

use anyhow::Result;
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::error::{bad_input, missing};

/// A GET's answer (after any redirects followed).
#[derive(Debug)]
pub struct Response {
    /// The URL that answered.
    pub url: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// This response if its status is 2xx, else a missing prerequisite (exit 3) naming
    /// the URL and status.
    pub fn success(self) -> Result<Response> {
        if self.status.is_success() {
            Ok(self)
        } else {
            Err(missing(format!("GET {} answered {}", self.url, self.status)))
        }
    }
}

/// A client (and its connection pool) for http and https URLs.
#[derive(Clone)]
pub struct Client {
    inner: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<HttpConnector>,
        Empty<Bytes>,
    >,
    max_redirects: usize,
}

impl Client {
    /// A client verifying TLS with the platform's certificates; it follows no redirects.
    pub fn new() -> Result<Client> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .try_with_platform_verifier()
            .map_err(|e| missing(format!("cannot set up TLS certificate verification: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let inner =
            hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
        Ok(Client { inner, max_redirects: 0 })
    }

    /// Follow up to `max` redirects (a 3xx with a `Location`); more is an error.
    pub fn follow_redirects(mut self, max: usize) -> Client {
        self.max_redirects = max;
        self
    }

    /// GET `url` with extra `headers`; `timeout` bounds each request (connect, headers
    /// and body).
    pub async fn get(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Response> {
        let mut current = url.to_owned();
        for _ in 0..=self.max_redirects {
            let response = tokio::time::timeout(timeout, self.once(&current, headers))
                .await
                .map_err(|_| {
                    missing(format!("GET {current} timed out after {}s", timeout.as_secs_f64()))
                })??;
            let location = response
                .headers
                .get(http::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .filter(|_| response.status.is_redirection() && self.max_redirects > 0);
            match location {
                Some(location) => current = redirect_target(&current, location),
                None => return Ok(response),
            }
        }
        Err(missing(format!("GET {url}: more than {} redirects", self.max_redirects)))
    }

    async fn once(&self, url: &str, headers: &[(&str, &str)]) -> Result<Response> {
        let uri: hyper::Uri =
            url.parse().map_err(|e| bad_input(format!("`{url}` is not a valid URL: {e}")))?;
        let mut request = http::Request::get(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Empty::new())
            .map_err(|e| bad_input(format!("GET {url}: invalid request: {e}")))?;
        let unreachable = |e: &dyn std::error::Error| missing(format!("GET {url}: {}", chain(e)));
        let response = self.inner.request(request).await.map_err(|e| unreachable(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.map_err(|e| unreachable(&e))?.to_bytes();
        Ok(Response { url: url.to_owned(), status, headers, body })
    }
}

/// GET `url` once with a client of its own (no redirects).
pub async fn get(url: &str, headers: &[(&str, &str)], timeout: Duration) -> Result<Response> {
    Client::new()?.get(url, headers, timeout).await
}

/// An error and its sources, `: `-joined (hyper's own Display stops at the first).
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// A `Location` is relative to the document, not to a folder: drop the last segment.
fn redirect_target(current: &str, location: &str) -> String {
    let folder = match current.split_once("://") {
        Some((_, rest)) if rest.contains('/') => {
            current.rsplit_once('/').map_or(current, |(f, _)| f)
        }
        _ => current,
    };
    crate::charts::index::resolve_url(folder, location)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_resolve_against_the_document() {
        assert_eq!(redirect_target("http://h/a/index.yaml", "b.yaml"), "http://h/a/b.yaml");
        assert_eq!(redirect_target("http://h/a/x.tgz", "/c/x.tgz"), "http://h/c/x.tgz");
        assert_eq!(redirect_target("http://h", "https://o/x"), "https://o/x");
    }

    #[test]
    fn error_chain_lists_every_source() {
        let io = std::io::Error::other("connection refused");
        let wrapped = anyhow::Error::new(io).context("tcp connect error");
        assert_eq!(chain(wrapped.as_ref()), "tcp connect error: connection refused");
    }

    /// Serves `/a/old` as a redirect to `new` (relative), `/a/new` as the request's
    /// `X-Probe` header, 404 otherwise; one request per connection.
    async fn server() -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = vec![0; 4096];
                let n = stream.read(&mut request).await.unwrap();
                let request = String::from_utf8_lossy(&request[..n]).to_string();
                let probe = request
                    .lines()
                    .find_map(|l| l.strip_prefix("x-probe: "))
                    .unwrap_or_default()
                    .to_owned();
                let answer = match request.split_whitespace().nth(1) {
                    Some("/a/old") => "HTTP/1.1 302 Found\r\nLocation: new\r\n\r\n".to_owned(),
                    Some("/a/new") => format!("HTTP/1.1 200 OK\r\n\r\n{probe}"),
                    _ => "HTTP/1.1 404 Not Found\r\n\r\n".to_owned(),
                };
                let answer = answer.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        url
    }

    #[tokio::test]
    async fn headers_are_sent_and_redirects_followed_only_when_asked() {
        let base = server().await;
        let timeout = Duration::from_secs(10);
        let headers = [("X-Probe", "hello")];
        let client = Client::new().unwrap();
        let once = client.get(&format!("{base}/a/old"), &headers, timeout).await.unwrap();
        assert_eq!(once.status, StatusCode::FOUND);
        let followed = client.follow_redirects(1);
        let found = followed.get(&format!("{base}/a/old"), &headers, timeout).await.unwrap();
        assert_eq!((found.status, found.url), (StatusCode::OK, format!("{base}/a/new")));
        assert_eq!(found.body, "hello");
        let gone = followed.get(&format!("{base}/gone"), &[], timeout).await.unwrap();
        let err = gone.success().unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 3);
        assert_eq!(err.to_string(), format!("GET {base}/gone answered 404 Not Found"));
    }

    #[tokio::test]
    async fn nothing_listening_is_missing_naming_the_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}/v2/");
        let err = get(&url, &[], Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 3);
        assert!(err.to_string().starts_with(&format!("GET {url}: ")), "{err}");
        let err = get("http://bad host/", &[], Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2, "{err}");
    }
}
