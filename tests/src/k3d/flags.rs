//! The fake k3d's command-line flags, parsed as cobra does (`--name value`,
//! `--name=value`, `-c value`, booleans).

use anyhow::{Result, anyhow, bail};

/// Cobra-style flags: `--name value`, `--name=value`, `-c value`, booleans.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    pub(crate) positional: Vec<String>,
    pub(crate) values: Vec<(String, String)>,
    pub(crate) switches: Vec<String>,
}

pub(crate) const VALUE_FLAGS: &[&str] = &[
    "config",
    "c",
    "runtime-label",
    "timeout",
    "output",
    "o",
    "image",
    "i",
    "servers",
    "s",
    "agents",
    "a-memory",
    "k3s-arg",
    "port",
    "p",
    "api-port",
    "registry-create",
    "registry-use",
    "network",
    "token",
    "volume",
    "v",
    "env",
    "e",
    "verbose-level",
    "cluster",
    "mode",
    "m",
    "proxy-remote-url",
    "proxy-username",
    "proxy-password",
    "default-network",
];

pub(crate) const SWITCH_FLAGS: &[&str] = &[
    "wait",
    "all",
    "a",
    "no-rollback",
    "no-lb",
    "no-headers",
    "token-print",
    "verbose",
    "trace",
    "kubeconfig-update-default",
    "kubeconfig-switch-context",
    "no-image-volume",
    "keep-tarball",
    "k",
    "keep-tools",
    "t",
    "no-help",
];

impl Flags {
    pub(crate) fn parse(args: &[String]) -> Result<Flags> {
        let mut flags = Flags::default();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let Some(stripped) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                flags.positional.push(arg.clone());
                continue;
            };
            if stripped.is_empty() {
                flags.positional.extend(iter.by_ref().cloned());
                break;
            }
            let (name, inline) = match stripped.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (stripped, None),
            };
            if SWITCH_FLAGS.contains(&name) {
                if inline.as_deref() != Some("false") {
                    flags.switches.push(name.to_owned());
                }
            } else if VALUE_FLAGS.contains(&name) {
                let value = match inline {
                    Some(v) => v,
                    None => iter
                        .next()
                        .cloned()
                        .ok_or_else(|| anyhow!("flag needs an argument: --{name}"))?,
                };
                flags.values.push((name.to_owned(), value));
            } else {
                bail!("unknown flag: {arg}");
            }
        }
        Ok(flags)
    }

    pub(crate) fn value(&self, names: &[&str]) -> Option<&str> {
        self.values.iter().rev().find(|(n, _)| names.contains(&n.as_str())).map(|(_, v)| v.as_str())
    }

    pub(crate) fn all_values(&self, name: &str) -> Vec<&str> {
        self.values.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }

    pub(crate) fn switch(&self, names: &[&str]) -> bool {
        self.switches.iter().any(|s| names.contains(&s.as_str()))
    }
}
