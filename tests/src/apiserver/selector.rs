//! Label and field selectors, as `kubectl -l` and client libraries send them
//! (k8s.io/apimachinery `pkg/labels/selector.go` grammar: `=`, `==`, `!=`, `in`, `notin`,
//! `key`, `!key`, comma-separated).

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// Parse a label selector; the error names the term that is not understood.
pub fn parse(selector: &str) -> Result<Vec<Requirement>, String> {
    split_top_level(selector)
        .into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(parse_term)
        .collect()
}

fn split_top_level(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_term(term: &str) -> Result<Requirement, String> {
    let bad = || format!("unable to parse requirement: {term:?}");
    let key_ok = |k: &str| {
        !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
    };
    if let Some(key) = term.strip_prefix('!') {
        let key = key.trim();
        return if key_ok(key) { Ok(Requirement::NotExists(key.to_owned())) } else { Err(bad()) };
    }
    if let Some(open) = term.find('(') {
        let head = term[..open].trim();
        let list = term[open + 1..].strip_suffix(')').ok_or_else(bad)?;
        let values: Vec<String> =
            list.split(',').map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).collect();
        let (key, op) = head.rsplit_once(char::is_whitespace).ok_or_else(bad)?;
        let key = key.trim();
        if !key_ok(key) {
            return Err(bad());
        }
        return match op {
            "in" => Ok(Requirement::In(key.to_owned(), values)),
            "notin" => Ok(Requirement::NotIn(key.to_owned(), values)),
            _ => Err(bad()),
        };
    }
    for (op, not) in [("!=", true), ("==", false), ("=", false)] {
        if let Some((k, v)) = term.split_once(op) {
            let (k, v) = (k.trim(), v.trim());
            if !key_ok(k) {
                return Err(bad());
            }
            return Ok(if not {
                Requirement::NotEquals(k.to_owned(), v.to_owned())
            } else {
                Requirement::Equals(k.to_owned(), v.to_owned())
            });
        }
    }
    if key_ok(term) { Ok(Requirement::Exists(term.to_owned())) } else { Err(bad()) }
}

/// Whether labels (a JSON object of strings, or null) satisfy every requirement.
pub fn matches(requirements: &[Requirement], labels: &Value) -> bool {
    let get = |k: &str| labels.get(k).and_then(Value::as_str);
    requirements.iter().all(|r| match r {
        Requirement::Equals(k, v) => get(k) == Some(v),
        Requirement::NotEquals(k, v) => get(k) != Some(v),
        Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
        Requirement::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
        Requirement::Exists(k) => get(k).is_some(),
        Requirement::NotExists(k) => get(k).is_none(),
    })
}

/// A field selector (`metadata.name=x,status.phase!=Running`) as a predicate on objects.
pub fn parse_fields(selector: &str) -> Result<Vec<(Vec<String>, bool, String)>, String> {
    selector
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|term| {
            let (path, negate, value) = if let Some((p, v)) = term.split_once("!=") {
                (p, true, v)
            } else if let Some((p, v)) = term.split_once("==") {
                (p, false, v)
            } else if let Some((p, v)) = term.split_once('=') {
                (p, false, v)
            } else {
                return Err(format!("invalid field selector: {term:?}"));
            };
            Ok((
                path.trim().split('.').map(str::to_owned).collect(),
                negate,
                value.trim().to_owned(),
            ))
        })
        .collect()
}

pub fn matches_fields(fields: &[(Vec<String>, bool, String)], object: &Value) -> bool {
    fields.iter().all(|(path, negate, value)| {
        let found = path.iter().try_fold(object, |v, seg| v.get(seg)).and_then(Value::as_str);
        (found.unwrap_or("") == value) != *negate
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(s: &str, labels: Value) -> bool {
        matches(&parse(s).unwrap(), &labels)
    }

    #[test]
    fn every_operator() {
        let l = json!({"owner": "helm", "name": "vault", "status": "deployed"});
        assert!(sel("owner=helm", l.clone()));
        assert!(sel("owner==helm,name=vault", l.clone()));
        assert!(!sel("owner=helm,name=other", l.clone()));
        assert!(sel("status!=failed", l.clone()));
        assert!(sel("missing!=x", l.clone()));
        assert!(sel("status in (deployed, failed),owner", l.clone()));
        assert!(!sel("status notin (deployed)", l.clone()));
        assert!(sel("name notin (a,b)", l.clone()));
        assert!(sel("!missing", l.clone()));
        assert!(!sel("!owner", l.clone()));
        assert!(!sel("missing", json!(null)));
        assert!(sel("", json!(null)));
    }

    #[test]
    fn bad_terms_are_named() {
        assert!(parse("a in b").is_err());
        assert!(parse("a in (b").unwrap_err().contains("a in (b"));
        assert!(parse("x y=z").is_err());
    }

    #[test]
    fn field_selectors() {
        let f = parse_fields("metadata.name=a,status.phase!=Running").unwrap();
        assert!(matches_fields(
            &f,
            &json!({"metadata": {"name": "a"}, "status": {"phase": "Failed"}})
        ));
        assert!(!matches_fields(&f, &json!({"metadata": {"name": "b"}})));
    }
}
