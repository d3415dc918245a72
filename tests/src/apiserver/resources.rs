//! The resources the fake API server advertises in discovery. Objects of other
//! resources are stored too (any `/apis/<group>/<version>/...` path works), they are
//! just not listed in discovery, like a CRD whose discovery document is not needed.

pub struct Resource {
    pub group: &'static str,
    pub versions: &'static [&'static str],
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// Subresources beside the main one (`status`, `log`).
    pub subresources: &'static [&'static str],
}

#[allow(clippy::too_many_arguments)]
const fn r(
    group: &'static str,
    versions: &'static [&'static str],
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    subresources: &'static [&'static str],
) -> Resource {
    Resource { group, versions, plural, singular, kind, namespaced, short_names, subresources }
}

const V1: &[&str] = &["v1"];
const STATUS: &[&str] = &["status"];

pub static RESOURCES: &[Resource] = &[
    r("", V1, "namespaces", "namespace", "Namespace", false, &["ns"], STATUS),
    r("", V1, "secrets", "secret", "Secret", true, &[], &[]),
    r("", V1, "configmaps", "configmap", "ConfigMap", true, &["cm"], &[]),
    r("", V1, "services", "service", "Service", true, &["svc"], STATUS),
    r("", V1, "pods", "pod", "Pod", true, &["po"], &["status", "log"]),
    r("", V1, "serviceaccounts", "serviceaccount", "ServiceAccount", true, &["sa"], &[]),
    r(
        "",
        V1,
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        "PersistentVolumeClaim",
        true,
        &["pvc"],
        STATUS,
    ),
    r("", V1, "events", "event", "Event", true, &["ev"], &[]),
    // `kubectl describe namespace` lists both.
    r("", V1, "resourcequotas", "resourcequota", "ResourceQuota", true, &["quota"], STATUS),
    r("", V1, "limitranges", "limitrange", "LimitRange", true, &["limits"], &[]),
    r("apps", V1, "deployments", "deployment", "Deployment", true, &["deploy"], STATUS),
    r("apps", V1, "statefulsets", "statefulset", "StatefulSet", true, &["sts"], STATUS),
    r("apps", V1, "daemonsets", "daemonset", "DaemonSet", true, &["ds"], STATUS),
    r("apps", V1, "replicasets", "replicaset", "ReplicaSet", true, &["rs"], STATUS),
    r("batch", V1, "jobs", "job", "Job", true, &[], STATUS),
    r("batch", V1, "cronjobs", "cronjob", "CronJob", true, &["cj"], STATUS),
    r("networking.k8s.io", V1, "ingresses", "ingress", "Ingress", true, &["ing"], STATUS),
    r(
        "networking.k8s.io",
        V1,
        "networkpolicies",
        "networkpolicy",
        "NetworkPolicy",
        true,
        &["netpol"],
        &[],
    ),
    r("rbac.authorization.k8s.io", V1, "roles", "role", "Role", true, &[], &[]),
    r(
        "rbac.authorization.k8s.io",
        V1,
        "rolebindings",
        "rolebinding",
        "RoleBinding",
        true,
        &[],
        &[],
    ),
    r(
        "rbac.authorization.k8s.io",
        V1,
        "clusterroles",
        "clusterrole",
        "ClusterRole",
        false,
        &[],
        &[],
    ),
    r(
        "rbac.authorization.k8s.io",
        V1,
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        false,
        &[],
        &[],
    ),
    r(
        "policy",
        V1,
        "poddisruptionbudgets",
        "poddisruptionbudget",
        "PodDisruptionBudget",
        true,
        &["pdb"],
        STATUS,
    ),
    r(
        "apiextensions.k8s.io",
        V1,
        "customresourcedefinitions",
        "customresourcedefinition",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
        STATUS,
    ),
    r(
        "external-secrets.io",
        &["v1", "v1beta1"],
        "externalsecrets",
        "externalsecret",
        "ExternalSecret",
        true,
        &["es"],
        STATUS,
    ),
    r(
        "external-secrets.io",
        &["v1", "v1beta1"],
        "secretstores",
        "secretstore",
        "SecretStore",
        true,
        &["ss"],
        STATUS,
    ),
    r(
        "external-secrets.io",
        &["v1", "v1beta1"],
        "clustersecretstores",
        "clustersecretstore",
        "ClusterSecretStore",
        false,
        &["css"],
        STATUS,
    ),
    r(
        "cert-manager.io",
        V1,
        "certificates",
        "certificate",
        "Certificate",
        true,
        &["cert", "certs"],
        STATUS,
    ),
    r("cert-manager.io", V1, "issuers", "issuer", "Issuer", true, &[], STATUS),
    r(
        "cert-manager.io",
        V1,
        "clusterissuers",
        "clusterissuer",
        "ClusterIssuer",
        false,
        &[],
        STATUS,
    ),
];

pub fn find(group: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.group == group && r.plural == plural)
}

/// The resource of a kind in a group (`apiVersion` without the version).
pub fn by_kind(group: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.group == group && r.kind == kind)
}

/// The plural of a kind not in the table, the way Kubernetes' RESTMapper guesses it
/// (`UnsafeGuessKindToResource`).
pub fn guess_plural(kind: &str) -> String {
    let lower = kind.to_lowercase();
    if lower.ends_with('s')
        || lower.ends_with("sh")
        || lower.ends_with("ch")
        || lower.ends_with('x')
    {
        format!("{lower}es")
    } else if let Some(stem) = lower.strip_suffix('y')
        && !stem.ends_with(['a', 'e', 'i', 'o', 'u'])
    {
        format!("{stem}ies")
    } else {
        format!("{lower}s")
    }
}

/// Kinds that are cluster-scoped, for objects rendered by charts without a namespace.
pub fn cluster_scoped(group: &str, kind: &str) -> bool {
    match by_kind(group, kind) {
        Some(r) => !r.namespaced,
        None => matches!(
            kind,
            "PersistentVolume"
                | "StorageClass"
                | "PriorityClass"
                | "IngressClass"
                | "MutatingWebhookConfiguration"
                | "ValidatingWebhookConfiguration"
                | "APIService"
                | "Node"
        ),
    }
}

/// Group and version of an `apiVersion` (`v1` is the core group).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

pub const VERBS: &[&str] =
    &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_follow_kubernetes_guessing() {
        assert_eq!(guess_plural("Certificate"), "certificates");
        assert_eq!(guess_plural("Ingress"), "ingresses");
        assert_eq!(guess_plural("NetworkPolicy"), "networkpolicies");
        assert_eq!(guess_plural("Gateway"), "gateways");
        for r in RESOURCES {
            assert_eq!(guess_plural(r.kind), r.plural, "{}", r.kind);
        }
    }
}
