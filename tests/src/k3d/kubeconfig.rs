//! Fake `k3d kubeconfig merge|get` (k3d `cmd/kubeconfig/kubeconfigMerge.go`,
//! `kubeconfigGet.go`, `pkg/client/kubeconfig.go`): the cluster's kubeconfig entries
//! (`https://0.0.0.0:<port>`, CA, admin client certificate) from its running API.
//!
//! `merge NAME... [-d|--kubeconfig-merge-default] [-o FILE|-] [--kubeconfig-switch-context=false]`:
//! into the default kubeconfig (`$KUBECONFIG` first entry, else `~/.kube/config`) with
//! `-d`, into FILE with `-o`, else into `$HOME/.config/k3d/kubeconfig-NAME.yaml`; prints
//! the file written. The context becomes current unless `--kubeconfig-switch-context=false`
//! (k3d's default is to switch). `get NAME` prints the cluster's kubeconfig.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::k3d::common::cluster_dir;
use crate::kubeconfig;

/// The kubeconfig credentials and port of a cluster whose API server runs.
fn cluster_entry(dir: &Path, cluster: &str) -> Result<(u16, kubeconfig::Credentials)> {
    let cdir = cluster_dir(dir, cluster);
    let port = std::fs::read_to_string(cdir.join("apiserver.port"))
        .ok()
        .and_then(|p| p.trim().parse::<u16>().ok())
        .with_context(|| {
            format!("failed to get cluster '{cluster}': No nodes found for given cluster")
        })?;
    let certs = crate::tls::ensure(&cdir.join("api"))?;
    Ok((
        port,
        kubeconfig::Credentials {
            ca: certs.ca.into_bytes(),
            client_cert: Some(certs.client_cert.into_bytes()),
            client_key: Some(certs.client_key.into_bytes()),
        },
    ))
}

fn default_kubeconfig() -> Result<PathBuf> {
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .and_then(|v| std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty()))
    {
        return Ok(first);
    }
    let home = std::env::var_os("HOME").context("neither KUBECONFIG nor HOME is set")?;
    Ok(PathBuf::from(home).join(".kube/config"))
}

/// `k3d kubeconfig VERB ARGS`; the exit code.
pub fn run(dir: &Path, verb: &str, args: &[String]) -> Result<i32> {
    let mut names = Vec::new();
    let (mut merge_default, mut switch, mut output) = (false, true, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-d" | "--kubeconfig-merge-default" | "--kubeconfig-merge-default=true" => {
                merge_default = true
            }
            "--kubeconfig-switch-context=false" | "-s=false" => switch = false,
            "-s" | "--kubeconfig-switch-context" | "--kubeconfig-switch-context=true" => {
                switch = true
            }
            "-o" | "--output" => output = it.next().cloned(),
            a if a.starts_with("--output=") => output = Some(a["--output=".len()..].to_owned()),
            "-u" | "--update" | "--overwrite" | "-a" | "--all" => {}
            a if a.starts_with('-') => bail!("unknown flag: {a}"),
            name => names.push(name.to_owned()),
        }
    }
    if names.is_empty() {
        names.push("k3s-default".into());
    }
    if merge_default && output.is_some() {
        bail!("Cannot use both '--output' and '--kubeconfig-merge-default' at the same time");
    }
    let mut written = Vec::new();
    for name in &names {
        let (port, creds) = cluster_entry(dir, name)?;
        let server = format!("https://0.0.0.0:{port}");
        let mut config = kubeconfig::empty();
        kubeconfig::upsert_cluster_tls(&mut config, name, &server, Some(&creds));
        if verb == "get" || output.as_deref() == Some("-") {
            print!("{}", serde_saphyr::to_string(&config)?);
            continue;
        }
        let target = match (&output, merge_default) {
            (Some(o), _) => PathBuf::from(o),
            (None, true) => default_kubeconfig()?,
            (None, false) => {
                let home = std::env::var_os("HOME").context("HOME is not set")?;
                PathBuf::from(home).join(".config/k3d").join(format!("kubeconfig-{name}.yaml"))
            }
        };
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        kubeconfig::update(&target, |c| {
            let current = c["current-context"].as_str().unwrap_or("").to_owned();
            kubeconfig::upsert_cluster_tls(c, name, &server, Some(&creds));
            if !switch {
                c["current-context"] = json!(current);
            }
        })?;
        written.push(target.to_string_lossy().into_owned());
    }
    if !written.is_empty() {
        println!("{}", written.join(":"));
    }
    Ok(0)
}
