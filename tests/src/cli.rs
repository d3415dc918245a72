//! `testbed up | down | set`: prepare a testbed dir for the engine, tear it down, change
//! its scenario. `up` does not create a cluster (the engine's `k3d cluster create` does).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::docker::images;
use crate::real_tools::{RealTools, Toolset};
use crate::scenario::Scenario;
use crate::{docker, procs};

/// The fake tools, each a symlink in `$TESTBED_DIR/bin` to the testbed binary.
pub const TOOLS: [&str; 5] = ["k3d", "helmfile", "helm", "tilt", "docker"];

/// `testbed up`: take a world slot (as a test's `World` does; a holder process keeps it
/// until `down`), then [`up`]. The slot is `$TESTBED_SLOT` in what `up` prints.
pub fn up_locked(
    dir: &Path,
    scenarios: &[String],
    latency_ms: u64,
    tools: Toolset,
    testbed_bin: &Path,
) -> Result<Vec<(String, String)>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let canonical = dir.canonicalize()?;
    crate::lock::spawn_holder(&canonical, testbed_bin)?;
    up(&canonical, scenarios, latency_ms, tools, testbed_bin).inspect_err(|_| {
        let _ = crate::lock::release_holder(&canonical);
    })
}

/// Prepare `dir`: images, `bin/` symlinks to `testbed_bin`, scenario, the real tools
/// `bin/helm` and `bin/helmfile` run (none for the fakes), an empty kubeconfig.
/// Returns the environment the engine must run with.
pub fn up(
    dir: &Path,
    scenarios: &[String],
    latency_ms: u64,
    tools: Toolset,
    testbed_bin: &Path,
) -> Result<Vec<(String, String)>> {
    let mut scenario = Scenario::default();
    for word in scenarios {
        scenario.apply(word)?;
    }
    if latency_ms > 0 {
        scenario.latency_ms = latency_ms;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize().with_context(|| format!("resolving {}", dir.display()))?;
    docker::runtime()?.block_on(async {
        let docker = docker::connect().await?;
        images::ensure_images(&docker).await
    })?;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    for tool in TOOLS {
        let link = bin.join(tool);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(testbed_bin, &link)
            .with_context(|| format!("linking {} to {}", link.display(), testbed_bin.display()))?;
    }
    scenario.save(&dir)?;
    if let Some(real) = tools.binaries() {
        let missing = real.missing();
        if !missing.is_empty() {
            bail!("real tools missing: {missing:?} (run .ci/install-real-tools)");
        }
        real.save(&dir)?;
    }
    let kubeconfig = dir.join("kubeconfig");
    if !kubeconfig.exists() {
        std::fs::write(&kubeconfig, "")?;
    }
    Ok(environment(&dir))
}

/// The variables the engine runs with (also what `up` prints).
pub fn environment(dir: &Path) -> Vec<(String, String)> {
    let bin = dir.join("bin");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let rest: Vec<PathBuf> = std::env::split_paths(&path).filter(|p| *p != bin).collect();
    let path = std::env::join_paths(std::iter::once(bin.clone()).chain(rest)).unwrap_or_default();
    let mut env = vec![
        ("PATH".to_owned(), path.to_string_lossy().into_owned()),
        ("KUBECONFIG".to_owned(), dir.join("kubeconfig").to_string_lossy().into_owned()),
        ("TESTBED_DIR".to_owned(), dir.to_string_lossy().into_owned()),
    ];
    if let Some(helm) = real_helm(&bin) {
        env.push(("TESTBED_REAL_HELM".to_owned(), helm.to_string_lossy().into_owned()));
    }
    if let Some(slot) = crate::lock::held_slot(dir) {
        env.push(("TESTBED_SLOT".to_owned(), slot.index().to_string()));
    }
    env
}

/// The world's real helm, else the first `helm` on PATH that is not our fake.
fn real_helm(fake_bin: &Path) -> Option<PathBuf> {
    if let Some(real) = fake_bin.parent().and_then(RealTools::load) {
        return Some(real.helm);
    }
    if let Some(p) = std::env::var_os("TESTBED_REAL_HELM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|d| d != fake_bin)
        .map(|d| d.join("helm"))
        .find(|p| p.is_file())
}

/// `export K='V'` lines for a POSIX shell.
pub fn export_lines(env: &[(String, String)]) -> String {
    env.iter().map(|(k, v)| format!("export {k}='{}'\n", v.replace('\'', r"'\''"))).collect()
}

/// Remove every container, network and image labelled with `dir`, stop the processes it started,
/// remove it.
pub fn down(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let dir = dir.canonicalize()?;
    if !dir.join(crate::scenario::FILE).exists() && !dir.join("bin").exists() {
        bail!(
            "{} does not look like a testbed dir (no scenario.json): not removing it",
            dir.display()
        );
    }
    stop_processes(&dir)?;
    docker::runtime()?.block_on(async {
        let docker = docker::connect().await?;
        docker::remove_testbed_containers(&docker, &dir).await?;
        let ours = dir.to_string_lossy();
        docker::network::remove_testbed_networks(&docker, |_, owner| owner == ours).await?;
        docker::remove_testbed_images(&docker, &dir).await
    })?;
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))
}

/// Stop the API servers and Tilt started in `dir` (by their pid files).
pub fn stop_processes(dir: &Path) -> Result<()> {
    if let Ok(entries) = std::fs::read_dir(dir.join("clusters")) {
        for entry in entries.flatten() {
            procs::stop_pid_file(&entry.path().join("apiserver.pid"), "apiserver")?;
        }
    }
    procs::stop_pid_file(&dir.join("tilt.pid"), "tilt")?;
    crate::lock::release_holder(dir)?;
    Ok(())
}

/// Apply scenario words to the dir's scenario; `healthy` first resets every fault knob
/// (latency, startup delay, pull time, cron minute, helm version and helmfiles stay).
pub fn set(dir: &Path, words: &[String]) -> Result<()> {
    let mut scenario = Scenario::load(dir)?;
    for word in words {
        if word == "healthy" {
            // Latency and the clock knobs are the world's physics, not faults: they stay.
            scenario = Scenario {
                latency_ms: scenario.latency_ms,
                startup_ms: scenario.startup_ms,
                cron_minute_ms: scenario.cron_minute_ms,
                pull_ms: scenario.pull_ms,
                helm_version: scenario.helm_version.clone(),
                helmfiles: scenario.helmfiles.clone(),
                ..Scenario::default()
            };
        } else {
            scenario.apply(word)?;
        }
    }
    scenario.save(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_are_quoted_for_sh() {
        let env = vec![("A".to_owned(), "it's here".to_owned())];
        assert_eq!(export_lines(&env), "export A='it'\\''s here'\n");
    }

    #[test]
    fn healthy_resets_knobs_but_keeps_latency() {
        let dir = std::env::temp_dir().join(format!("testbed-set-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        set(&dir, &["gate-fail=24-auth".into(), "latency-ms=7".into()]).unwrap();
        set(&dir, &["healthy".into(), "tilt-not-ready".into()]).unwrap();
        let s = Scenario::load(&dir).unwrap();
        assert!(s.gate_fail.is_empty() && s.tilt_not_ready);
        assert_eq!(s.latency_ms, 7);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
