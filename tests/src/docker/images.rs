//! The two images the testbed runs, built locally (nothing can be pulled): a rootfs tar
//! is assembled in memory and given to the daemon as `docker import` does
//! (`POST /images/create?fromSrc=-`). Each is built once and then reused.
//!
//! - `testbed/k3s-node:busybox`: Debian's static `/bin/busybox`; nodes run a shell loop
//!   that exits at once on SIGTERM (so `docker stop` is quick).
//! - `testbed/registry:2`: Debian's `/usr/bin/docker-registry` with the shared libraries
//!   `ldd` names, and a config without auth, listening on `:5000` (k3d overrides the
//!   address with `REGISTRY_HTTP_ADDR`, as it does for the real registry image).

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::query_parameters::CreateImageOptions;
use futures::StreamExt;

pub const NODE_IMAGE: &str = "testbed/k3s-node:busybox";
pub const REGISTRY_IMAGE: &str = "testbed/registry:2";

const BUSYBOX: &str = "/bin/busybox";
const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

/// The command of a node container: PID 1 must handle SIGTERM itself.
pub fn node_command() -> Vec<String> {
    ["/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 1 & wait $!; done"]
        .map(String::from)
        .to_vec()
}

pub fn registry_command() -> Vec<String> {
    ["/usr/bin/docker-registry", "serve", "/etc/docker/registry/config.yml"]
        .map(String::from)
        .to_vec()
}

const REGISTRY_CONFIG: &str = "\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
http:
  addr: :5000
";

/// Build whichever of the two images is missing.
pub async fn ensure_images(docker: &Docker) -> Result<()> {
    if !image_exists(docker, NODE_IMAGE).await? {
        build(docker, NODE_IMAGE, &node_rootfs()?).await?;
    }
    if !image_exists(docker, REGISTRY_IMAGE).await? {
        build(docker, REGISTRY_IMAGE, &registry_rootfs()?).await?;
    }
    Ok(())
}

async fn image_exists(docker: &Docker, image: &str) -> Result<bool> {
    match docker.inspect_image(image).await {
        Ok(_) => Ok(true),
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
            Ok(false)
        }
        Err(e) => Err(e).with_context(|| format!("inspecting image {image}")),
    }
}

async fn build(docker: &Docker, image: &str, rootfs: &[u8]) -> Result<()> {
    build_with(docker, image, rootfs, Vec::new()).await
}

/// `docker import` of `rootfs` as `image`, with Dockerfile `changes` (`LABEL k=v`).
pub(crate) async fn build_with(
    docker: &Docker,
    image: &str,
    rootfs: &[u8],
    changes: Vec<String>,
) -> Result<()> {
    let (repo, tag) = split_tag(image);
    let options = CreateImageOptions {
        from_src: Some("-".into()),
        repo: Some(repo.into()),
        tag: Some(tag.into()),
        changes,
        ..Default::default()
    };
    let body = bollard::body_full(rootfs.to_vec().into());
    let mut progress = docker.create_image(Some(options), Some(body), None);
    while let Some(item) = progress.next().await {
        item.with_context(|| format!("importing image {image}"))?;
    }
    Ok(())
}

/// `repo[:tag]` -> (repo, tag); a registry port (`localhost:5001/app`) is not a tag.
pub(crate) fn split_tag(image: &str) -> (&str, &str) {
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (image, "latest"),
    }
}

/// The rootfs of an image "downloaded" from the simulated registry: one file naming it,
/// so each reference has its own content (and image ID).
pub(crate) fn pulled_rootfs(image: &str) -> Result<Vec<u8>> {
    let mut tar = Tar::default();
    tar.file("etc/testbed-image", 0o644, image.as_bytes())?;
    tar.finish()
}

fn node_rootfs() -> Result<Vec<u8>> {
    let mut tar = Tar::default();
    for dir in ["bin", "tmp", "etc", "var", "var/lib"] {
        tar.dir(dir)?;
    }
    tar.file("bin/busybox", 0o755, &read(BUSYBOX)?)?;
    for applet in ["sh", "sleep"] {
        tar.symlink(&format!("bin/{applet}"), "busybox")?;
    }
    tar.finish()
}

fn registry_rootfs() -> Result<Vec<u8>> {
    let mut tar = Tar::default();
    for dir in
        ["tmp", "etc", "etc/docker", "etc/docker/registry", "var", "var/lib", "var/lib/registry"]
    {
        tar.dir(dir)?;
    }
    tar.file("usr/bin/docker-registry", 0o755, &read(REGISTRY_BINARY)?)?;
    for lib in shared_libraries(REGISTRY_BINARY)? {
        let data = read(&lib)?;
        tar.file(lib.trim_start_matches('/'), 0o755, &data)?;
    }
    tar.file("etc/docker/registry/config.yml", 0o644, REGISTRY_CONFIG.as_bytes())?;
    tar.finish()
}

fn read(path: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| {
        format!("reading {path} (the testbed needs busybox-static and docker-registry installed)")
    })
}

/// The absolute library paths `ldd` prints for a dynamically linked binary.
fn shared_libraries(binary: &str) -> Result<Vec<String>> {
    let out = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .with_context(|| format!("running ldd {binary}"))?;
    if !out.status.success() {
        bail!("ldd {binary} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(parse_ldd(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_ldd(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| path.to_owned())
        })
        .collect()
}

/// A rootfs tar in memory (the `tar` crate's ustar/GNU writer): directories, regular
/// files and symlinks, parents written before their children.
struct Tar {
    builder: tar::Builder<Vec<u8>>,
    dirs_written: Vec<String>,
}

impl Default for Tar {
    fn default() -> Tar {
        Tar { builder: tar::Builder::new(Vec::new()), dirs_written: Vec::new() }
    }
}

impl Tar {
    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h
    }

    fn dir(&mut self, path: &str) -> Result<()> {
        if !self.dirs_written.iter().any(|d| d == path) {
            self.dirs_written.push(path.to_owned());
            let mut h = Tar::header(tar::EntryType::Directory, 0o755, 0);
            self.builder.append_data(&mut h, format!("{path}/"), std::io::empty())?;
        }
        Ok(())
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<()> {
        self.parents(path)?;
        let mut h = Tar::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.builder.append_data(&mut h, path, data)?;
        Ok(())
    }

    fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        self.parents(path)?;
        let mut h = Tar::header(tar::EntryType::Symlink, 0o777, 0);
        self.builder.append_link(&mut h, path, target)?;
        Ok(())
    }

    fn parents(&mut self, path: &str) -> Result<()> {
        let parts: Vec<&str> = path.split('/').collect();
        for n in 1..parts.len() {
            self.dir(&parts[..n].join("/"))?;
        }
        Ok(())
    }

    fn finish(self) -> Result<Vec<u8>> {
        Ok(self.builder.into_inner()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_absolute_library_paths() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x7f)\n\t/lib64/ld-linux-x86-64.so.2 (0x7f)\n";
        assert_eq!(
            parse_ldd(text),
            ["/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"]
        );
    }

    /// The rootfs tars import and run (under throw-away tags, so images in use stay).
    #[test]
    fn rootfs_tars_import_and_run() {
        if !crate::require_docker() {
            return;
        }
        let tag = format!("testbed/tar-check:{}", std::process::id());
        crate::docker::runtime()
            .unwrap()
            .block_on(async {
                let docker = crate::docker::connect().await?;
                build(&docker, &tag, &node_rootfs()?).await
            })
            .unwrap();
        let run = std::process::Command::new("docker")
            .args(["run", "--rm", &tag, "/bin/sh", "-c", "test -x /bin/busybox && sleep 0"])
            .output()
            .unwrap();
        let _ = std::process::Command::new("docker").args(["rmi", "-f", &tag]).output();
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        let reg = registry_rootfs().unwrap();
        let names: Vec<String> = tar::Archive::new(reg.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().any(|n| n == "usr/bin/docker-registry"));
    }

    #[test]
    fn tars_have_parents_first_and_read_back() {
        let mut tar = Tar::default();
        tar.file("a/b/c.txt", 0o644, b"hi").unwrap();
        tar.symlink("a/sh", "busybox").unwrap();
        let bytes = tar.finish().unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let entries: Vec<(String, tar::EntryType)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().to_string_lossy().into_owned(), e.header().entry_type())
            })
            .collect();
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a/", "a/b/", "a/b/c.txt", "a/sh"]);
        assert_eq!(entries[3].1, tar::EntryType::Symlink);
    }
}
