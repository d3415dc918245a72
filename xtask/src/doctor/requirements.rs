//! What doctor requires: the minimum versions (see the table in `super`) and how to
//! read a version out of a tool's output.

use std::fmt;

use serde::Serialize;

/// A dotted version `major.minor.patch` (missing parts are 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u64, pub u64, pub u64);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

impl Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Version {
    /// The first `N.N[.N]` in `text` (a leading `v` is fine): `k3d version v5.8.3`,
    /// `v4.1.4+g05fa379`, `helmfile version 1.1.2`, `v0.33.17, built 2024-06-10`.
    pub fn find_in(text: &str) -> Option<Version> {
        let bytes = text.as_bytes();
        // A version starts a word, or follows a `v` that does: not `k8s`, not `go1.24`.
        let starts_version = |i: usize| match i.checked_sub(1).map(|p| bytes[p]) {
            _ if !bytes[i].is_ascii_digit() => false,
            None => true,
            Some(b'v') => i < 2 || !bytes[i - 2].is_ascii_alphanumeric(),
            Some(prev) => !(prev.is_ascii_alphanumeric() || prev == b'.'),
        };
        (0..bytes.len())
            .filter(|&i| starts_version(i))
            .find_map(|i| Version::parse_prefix(&text[i..]))
    }

    fn parse_prefix(text: &str) -> Option<Version> {
        let end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
        let mut parts = text[..end].split('.').map(|p| p.parse::<u64>().ok());
        let major = parts.next()??;
        let minor = parts.next()??;
        let patch = parts.next().flatten().unwrap_or(0);
        Some(Version(major, minor, patch))
    }
}

/// What we need of one command-line tool.
#[derive(Debug, Clone)]
pub struct Requirement {
    pub name: &'static str,
    pub required: bool,
    pub minimum: Version,
    pub version_args: &'static [&'static str],
    pub hint: &'static str,
}

pub const DOCKER_MINIMUM: Version = Version(20, 10, 0);
pub const DOCKER_HINT: &str = "install Docker Engine (https://docs.docker.com/engine/install/, or `apt-get install docker.io`) and start the daemon; in a devcontainer add the docker-in-docker feature";

/// The command-line tools, in the order they are shown.
pub const TOOLS: &[Requirement] = &[
    Requirement {
        name: "k3d",
        required: true,
        minimum: Version(5, 5, 0),
        version_args: &["version"],
        hint: "https://k3d.io/stable/#installation (`curl -s https://raw.githubusercontent.com/k3d-io/k3d/main/install.sh | bash`)",
    },
    Requirement {
        name: "helm",
        required: true,
        minimum: Version(3, 8, 0),
        version_args: &["version", "--short"],
        hint: "https://helm.sh/docs/intro/install/",
    },
    Requirement {
        name: "helmfile",
        required: true,
        minimum: Version(1, 0, 0),
        version_args: &["--version"],
        hint: "https://github.com/helmfile/helmfile/releases (unpack `helmfile` onto PATH)",
    },
    Requirement {
        name: "kubectl",
        required: true,
        minimum: Version(1, 30, 0),
        version_args: &["version", "--client", "--output=json"],
        hint: "https://kubernetes.io/docs/tasks/tools/#kubectl",
    },
    Requirement {
        name: "tilt",
        required: false,
        minimum: Version(0, 33, 0),
        version_args: &["version"],
        hint: "https://docs.tilt.dev/install.html",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_found_in_real_tool_output() {
        assert_eq!(
            Version::find_in("k3d version v5.8.3\nk3s version v1.31.5-k3s1 (default)"),
            Some(Version(5, 8, 3))
        );
        assert_eq!(Version::find_in("v4.1.4+g05fa379"), Some(Version(4, 1, 4)));
        assert_eq!(Version::find_in("helmfile version 1.1.2"), Some(Version(1, 1, 2)));
        assert_eq!(Version::find_in("v0.33.17, built 2024-06-10"), Some(Version(0, 33, 17)));
        assert_eq!(Version::find_in("Docker 20.10"), Some(Version(20, 10, 0)));
        assert_eq!(Version::find_in("k8s.io/v2 x"), None);
        assert_eq!(Version::find_in("no version here"), None);
        assert!(Version(1, 10, 0) > Version(1, 9, 9));
    }
}
