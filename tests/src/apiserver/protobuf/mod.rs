//! Kubernetes' protobuf wire format (`application/vnd.kubernetes.protobuf`), as
//! apimachinery's `runtime/serializer/protobuf/protobuf.go` writes it: the magic
//! `k8s\0`, then a `runtime.Unknown` whose `typeMeta` names the kind and whose `raw` is
//! the object's message. The messages are `k8s-pb`'s (prost); the store keeps JSON, so
//! a body is turned into the JSON the Go types would give (`json.rs`) on the way in and
//! back on the way out. Only the kinds in `kinds.rs` are known.

mod json;
mod kinds;
#[cfg(test)]
mod tests;

use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use prost::Message;
use serde_json::Value;

pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The magic before every protobuf-encoded object (the last byte: the `Unknown` style).
pub const MAGIC: &[u8] = b"k8s\0";

fn group_of(api_version: &str) -> &str {
    api_version.split_once('/').map_or("", |(g, _)| g)
}

/// Why a protobuf body was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Not a Kubernetes protobuf message, or a malformed one (the API server: 400).
    Malformed(String),
    /// A kind the testbed has no codec for (the testbed's limit: 415).
    UnknownKind(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Malformed(m) | DecodeError::UnknownKind(m) => f.write_str(m),
        }
    }
}

/// A protobuf body (magic + `Unknown`) as the JSON object it carries, `apiVersion` and
/// `kind` included.
pub fn decode(body: &[u8]) -> Result<Value, DecodeError> {
    let malformed = |e: String| DecodeError::Malformed(e);
    let Some(envelope) = body.strip_prefix(MAGIC) else {
        return Err(malformed(format!(
            "provided data does not appear to be a protobuf message, expected prefix {:?}",
            MAGIC
        )));
    };
    let unknown = Unknown::decode(envelope).map_err(|e| malformed(e.to_string()))?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    if kind.is_empty() {
        return Err(malformed("Object 'Kind' is missing in protobuf body".into()));
    }
    let codec = kinds::find(group_of(&api_version), &kind).ok_or_else(|| {
        DecodeError::UnknownKind(format!(
            "the testbed has no protobuf codec for {api_version}, Kind={kind}"
        ))
    })?;
    let raw = unknown.raw.as_deref().unwrap_or_default();
    let mut object = (codec.decode)(raw).map_err(malformed)?;
    object["apiVersion"] = Value::String(api_version);
    object["kind"] = Value::String(kind);
    Ok(object)
}

/// The protobuf message of a JSON object by its `apiVersion` and `kind`, without the
/// envelope (what a watch event's `object.raw` or a list item is); None when the
/// testbed has no codec for the kind.
pub fn encode_raw(object: &Value) -> Option<Result<Vec<u8>, String>> {
    let api_version = object["apiVersion"].as_str().unwrap_or("");
    let kind = object["kind"].as_str()?;
    let codec = kinds::find(group_of(api_version), kind)?;
    Some((codec.encode)(object))
}

/// Whether `encode` can write this object (lists: their kind `<Kind>List` is known).
pub fn encodable(object: &Value) -> bool {
    let api_version = object["apiVersion"].as_str().unwrap_or("");
    object["kind"].as_str().is_some_and(|k| kinds::find(group_of(api_version), k).is_some())
}

/// A JSON object as a protobuf body: magic + `Unknown{typeMeta, raw}`.
pub fn encode(object: &Value) -> Option<Result<Vec<u8>, String>> {
    let raw = match encode_raw(object)? {
        Ok(raw) => raw,
        Err(e) => return Some(Err(e)),
    };
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: object["apiVersion"].as_str().map(str::to_owned),
            kind: object["kind"].as_str().map(str::to_owned),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = MAGIC.to_vec();
    unknown.encode(&mut out).expect("a Vec grows as needed");
    Some(Ok(out))
}
