//! House rules the build enforces (as rust-analyzer's `xtask/src/tidy.rs`): files stay
//! short, every module says what it is for, `xtask/src` depends one way through its
//! layers, and no modules of `xtask/src` or the testbed (`tests/src`) import each other
//! in a cycle. Pure file reads: no Docker, no tools.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The longest a source file may be before it should be split.
const MAX_LINES: usize = 500;

/// Files allowed over [`MAX_LINES`], each with why. Keep this short: prefer a split.
const LONG_FILES: &[(&str, &str)] = &[];

/// The layers of `xtask/src`, lowest first: a module may use its own layer and those
/// below, never one above (the README's "Architecture", `lib.rs`'s list). A new module
/// must be placed here.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "leaf types",
        &[
            "error",
            "outcome",
            "digest",
            "redact",
            "events",
            "cancel",
            "version",
            "session",
            "table",
            "spans",
            "stage_result",
            "fsutil",
            "wait",
        ],
    ),
    ("model (pure readers of settings and infra/)", &["config", "pins", "platform"]),
    (
        "adapters",
        &[
            "exec",
            "http",
            "k8s",
            "learn",
            "release",
            "probe",
            "pull_failures",
            "helmfile_cli",
            "helmfile_list",
        ],
    ),
    (
        "stages",
        &["cluster", "charts", "images", "layers", "checks", "secrets", "tilt", "steps", "tools"],
    ),
    ("commands over the stages", &["doctor", "down", "status"]),
    ("the run", &["runner", "bootstrap", "plan", "schemas", "lock", "timings"]),
    ("output", &["sinks"]),
    ("the CLI (the binary's crate, over the library)", &["main", "flags"]),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// Every `.rs` file under `dir` (relative to the workspace), sorted.
fn rust_files(dir: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![workspace().join(dir)];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn shown(path: &Path) -> String {
    path.strip_prefix(workspace()).unwrap_or(path).display().to_string()
}

#[test]
fn files_stay_under_the_length_limit() {
    let mut long = Vec::new();
    for dir in ["xtask/src", "xtask/tests", "xtask/benches", "tests/src", "tests/tests", "smoke"] {
        for path in rust_files(dir) {
            let lines = std::fs::read_to_string(&path).unwrap().lines().count();
            let name = shown(&path);
            let allowed = LONG_FILES.iter().any(|(file, _)| *file == name);
            if lines > MAX_LINES && !allowed {
                long.push(format!("{name}: {lines} lines"));
            }
        }
    }
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines (split them by concern):\n{}",
        long.join("\n")
    );
}

#[test]
fn every_module_says_what_it_is_for() {
    let mut undocumented = Vec::new();
    for dir in ["xtask/src", "xtask/tests", "xtask/benches", "tests/src", "tests/tests", "smoke"] {
        for path in rust_files(dir) {
            let text = std::fs::read_to_string(&path).unwrap();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            if !first.starts_with("//!") {
                undocumented.push(shown(&path));
            }
        }
    }
    assert!(
        undocumented.is_empty(),
        "modules without a `//!` doc on their first line:\n{}",
        undocumented.join("\n")
    );
}

/// The crate's top-level modules (a file or a folder under `src`) and, for each, the
/// other top-level modules its code names through `crate::`.
fn imports(src: &str) -> BTreeMap<String, BTreeSet<String>> {
    let root = workspace().join(src);
    let files = rust_files(src);
    let top = |path: &Path| -> String {
        let relative = path.strip_prefix(&root).unwrap();
        let first = relative.components().next().unwrap().as_os_str().to_string_lossy();
        first.trim_end_matches(".rs").to_owned()
    };
    let modules: BTreeSet<String> =
        files.iter().map(|p| top(p)).filter(|m| m != "lib" && m != "main").collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in &files {
        let from = top(path);
        let text = std::fs::read_to_string(path).unwrap();
        let used = graph.entry(from.clone()).or_default();
        for name in crate_paths(&text) {
            if name != from && modules.contains(&name) {
                used.insert(name);
            }
        }
    }
    graph
}

/// The first segment of every `crate::` path outside comments, `use crate::{a, b::c}`
/// included.
fn crate_paths(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    names.push(ident(item.trim()));
                }
            } else {
                names.push(ident(rest));
            }
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

fn ident(text: &str) -> String {
    text.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
}

/// Each cycle of the graph once (its strongly connected components with more than one
/// module), in Tarjan's order.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, node: &'a str) {
            let next = self.index.len();
            self.index.insert(node, next);
            self.low.insert(node, next);
            self.stack.push(node);
            for to in self.graph.get(node).into_iter().flatten() {
                if !self.index.contains_key(to.as_str()) {
                    self.visit(to);
                    let low = self.low[node].min(self.low[to.as_str()]);
                    self.low.insert(node, low);
                } else if self.stack.contains(&to.as_str()) {
                    let low = self.low[node].min(self.index[to.as_str()]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let at = self.stack.iter().rposition(|n| *n == node).unwrap();
                let mut component: Vec<String> =
                    self.stack.drain(at..).map(str::to_owned).collect();
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut tarjan = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !tarjan.index.contains_key(node.as_str()) {
            tarjan.visit(node);
        }
    }
    tarjan.found
}

#[test]
fn no_import_cycles_among_modules() {
    for src in ["xtask/src", "tests/src"] {
        let found = cycles(&imports(src));
        let shown: Vec<String> = found.iter().map(|c| c.join(" <-> ")).collect();
        assert!(
            found.is_empty(),
            "import cycles among the modules of {src} (move what both use into a module \
             below them):\n{}",
            shown.join("\n")
        );
    }
}

#[test]
fn xtask_src_depends_one_way_through_its_layers() {
    let layer_of = |module: &str| LAYERS.iter().position(|(_, members)| members.contains(&module));
    let mut problems = Vec::new();
    // `lib.rs` only declares the modules.
    for (from, used) in imports("xtask/src").into_iter().filter(|(from, _)| from != "lib") {
        let Some(from_layer) = layer_of(&from) else {
            problems.push(format!("`{from}` is in no layer: add it to LAYERS in {}", file!()));
            continue;
        };
        for to in used {
            match layer_of(&to) {
                Some(to_layer) if to_layer > from_layer => problems.push(format!(
                    "`{from}` ({}) uses `{to}` ({}), a layer above it",
                    LAYERS[from_layer].0, LAYERS[to_layer].0
                )),
                _ => {}
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn only_the_cli_uses_clap() {
    let cli = ["xtask/src/main.rs", "xtask/src/flags.rs"];
    let users: Vec<String> = rust_files("xtask/src")
        .iter()
        .filter(|path| !cli.contains(&shown(path).as_str()))
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            text.lines().any(|l| l.split("//").next().unwrap_or("").contains("clap::"))
        })
        .map(|path| shown(path))
        .collect();
    assert!(
        users.is_empty(),
        "the library takes plain option structs; clap types belong in xtask/src/flags.rs:\n{}",
        users.join("\n")
    );
}

#[test]
fn the_checker_sees_grouped_imports_and_cycles() {
    let text = "use crate::{alpha, beta::Gamma};\n// crate::commented\nlet x = crate::delta::f();";
    assert_eq!(crate_paths(text), ["alpha", "beta", "delta"]);
    let graph: BTreeMap<String, BTreeSet<String>> =
        [("a", &["b"][..]), ("b", &["c"][..]), ("c", &["a"][..]), ("d", &["a"][..])]
            .into_iter()
            .map(|(from, to)| (from.to_owned(), to.iter().map(|t| (*t).to_owned()).collect()))
            .collect();
    assert_eq!(cycles(&graph), [["a", "b", "c"]]);
}
