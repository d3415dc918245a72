//! Between the prost messages of `k8s-pb` and the JSON the store keeps, as Kubernetes'
//! Go types map the two (`json:"name,omitempty"` beside `protobuf:"...,name=..."`): the
//! JSON name of a field is its protobuf name (the camelCase of the Rust field, or given
//! where Kubernetes spells it otherwise), `bytes` are base64, and a few apimachinery
//! types have a JSON form of their own (`Time`, `MicroTime`, `FieldsV1`, `IntOrString`,
//! `Quantity`, `RawExtension`).
//!
//! `message!` lists every field of a message: it destructures the struct without `..`,
//! so a field that `k8s-pb` adds and the list lacks is a compile error, never a field
//! silently dropped.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1::{FieldsV1, MicroTime, Time};
use k8s_pb::apimachinery::pkg::runtime::RawExtension;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

/// A value inside a field: a scalar, a message, an element of a list or map.
pub(crate) trait Json: Sized {
    fn to_json(&self) -> Value;
    fn from_json(v: &Value, at: &str) -> Result<Self, String>;
    /// Whether `omitempty` leaves the value out: an empty string, a zero number (a
    /// field that is a Go pointer keeps its zero: `message!`'s `field: keep`).
    fn omitted(&self) -> bool {
        false
    }
}

/// A field of a message: absent (None) or a JSON value.
pub(crate) trait Field: Sized {
    fn to_field(&self) -> Option<Value>;
    /// As `to_field`, keeping zero values (Go pointer fields: `nil` is absent, `0` is 0).
    fn to_field_keeping_zero(&self) -> Option<Value> {
        self.to_field()
    }
    fn from_field(v: Option<&Value>, at: &str) -> Result<Self, String>;
}

fn expected(at: &str, what: &str, v: &Value) -> String {
    format!("{at}: expected {what}, got {v}")
}

impl Json for String {
    fn to_json(&self) -> Value {
        Value::String(self.clone())
    }
    fn from_json(v: &Value, at: &str) -> Result<Self, String> {
        v.as_str().map(str::to_owned).ok_or_else(|| expected(at, "a string", v))
    }
    fn omitted(&self) -> bool {
        self.is_empty()
    }
}

impl Json for bool {
    fn to_json(&self) -> Value {
        Value::Bool(*self)
    }
    fn from_json(v: &Value, at: &str) -> Result<Self, String> {
        v.as_bool().ok_or_else(|| expected(at, "a boolean", v))
    }
}

impl Json for i64 {
    fn to_json(&self) -> Value {
        Value::from(*self)
    }
    fn omitted(&self) -> bool {
        *self == 0
    }
    fn from_json(v: &Value, at: &str) -> Result<Self, String> {
        v.as_i64().ok_or_else(|| expected(at, "an integer", v))
    }
}

impl Json for i32 {
    fn to_json(&self) -> Value {
        Value::from(*self)
    }
    fn omitted(&self) -> bool {
        *self == 0
    }
    fn from_json(v: &Value, at: &str) -> Result<Self, String> {
        v.as_i64().and_then(|n| i32::try_from(n).ok()).ok_or_else(|| expected(at, "an int32", v))
    }
}

impl Json for f64 {
    fn to_json(&self) -> Value {
        serde_json::Number::from_f64(*self).map_or(Value::Null, Value::Number)
    }
    fn from_json(v: &Value, at: &str) -> Result<Self, String> {
        v.as_f64().ok_or_else(|| expected(at, "a number", v))
    }
}

/// `bytes`: base64 in JSON (Go's `[]byte`).
impl Json for Vec<u8> {
    fn to_json(&self) -> Value {
        Value::String(base64::engine::general_purpose::STANDARD.encode(self))
    }
    fn from_json(v: &Value, at: &str) -> Result<Self, String> {
        let text = v.as_str().ok_or_else(|| expected(at, "a base64 string", v))?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| format!("{at}: illegal base64 data: {e}"))
    }
}

impl<T: Json> Field for Option<T> {
    fn to_field(&self) -> Option<Value> {
        self.as_ref().filter(|v| !v.omitted()).map(Json::to_json)
    }
    fn to_field_keeping_zero(&self) -> Option<Value> {
        self.as_ref().map(Json::to_json)
    }
    fn from_field(v: Option<&Value>, at: &str) -> Result<Self, String> {
        match v {
            // `null` is Go's nil pointer (or zero time): absent in protobuf.
            None | Some(Value::Null) => Ok(None),
            Some(v) => T::from_json(v, at).map(Some),
        }
    }
}

/// Repeated fields: an array, left out when empty.
impl<T: Json> Field for Vec<T> {
    fn to_field(&self) -> Option<Value> {
        (!self.is_empty()).then(|| Value::Array(self.iter().map(Json::to_json).collect()))
    }
    fn from_field(v: Option<&Value>, at: &str) -> Result<Self, String> {
        match v {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| T::from_json(item, &format!("{at}[{i}]")))
                .collect(),
            Some(other) => Err(expected(at, "an array", other)),
        }
    }
}

/// Map fields: an object, left out when empty.
impl<T: Json> Field for BTreeMap<String, T> {
    fn to_field(&self) -> Option<Value> {
        (!self.is_empty())
            .then(|| Value::Object(self.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()))
    }
    fn from_field(v: Option<&Value>, at: &str) -> Result<Self, String> {
        match v {
            None | Some(Value::Null) => Ok(BTreeMap::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| Ok((k.clone(), T::from_json(v, &format!("{at}.{k}"))?)))
                .collect(),
            Some(other) => Err(expected(at, "an object", other)),
        }
    }
}

/// The JSON name of a Rust field of `k8s-pb`: `resource_version` → `resourceVersion`,
/// `r#type` → `type`.
pub(crate) fn camel(rust: &str) -> String {
    let rust = rust.strip_prefix("r#").unwrap_or(rust);
    let mut out = String::with_capacity(rust.len());
    let mut upper = false;
    for c in rust.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Maps a `k8s-pb` message to and from a JSON object, field by field. Every field must
/// be listed: `name`, `name => "jsonName"` where Kubernetes does not spell it as the
/// camelCase of the Rust name, `name: keep` for a Go pointer whose zero value is kept.
macro_rules! message {
    ($ty:path { $($field:ident $(=> $json:literal)? $(: $keep:ident)?),* $(,)? }) => {
        impl $crate::apiserver::protobuf::json::Json for $ty {
            fn to_json(&self) -> serde_json::Value {
                use $crate::apiserver::protobuf::json::Field as _;
                let Self { $($field),* } = self;
                let mut object = serde_json::Map::new();
                $(
                    if let Some(v) = message!(@to $field $($keep)?) {
                        object.insert(message!(@name $field $($json)?), v);
                    }
                )*
                serde_json::Value::Object(object)
            }
            fn from_json(v: &serde_json::Value, at: &str) -> Result<Self, String> {
                use $crate::apiserver::protobuf::json::Field;
                if !v.is_object() {
                    return Err(format!("{at}: expected an object, got {v}"));
                }
                Ok(Self {
                    $($field: {
                        let name = message!(@name $field $($json)?);
                        Field::from_field(v.get(&name), &format!("{at}.{name}"))?
                    }),*
                })
            }
        }
    };
    (@to $field:ident keep) => { $field.to_field_keeping_zero() };
    (@to $field:ident) => { $field.to_field() };
    (@name $field:ident $json:literal) => { String::from($json) };
    (@name $field:ident) => { $crate::apiserver::protobuf::json::camel(stringify!($field)) };
}
pub(crate) use message;

/// `metav1.Time`: RFC 3339 in seconds (the JSON form drops fractions); the zero time is
/// `null`.
impl Json for Time {
    fn to_json(&self) -> Value {
        match (self.seconds, self.nanos) {
            (None, None) => Value::Null,
            (s, _) => jiff::Timestamp::from_second(s.unwrap_or(0))
                .map(|t| Value::String(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()))
                .unwrap_or(Value::Null),
        }
    }
    fn from_json(v: &Value, at: &str) -> Result<Self, String> {
        let t = timestamp(v, at)?;
        Ok(Time { seconds: Some(t.as_second()), nanos: Some(0) })
    }
}

/// `metav1.MicroTime`: RFC 3339 with microseconds.
impl Json for MicroTime {
    fn to_json(&self) -> Value {
        match (self.seconds, self.nanos) {
            (None, None) => Value::Null,
            (s, n) => jiff::Timestamp::new(s.unwrap_or(0), n.unwrap_or(0) / 1000 * 1000)
                .map(|t| Value::String(t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()))
                .unwrap_or(Value::Null),
        }
    }
    fn from_json(v: &Value, at: &str) -> Result<Self, String> {
        let t = timestamp(v, at)?;
        Ok(MicroTime { seconds: Some(t.as_second()), nanos: Some(t.subsec_nanosecond()) })
    }
}

fn timestamp(v: &Value, at: &str) -> Result<jiff::Timestamp, String> {
    let text = v.as_str().ok_or_else(|| expected(at, "an RFC 3339 time", v))?;
    text.parse::<jiff::Timestamp>().map_err(|e| format!("{at}: {e}"))
}

/// `FieldsV1` carries the JSON text of a managed-fields set; JSON has the object itself.
impl Json for FieldsV1 {
    fn to_json(&self) -> Value {
        raw_json(self.raw.as_deref())
    }
    fn from_json(v: &Value, _at: &str) -> Result<Self, String> {
        Ok(FieldsV1 { raw: Some(serde_json::to_vec(v).unwrap_or_default()) })
    }
}

/// `RawExtension` (an embedded object) as JSON text.
impl Json for RawExtension {
    fn to_json(&self) -> Value {
        raw_json(self.raw.as_deref())
    }
    fn from_json(v: &Value, _at: &str) -> Result<Self, String> {
        Ok(RawExtension { raw: Some(serde_json::to_vec(v).unwrap_or_default()) })
    }
}

fn raw_json(raw: Option<&[u8]>) -> Value {
    raw.and_then(|r| serde_json::from_slice(r).ok()).unwrap_or(Value::Null)
}

/// `IntOrString`: `type` 0 is the integer, 1 the string.
impl Json for IntOrString {
    fn to_json(&self) -> Value {
        match self.r#type {
            Some(1) => Value::String(self.str_val.clone().unwrap_or_default()),
            _ => Value::from(self.int_val.unwrap_or(0)),
        }
    }
    fn from_json(v: &Value, at: &str) -> Result<Self, String> {
        match v {
            Value::String(s) => {
                Ok(IntOrString { r#type: Some(1), int_val: None, str_val: Some(s.clone()) })
            }
            Value::Number(_) => Ok(IntOrString {
                r#type: Some(0),
                int_val: Some(i32::from_json(v, at)?),
                str_val: None,
            }),
            other => Err(expected(at, "an integer or a string", other)),
        }
    }
}

/// `resource.Quantity`: its canonical string.
impl Json for Quantity {
    fn to_json(&self) -> Value {
        Value::String(self.string.clone().unwrap_or_default())
    }
    fn from_json(v: &Value, at: &str) -> Result<Self, String> {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => return Err(expected(at, "a quantity", other)),
        };
        Ok(Quantity { string: Some(text) })
    }
}
