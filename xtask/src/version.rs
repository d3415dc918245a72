//! A tool's version, as read from what `<tool> --version` (or the like) prints. The
//! version is semver's [`Version`] (compared and serialized as semver does); tools print
//! it inside free text, so [`find_in`] looks for the first `N.N[.N]` there.

pub use semver::Version;

/// The first `N.N[.N]` in `text` (a leading `v` is fine; a missing patch is 0): `k3d
/// version v5.8.3`, `v4.1.4+g05fa379`, `helmfile version 1.1.2`, `v0.33.17, built
/// 2024-06-10`. `None` when there is none; callers say what was printed instead.
pub fn find_in(text: &str) -> Option<Version> {
    let bytes = text.as_bytes();
    // A version starts a word, or follows a `v` that does: not `k8s`, not `go1.24`.
    let starts_version = |i: usize| match i.checked_sub(1).map(|p| bytes[p]) {
        _ if !bytes[i].is_ascii_digit() => false,
        None => true,
        Some(b'v') => i < 2 || !bytes[i - 2].is_ascii_alphanumeric(),
        Some(prev) => !(prev.is_ascii_alphanumeric() || prev == b'.'),
    };
    (0..bytes.len()).filter(|&i| starts_version(i)).find_map(|i| parse_prefix(&text[i..]))
}

fn parse_prefix(text: &str) -> Option<Version> {
    let end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let mut parts = text[..end].split('.').map(|p| p.parse::<u64>().ok());
    let major = parts.next()??;
    let minor = parts.next()??;
    let patch = parts.next().flatten().unwrap_or(0);
    Some(Version::new(major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_found_in_real_tool_output() {
        assert_eq!(
            find_in("k3d version v5.8.3\nk3s version v1.31.5-k3s1 (default)"),
            Some(Version::new(5, 8, 3))
        );
        assert_eq!(find_in("v4.1.4+g05fa379"), Some(Version::new(4, 1, 4)));
        assert_eq!(find_in("helmfile version 1.1.2"), Some(Version::new(1, 1, 2)));
        // helmfile 0.166.0's `--version` (cobra's template) and its `version` verb's table.
        assert_eq!(find_in("helmfile version 0.166.0\n"), Some(Version::new(0, 166, 0)));
        let table = "\n▓▓▓ /usr/local/bin/helmfile\n\n  Version              0.166.0\n  Git Commit           655e1f9\n  Go version           1.22.4\n";
        assert_eq!(find_in(table), Some(Version::new(0, 166, 0)));
        assert_eq!(find_in("v0.33.17, built 2024-06-10"), Some(Version::new(0, 33, 17)));
        assert_eq!(find_in("Docker 20.10"), Some(Version::new(20, 10, 0)));
        assert_eq!(find_in("k8s.io/v2 x"), None);
        assert_eq!(find_in("no version here"), None);
        assert!(Version::new(1, 10, 0) > Version::new(1, 9, 9));
    }
}
