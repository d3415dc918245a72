//! Request and response bodies: JSON, YAML (apply patches) or protobuf in; JSON or
//! protobuf out, as the client's `Accept` asks (apimachinery
//! `runtime/serializer/negotiation`, apiserver `endpoints/handlers/negotiation/
//! negotiate.go`: the first media range, by `q` then order, that the server can write).

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Response, StatusCode};
use serde_json::Value;

use super::protobuf;
use super::store::ApiError;

/// How a response body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Protobuf,
}

/// One media range of an `Accept` header.
#[derive(Debug, PartialEq)]
struct MediaRange<'a> {
    essence: &'a str,
    /// Asks for a transformed representation (`as=Table`, `as=APIGroupDiscoveryList`,
    /// `as=PartialObjectMetadata`), which the testbed does not serve.
    transformed: bool,
    q: f32,
}

fn media_ranges(accept: &str) -> Vec<MediaRange<'_>> {
    let mut ranges: Vec<MediaRange> = accept
        .split(',')
        .filter_map(|part| {
            let mut params = part.split(';').map(str::trim);
            let essence = params.next().filter(|e| !e.is_empty())?;
            let mut range = MediaRange { essence, transformed: false, q: 1.0 };
            for p in params {
                match p.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
                    Some(("q", v)) => range.q = v.parse().unwrap_or(0.0),
                    Some(("as", _)) => range.transformed = true,
                    _ => {}
                }
            }
            Some(range)
        })
        .collect();
    // Stable: equal weights keep the client's order.
    ranges.sort_by(|a, b| b.q.total_cmp(&a.q));
    ranges
}

/// The encoding of a response carrying `object` for a client that sent `accept`; a 406
/// `NotAcceptable` when the client takes only protobuf and the testbed has no protobuf
/// codec for the kind. Asked for a transformed representation (Table, discovery v2)
/// only, the client gets plain JSON, which kubectl, helm and kube-rs all accept.
pub fn choose(accept: &str, object: &Value) -> Result<Encoding, ApiError> {
    let ranges = media_ranges(accept);
    for r in ranges.iter().filter(|r| r.q > 0.0 && !r.transformed) {
        match r.essence {
            "application/json" | "*/*" | "application/*" => return Ok(Encoding::Json),
            protobuf::MEDIA_TYPE if protobuf::encodable(object) => return Ok(Encoding::Protobuf),
            _ => {}
        }
    }
    let only_protobuf = !ranges.is_empty()
        && ranges.iter().all(|r| r.essence == protobuf::MEDIA_TYPE && !r.transformed);
    if only_protobuf {
        let kind = object["kind"].as_str().unwrap_or("the object");
        return Err(ApiError::new(
            406,
            "NotAcceptable",
            format!(
                "the testbed API server cannot write {kind} as {}: only application/json is accepted for it",
                protobuf::MEDIA_TYPE
            ),
        ));
    }
    Ok(Encoding::Json)
}

/// A response with `object` as the client asked.
pub fn reply(accept: &str, code: u16, object: &Value) -> Response<Full<Bytes>> {
    let (code, content_type, body) = match choose(accept, object) {
        Ok(Encoding::Protobuf) => match protobuf::encode(object) {
            Some(Ok(bytes)) => (code, protobuf::MEDIA_TYPE, bytes),
            Some(Err(e)) => json_body(&internal(&e).to_status(), 500),
            None => json_body(object, code),
        },
        Ok(Encoding::Json) => json_body(object, code),
        Err(e) => json_body(&e.to_status(), e.code),
    };
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("Content-Type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts")
}

fn internal(e: &str) -> ApiError {
    ApiError::new(500, "InternalError", format!("encoding the response as protobuf: {e}"))
}

fn json_body(object: &Value, code: u16) -> (u16, &'static str, Vec<u8>) {
    (code, "application/json", serde_json::to_vec(object).unwrap_or_default())
}

/// A request body by its `Content-Type`: protobuf, else JSON, else YAML (apply patches;
/// YAML is a superset of JSON).
pub fn parse_body(content_type: &str, body: &[u8]) -> Result<Value, ApiError> {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence == protobuf::MEDIA_TYPE {
        return protobuf::decode(body).map_err(|e| match e {
            protobuf::DecodeError::UnknownKind(m) => ApiError::new(415, "UnsupportedMediaType", m),
            protobuf::DecodeError::Malformed(m) => ApiError::bad_request(m),
        });
    }
    if essence.contains("cbor") || essence.contains("protobuf") {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf, application/apply-patch+yaml, application/merge-patch+json; got {content_type}"
            ),
        ));
    }
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
    serde_saphyr::from_str::<Value>(text)
        .map_err(|e| ApiError::bad_request(format!("the body is neither JSON nor YAML: {e}")))
}

/// A JSON body of a kind with a protobuf codec must fit the Go type the API server
/// decodes it into (a Secret's `data` base64, numbers where numbers go): else 400, as
/// `<Kind> in version "<v>" cannot be handled as a <Kind>: ...`. Other kinds pass.
pub fn check_typed(api_version: &str, kind: &str, body: Value) -> Result<Value, ApiError> {
    let mut typed = body.clone();
    if typed.is_object() {
        typed["apiVersion"] = Value::String(api_version.to_owned());
        typed["kind"] = Value::String(kind.to_owned());
    }
    match protobuf::encode_raw(&typed) {
        Some(Err(e)) => {
            let version = api_version.rsplit('/').next().unwrap_or(api_version);
            Err(ApiError::bad_request(format!(
                "{kind} in version \"{version}\" cannot be handled as a {kind}: {}",
                e.trim_start_matches('.')
            )))
        }
        _ => Ok(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CLIENT_GO: &str = "application/vnd.kubernetes.protobuf,application/json";

    #[test]
    fn typed_clients_get_protobuf_for_known_kinds_and_json_for_others() {
        let secret = json!({"apiVersion": "v1", "kind": "Secret"});
        let job = json!({"apiVersion": "batch/v1", "kind": "Job"});
        assert_eq!(choose(CLIENT_GO, &secret), Ok(Encoding::Protobuf));
        assert_eq!(choose(CLIENT_GO, &job), Ok(Encoding::Json));
        assert_eq!(choose("application/json, */*", &secret), Ok(Encoding::Json));
        assert_eq!(choose("", &secret), Ok(Encoding::Json));
    }

    #[test]
    fn q_values_order_the_ranges() {
        let secret = json!({"apiVersion": "v1", "kind": "Secret"});
        let accept = "application/vnd.kubernetes.protobuf;q=0.5,application/json";
        assert_eq!(choose(accept, &secret), Ok(Encoding::Json));
    }

    #[test]
    fn tables_fall_back_to_json_and_protobuf_only_for_an_unknown_kind_is_406() {
        let secret = json!({"apiVersion": "v1", "kind": "Secret"});
        let table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
        assert_eq!(choose(table, &secret), Ok(Encoding::Json));
        let job = json!({"apiVersion": "batch/v1", "kind": "Job"});
        let e = choose(protobuf::MEDIA_TYPE, &job).unwrap_err();
        assert_eq!((e.code, e.reason), (406, "NotAcceptable"));
    }

    #[test]
    fn json_bodies_must_fit_their_go_type() {
        let bad = json!({"metadata": {"name": "s"}, "data": {"k": "not base64!"}});
        let e = check_typed("v1", "Secret", bad).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(e.message.starts_with(r#"Secret in version "v1" cannot be handled as a Secret: data.k: illegal base64 data"#), "{}", e.message);
        let good = json!({"metadata": {"name": "s"}, "data": {"k": "dg=="}});
        assert_eq!(check_typed("v1", "Secret", good.clone()).unwrap(), good);
        let job = json!({"spec": {"whatever": 1}});
        assert_eq!(check_typed("batch/v1", "Job", job.clone()).unwrap(), job);
    }

    #[test]
    fn bodies_by_content_type() {
        assert_eq!(parse_body("application/json", b"{\"a\":1}").unwrap(), json!({"a": 1}));
        assert_eq!(parse_body("application/apply-patch+yaml", b"a: 1\n").unwrap(), json!({"a": 1}));
        assert_eq!(parse_body("application/cbor", b"\xa0").unwrap_err().code, 415);
        assert_eq!(parse_body(protobuf::MEDIA_TYPE, b"{}").unwrap_err().code, 400);
    }
}
