//! Secrets a careless workload prints, so the engine's redaction is exercised: the
//! Vault bootstrap Job of `vault-fail` runs `vault operator init` and echoes its output
//! before it fails, and the test Pods of `gate-leak=<layer>` print the Postgres
//! credentials their environment holds (as the kubelet resolved it from the Secret their
//! chart names), and a PEM private key, before failing.
//! The values are fixed (real ones are random) so tests can look for them.

/// The unseal keys `vault operator init` printed (base64 of 33 bytes, as Vault's
/// Shamir shares are).
pub const VAULT_UNSEAL_KEYS: [&str; 5] = [
    "Lh+pclU9MvN9oH4uekt140MyQOaxHlOFrMPJLN338c88",
    "KzwzvF2TgTPPreTfwdV+N7dMQwFX+Wc4xbpniViXkoZF",
    "00WZtU2NHUh6keyAJX6vy6HLKTA0pa/ObyFog3qSGem0",
    "M5ZCiNhWys/V0qiLeBZ9JXomfRQ/pReLWjTu6cihZMqU",
    "0YiuwoYB/P0ixbDY4hZ6ZtFnLmJqIUW1Za6zXCRVVrrY",
];

/// The initial root token (Vault >= 1.10 service token: `hvs.` and 24 characters).
pub const VAULT_ROOT_TOKEN: &str = "hvs.Nt6iBSI3b5KBjXkNVZP5BaGJ";

/// What `vault operator init` prints with the default 5 shares and threshold 3
/// (hashicorp/vault `command/operator_init.go`, `init`: one `Unseal Key N:` line per
/// share, a blank line, `Initial Root Token:`, then three paragraphs wrapped at 80
/// columns by `wrapAtLength`).
pub fn vault_init_output() -> String {
    let mut out: String = VAULT_UNSEAL_KEYS
        .iter()
        .enumerate()
        .map(|(i, key)| format!("Unseal Key {}: {key}\n", i + 1))
        .collect();
    out.push_str(&format!("\nInitial Root Token: {VAULT_ROOT_TOKEN}\n\n"));
    out.push_str(
        "Vault initialized with 5 key shares and a key threshold of 3. Please securely\n\
         distribute the key shares printed above. When the Vault is re-sealed,\n\
         restarted, or stopped, you must supply at least 3 of these keys to unseal it\n\
         before it can start servicing requests.\n\n\
         Vault does not store the generated root key. Without at least 3 keys to\n\
         reconstruct the root key, Vault will remain permanently sealed!\n\n\
         It is possible to generate new unseal keys, provided you have a quorum of\n\
         existing unseal keys shares. See \"vault operator rekey\" for more information.\n",
    );
    out
}

/// The private key a `gate-leak` Pod prints (PKCS#8 framing, random body).
pub const GATE_LEAK_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKeP03WMGQLEm8VBbL5nepyOeN5q1uDW
58omOSzayC31XrqgTH4Ox9MX7lrCirwt+duGJu42Q/ITKdaSsv7LOyHtTBuWXxBb
VBaaRO9YuCtlsmjUg2i9hf61AkXsb82/C5BBZkYWN0gpXyKxraVwFhvB11PVr0LH
1I7Gd4eSFji1E99348fzUCnC+bgXOF3cieyjfYfF6IHGYdtnrU50wQWCpezv1TCo
/zQEFWWpwF22EJMDRzY/iSO2pVAE8SE6t7VyRgSGbKzsvg==
-----END PRIVATE KEY-----
";

/// What a `gate-leak` test Pod prints before it fails: a traced shell that exports the
/// password, the client key it was given, the password once more in plain words (in
/// the last lines, which a gate's finding quotes), and its failure. `password` is the
/// Secret's (empty when it does not exist).
pub fn gate_leak_log(hook: &str, host: &str, password: &str) -> String {
    format!(
        "+ export PGPASSWORD={password}\n\
         + psql -h {host} -U ameide -c 'select 1'\n\
         psql: error: connection to server at \"{host}\", port 5432 failed: FATAL:  password authentication failed for user \"ameide\"\n\
         debug: client key:\n\
         {GATE_LEAK_KEY}\
         debug: tried password {password} from the environment\n\
         {hook}: check failed: exit status 1\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_output_is_what_vault_prints() {
        let out = vault_init_output();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 18);
        assert_eq!(lines[0], format!("Unseal Key 1: {}", VAULT_UNSEAL_KEYS[0]));
        assert_eq!(lines[6], format!("Initial Root Token: {VAULT_ROOT_TOKEN}"));
        assert!(lines.iter().all(|l| l.len() <= 80), "wrapped at 80 columns");
        assert!(VAULT_UNSEAL_KEYS.iter().all(|k| k.len() == 44));
    }

    #[test]
    fn leak_log_prints_the_password_twice_and_a_key() {
        let log = gate_leak_log("db-check", "postgres.ameide.svc", "pw-1234567");
        assert!(
            log.contains("PGPASSWORD=pw-1234567\n") && log.contains("tried password pw-1234567 ")
        );
        assert!(log.ends_with(
            "-----END PRIVATE KEY-----\ndebug: tried password pw-1234567 from the \
                 environment\ndb-check: check failed: exit status 1\n"
        ));
    }
}
