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
    let (repo, tag) = image.split_once(':').unwrap_or((image, "latest"));
    let options = CreateImageOptions {
        from_src: Some("-".into()),
        repo: Some(repo.into()),
        tag: Some(tag.into()),
        ..Default::default()
    };
    let body = bollard::body_full(rootfs.to_vec().into());
    let mut progress = docker.create_image(Some(options), Some(body), None);
    while let Some(item) = progress.next().await {
        item.with_context(|| format!("importing image {image}"))?;
    }
    Ok(())
}

fn node_rootfs() -> Result<Vec<u8>> {
    let mut tar = Tar::default();
    for dir in ["bin", "tmp", "etc", "var", "var/lib"] {
        tar.dir(dir);
    }
    tar.file("bin/busybox", 0o755, &read(BUSYBOX)?);
    for applet in ["sh", "sleep"] {
        tar.symlink(&format!("bin/{applet}"), "busybox");
    }
    Ok(tar.finish())
}

fn registry_rootfs() -> Result<Vec<u8>> {
    let mut tar = Tar::default();
    for dir in
        ["tmp", "etc", "etc/docker", "etc/docker/registry", "var", "var/lib", "var/lib/registry"]
    {
        tar.dir(dir);
    }
    tar.file("usr/bin/docker-registry", 0o755, &read(REGISTRY_BINARY)?);
    for lib in shared_libraries(REGISTRY_BINARY)? {
        let data = read(&lib)?;
        tar.file(lib.trim_start_matches('/'), 0o755, &data);
    }
    tar.file("etc/docker/registry/config.yml", 0o644, REGISTRY_CONFIG.as_bytes());
    Ok(tar.finish())
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

/// A minimal ustar writer: directories, regular files and symlinks are all we need.
#[derive(Default)]
struct Tar {
    buf: Vec<u8>,
    dirs_written: Vec<String>,
}

impl Tar {
    fn dir(&mut self, path: &str) {
        if !self.dirs_written.iter().any(|d| d == path) {
            self.dirs_written.push(path.to_owned());
            self.entry(&format!("{path}/"), 0o755, b'5', "", 0);
        }
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.parents(path);
        self.entry(path, mode, b'0', "", data.len());
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn symlink(&mut self, path: &str, target: &str) {
        self.parents(path);
        self.entry(path, 0o777, b'2', target, 0);
    }

    fn parents(&mut self, path: &str) {
        let parts: Vec<&str> = path.split('/').collect();
        for n in 1..parts.len() {
            self.dir(&parts[..n].join("/"));
        }
    }

    fn entry(&mut self, path: &str, mode: u32, kind: u8, link: &str, size: usize) {
        let mut header = [0u8; 512];
        let (prefix, name) = split_ustar_path(path);
        header[..name.len()].copy_from_slice(name.as_bytes());
        octal(&mut header[100..108], mode as u64);
        octal(&mut header[108..116], 0);
        octal(&mut header[116..124], 0);
        octal(&mut header[124..136], size as u64);
        octal(&mut header[136..148], 0);
        header[156] = kind;
        header[157..157 + link.len()].copy_from_slice(link.as_bytes());
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
        header[148..156].fill(b' ');
        let sum: u64 = header.iter().map(|&b| b as u64).sum();
        octal(&mut header[148..155], sum);
        self.buf.extend_from_slice(&header);
    }

    fn pad(&mut self) {
        let rem = self.buf.len() % 512;
        if rem != 0 {
            self.buf.resize(self.buf.len() + 512 - rem, 0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.buf.resize(self.buf.len() + 1024, 0);
        self.buf
    }
}

/// Names over 100 bytes go into the 155-byte prefix field, split at a `/`.
fn split_ustar_path(path: &str) -> (&str, &str) {
    if path.len() <= 100 {
        return ("", path);
    }
    let cut = path[..path.len().min(156)].rfind('/').unwrap_or(0);
    (&path[..cut], &path[cut + 1..])
}

/// NUL-terminated, zero-padded octal, as ustar wants.
fn octal(field: &mut [u8], value: u64) {
    let digits = format!("{value:0width$o}", width = field.len() - 1);
    field[..digits.len()].copy_from_slice(digits.as_bytes());
    field[field.len() - 1] = 0;
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

    #[test]
    fn tar_headers_carry_checksum_and_parents() {
        let mut tar = Tar::default();
        tar.file("a/b/c.txt", 0o644, b"hi");
        let bytes = tar.finish();
        // a/, a/b/, the file header, its data block, two end blocks.
        assert_eq!(bytes.len(), 512 * 6);
        assert_eq!(&bytes[..2], b"a/");
        assert_eq!(&bytes[1024..1033], b"a/b/c.txt");
        let header = &bytes[1024..1536];
        let stored =
            u64::from_str_radix(std::str::from_utf8(&header[148..154]).unwrap(), 8).unwrap();
        let sum: u64 = header
            .iter()
            .enumerate()
            .map(|(i, &b)| if (148..156).contains(&i) { 32 } else { b as u64 })
            .sum();
        assert_eq!(stored, sum);
    }
}
