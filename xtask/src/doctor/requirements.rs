//! What doctor requires: the minimum versions (see the table in `super`) and how to
//! read a version out of a tool's output.

pub use crate::version::Version;

/// What we need of one command-line tool.
#[derive(Debug, Clone)]
pub struct Requirement {
    pub name: &'static str,
    pub required: bool,
    pub minimum: Version,
    pub version_args: &'static [&'static str],
    pub hint: &'static str,
}

pub const DOCKER_MINIMUM: Version = Version::new(20, 10, 0);
pub const DOCKER_HINT: &str = "install Docker Engine (https://docs.docker.com/engine/install/, or `apt-get install docker.io`) and start the daemon; in a devcontainer add the docker-in-docker feature";

/// The command-line tools, in the order they are shown.
pub const TOOLS: &[Requirement] = &[
    Requirement {
        name: "k3d",
        required: true,
        minimum: Version::new(5, 5, 0),
        version_args: &["version"],
        hint: "https://k3d.io/stable/#installation (`curl -s https://raw.githubusercontent.com/k3d-io/k3d/main/install.sh | bash`)",
    },
    Requirement {
        name: "helm",
        required: true,
        minimum: Version::new(3, 8, 0),
        version_args: &["version", "--short"],
        hint: "https://helm.sh/docs/intro/install/",
    },
    Requirement {
        name: "helmfile",
        required: true,
        minimum: crate::helmfile_cli::MINIMUM,
        version_args: crate::helmfile_cli::VERSION_ARGS,
        hint: "https://github.com/helmfile/helmfile/releases (unpack `helmfile` onto PATH)",
    },
    Requirement {
        name: "kubectl",
        required: true,
        minimum: Version::new(1, 30, 0),
        version_args: &["version", "--client", "--output=json"],
        hint: "https://kubernetes.io/docs/tasks/tools/#kubectl",
    },
    Requirement {
        name: "tilt",
        required: false,
        minimum: Version::new(0, 33, 0),
        version_args: &["version"],
        hint: "https://docs.tilt.dev/install.html",
    },
];
