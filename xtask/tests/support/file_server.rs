//! A loopback HTTP/1.1 server for download tests (`vendor`, `tools install`): it serves
//! bytes put at a request target ([`FileServer::serve`], or for a proxy a whole URL,
//! [`FileServer::proxy_for`]) and the files under a directory ([`FileServer::serving`]),
//! 404 otherwise, and records every request target so a test can count downloads.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

#[derive(Default)]
struct Served {
    /// Request target (a path, or the absolute-form URL a proxy is asked for) -> bytes.
    files: BTreeMap<String, Vec<u8>>,
    /// Files under this directory answer the paths relative to it.
    root: Option<PathBuf>,
    /// Every request target, in order.
    targets: Vec<String>,
}

pub struct FileServer {
    addr: SocketAddr,
    served: Arc<Mutex<Served>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FileServer {
    /// A server with nothing to serve yet.
    pub fn start() -> FileServer {
        FileServer::with(Served::default())
    }

    /// A server for the files under `root` (a Helm repository, say).
    pub fn serving(root: &Path) -> FileServer {
        FileServer::with(Served { root: Some(root.to_owned()), ..Served::default() })
    }

    fn with(served: Served) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(Mutex::new(served));
        let stop = Arc::new(AtomicBool::new(false));
        let (answering, stopping) = (served.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let _ = answer(stream, &answering);
                }
            }
        });
        FileServer { addr, served, stop, thread: Some(thread) }
    }

    /// Serve `bytes` at `path`; the URL to ask for it.
    pub fn serve(&self, path: &str, bytes: Vec<u8>) -> String {
        self.served.lock().unwrap().files.insert(path.to_owned(), bytes);
        format!("{}{path}", self.url())
    }

    /// As a proxy: answer a request for `url` (any host) with `bytes`.
    pub fn proxy_for(&self, url: &str, bytes: Vec<u8>) {
        self.served.lock().unwrap().files.insert(url.to_owned(), bytes);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request target so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.served.lock().unwrap().targets.clone()
    }

    /// Close the port: later connections are refused.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn answer(stream: TcpStream, served: &Mutex<Served>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let body = {
        let mut served = served.lock().unwrap();
        served.targets.push(target.clone());
        let from_root = || {
            let root = served.root.as_ref()?;
            let path = root.join(target.trim_start_matches('/'));
            (!target.contains("..")).then(|| std::fs::read(path).ok()).flatten()
        };
        served.files.get(&target).cloned().or_else(from_root)
    };
    let mut stream = stream;
    let (status, body) = match body {
        Some(body) => ("200 OK", body),
        None => ("404 Not Found", Vec::new()),
    };
    let head =
        format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)?;
    stream.flush()
}
