//! What a verified tool download holds: the executable itself, or a `tar.gz` with the
//! executable at a pinned path (read with the `tar` crate: ustar, GNU long names, PAX).

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::error::{Result, failed};
use crate::pins::{ArchiveKind, Platform, ToolPin};

/// The executable's bytes from a verified download.
pub(super) fn executable_from(bytes: &[u8], pin: &ToolPin, platform: Platform) -> Result<Vec<u8>> {
    match (&pin.archive, &pin.binary) {
        (ArchiveKind::TarGz, Some(inner)) => {
            let inner = pin.expand(inner, platform);
            tar_entry(flate2::read::GzDecoder::new(bytes), &inner)
                .map_err(|e| failed(format!("the download is not a valid tar.gz: {e}")))?
                .ok_or_else(|| failed(format!("the archive holds no file `{inner}`")))
        }
        _ => Ok(bytes.to_vec()),
    }
}

/// The regular file at `wanted` in a tar stream (ustar, GNU long names, PAX paths),
/// `./` prefixes ignored; `None` when there is none.
pub(super) fn tar_entry(tar: impl Read, wanted: &str) -> std::io::Result<Option<Vec<u8>>> {
    let normal = |path: &Path| -> PathBuf {
        path.components().filter(|c| !matches!(c, Component::CurDir)).collect()
    };
    let wanted = normal(Path::new(wanted));
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.header().entry_type().is_file() && normal(&entry.path()?) == wanted {
            let mut data = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
            entry.read_to_end(&mut data)?;
            if u64::try_from(data.len()).ok() != Some(entry.size()) {
                let truncated =
                    format!("`{}` is cut short: the archive is truncated", wanted.display());
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, truncated));
            }
            return Ok(Some(data));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::error::ErrorKind;

    /// A tar built by the `tar` crate (GNU long names for paths over 100 bytes); names
    /// starting with `./` are written as given, as some release tarballs have them.
    fn tar_with(entries: &[(&str, &[u8], tar::EntryType)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data, kind) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(0o755);
            header.set_size(data.len() as u64);
            if name.starts_with("./") {
                header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                header.set_cksum();
                builder.append(&header, *data).unwrap();
            } else {
                builder.append_data(&mut header, name, *data).unwrap();
            }
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn tar_entries_are_found_by_path() {
        use tar::EntryType::{Directory, Regular};
        let long = format!("{}/helm", "d".repeat(120));
        let tar = tar_with(&[
            ("linux-amd64/", b"", Directory),
            ("./linux-amd64/README.md", b"readme", Regular),
            ("./linux-amd64/helm", b"#!/bin/sh\necho v1\n", Regular),
            (&long, b"long one", Regular),
        ]);
        let find = |wanted: &str| tar_entry(tar.as_slice(), wanted).unwrap();
        assert_eq!(find("linux-amd64/helm").unwrap(), b"#!/bin/sh\necho v1\n");
        assert_eq!(find("./linux-amd64/helm").unwrap(), b"#!/bin/sh\necho v1\n");
        assert_eq!(find(&long).unwrap(), b"long one");
        assert_eq!(find("helm"), None);
        assert_eq!(find("linux-amd64"), None, "a folder is not the executable");
        let one = tar_with(&[("a", b"0123456789", Regular)]);
        assert!(tar_entry(&one[..520], "a").is_err(), "truncated data is an error");
    }

    #[test]
    fn a_broken_archive_is_a_failure() {
        let p = ToolPin {
            version: "1.2.3".into(),
            url: "https://x/{version}".into(),
            archive: ArchiveKind::TarGz,
            binary: Some("{os}-{arch}/helm".into()),
            os_names: BTreeMap::new(),
            arch_names: BTreeMap::new(),
            sha256: BTreeMap::new(),
        };
        let linux = Platform { os: "linux", arch: "amd64" };
        let err = executable_from(b"not gzip", &p, linux).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Failed);
        assert!(err.to_string().contains("not a valid tar.gz"), "{err}");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar_with(&[("x", b"y", tar::EntryType::Regular)]))
            .unwrap();
        let err = executable_from(&gz.finish().unwrap(), &p, linux).unwrap_err();
        assert!(err.to_string().contains("holds no file `linux-amd64/helm`"), "{err}");
    }
}
