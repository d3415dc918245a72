//! Redaction: what the tools print is shown and logged with secrets replaced by
//! [`REDACTED`]. Two kinds of secret are recognised:
//!
//! - values the run learned ([`Redactor::learn`]): the data of the Secrets it reads and
//!   writes, as text and as standard base64, standalone or inside a larger base64 blob;
//! - well-known shapes wherever they appear: `vault operator init` output (`Unseal Key
//!   N: …`, `Initial Root Token: …`), Vault tokens (`hvs.`, `hvb.`, `hvr.`, legacy `s.`),
//!   PEM private key blocks, JWTs, bearer and basic credentials, `password=` /
//!   `password:` / `token:` assignments, and the password of a URL
//!   (`scheme://user:pass@host`).
//!
//! Only the secret itself is replaced: the rest of the line, the key, Secret and release
//! names stay, so the output still explains what went wrong. A [`Redactor`] is shared by
//! one session (cloning shares it); `events::Events` applies it to every event before any
//! sink sees it. The shapes are compiled once per process; learned values belong to the
//! session that learned them.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use regex::Regex;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Learned values shorter than this (after trimming) are not redacted: they would hide
/// ordinary words and numbers (`5432`, `ameide`) wherever they appear.
pub const MIN_SECRET_LEN: usize = 8;

/// Secret keys that name or locate something rather than guard it: their values are
/// not learned, so a host, user or database name stays readable.
const NOT_SECRET_KEYS: [&str; 14] = [
    "host",
    "hostname",
    "port",
    "database",
    "db",
    "dbname",
    "user",
    "username",
    "url",
    "uri",
    "endpoint",
    "address",
    "addr",
    "namespace",
];

/// Redacts learned values and well-known secret shapes. Cloning shares the learned
/// values; `Default` knows none yet.
#[derive(Clone, Default)]
pub struct Redactor {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    learned: RwLock<Learned>,
    /// Streams (tool tags) whose last line opened a PEM private key block.
    in_pem: Mutex<HashSet<String>>,
}

#[derive(Default)]
struct Learned {
    needles: HashSet<String>,
    /// Every needle, longest first, as one alternation (`None`: nothing learned).
    matcher: Option<Regex>,
}

impl std::fmt::Debug for Redactor {
    /// The number of learned needles, never the needles.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let learned = self.inner.learned.read().map_or(0, |l| l.needles.len());
        write!(f, "Redactor({learned} learned needle(s))")
    }
}

impl Redactor {
    /// Learn one secret value: it and its base64 forms are redacted from now on. Values
    /// shorter than [`MIN_SECRET_LEN`] are ignored.
    pub fn learn(&self, value: &[u8]) {
        let new = needles(value);
        let mut learned = self.inner.learned.write().unwrap_or_else(|p| p.into_inner());
        let before = learned.needles.len();
        learned.needles.extend(new);
        if learned.needles.len() == before {
            return;
        }
        let mut all: Vec<&String> = learned.needles.iter().collect();
        // Longest first: the alternation takes the first that matches at a position.
        all.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        let pattern = all.iter().map(|n| regex::escape(n)).collect::<Vec<_>>().join("|");
        // Escaped literals always compile; only a size limit could refuse them.
        if let Ok(matcher) = regex::RegexBuilder::new(&pattern).size_limit(1 << 26).build() {
            learned.matcher = Some(matcher);
        }
    }

    /// Learn the values of a Secret's data, except those of keys that only name or
    /// locate something (`host`, `port`, `username`, `url`, …).
    pub fn learn_secret<'a>(&self, data: impl IntoIterator<Item = (&'a str, &'a [u8])>) {
        for (key, value) in data {
            if is_secret_key(key) {
                self.learn(value);
            }
        }
    }

    /// `text` (one line or many) with learned values and secret shapes replaced. A PEM
    /// private key block is redacted whole; one cut off at either end (a log tail) is
    /// redacted to the end of `text`, or from its first base64 line to the END marker.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut text = Cow::Borrowed(text);
        {
            let learned = self.inner.learned.read().unwrap_or_else(|p| p.into_inner());
            if let Some(matcher) = &learned.matcher {
                replace(&mut text, matcher, REDACTED);
            }
        }
        for (pattern, with) in SHAPES.iter() {
            replace(&mut text, pattern, with);
        }
        text
    }

    /// One line of a stream (a tool's output, tagged `stream`): like [`Redactor::redact`],
    /// and the lines between a PEM private key's BEGIN and END lines are redacted whole.
    pub fn redact_line<'t>(&self, stream: &str, line: &'t str) -> Cow<'t, str> {
        let mut in_pem = self.inner.in_pem.lock().unwrap_or_else(|p| p.into_inner());
        if in_pem.contains(stream) {
            let Some(end) = PEM_END.find(line) else { return Cow::Borrowed(REDACTED) };
            in_pem.remove(stream);
            let rest = format!("{REDACTED}{}", &line[end.start()..]);
            return Cow::Owned(self.redact(&rest).into_owned());
        }
        let opened = PEM_BEGIN
            .find_iter(line)
            .last()
            .is_some_and(|begin| !PEM_END.is_match(&line[begin.end()..]));
        if opened {
            in_pem.insert(stream.to_owned());
        }
        drop(in_pem);
        self.redact(line)
    }

    /// The stream ended: a PEM block it left open is closed.
    pub fn end_stream(&self, stream: &str) {
        self.inner.in_pem.lock().unwrap_or_else(|p| p.into_inner()).remove(stream);
    }

    /// A JSON value with every string redacted (object keys are names: kept).
    pub fn redact_json(&self, value: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::String(s) => Value::String(self.redact(s).into_owned()),
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.redact_json(v)).collect())
            }
            Value::Object(map) => {
                Value::Object(map.iter().map(|(k, v)| (k.clone(), self.redact_json(v))).collect())
            }
            other => other.clone(),
        }
    }
}

/// Whether a Secret key's value is a secret: every key but those naming or locating
/// something (the last word of `DB_HOST`, `postgres.user`, `hostName` decides).
fn is_secret_key(key: &str) -> bool {
    let last = key
        .rsplit(|c: char| !c.is_ascii_alphanumeric())
        .find(|w| !w.is_empty())
        .unwrap_or(key)
        .to_ascii_lowercase();
    !NOT_SECRET_KEYS.contains(&last.as_str())
}

/// The strings that give `value` away: its trimmed text, its standard base64 (padded),
/// and, for each of the three byte alignments it can have inside a larger base64 blob,
/// the run of base64 characters that depend on its bytes only.
fn needles(value: &[u8]) -> Vec<String> {
    let value = value.trim_ascii();
    if value.len() < MIN_SECRET_LEN {
        return Vec::new();
    }
    let mut found = vec![STANDARD.encode(value)];
    if let Ok(text) = std::str::from_utf8(value) {
        found.push(text.to_owned());
    }
    for shift in 0..3 {
        let mut padded = vec![0u8; shift];
        padded.extend_from_slice(value);
        let encoded = STANDARD.encode(&padded);
        // Character i covers bits [6i, 6i+6); the value's bits are [8s, 8s+8n).
        let first = (8 * shift).div_ceil(6);
        let last = (8 * (shift + value.len())) / 6;
        if last > first {
            found.push(encoded[first..last].to_owned());
        }
    }
    found
}

fn replace(text: &mut Cow<'_, str>, pattern: &Regex, with: &str) {
    if let Cow::Owned(new) = pattern.replace_all(text, with) {
        *text = Cow::Owned(new);
    }
}

const PEM_LABEL: &str = r"-----(?:BEGIN|END) [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----";

static PEM_BEGIN: LazyLock<Regex> =
    LazyLock::new(|| regex(&PEM_LABEL.replace("(?:BEGIN|END)", "BEGIN")));
static PEM_END: LazyLock<Regex> =
    LazyLock::new(|| regex(&PEM_LABEL.replace("(?:BEGIN|END)", "END")));

/// The secret shapes, in order, with their replacement (`$1` keeps what names it).
static SHAPES: LazyLock<Vec<(Regex, String)>> = LazyLock::new(|| {
    let begin = PEM_LABEL.replace("(?:BEGIN|END)", "BEGIN");
    let end = PEM_LABEL.replace("(?:BEGIN|END)", "END");
    let keep = format!("${{1}}{REDACTED}");
    [
        // A whole block, or one whose END is cut off.
        (format!(r"(?s)({begin}).*?({end}|\z)"), format!("${{1}}{REDACTED}${{2}}")),
        // The body lines before an END whose BEGIN is cut off (a tail; ` / `-joined too).
        (format!(r"(?:[A-Za-z0-9+/=]{{16,}}(?:[\s/]|\\[nr])*)+({end})"), format!("{REDACTED}${{1}}")),
        // Values end at a space or a backslash (`\n` in JSON-escaped text).
        (r"\b((?:Unseal|Recovery) Key \d+:[ \t]*)[^\s\\]+".into(), keep.clone()),
        (r"\b(Initial Root Token:[ \t]*)[^\s\\]+".into(), keep.clone()),
        (r"\bhv[sbr]\.[A-Za-z0-9_-]{20,}".into(), REDACTED.into()),
        (r"\b[sbr]\.[A-Za-z0-9]{24,}\b".into(), REDACTED.into()),
        (r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*".into(), REDACTED.into()),
        (r"(?i)\b(bearer[ \t]+)[A-Za-z0-9_.~+/-]{16,}=*".into(), keep.clone()),
        (r"(?i)\b(authorization:[ \t]*basic[ \t]+)[A-Za-z0-9+/]+=*".into(), keep.clone()),
        (r"\b([A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)[^\s/@]+@".into(), format!("${{1}}{REDACTED}@")),
        (
            r#"(?i)\b([A-Za-z0-9_.-]*(?:password|passwd|pwd|token|api[_-]?key|access[_-]?key|client[_-]?secret)(?:\\?["'])?[ \t]*[:=][ \t]*)(\\?"[^"\r\n]*"|'[^'\r\n]*'|[^\s"',;&\\]+)"#
                .into(),
            keep,
        ),
    ]
    .into_iter()
    .map(|(pattern, with)| (regex(&pattern), with))
    .collect()
});

fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|e| panic!("redaction pattern {pattern}: {e}"))
}

#[cfg(test)]
pub mod canary {
    //! Canary secrets in the shapes tools print them, for tests of every output path.

    /// A learned Secret value (the sample's Postgres password).
    pub const LEARNED: &str = "ameide-local-postgres";

    /// Lines a tool might print: (line, the secret in it, text that must stay).
    pub const CORPUS: &[(&str, &str, &str)] = &[
        (
            "Unseal Key 1: pfN18x3Chkfjnhf1bNs7J7byCbsDWbQUsL0+iNy1fXzk",
            "pfN18x3Chkfjnhf1bNs7J7byCbsDWbQUsL0+iNy1fXzk",
            "Unseal Key 1: [redacted]",
        ),
        (
            "Initial Root Token: hvs.A7HqchrsmtZlh3oDUD2xoKtM",
            "A7HqchrsmtZlh3oDUD2xoKtM",
            "Initial Root Token: [redacted]",
        ),
        ("vault login s.GLZzM7RuuUGzvC5vXOPbb452", "GLZzM7RuuUGzvC5vXOPbb452", "vault login "),
        (
            "curl -H 'Authorization: Bearer ghp_c4n4ryB34r3rT0k3nV4lu3' https://api",
            "ghp_c4n4ryB34r3rT0k3nV4lu3",
            "Authorization: Bearer [redacted]",
        ),
        (
            "id_token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYW5hcnkifQ.c2lnbmF0dXJlY2FuYXJ5",
            "eyJzdWIiOiJjYW5hcnkifQ",
            "id_token ",
        ),
        (
            "PGPASSWORD=c4n4ry-pgpass psql -h db",
            "c4n4ry-pgpass",
            "PGPASSWORD=[redacted] psql -h db",
        ),
        ("  password: c4n4ry-yaml-pass", "c4n4ry-yaml-pass", "  password: [redacted]"),
        ("token: c4n4ry-tok3n-value", "c4n4ry-tok3n-value", "token: [redacted]"),
        (
            "dial postgres://app:c4n4ry-urlpass@db.example:5432/app: refused",
            "c4n4ry-urlpass",
            "postgres://app:[redacted]@db.example:5432/app: refused",
        ),
        ("-----BEGIN PRIVATE KEY-----", "", "-----BEGIN PRIVATE KEY-----"),
        ("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDc4n4ryK3yB0dy", "c4n4ryK3yB0dy", ""),
        ("Lq8sZ1c4n4ryPemL1n3Tw0x9eWm7vT2qR5uJ3kH8gF6dS4aP1oI0yU7tR3eW9qZ", "c4n4ryPemL1n3", ""),
        ("-----END PRIVATE KEY-----", "", "-----END PRIVATE KEY-----"),
        (
            "connecting as ameide with ameide-local-postgres",
            LEARNED,
            "connecting as ameide with [redacted]",
        ),
        // The learned value's base64, alone and inside Basic credentials.
        ("data: YW1laWRlLWxvY2FsLXBvc3RncmVz", "YW1laWRlLWxvY2FsLXBvc3RncmVz", "data: [redacted]"),
        (
            "auth YW1laWRlOmFtZWlkZS1sb2NhbC1wb3N0Z3Jlcw== sent",
            "ZS1sb2NhbC1wb3N0",
            "auth YW1laWRlOm",
        ),
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(text: &str) -> String {
        Redactor::default().redact(text).into_owned()
    }

    #[test]
    fn vault_init_output_keeps_its_words_and_loses_its_keys() {
        let text = "Unseal Key 1: pfN18x3Chkfjnhf1bNs7J7byCbsDWbQUsL0+iNy1fXzk\n\
                    Recovery Key 2: +XeZgHrhB8QuCy/d7Prb5dTkysvf4CYtgogkLgREdG8F\n\n\
                    Initial Root Token: hvs.A7HqchrsmtZlh3oDUD2xoKtM\n\n\
                    Vault initialized with 5 key shares and a key threshold of 3.";
        assert_eq!(
            redacted(text),
            "Unseal Key 1: [redacted]\nRecovery Key 2: [redacted]\n\n\
             Initial Root Token: [redacted]\n\n\
             Vault initialized with 5 key shares and a key threshold of 3."
        );
    }

    #[test]
    fn tokens_jwts_and_credentials_are_replaced_in_place() {
        let cases = [
            ("export VAULT_TOKEN=hvs.CAESIJ8xk2mZ0aQvYt3nLr", "export VAULT_TOKEN=[redacted]"),
            ("login with hvb.AAAAAQJkZW1vLXRva2VuLWJhdGNo now", "login with [redacted] now"),
            ("legacy s.A7HqchrsmtZlh3oDUD2xoKtM here", "legacy [redacted] here"),
            ("Authorization: Bearer abcdEFGH1234ijklMNOP5678", "Authorization: Bearer [redacted]"),
            ("Authorization: Basic YWRtaW46aHVudGVyMg==", "Authorization: Basic [redacted]"),
            ("id eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJl end", "id [redacted] end"),
            (
                "dial postgres://ameide:hunter2@postgres.ameide:5432/db failed",
                "dial postgres://ameide:[redacted]@postgres.ameide:5432/db failed",
            ),
            ("PGPASSWORD=hunter2 psql", "PGPASSWORD=[redacted] psql"),
            (r#"{"password": "a b", "user": "x"}"#, r#"{"password": [redacted], "user": "x"}"#),
            ("  db_password: 's3 cr3t' # fixture", "  db_password: [redacted] # fixture"),
            ("token: abc.def", "token: [redacted]"),
            ("api-key=k1, next", "api-key=[redacted], next"),
            // JSON-escaped text (a tool's structured log).
            (
                r#"{"msg":"Unseal Key 1: abc+/=\nInitial Root Token: hvs.x\n","cfg":"{\"password\":\"p w\"}"}"#,
                r#"{"msg":"Unseal Key 1: [redacted]\nInitial Root Token: [redacted]\n","cfg":"{\"password\":[redacted]}"}"#,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(redacted(text), want, "{text}");
        }
    }

    #[test]
    fn names_and_ordinary_text_are_left_alone() {
        for text in [
            "Secret ameide/db-migrations-local holding url, user, password from Secret ameide/postgres-credentials",
            "tokenSecretRef:",
            "secretName: postgres-credentials",
            "existingSecret: vault-dev-token",
            "key: token",
            "https://charts.example.com/index.yaml",
            "http://foundation-vault-core.vault:8200/v1/secret/data/keycloak/admin",
            "helm test auth-smoke -n ameide --logs",
            "password authentication failed for user \"ameide\"",
            "sha256:0f9b8c2e4a6d1f3b5c7e9a0b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f",
            "uses a bearer token",
        ] {
            assert_eq!(redacted(text), text);
        }
    }

    const PEM: &str = "-----BEGIN RSA PRIVATE KEY-----\n\
        MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n\
        VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n\
        -----END RSA PRIVATE KEY-----";

    #[test]
    fn pem_private_keys_are_redacted_whole_or_cut() {
        let text = format!("key follows\n{PEM}\ndone");
        assert_eq!(
            redacted(&text),
            "key follows\n-----BEGIN RSA PRIVATE KEY-----[redacted]-----END RSA PRIVATE KEY-----\ndone"
        );
        // A tail that starts inside the block, or a tail joined with " / ".
        let tail: String = PEM.lines().skip(1).collect::<Vec<_>>().join("\n");
        assert_eq!(redacted(&tail), "[redacted]-----END RSA PRIVATE KEY-----");
        let joined = format!("check: {}", PEM.lines().skip(2).collect::<Vec<_>>().join(" / "));
        assert_eq!(redacted(&joined), "check: [redacted]-----END RSA PRIVATE KEY-----");
        // One whose END is cut off.
        let head: String = PEM.lines().take(2).collect::<Vec<_>>().join("\n");
        assert_eq!(redacted(&head), "-----BEGIN RSA PRIVATE KEY-----[redacted]");
        // Certificates are public.
        let cert = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUX\n-----END CERTIFICATE-----";
        assert_eq!(redacted(cert), cert);
    }

    #[test]
    fn a_pem_block_split_over_lines_of_a_stream_is_redacted_line_by_line() {
        let redactor = Redactor::default();
        let mut out: Vec<String> = Vec::new();
        for line in format!("before\n{PEM}\nafter").lines() {
            out.push(redactor.redact_line("layers/24-auth", line).into_owned());
            // Another stream is not affected.
            assert_eq!(redactor.redact_line("cluster", "plain"), "plain");
        }
        assert_eq!(
            out,
            [
                "before",
                "-----BEGIN RSA PRIVATE KEY-----[redacted]",
                "[redacted]",
                "[redacted]",
                "[redacted]-----END RSA PRIVATE KEY-----",
                "after"
            ]
        );
        // A stream that ends inside a block does not redact the next call's output.
        redactor.redact_line("t", "-----BEGIN PRIVATE KEY-----");
        assert_eq!(redactor.redact_line("t", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"), "[redacted]");
        redactor.end_stream("t");
        assert_eq!(redactor.redact_line("t", "next call"), "next call");
    }

    #[test]
    fn learned_values_are_redacted_as_text_and_base64_even_inside_a_larger_blob() {
        let redactor = Redactor::default();
        let secret = "ameide-local-postgres";
        assert_eq!(redactor.redact(secret), secret, "not learned yet");
        redactor.learn_secret([
            ("password", format!("{secret}\n").as_bytes()),
            ("host", b"postgres.ameide.svc.cluster.local".as_slice()),
            ("DB_USER", b"ameide-admin".as_slice()),
            ("pin", b"1234".as_slice()),
        ]);
        let line = format!("using {secret} as ameide-admin on postgres.ameide.svc.cluster.local");
        assert_eq!(
            redactor.redact(&line),
            "using [redacted] as ameide-admin on postgres.ameide.svc.cluster.local"
        );
        assert_eq!(redactor.redact("pin 1234"), "pin 1234", "too short to learn");
        let encoded = STANDARD.encode(secret);
        assert_eq!(redactor.redact(&format!("data: {encoded} ok")), "data: [redacted] ok");
        // Inside a larger blob, at every alignment: what is left cannot give it back.
        for prefix in ["", "u:", "ab:", "abc:"] {
            let blob = STANDARD.encode(format!("{prefix}{secret}\"}}"));
            let out = redactor.redact(&blob).into_owned();
            assert!(out.contains(REDACTED), "{prefix:?}: {out}");
            let left = out.replace(REDACTED, "");
            assert!(left.len() <= 10, "{prefix:?}: only the edges stay: {out}");
        }
        // A clone shares what was learned.
        assert_eq!(redactor.clone().redact(secret), REDACTED);
        let debug = format!("{redactor:?}");
        assert!(debug.starts_with("Redactor(") && !debug.contains(secret), "{debug}");
    }

    #[test]
    fn json_strings_are_redacted_and_keys_kept() {
        let value = serde_json::json!({"password": "x", "found": ["token: abc"], "n": 1});
        let out = Redactor::default().redact_json(&value);
        assert_eq!(
            out,
            serde_json::json!({"password": "x", "found": ["token: [redacted]"], "n": 1})
        );
    }

    #[test]
    fn secret_keys_are_the_ones_that_do_not_name_or_locate() {
        for key in ["password", "token", "tls.key", "PGPASSWORD", "value", "rootToken"] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in ["host", "DB_HOST", "port", "database", "username", "postgres.user", "url"] {
            assert!(!is_secret_key(key), "{key}");
        }
    }
}
