//! The one HTTP(S) GET client (reqwest on rustls, the system's root certificates) for
//! everything we ask over HTTP: chart repositories, tool downloads, Tilt's API, the
//! registry's `/v2/`. An adapter: it knows nothing of charts, tools or Tilt.
//!
//! - **Proxies**: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (or their
//!   lower-case forms) are honoured, as curl and Helm do. Loopback hosts (`localhost`,
//!   `*.localhost`, `127.0.0.0/8`, `[::1]`) are never proxied, as in Go's proxy rules
//!   that Helm follows: a proxy cannot reach this machine's ports.
//! - **Retries**: a connection that cannot be made, or a 5xx answer, is tried again,
//!   [`ATTEMPTS`] times in all, waiting 200 ms then 400 ms. Nothing else is retried.
//! - **Errors**: a malformed URL is bad input; no connection, no answer in time or too
//!   many redirects is a missing prerequisite naming the URL. Any status is an answer:
//!   callers judge it ([`Response::success`] makes a non-2xx missing).

use std::sync::OnceLock;
use std::time::Duration;

pub use reqwest::StatusCode;
use reqwest::Url;
pub use reqwest::header::HeaderMap;
use reqwest::header::{HeaderName, HeaderValue};

use crate::error::{Error, Result, bad_input, missing};

/// Tries per request when the connection fails or the server answers 5xx.
pub const ATTEMPTS: u32 = 3;
/// The wait before the second try; it doubles before each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// A GET's answer (after any redirects followed).
#[derive(Debug)]
pub struct Response {
    /// The URL that answered (the one asked for unless redirected).
    pub url: String,
    pub status: StatusCode,
    /// Header names are lower case; a name may carry several values (`set-cookie`).
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    /// This response if its status is 2xx, else a missing prerequisite naming the URL
    /// and status.
    pub fn success(self) -> Result<Response> {
        if self.status.is_success() {
            Ok(self)
        } else {
            Err(missing(format!("GET {} answered {}", self.url, self.status)))
        }
    }
}

/// A client (and its connection pools) for http and https URLs. Cheap to create: the
/// underlying clients are built on first use.
#[derive(Clone, Default)]
pub struct Client {
    max_redirects: usize,
    /// For every host but loopback ones: proxies from the environment.
    proxied: OnceLock<reqwest::Client>,
    /// For loopback hosts: never through a proxy.
    direct: OnceLock<reqwest::Client>,
}

impl Client {
    /// A client that follows no redirects.
    pub fn new() -> Result<Client> {
        Ok(Client::default())
    }

    /// Follow up to `max` redirects (a 3xx with a `Location`); more is an error.
    pub fn follow_redirects(self, max: usize) -> Client {
        Client { max_redirects: max, ..Client::default() }
    }

    /// GET `url` with extra `headers`; `timeout` bounds each try (connect, redirects,
    /// headers and body).
    pub async fn get(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Response> {
        let parsed = parse_url(url)?;
        let headers = header_map(url, headers)?;
        let client = self.client_for(&parsed)?;
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let last = attempt >= ATTEMPTS;
            match once(client, url, &parsed, &headers, timeout).await {
                Ok(response) if response.status.is_server_error() && !last => {}
                Ok(response) => return Ok(response),
                Err(err) if err.is_connect() && !last => {}
                Err(err) => return Err(self.unreachable(url, timeout, &err)),
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
            attempt += 1;
        }
    }

    fn client_for(&self, url: &Url) -> Result<&reqwest::Client> {
        let (cell, proxied) = match is_loopback(url) {
            true => (&self.direct, false),
            false => (&self.proxied, true),
        };
        if let Some(client) = cell.get() {
            return Ok(client);
        }
        let redirects = match self.max_redirects {
            0 => reqwest::redirect::Policy::none(),
            max => reqwest::redirect::Policy::limited(max),
        };
        let mut builder = reqwest::Client::builder().redirect(redirects);
        if !proxied {
            builder = builder.no_proxy();
        }
        let client = builder.build().map_err(|e| {
            missing(format!("cannot set up the HTTP client (TLS, proxy settings): {}", chain(&e)))
        })?;
        Ok(cell.get_or_init(|| client))
    }

    fn unreachable(&self, url: &str, timeout: Duration, err: &reqwest::Error) -> Error {
        if err.is_timeout() {
            missing(format!("GET {url} timed out after {}s", timeout.as_secs_f64()))
        } else if err.is_redirect() {
            missing(format!("GET {url}: more than {} redirects", self.max_redirects))
        } else {
            missing(format!("GET {url}: {}", chain(err)))
        }
    }
}

/// GET `url` with a client of its own (no redirects).
pub async fn get(url: &str, headers: &[(&str, &str)], timeout: Duration) -> Result<Response> {
    Client::new()?.get(url, headers, timeout).await
}

async fn once(
    client: &reqwest::Client,
    asked: &str,
    url: &Url,
    headers: &HeaderMap,
    timeout: Duration,
) -> reqwest::Result<Response> {
    let response = client.get(url.clone()).headers(headers.clone()).timeout(timeout).send().await?;
    let answered =
        if response.url() == url { asked.to_owned() } else { response.url().to_string() };
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await?.to_vec();
    Ok(Response { url: answered, status, headers, body })
}

fn parse_url(url: &str) -> Result<Url> {
    let parsed =
        Url::parse(url).map_err(|e| bad_input(format!("`{url}` is not a valid URL: {e}")))?;
    match parsed.scheme() {
        "http" | "https" if parsed.has_host() => Ok(parsed),
        _ => Err(bad_input(format!("`{url}` is not an http:// or https:// URL"))),
    }
}

/// The request headers; a header that cannot be sent is bad input naming it (not its
/// value, which may be a token).
fn header_map(url: &str, headers: &[(&str, &str)]) -> Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let invalid = || bad_input(format!("GET {url}: header `{name}` cannot be sent as given"));
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
        map.append(header, HeaderValue::from_str(value).map_err(|_| invalid())?);
    }
    Ok(map)
}

/// Hosts a proxy cannot reach: this machine's.
fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else { return false };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => {
            let name = host.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
    }
}

/// An error and its sources, `: `-joined, without the URL (the caller names it) and
/// without the wrappers that say nothing (`error sending request`, `client error
/// (Connect)`): `tcp connect error: Connection refused (os error 111)`.
fn chain(err: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = source {
        source = e.source();
        let text = e.to_string();
        let text = text.split(" for url (").next().unwrap_or(&text).to_owned();
        let wrapper =
            text.starts_with("error sending request") || text.starts_with("client error (");
        if (wrapper && source.is_some()) || parts.iter().any(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::error::ErrorKind;

    /// Serves `/a/old` as a redirect to `new` (relative), `/a/new` as the request's
    /// `X-Probe` header, `/flaky` as 503 for the first two requests then 200, `/down`
    /// as 503 always, 404 otherwise; one request per connection, all counted.
    async fn server() -> (String, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let counted = count.clone();
        tokio::spawn(async move {
            let flaky = AtomicUsize::new(0);
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
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
                    Some("/flaky") if flaky.fetch_add(1, Ordering::SeqCst) < 2 => {
                        "HTTP/1.1 503 Service Unavailable\r\n\r\n".to_owned()
                    }
                    Some("/flaky") => "HTTP/1.1 200 OK\r\n\r\nat last".to_owned(),
                    Some("/down") => "HTTP/1.1 503 Service Unavailable\r\n\r\n".to_owned(),
                    _ => "HTTP/1.1 404 Not Found\r\n\r\n".to_owned(),
                };
                let answer = answer.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        (url, count)
    }

    #[tokio::test]
    async fn headers_are_sent_and_redirects_followed_only_when_asked() {
        let (base, _) = server().await;
        let timeout = Duration::from_secs(10);
        let headers = [("X-Probe", "hello")];
        let client = Client::new().unwrap();
        let once = client.get(&format!("{base}/a/old"), &headers, timeout).await.unwrap();
        assert_eq!(once.status, StatusCode::FOUND);
        assert_eq!(once.headers.get("location").unwrap(), "new");
        let followed = client.follow_redirects(1);
        let found = followed.get(&format!("{base}/a/old"), &headers, timeout).await.unwrap();
        assert_eq!((found.status, found.url), (StatusCode::OK, format!("{base}/a/new")));
        assert_eq!(found.body, b"hello");
        let gone = followed.get(&format!("{base}/gone"), &[], timeout).await.unwrap();
        let err = gone.success().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Missing);
        assert_eq!(err.to_string(), format!("GET {base}/gone answered 404 Not Found"));
    }

    #[tokio::test]
    async fn server_errors_are_retried_a_bounded_number_of_times_and_others_not() {
        let (base, count) = server().await;
        let timeout = Duration::from_secs(10);
        let flaky = get(&format!("{base}/flaky"), &[], timeout).await.unwrap();
        assert_eq!((flaky.status, flaky.body.as_slice()), (StatusCode::OK, &b"at last"[..]));
        assert_eq!(count.swap(0, Ordering::SeqCst), 3);
        let started = std::time::Instant::now();
        let down = get(&format!("{base}/down"), &[], timeout).await.unwrap();
        assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(count.swap(0, Ordering::SeqCst), ATTEMPTS as usize);
        assert!(started.elapsed() >= Duration::from_millis(600), "backoff 200 ms + 400 ms");
        let missing = get(&format!("{base}/nothing"), &[], timeout).await.unwrap();
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(count.load(Ordering::SeqCst), 1, "a 4xx is an answer, not retried");
    }

    #[tokio::test]
    async fn nothing_listening_is_missing_naming_the_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}/v2/");
        let err = get(&url, &[], Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Missing);
        assert!(err.to_string().starts_with(&format!("GET {url}: ")), "{err}");
        assert!(!err.to_string().contains("for url ("), "the URL is named once: {err}");
        assert!(err.to_string().contains("tcp connect error: Connection refused"), "{err}");
        let err = get("http://bad host/", &[], Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput, "{err}");
        let err = get("ftp://h/x", &[], Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput, "{err}");
        let err = get(&url, &[("X-Token", "a\nb")], Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput, "{err}");
        assert!(!err.to_string().contains("a\nb"), "header values are not shown: {err}");
    }

    #[test]
    fn loopback_hosts_are_never_proxied() {
        let loopback = |url: &str| is_loopback(&Url::parse(url).unwrap());
        assert!(loopback("http://127.0.0.1:10350/api/view"));
        assert!(loopback("http://127.8.0.1/"));
        assert!(loopback("http://[::1]:5000/v2/"));
        assert!(loopback("http://localhost:5000/v2/"));
        assert!(loopback("http://k3d-dev-reg.localhost:5000/v2/"));
        assert!(!loopback("https://get.helm.sh/helm.tar.gz"));
        assert!(!loopback("http://10.0.0.1/"));
        assert!(!loopback("http://notlocalhost/"));
    }
}
