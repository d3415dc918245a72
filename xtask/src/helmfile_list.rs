//! Reading the platform as a command sees it: the pure model of `crate::platform`,
//! checked against the run's environment, with Go-template layers rendered by
//! `helmfile build` (the one process the model needs, kept out of the model).
//!
//! `build` rather than `list --output json`: it prints the rendered state itself
//! (releases with their `values`, `needs`, labels and `installed`, in file order), so a
//! template layer's digest and validation cover its values files like a plain layer's;
//! `list` prints neither values nor needs, and 1.x sorts it by namespace and name. Both
//! exist with this output in every supported helmfile (`pkg/app` `PrintState`).
//!
//! `helmfile` is looked for in `<root>/.tools/bin`, then on `PATH`; without it template
//! layers stay not read, with the reason. The calls are quiet (read-only) and change
//! nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Context;
use crate::error::{Context as _, Result, bad_input};
use crate::exec::{self, Cmd};
use crate::platform::bundles;
use crate::platform::helmfile::{LayerReleases, Platform, parse_built};
use crate::session::Session;

/// Why a template layer is not read when no helmfile is found.
pub const NO_HELMFILE: &str = "not read: Go template and helmfile not found";

/// The root Helmfile of the settings, for `ctx.environment`, with template layers
/// listed and the releases of the bundles that are off marked not installed. A bundle
/// turned on that no release belongs to is bad input.
pub async fn read_platform(ctx: &Context) -> Result<Platform> {
    let platform = Platform::read(&ctx.settings.helmfile)?;
    platform.check_environment(&ctx.environment)?;
    let lister = Lister {
        helmfile: crate::probe::find_tool(&ctx.root, "helmfile"),
        environment: ctx.environment.clone(),
        timeout: ctx.settings.timeouts.tool_call(),
        bundles: ctx.bundles.clone(),
    };
    let mut platform = lister.fill(&ctx.session, platform).await?;
    // A bundle may sit in a template layer not read yet: judge only a complete model.
    if platform.layers.iter().all(|l| l.releases.not_read_reason().is_none()) {
        bundles::check_enabled(&platform, &ctx.bundles)?;
    }
    bundles::switch_off(&mut platform, &ctx.bundles);
    Ok(platform)
}

/// The state values file every helmfile call of a run reads, so layer files see the
/// bundles that are on as `.Values.bundles`. Named after its content in the temp
/// folder and replaced atomically: runs (and a killed one) share one file per set of
/// bundles instead of leaving one each, and a reader never sees half of it.
pub struct StateValues {
    path: PathBuf,
}

impl StateValues {
    pub fn write(enabled: &BTreeSet<String>) -> Result<StateValues> {
        let text = bundles::state_values(enabled);
        let digest = crate::digest::sha256_hex(text.as_bytes());
        let name = format!("bootstrap-state-values-{}.yaml", &digest[..16]);
        let path = std::env::temp_dir().join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            crate::fsutil::write_atomically(&path, text.as_bytes(), 0o644)
                .context("writing the helmfile state values file")?;
        }
        Ok(StateValues { path })
    }

    /// `--state-values-file <path>`.
    pub fn args(&self) -> [String; 2] {
        ["--state-values-file".into(), self.path.display().to_string()]
    }
}

/// How template layers get listed: with `helmfile` (if found) for one environment.
#[derive(Debug, Clone)]
pub struct Lister {
    pub helmfile: Option<PathBuf>,
    pub environment: String,
    pub timeout: Duration,
    /// The bundles that are on (the layer files' `bundles` state value).
    pub bundles: BTreeSet<String>,
}

impl Lister {
    /// Every template layer of `platform` rendered (or marked [`NO_HELMFILE`]); a failing
    /// `helmfile build` is bad input naming the layer file and helmfile's last line. A
    /// layer that renders no release is listed empty (helmfile's exit 3, "no releases
    /// found"), which the input validation then refuses with its own words.
    pub async fn fill(&self, session: &Session, mut platform: Platform) -> Result<Platform> {
        for layer in platform.layers.iter_mut().filter(|l| l.template) {
            layer.releases = self.list(session, &layer.file).await?;
        }
        Ok(platform)
    }

    async fn list(&self, session: &Session, file: &Path) -> Result<LayerReleases> {
        let Some(helmfile) = &self.helmfile else {
            return Ok(LayerReleases::NotRead { reason: NO_HELMFILE.into() });
        };
        let state_values = StateValues::write(&self.bundles)?;
        let cmd = Cmd::new("helmfile", &helmfile.to_string_lossy(), self.timeout)
            .arg("-f")
            .arg(file.to_string_lossy())
            .args(["-e", &self.environment])
            .args(state_values.args())
            .arg("build")
            .quiet();
        // Reading the model changes nothing: not echoed, and not logged.
        let out = exec::run(&session.quiet(), &cmd).await?;
        if crate::helmfile_cli::matched_no_release(&out) {
            return Ok(LayerReleases::Listed { releases: Vec::new() });
        }
        if !out.success() {
            let why =
                out.stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
            return Err(bad_input(format!(
                "{}: `{}` failed: {why}",
                file.display(),
                cmd.display()
            )));
        }
        Ok(LayerReleases::Listed { releases: parse_built(file, &out.stdout)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn runs_with_the_same_bundles_share_one_state_values_file() {
        let on: BTreeSet<String> = ["observability".to_owned()].into();
        let [flag, path] = StateValues::write(&on).unwrap().args();
        assert_eq!(flag, "--state-values-file");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "bundles: [\"observability\"]\n");
        assert_eq!(StateValues::write(&on).unwrap().args()[1], path, "one file per content");
        let [_, none] = StateValues::write(&BTreeSet::new()).unwrap().args();
        assert_ne!(none, path);
        assert_eq!(std::fs::read_to_string(&none).unwrap(), "bundles: []\n");
    }

    fn platform_with_template(dir: &Path) -> Platform {
        let root = dir.join("helmfile.yaml");
        std::fs::write(
            &root,
            "environments:\n  local: {}\n---\nhelmfiles:\n  - 30-apps.yaml.gotmpl\n",
        )
        .unwrap();
        std::fs::write(dir.join("30-apps.yaml.gotmpl"), "releases: []\n").unwrap();
        Platform::read(&root).unwrap()
    }

    fn no_helmfile() -> Lister {
        Lister {
            helmfile: None,
            environment: "local".into(),
            timeout: Duration::from_secs(30),
            bundles: BTreeSet::new(),
        }
    }

    #[tokio::test]
    async fn template_layer_without_helmfile_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let platform = platform_with_template(dir.path());
        let platform = no_helmfile().fill(&Session::silent(), platform).await.unwrap();
        assert_eq!(platform.layers[0].releases.not_read_reason(), Some(NO_HELMFILE));
    }

    #[tokio::test]
    async fn template_layer_is_rendered_by_helmfile_and_its_failure_is_bad_input() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let platform = platform_with_template(dir.path());
        let helmfile = dir.path().join("helmfile");
        // As helmfile 0.166.0 and 1.x answer: the rendered state, exit 3 when the file
        // renders no release, exit 1 naming what failed.
        std::fs::write(
            &helmfile,
            r#"#!/bin/sh
case "$*" in
  *"-e local --state-values-file "*" build") printf -- '---\n#  Source: x\n\nreleases:\n- name: web\n  chart: c\n  labels:\n    gate: "true"\n  values:\n  - v.yaml\n';;
  *"-e empty --state-values-file "*" build") echo "err: no releases found that matches specified selector() and environment(empty), in any helmfile" >&2; exit 3;;
  *) echo "environment not found" >&2; exit 1;;
esac
"#,
        )
        .unwrap();
        std::fs::set_permissions(&helmfile, std::fs::Permissions::from_mode(0o755)).unwrap();
        let lister = Lister { helmfile: Some(helmfile), ..no_helmfile() };

        let listed = lister.fill(&Session::silent(), platform.clone()).await.unwrap();
        let layer = &listed.layers[0];
        assert!(matches!(layer.releases, LayerReleases::Listed { .. }), "{layer:?}");
        assert_eq!(layer.gates().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["web"]);
        let values = &layer.releases.as_slice()[0].values;
        assert_eq!(values, &[crate::platform::helmfile::Values::Path("v.yaml".into())]);

        let empty = Lister { environment: "empty".into(), ..lister.clone() };
        let listed = empty.fill(&Session::silent(), platform.clone()).await.unwrap();
        assert!(
            matches!(&listed.layers[0].releases, LayerReleases::Listed { releases } if releases.is_empty())
        );

        let staging = Lister { environment: "staging".into(), ..lister };
        let err = staging.fill(&Session::silent(), platform).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput);
        let text = err.to_string();
        assert!(text.contains("30-apps.yaml.gotmpl: `"), "{text}");
        assert!(text.contains(" build` failed: environment not found"), "{text}");
    }
}
