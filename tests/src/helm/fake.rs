//! The fake `helm`: `test`, `uninstall`, `rollback` (`crate::helm::rollback`) on the fake
//! API, in the release storage `HELM_DRIVER` names (`crate::release::Driver`); `status` and `list` (and any
//! other verb) run the real helm (`$TESTBED_REAL_HELM`), which reads the release Secrets
//! the testbed writes exactly as Helm does.
//!
//! `helm test` follows helm `pkg/action/release_testing.go` and `pkg/cmd/release_testing.go`:
//! each test hook of the latest revision is created in the API and waited for until the
//! cluster ends it (the kubelet runs a test Pod's check and applies `gate-fail` and
//! `gate-leak`: `apiserver/controllers/test_pods.rs`); failed Pods stay, `hook-succeeded`
//! ones are deleted (before or after `--logs` reads them, per version); its `last_run`
//! {started_at, completed_at, phase} is written back into the release Secret, then the
//! release is printed and, with `--logs`, each Pod's log under `POD LOGS: <pod>`.
//! Scenario `log_race` is this fake's own: the phase is recorded, then the Pods vanish
//! before their logs are read ("unable to get pod logs for <pod>: pods "<pod>" not
//! found"), which real helm 3.x does by itself for every passing `hook-succeeded` hook.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::helm::hooks::*;
use crate::helm::records::{load, status_text, store, uninstall};
use crate::helm::version::HelmVersion;
use crate::kube_api::{self, Client};
use crate::release;
use crate::scenario::Scenario;

/// Record the call, load the scenario and sleep its latency (every fake tool does this).
pub fn prelude(tool: &str, args: &[String]) -> Scenario {
    let Some(dir) = std::env::var_os("TESTBED_DIR").map(PathBuf::from) else {
        return Scenario::default();
    };
    if let Err(e) = crate::calls::record(&dir, tool, args) {
        eprintln!("testbed {tool}: {e:#}");
    }
    let scenario = Scenario::load(&dir).unwrap_or_else(|e| {
        eprintln!("testbed {tool}: {e:#}");
        Scenario::default()
    });
    if scenario.latency_ms > 0 {
        std::thread::sleep(Duration::from_millis(scenario.latency_ms));
    }
    scenario
}

pub fn main(args: Vec<String>) -> i32 {
    let scenario = prelude("helm", &args);
    if let Some(code) = crate::real_tools::exec_if_real("helm", &args) {
        return code;
    }
    let verb = args.iter().find(|a| !a.starts_with('-')).cloned().unwrap_or_default();
    let result = match verb.as_str() {
        "test" => run_async(test(&args, &scenario)),
        "version" => {
            let v = HelmVersion::parse(&scenario.helm_version).unwrap_or(HelmVersion(3, 18, 4));
            print!("{}", v.version_text(&args));
            return 0;
        }
        "uninstall" | "delete" | "un" | "del" => run_async(uninstall_cmd(&args)),
        "rollback" => run_async(crate::helm::rollback::rollback_cmd(&args)),
        _ => return forward(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            1
        }
    }
}

pub fn run_async<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(f)
}

/// The real helm, from `$TESTBED_REAL_HELM`.
pub fn real_helm() -> Option<PathBuf> {
    std::env::var_os("TESTBED_REAL_HELM").map(PathBuf::from).filter(|p| p.is_file())
}

/// Run the real helm with the same arguments; its exit code.
fn forward(args: &[String]) -> i32 {
    let Some(helm) = real_helm() else {
        eprintln!(
            "testbed helm: `{}` needs the real helm, and TESTBED_REAL_HELM is not set",
            args.join(" ")
        );
        return 127;
    };
    crate::real_tools::run_real("helm", &helm, args)
}

/// What `test`/`uninstall` take from a helm command line.
#[derive(Debug, Default, PartialEq)]
struct Options {
    release: String,
    namespace: String,
    logs: bool,
    /// `--kube-context` (else `$HELM_KUBECONTEXT`, else the current context).
    kube_context: Option<String>,
    /// `--filter name=a` / `--filter !name=a`.
    include: Vec<String>,
    exclude: Vec<String>,
    /// `--timeout` (helm's default 5m0s): how long one hook may take.
    timeout: Duration,
}

fn parse(args: &[String], verb_names: &[&str]) -> Result<Options> {
    let mut o = Options {
        namespace: default_namespace(),
        timeout: Duration::from_secs(300),
        ..Options::default()
    };
    let mut positional = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (a.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .with_context(|| format!("flag needs an argument: {name}"))
        };
        match flag {
            "-n" | "--namespace" => o.namespace = value(flag)?,
            "--logs" => o.logs = true,
            "--filter" => {
                let f = value(flag)?;
                match f.strip_prefix('!') {
                    Some(rest) => o.exclude.push(rest.trim_start_matches("name=").to_owned()),
                    None => o.include.push(f.trim_start_matches("name=").to_owned()),
                }
            }
            "--kube-context" => o.kube_context = Some(value(flag)?),
            "--timeout" => o.timeout = go_duration(&value(flag)?)?,
            "--kubeconfig" | "--cascade" | "--description" => {
                value(flag)?;
            }
            "--debug" | "--wait" | "--keep-history" | "--no-hooks" | "--ignore-not-found"
            | "--hide-notes" => {}
            f if f.starts_with('-') => bail!("unknown flag: {f}"),
            _ => positional.push(a.clone()),
        }
    }
    if positional.first().is_some_and(|v| verb_names.contains(&v.as_str())) {
        positional.remove(0);
    }
    o.release = match positional.as_slice() {
        [name] => name.clone(),
        _ => bail!(
            "\"helm {}\" requires 1 argument\n\nUsage:  helm {} [RELEASE] [flags]",
            verb_names[0],
            verb_names[0]
        ),
    };
    Ok(o)
}

/// A Go `time.Duration` text (`300s`, `5m`, `1m30s`, `1h`, `500ms`).
fn go_duration(text: &str) -> Result<Duration> {
    let mut total = 0.0f64;
    let mut rest = text.trim();
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, tail) = rest.split_at(digits);
        let number: f64 = number.parse().with_context(|| format!("invalid duration \"{text}\""))?;
        let unit_len = tail.find(|c: char| c.is_ascii_digit()).unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => bail!("invalid duration \"{text}\""),
        };
        total += number * scale;
        rest = tail;
    }
    Ok(Duration::from_secs_f64(total))
}

fn default_namespace() -> String {
    std::env::var("HELM_NAMESPACE")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into())
}

async fn test(args: &[String], scenario: &Scenario) -> Result<i32> {
    let o = parse(args, &["test"])?;
    let helm = HelmVersion::parse(&scenario.helm_version).unwrap_or(HelmVersion(3, 18, 4));
    let client = Client::for_context(o.kube_context.as_deref())?;
    let Some((_, mut rel)) = load(&client, &o.namespace, &o.release).await? else {
        bail!("release: not found");
    };
    // Which layer the release is in: the same mapping the cluster's kubelet uses.
    let race = crate::apiserver::controllers::release_layer(scenario, &rel.namespace, &rel.name)
        .is_some_and(|l| scenario.log_race.contains(&l));
    let ns = rel.namespace.clone();
    let selected = |h: &release::Hook| {
        h.events.iter().any(|e| e == "test")
            && !o.exclude.contains(&h.name)
            && (o.include.is_empty() || o.include.contains(&h.name))
    };
    // As execHook: the selected test hooks by weight, then name; the first failure stops.
    let mut order: Vec<usize> = (0..rel.hooks.len()).filter(|i| selected(&rel.hooks[*i])).collect();
    order.sort_by(|a, b| {
        let (a, b) = (&rel.hooks[*a], &rel.hooks[*b]);
        (a.weight, &a.name).cmp(&(b.weight, &b.name))
    });
    let mut run_error = None;
    let mut passed = Vec::new();
    for i in order {
        rel.hooks[i].last_run = release::LastRun {
            started_at: release::timestamp_now(),
            completed_at: String::new(),
            phase: "Running".into(),
        };
        store(&client, &rel).await?;
        let hook = rel.hooks[i].clone();
        // As execHook: a wait that runs out is a failed hook, too.
        let (ok, wait_error) = match run_hook(&client, &ns, &hook, o.timeout).await {
            Ok(ok) => (ok, None),
            Err(e) => (false, Some(format!("{e:#}"))),
        };
        rel.hooks[i].last_run.completed_at = release::timestamp_now();
        rel.hooks[i].last_run.phase = if ok { "Succeeded" } else { "Failed" }.into();
        if !ok {
            run_error = Some(wait_error.unwrap_or_else(|| hook_error(helm, &ns, &hook)));
            if hook.delete_policies.iter().any(|p| p == "hook-failed") {
                delete_hook(&client, &ns, &hook).await?;
            }
            break;
        }
        passed.push(hook);
    }
    // Before 4.0.5 the passing hooks are deleted inside execHook, before --logs.
    if run_error.is_none() && !helm.reads_logs_before_deleting() {
        delete_passed(&client, &ns, std::mem::take(&mut passed)).await?;
    }
    store(&client, &rel).await?;
    print!("{}", status_text(&rel));
    let mut log_error = None;
    if o.logs {
        println!();
        let mut hooks: Vec<&release::Hook> = rel
            .hooks
            .iter()
            .filter(|h| selected(h) && (h.kind == "Pod" || !helm.logs_pods_only()))
            .collect();
        hooks.sort_by_key(|h| h.weight);
        for h in hooks {
            if race {
                // Someone (a re-run, a cleanup) deleted the Pod before its log was read.
                client.delete(&kube_api::object_path("v1", "Pod", Some(&ns), &h.name)).await?;
            }
            match client.pod_log(&ns, &h.name).await {
                Ok(text) if helm.logs_per_container() => {
                    println!("POD LOGS: {} (check)\n{text}", h.name)
                }
                Ok(text) => println!("POD LOGS: {}\n{text}", h.name),
                Err(e) => {
                    let cause =
                        e.downcast_ref::<kube_api::StatusError>().map(|s| s.message.clone());
                    let cause = cause.unwrap_or_else(|| format!("{e:#}"));
                    log_error = Some(helm.log_error(&h.name, &cause));
                    break;
                }
            }
        }
    }
    // 4.0.5+: the delayed shutdown deletes them now.
    delete_passed(&client, &ns, passed).await?;
    // helm 3 returns the log error instead of the run's; helm 4 joins both.
    let error = match (run_error, log_error) {
        (r, None) => r,
        (None, l) => l,
        (Some(_), Some(l)) if helm.0 < 4 => Some(l),
        (Some(r), Some(l)) => Some(format!("{r}\n{l}")),
    };
    match error {
        Some(e) => bail!("{e}"),
        None => Ok(0),
    }
}

async fn uninstall_cmd(args: &[String]) -> Result<i32> {
    let o = parse(args, &["uninstall", "delete", "un", "del"])?;
    let client = Client::for_context(o.kube_context.as_deref())?;
    if !uninstall(&client, &o.namespace, &o.release).await? {
        bail!("uninstall: Release not loaded: {}: release: not found", o.release);
    }
    println!("release \"{}\" uninstalled", o.release);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn o_timeout(line: &str) -> Duration {
        parse(&args(line), &["test"]).unwrap().timeout
    }

    #[test]
    fn test_flags_parse_like_helm() {
        let o = parse(
            &args("test demo -n ameide --logs --timeout 5m --filter name=a --filter !name=b"),
            &["test"],
        )
        .unwrap();
        assert_eq!(o.release, "demo");
        assert_eq!(o.namespace, "ameide");
        assert!(o.logs);
        assert_eq!((o.include, o.exclude), (vec!["a".to_owned()], vec!["b".to_owned()]));
        assert!(
            parse(&args("test"), &["test"])
                .unwrap_err()
                .to_string()
                .contains("requires 1 argument")
        );
        assert!(parse(&args("test x --bogus"), &["test"]).is_err());
        assert_eq!(o_timeout("test x --timeout 1m30s"), Duration::from_secs(90));
        assert_eq!(o_timeout("test x --timeout=300s"), Duration::from_secs(300));
        assert_eq!(o_timeout("test x"), Duration::from_secs(300));
        let o = parse(&args("--namespace=x uninstall y"), &["uninstall"]).unwrap();
        assert_eq!((o.namespace.as_str(), o.release.as_str()), ("x", "y"));
    }
}
