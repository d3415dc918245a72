//! Manifests tests apply with plain `kubectl`, as a user would: the External Secrets
//! CRDs without their operator, a Vault store and ExternalSecrets reading from it.

/// The ExternalSecret and ClusterSecretStore CRDs, as a CRD bundle without the operator.
pub const ESO_CRDS: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: externalsecrets.external-secrets.io}
spec:
  group: external-secrets.io
  scope: Namespaced
  names: {kind: ExternalSecret, listKind: ExternalSecretList, plural: externalsecrets, singular: externalsecret}
  versions:
    - {name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: clustersecretstores.external-secrets.io}
spec:
  group: external-secrets.io
  scope: Cluster
  names: {kind: ClusterSecretStore, listKind: ClusterSecretStoreList, plural: clustersecretstores, singular: clustersecretstore}
  versions:
    - {name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}
";

/// The sample's Vault as a ClusterSecretStore.
pub const VAULT_STORE: &str = "apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {name: vault-local}
spec: {provider: {vault: {server: 'http://foundation-vault-core.vault:8200', path: secret, version: v2}}}
";

/// An ExternalSecret `ameide/<name>` reading `keycloak/<key>` (property `password`)
/// through [`VAULT_STORE`].
pub fn keycloak_external_secret(name: &str, key: &str) -> String {
    format!(
        "apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: {name}, namespace: ameide}}
spec:
  refreshInterval: 1m
  secretStoreRef: {{kind: ClusterSecretStore, name: vault-local}}
  target: {{name: {name}, creationPolicy: Owner}}
  data:
    - {{secretKey: password, remoteRef: {{key: keycloak/{key}, property: password}}}}
"
    )
}
