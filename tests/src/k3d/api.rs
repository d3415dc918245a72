//! The fake k3d's side of a cluster's API server: start it (or find it running) and
//! wait for `/readyz` over TLS.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::k3d::common::*;
use crate::{kubeconfig, procs};

/// The kubeconfig's server, as k3d writes it (`DefaultAPIHost` 0.0.0.0).
pub(crate) fn server_url(port: u16) -> String {
    format!("https://0.0.0.0:{port}")
}

/// Make sure the cluster's API server runs (it serves while the server node container
/// runs; one process per cluster, kept across stop/start) and wait until `/readyz`
/// answers 200 over TLS. Returns its port and the kubeconfig credentials.
pub(crate) async fn start_apiserver(
    dir: &Path,
    cluster: &str,
) -> Result<(u16, kubeconfig::Credentials)> {
    let cdir = cluster_dir(dir, cluster);
    let state = cdir.join("api");
    std::fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
    let pid_file = cdir.join("apiserver.pid");
    let port_file = cdir.join("apiserver.port");
    let log_file = cdir.join("apiserver.log");
    let running = procs::read_pid(&pid_file).is_some_and(|pid| procs::is_ours(pid, "apiserver"));
    let mut child = None;
    if !running {
        let exe = std::env::current_exe().context("locating the testbed binary")?;
        let mut args: Vec<String> = vec![
            "apiserver".into(),
            "--state-dir".into(),
            state.to_string_lossy().into_owned(),
            "--port-file".into(),
            port_file.to_string_lossy().into_owned(),
            "--container".into(),
            format!("k3d-{cluster}-server-0"),
        ];
        if let Some(p) =
            std::fs::read_to_string(&port_file).ok().and_then(|p| p.trim().parse::<u16>().ok())
        {
            args.extend(["--port".into(), p.to_string()]);
        }
        child = Some(procs::spawn_detached(&exe, &args, &log_file, &pid_file)?);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut problem = String::from("no port file after 30s");
    loop {
        if let Some(Ok(Some(status))) = child.as_mut().map(|c| c.try_wait()) {
            problem = format!("it exited ({status}) before answering");
            break;
        }
        let port =
            std::fs::read_to_string(&port_file).ok().and_then(|p| p.trim().parse::<u16>().ok());
        if let (Some(port), Ok(certs)) = (port, crate::tls::ensure(&state)) {
            let creds = kubeconfig::Credentials {
                ca: certs.ca.into_bytes(),
                client_cert: Some(certs.client_cert.into_bytes()),
                client_key: Some(certs.client_key.into_bytes()),
            };
            let client = crate::kube_api::Client::with_tls(
                &format!("https://127.0.0.1:{port}"),
                &creds.ca,
                creds.client_cert.as_deref().zip(creds.client_key.as_deref()),
            )?;
            match client.raw("GET", "/readyz", "text/plain", &[]).await {
                Ok((200, _)) => return Ok((port, creds)),
                Ok((code, _)) => problem = format!("GET /readyz answered {code}"),
                Err(e) => problem = format!("GET /readyz: {e:#}"),
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Some(mut c) = child {
        let _ = c.kill();
        let _ = c.wait();
        let _ = std::fs::remove_file(&pid_file);
    }
    let log_text = std::fs::read_to_string(&log_file).unwrap_or_default();
    let lines: Vec<&str> = log_text.lines().collect();
    let tail = lines[lines.len().saturating_sub(10)..].join("\n");
    bail!(
        "the cluster's API server did not become ready: {problem} (log {}):\n{tail}",
        log_file.display()
    )
}
