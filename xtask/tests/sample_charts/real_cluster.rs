//! What in a rendered release would not run on a real cluster (`helm template` output
//! read with the engine's YAML reader): images not pinned, and Helm test hooks that try
//! once instead of retrying within a deadline. Pure checks, with their own test.

use std::path::PathBuf;

use serde_json::Value;

/// The objects of `helm template` output (never shown: they hold fixture secrets).
fn rendered_objects(what: &str, rendered: &str) -> Vec<Value> {
    let path = PathBuf::from(format!("<helm template of {what}>"));
    let mut objects = Vec::new();
    let mut document = Vec::new();
    for line in rendered.lines().chain(std::iter::once("---")) {
        if line.trim_end() != "---" {
            document.push(line);
            continue;
        }
        let value: Value = xtask::platform::parse_yaml(&path, &document.join("\n"))
            .unwrap_or_else(|e| panic!("{e:#}"));
        if !value.is_null() {
            objects.push(value);
        }
        document.clear();
    }
    objects
}

/// The Pod spec of a Pod, of a workload's template, or of a CronJob's Job template.
fn pod_spec(object: &Value) -> Option<&Value> {
    ["/spec/jobTemplate/spec/template/spec", "/spec/template/spec"]
        .iter()
        .find_map(|pointer| object.pointer(pointer))
        .or_else(|| (object["kind"] == "Pod").then(|| &object["spec"]))
}

/// Public and pinned: a tag that is not `latest`, or a digest (never implicit `latest`).
fn pinned(image: &str) -> bool {
    if image.contains("@sha256:") {
        return true;
    }
    let name = image.rsplit('/').next().unwrap_or(image);
    matches!(name.split_once(':'), Some((_, tag)) if !tag.is_empty() && tag != "latest")
}

/// A check's command retries until it passes, within a deadline: `sh -c SCRIPT ...` whose
/// script loops (`until`/`while`), sleeps between attempts and exits 1 at a deadline.
fn retries_with_deadline(command: &[&str]) -> Result<(), String> {
    let script = match command {
        [shell, "-c", script, ..] if shell.ends_with("sh") => *script,
        _ => return Err("is not `sh -c <retry loop>`".into()),
    };
    let missing: Vec<&str> = [
        ("a loop (`until`/`while`)", script.contains("until ") || script.contains("while ")),
        ("a pause between attempts (`sleep`)", script.contains("sleep ")),
        ("a deadline (`date +%s` compared with `-ge`)", {
            script.contains("date +%s") && script.contains("-ge")
        }),
        ("a failure at the deadline (`exit 1`)", script.contains("exit 1")),
    ]
    .iter()
    .filter(|(_, present)| !present)
    .map(|(what, _)| *what)
    .collect();
    if missing.is_empty() { Ok(()) } else { Err(format!("lacks {}", missing.join(", "))) }
}

/// What in a rendered release would not run on a real cluster: images not pinned, and
/// test hooks that try once (a gate runs while CoreDNS and Services may still start).
pub fn runs_on_a_real_cluster(what: &str, rendered: &str) -> Vec<String> {
    let mut failures = Vec::new();
    for object in rendered_objects(what, rendered) {
        let Some(spec) = pod_spec(&object) else { continue };
        let name = format!(
            "{} {}",
            object["kind"].as_str().unwrap_or("?"),
            object["metadata"]["name"].as_str().unwrap_or("?")
        );
        let hook = object.pointer("/metadata/annotations/helm.sh~1hook").and_then(Value::as_str);
        let is_test = hook.is_some_and(|h| h.split(',').any(|e| e.trim() == "test"));
        let containers = ["initContainers", "containers"]
            .iter()
            .flat_map(|key| spec[*key].as_array().cloned().unwrap_or_default());
        for container in containers {
            let image = container["image"].as_str().unwrap_or_default();
            if !pinned(image) {
                failures.push(format!(
                    "{what}: {name}: image `{image}` is not pinned (use a tag other than `latest`, or a digest)"
                ));
            }
            if is_test {
                let command: Vec<&str> = ["command", "args"]
                    .iter()
                    .flat_map(|key| container[*key].as_array().into_iter().flatten())
                    .filter_map(Value::as_str)
                    .collect();
                if let Err(why) = retries_with_deadline(&command) {
                    failures.push(format!(
                        "{what}: test hook {name}: its command {why}; a gate check must retry \
                         until its target answers, within a deadline"
                    ));
                }
            }
        }
    }
    failures
}

#[test]
fn the_real_cluster_rules_reject_one_shot_checks_and_floating_images() {
    for image in
        ["busybox:1.37.0", "postgres:16.4-alpine", "localhost:5000/a/b:1", "busybox@sha256:ab"]
    {
        assert!(pinned(image), "{image}");
    }
    for image in ["busybox", "busybox:latest", "localhost:5000/busybox", ""] {
        assert!(!pinned(image), "{image}");
    }
    let once = ["wget", "-q", "-O", "/dev/null", "http://a.b.svc:80/"];
    assert!(retries_with_deadline(&once).unwrap_err().contains("not `sh -c"));
    let forever = ["sh", "-c", "until wget -q http://a.b.svc/; do sleep 2; done"];
    let why = retries_with_deadline(&forever).unwrap_err();
    assert!(
        why.starts_with("lacks a deadline") && why.contains(", a failure at the deadline"),
        "{why}"
    );
    let good = "deadline=$(( $(date +%s) + 60 ))\nuntil wget -q -O- --timeout=2 http://a.b.svc/; do\n  \
                [ \"$(date +%s)\" -ge \"$deadline\" ] && exit 1\n  sleep 2\ndone";
    assert_eq!(retries_with_deadline(&["/bin/sh", "-c", good]), Ok(()));

    let rendered = format!(
        "---\n# Source: x\napiVersion: v1\nkind: Pod\nmetadata:\n  name: once\n  annotations:\n    \
         helm.sh/hook: test\nspec:\n  containers:\n    - name: c\n      image: busybox\n      \
         command: {once:?}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  \
         template:\n    spec:\n      containers:\n        - name: c\n          image: busybox:1.37.0\n"
    );
    let failures = runs_on_a_real_cluster("release `x`", &rendered);
    assert_eq!(failures.len(), 2, "{failures:#?}");
    assert!(failures[0].starts_with("release `x`: Pod once: image `busybox` is not pinned"));
    assert!(failures[1].starts_with("release `x`: test hook Pod once: its command is not `sh -c"));
}
