//! A watch request's parameters and where its events begin, validated as
//! `k8s.io/apimachinery/pkg/apis/meta/internalversion/validation` `ValidateListOptions`
//! validates a watch (with the `WatchList` feature on, as from Kubernetes 1.34).

use std::time::Duration;

use serde_json::json;

use super::super::selector::{self, Requirement};
use super::super::store::ApiError;

/// What a field selector term is: path, negated, value.
pub type FieldTerm = (Vec<String>, bool, String);

/// Where a watch's events begin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// ADDED events for the current state first (`resourceVersion` unset or `0`, or
    /// `sendInitialEvents=true`, then at least as new as `at_least`); with
    /// `end_bookmark`, a BOOKMARK annotated `k8s.io/initial-events-end` after them.
    InitialEvents { at_least: Option<u64>, end_bookmark: bool },
    /// The changes after this resourceVersion.
    After(u64),
    /// The changes from now on (`sendInitialEvents=false` without a version).
    Now,
}

#[derive(Debug, Clone)]
pub struct Params {
    pub start: Start,
    pub bookmarks: bool,
    /// `timeoutSeconds`; none: the server's own (`--min-request-timeout` 1800 s times a
    /// random factor in [1, 2)).
    pub timeout: Option<Duration>,
    pub labels: Vec<Requirement>,
    pub fields: Vec<FieldTerm>,
}

/// Go's `strconv.ParseBool`, as query parameters are decoded.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

const NOT_OLDER_THAN: &str = "NotOlderThan";

impl Params {
    /// `name`: the object a `/watch/.../NAME` path names: a `metadata.name` field
    /// selector term, as the handler adds one (a field selector that names another
    /// object is 400).
    pub fn parse(query: &[(String, String)], name: Option<&str>) -> Result<Params, ApiError> {
        let q = |k: &str| query.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        let flag = |k: &str| -> Result<Option<bool>, ApiError> {
            q(k).filter(|v| !v.is_empty())
                .map(|v| {
                    parse_bool(v).ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "strconv.ParseBool: parsing {v:?}: invalid syntax"
                        ))
                    })
                })
                .transpose()
        };
        let send_initial = flag("sendInitialEvents")?;
        let bookmarks = flag("allowWatchBookmarks")?.unwrap_or(false);
        let rv_match = q("resourceVersionMatch").unwrap_or("");
        validate(send_initial, rv_match, q("continue").unwrap_or(""))?;

        let rv_text = q("resourceVersion").unwrap_or("");
        let rv = match rv_text {
            "" => None,
            v => Some(v.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "resourceVersion: Invalid value: {v:?}: strconv.ParseUint: parsing {v:?}: invalid syntax"
                ))
            })?),
        };
        let start = match (send_initial, rv) {
            (Some(true), at) => {
                Start::InitialEvents { at_least: at.filter(|v| *v > 0), end_bookmark: bookmarks }
            }
            (Some(false), None | Some(0)) => Start::Now,
            // `SetListOptionsDefaults` (WatchList on): a legacy watch from "" or "0" is
            // `sendInitialEvents=true`, so with bookmarks it gets the end bookmark too.
            (None, None | Some(0)) => {
                Start::InitialEvents { at_least: None, end_bookmark: bookmarks }
            }
            (_, Some(v)) => Start::After(v),
        };
        let timeout = match q("timeoutSeconds").filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => {
                let secs: i64 = v.parse().map_err(|_| {
                    ApiError::bad_request(format!(
                        "timeoutSeconds: strconv.ParseInt: parsing {v:?}: invalid syntax"
                    ))
                })?;
                // 0 is the server's default; a negative value ends the watch at once.
                (secs != 0).then(|| Duration::from_secs(secs.max(0) as u64))
            }
        };
        let labels =
            selector::parse(q("labelSelector").unwrap_or("")).map_err(ApiError::bad_request)?;
        let mut fields = selector::parse_fields(q("fieldSelector").unwrap_or(""))
            .map_err(ApiError::bad_request)?;
        if let Some(name) = name {
            let names = |(path, negated, value): &FieldTerm| {
                path.len() == 2
                    && path[0] == "metadata"
                    && path[1] == "name"
                    && !negated
                    && value == name
            };
            if fields.is_empty() {
                fields.push((vec!["metadata".into(), "name".into()], false, name.to_owned()));
            } else if !fields.iter().any(names) {
                return Err(ApiError::bad_request(
                    "fieldSelector metadata.name doesn't match requested name",
                ));
            }
        }
        Ok(Params { start, bookmarks, timeout, labels, fields })
    }
}

/// `validateWatchOptions`; the errors as `errors.NewInvalid` words them (422).
fn validate(send_initial: Option<bool>, rv_match: &str, cont: &str) -> Result<(), ApiError> {
    let mut errs: Vec<(&str, String, &str)> = Vec::new();
    let forbidden = |detail: &str| {
        ("FieldValueForbidden", format!("Forbidden: {detail}"), "resourceVersionMatch")
    };
    if send_initial.is_some() && rv_match != NOT_OLDER_THAN {
        errs.push(forbidden(
            "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        ));
    }
    if !rv_match.is_empty() {
        if send_initial.is_none() {
            errs.push(forbidden(
                "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            ));
        }
        if rv_match != NOT_OLDER_THAN {
            errs.push((
                "FieldValueNotSupported",
                format!("Unsupported value: {rv_match:?}: supported values: \"{NOT_OLDER_THAN}\""),
                "resourceVersionMatch",
            ));
        }
        if !cont.is_empty() {
            errs.push(forbidden("resourceVersionMatch is forbidden when continue is provided"));
        }
    }
    if errs.is_empty() {
        return Ok(());
    }
    let texts: Vec<String> = errs.iter().map(|(_, m, f)| format!("{f}: {m}")).collect();
    let listed =
        if texts.len() == 1 { texts[0].clone() } else { format!("[{}]", texts.join(", ")) };
    let mut e =
        ApiError::new(422, "Invalid", format!("ListOptions.meta.k8s.io \"\" is invalid: {listed}"));
    e.details = json!({
        "group": "meta.k8s.io", "kind": "ListOptions",
        "causes": errs.iter().map(|(reason, message, field)| json!({"reason": reason, "message": message, "field": field})).collect::<Vec<_>>(),
    });
    Err(e)
}
