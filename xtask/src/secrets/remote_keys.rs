//! Remote key names in ExternalSecrets: the keys one references, and the keys an ESO
//! message (a condition or an Event) says are missing. Names only, never values.

use serde_json::Value;

/// Remote keys and properties an ExternalSecret references (`spec.data[].remoteRef`,
/// `spec.dataFrom[].extract`).
pub fn referenced_keys(object: &Value) -> Vec<String> {
    let spec = &object["spec"];
    let data = spec["data"].as_array().into_iter().flatten().map(|d| &d["remoteRef"]);
    let data_from = spec["dataFrom"].as_array().into_iter().flatten().map(|d| &d["extract"]);
    let mut keys = Vec::new();
    for reference in data.chain(data_from) {
        for field in ["key", "property"] {
            if let Some(key) = reference[field].as_str().filter(|k| !k.is_empty()) {
                keys.push(key.to_owned());
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// The key names a condition message says are missing: quoted or bare words after
/// `key`/`property` (ESO's wording), plus every referenced key the message names.
pub fn missing_keys(message: &str, referenced: &[String]) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let words: Vec<&str> = message.split_whitespace().collect();
    for pair in words.windows(2) {
        let label = pair[0].trim_matches(|c: char| !c.is_alphanumeric()).to_ascii_lowercase();
        if matches!(label.as_str(), "key" | "property" | "path") {
            let word = pair[1].trim_matches(|c: char| "\"'`,.;:()[]{}".contains(c));
            if !word.is_empty() && !word.eq_ignore_ascii_case("not") {
                found.push(word.to_owned());
            }
        }
    }
    for key in referenced {
        let mentioned = message
            .match_indices(key.as_str())
            .any(|(i, _)| is_word_boundary(message, i, key.len()));
        if mentioned {
            found.push(key.clone());
        }
    }
    let mut unique = Vec::new();
    for key in found {
        if !unique.contains(&key) {
            unique.push(key);
        }
    }
    unique
}

fn is_word_boundary(text: &str, start: usize, len: usize) -> bool {
    let key_char = |c: char| c.is_alphanumeric() || "-_/.".contains(c);
    let before = text[..start].chars().next_back();
    let after = text[start + len..].chars().next();
    // A trailing '.' ends a sentence rather than continuing a key.
    before.is_none_or(|c| !key_char(c))
        && after.is_none_or(|c| {
            !key_char(c)
                || (c == '.'
                    && text[start + len + 1..].chars().next().is_none_or(char::is_whitespace))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_key_parsing_handles_eso_wordings() {
        let refs = vec!["keycloak/admin".to_owned(), "password".to_owned()];
        assert_eq!(missing_keys("key \"keycloak/admin\" not found", &refs), ["keycloak/admin"]);
        assert_eq!(
            missing_keys(
                "error processing spec.data[0] (key: keycloak/admin), err: Secret does not exist",
                &refs
            ),
            ["keycloak/admin"]
        );
        assert_eq!(
            missing_keys("could not get secret data from provider", &refs),
            Vec::<String>::new()
        );
        assert_eq!(
            missing_keys("Secret does not exist: keycloak/admin.", &refs),
            ["keycloak/admin"]
        );
        // A referenced key inside a longer word is not a mention.
        assert_eq!(missing_keys("passwords rotated", &refs), Vec::<String>::new());
    }
}
