//! The container images a rendered layer runs: every `image` of every container, init
//! container and ephemeral container of every Pod template in the manifests
//! (`helmfile template` output: workloads, Jobs, CronJobs and Helm test hook Pods).
//! Pure: the text in, the references out, in first-seen order without repeats.

use serde_json::Value;

/// The image references in `manifests` (multi-document YAML), first seen first.
/// Unparsable YAML is an error naming where (the caller decides what it means).
pub fn images_in_manifests(manifests: &str) -> Result<Vec<String>, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(manifests).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!(" at line {}:{}", l.line(), l.column()))
            .unwrap_or_default();
        let message = e.to_string();
        format!("rendered manifests{at}: {}", message.lines().next().unwrap_or(&message))
    })?;
    let mut out = Vec::new();
    for doc in &docs {
        collect(doc, &mut out);
    }
    Ok(out)
}

/// Pod specs sit at different depths (Pod `spec`, `spec.template.spec`, a CronJob's
/// `spec.jobTemplate.spec.template.spec`, custom resources' own templates): any
/// `containers` / `initContainers` / `ephemeralContainers` list whose entries carry a
/// string `image` counts. A CRD's schema has objects there, not strings, so it does not.
fn collect(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            // Init containers first: the order a node pulls them in.
            for key in ["initContainers", "containers", "ephemeralContainers"] {
                let list = map.get(key).and_then(Value::as_array).into_iter().flatten();
                for image in list.filter_map(|c| c["image"].as_str()).map(str::trim) {
                    if !image.is_empty() && !out.iter().any(|i| i == image) {
                        out.push(image.to_owned());
                    }
                }
            }
            map.values().for_each(|child| collect(child, out));
        }
        Value::Array(items) => items.iter().for_each(|item| collect(item, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RENDERED: &str = r#"---
# Source: postgres/templates/statefulset.yaml
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: postgres}
spec:
  template:
    spec:
      initContainers: [{name: init, image: "busybox:1.37.0"}]
      containers: [{name: postgres, image: "postgres:16.4-alpine"}]
---
# Source: vault-bootstrap/templates/cronjob.yaml
apiVersion: batch/v1
kind: CronJob
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: seed, image: "hashicorp/vault:1.17.6"}]
---
# Source: helm-test-jobs/templates/test-pods.yaml
apiVersion: v1
kind: Pod
metadata:
  annotations: {"helm.sh/hook": test}
spec:
  containers:
    - {name: check, image: "postgres:16.4-alpine"}
---
# Source: x/templates/crd.yaml
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
spec:
  versions:
    - schema:
        openAPIV3Schema:
          properties:
            containers: {type: array, items: {properties: {image: {type: string}}}}
---
# Source: empty.yaml
"#;

    #[test]
    fn every_pod_template_counts_once_in_order() {
        assert_eq!(
            images_in_manifests(RENDERED).unwrap(),
            ["busybox:1.37.0", "postgres:16.4-alpine", "hashicorp/vault:1.17.6"]
        );
    }

    #[test]
    fn nothing_rendered_is_no_images_and_bad_yaml_says_where() {
        assert!(images_in_manifests("").unwrap().is_empty());
        let err = images_in_manifests("kind: Pod\nspec: [unclosed\n").unwrap_err();
        assert!(err.starts_with("rendered manifests at line"), "{err}");
    }
}
