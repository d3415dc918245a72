//! What a request is about (`Target`: group, version, resource, namespace, name,
//! subresource) and the API's `Status` failures (`ApiError`), as apimachinery words them.

use serde_json::{Value, json};

use super::resources;

/// Which objects a request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl Target {
    /// The collection of `plural` in `group`/`version` (in `namespace`, if given).
    pub fn collection(group: &str, version: &str, plural: &str, namespace: Option<&str>) -> Target {
        Target {
            group: group.to_owned(),
            version: version.to_owned(),
            plural: plural.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: None,
            subresource: None,
        }
    }

    /// One object of `plural`.
    pub fn object(group: &str, version: &str, plural: &str, namespace: &str, name: &str) -> Target {
        let ns = (!namespace.is_empty()).then_some(namespace);
        Target { name: Some(name.to_owned()), ..Target::collection(group, version, plural, ns) }
    }

    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `secrets` or `jobs.batch`, as Kubernetes names a resource in messages.
    pub(crate) fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub(crate) fn kind(&self, body: Option<&Value>) -> String {
        resources::find(&self.group, &self.plural)
            .map(|r| r.kind.to_owned())
            .or_else(|| body.and_then(|b| b["kind"].as_str()).map(str::to_owned))
            .unwrap_or_else(|| self.plural.clone())
    }

    pub(crate) fn namespaced(&self) -> bool {
        resources::find(&self.group, &self.plural)
            .map_or(self.namespace.is_some(), |r| r.namespaced)
    }

    pub(crate) fn prefix(&self) -> String {
        format!("{}/{}/", group_key(&self.group), self.plural)
    }

    pub(crate) fn key(&self, namespace: &str, name: &str) -> String {
        format!("{}{namespace}/{name}", self.prefix())
    }
}

pub(crate) fn group_key(group: &str) -> &str {
    if group.is_empty() { "core" } else { group }
}

/// A Kubernetes `Status` failure.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Value,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { code, reason, message: message.into(), details: Value::Null }
    }

    pub(crate) fn about(
        code: u16,
        reason: &'static str,
        t: &Target,
        name: &str,
        what: &str,
    ) -> ApiError {
        ApiError {
            code,
            reason,
            message: format!("{} \"{name}\" {what}", t.qualified()),
            details: json!({ "name": name, "group": t.group, "kind": t.plural }),
        }
    }

    pub fn not_found(t: &Target, name: &str) -> ApiError {
        ApiError::about(404, "NotFound", t, name, "not found")
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason, "code": self.code,
        });
        if !self.details.is_null() {
            s["details"] = self.details.clone();
        }
        s
    }
}

pub type ApiResult = Result<Value, ApiError>;

impl ApiError {
    pub(crate) fn with_message_prefix(mut self, prefix: &str) -> ApiError {
        self.message = format!("{prefix}{}", self.message);
        self
    }
}

pub fn ns_target(name: Option<&str>) -> Target {
    Target {
        group: String::new(),
        version: "v1".into(),
        plural: "namespaces".into(),
        namespace: None,
        name: name.map(str::to_owned),
        subresource: None,
    }
}
