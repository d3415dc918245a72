//! Bootstrap's tools step, split as the run plan wants it: [`planned`] reads `.tools`
//! and decides which pinned tools the run installs (changing nothing), and
//! [`install_planned`] installs them when the run applies.

use serde::{Deserialize, Serialize};

use super::{install, is_in_place};
use crate::config::Context;
use crate::error::{ErrorKind, Result};
use crate::pins::{Platform, ToolPin, bin_dir};

/// A pinned tool the run installs, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ToolInstall {
    pub name: String,
    pub version: String,
    pub reason: String,
}

/// One pinned tool as `.tools` and `PATH` have it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub name: String,
    pub version: String,
    /// A checksum is pinned for this platform.
    pub pinned_here: bool,
    /// The pinned version is in `.tools/bin` (its stamp matches).
    pub in_place: bool,
    /// Some version is on `PATH`.
    pub on_path: bool,
}

/// Pure: the tools to install. A tool not pinned for this platform but on `PATH` is
/// used as it is; every other one not in place is installed (an unpinned one then
/// fails with how to install it by hand).
pub fn decide(seen: &[Seen]) -> Vec<ToolInstall> {
    seen.iter()
        .filter(|t| (t.pinned_here || !t.on_path) && !t.in_place)
        .map(|t| ToolInstall {
            name: t.name.clone(),
            version: t.version.clone(),
            reason: match t.pinned_here {
                true => format!("pinned {} is not in .tools/bin", t.version),
                false => "not on PATH (and not pinned for this platform)".into(),
            },
        })
        .collect()
}

/// Read `.tools` and `PATH` for every pin and decide (nothing with `no_install`).
pub fn planned(ctx: &Context, no_install: bool) -> Vec<ToolInstall> {
    if no_install {
        return Vec::new();
    }
    let platform = Platform::current();
    let seen: Vec<Seen> =
        ctx.settings.tools.iter().map(|(name, pin)| see(ctx, platform, name, pin)).collect();
    decide(&seen)
}

fn see(ctx: &Context, platform: Option<Platform>, name: &str, pin: &ToolPin) -> Seen {
    let sum = platform.and_then(|p| pin.sha256_for(p));
    Seen {
        name: name.to_owned(),
        version: pin.version.clone(),
        pinned_here: sum.is_some(),
        in_place: sum.is_some_and(|sum| is_in_place(&ctx.root, name, pin, sum)),
        on_path: crate::probe::find_on_path(name).is_some(),
    }
}

/// Install the planned tools; every tool call then finds `.tools/bin` first on `PATH`.
/// When the downloads cannot be reached (offline) but every planned tool is already
/// on `PATH`, those are used and the returned warning says so (also emitted as a
/// warning event); otherwise install's error stops the run.
pub async fn install_planned(ctx: &Context, tools: &[ToolInstall]) -> Result<Option<String>> {
    if tools.is_empty() {
        return Ok(None);
    }
    let session = &ctx.session;
    let wanted: Vec<String> = tools.iter().map(|t| t.name.clone()).collect();
    let pins = &ctx.settings.tools;
    let Err(err) = install(&ctx.root, pins, &wanted, session, Platform::current()).await else {
        return Ok(None);
    };
    let on_path = wanted.iter().all(|name| crate::probe::find_tool(&ctx.root, name).is_some());
    if err.kind() != ErrorKind::Missing || !on_path {
        return Err(err);
    }
    let text = format!(
        "pinned tools not installed (downloads unreachable); using {} as found in {} or on \
         PATH: `cargo xtask doctor` compares their versions",
        wanted.join(", "),
        ctx.display_path(&bin_dir(&ctx.root))
    );
    session.line("tools", &format!("{text}: {err:#}"));
    session.events.warning("tools", &text);
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(name: &str, pinned_here: bool, in_place: bool, on_path: bool) -> Seen {
        Seen { name: name.into(), version: "1.0.0".into(), pinned_here, in_place, on_path }
    }

    #[test]
    fn installs_what_is_pinned_and_not_in_place_and_uses_unpinned_tools_on_path() {
        let plan = decide(&[
            seen("helm", true, true, true),
            seen("helmfile", true, false, true),
            seen("k3d", false, false, true),
            seen("tilt", false, false, false),
        ]);
        let names: Vec<&str> = plan.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["helmfile", "tilt"]);
        assert_eq!(plan[0].reason, "pinned 1.0.0 is not in .tools/bin");
        assert!(plan[1].reason.contains("not on PATH"));
    }
}
