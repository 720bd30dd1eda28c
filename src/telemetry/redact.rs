//! Redaction of operational log text before it leaves the pod. Patterns err on the side of
//! removing too much: a lost log detail is cheap, a leaked credential is not.

use regex::Regex;

const REDACTED: &str = "[REDACTED]";

/// Compiled once per telemetry task; cheap to share by reference.
#[derive(Debug)]
pub struct Redactor {
    rules: Vec<(Regex, &'static str)>,
}

impl Redactor {
    pub fn new() -> Result<Redactor, regex::Error> {
        let rules: [(&str, &'static str); 8] = [
            // PEM private keys: whole blocks, and a block whose END line is not in this chunk
            // (the rest arrives with the next upload, caught by the key-material rule below).
            (
                r"(?s)-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|\z)",
                "[REDACTED PRIVATE KEY]",
            ),
            // Lines of bare base64 key material (the middle of a PEM block cut by a chunk).
            (r"(?m)^[A-Za-z0-9+/]{40,}={0,2}$", REDACTED),
            // Authorization headers and bearer tokens, whatever the scheme.
            (
                r"(?i)(authorization\s*[:=]\s*(?:bearer|basic|token|negotiate|digest)?\s*)[^\s,;]+",
                "${1}[REDACTED]",
            ),
            (r"(?i)(bearer\s+)[A-Za-z0-9\-._~+/]+=*", "${1}[REDACTED]"),
            // key=value, key: value and "key": "value" for anything that names a secret
            // (password, passwd, secret, token, api key, access key, private key,
            // aws_secret_access_key, secretAccessKey, client_secret...).
            (
                r#"(?i)(["']?[a-z0-9_.\-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential)[a-z0-9_.\-]*["']?\s*[=:]\s*)("(?:[^"\\]|\\.)*"|'[^']*'|[^\s,;&"'}]+)"#,
                "${1}\"[REDACTED]\"",
            ),
            // AWS access key ids (long-term AKIA, temporary ASIA).
            (r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", "[REDACTED AWS KEY ID]"),
            // JWTs (service-account tokens) even without a Bearer prefix.
            (
                r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+",
                REDACTED,
            ),
            // Connection strings with credentials: scheme://user:pass@host.
            (
                r"([A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]+:)[^@/\s]+@",
                "${1}[REDACTED]@",
            ),
        ];
        let rules = rules
            .into_iter()
            .map(|(re, with)| Ok((Regex::new(re)?, with)))
            .collect::<Result<Vec<_>, regex::Error>>()?;
        Ok(Redactor { rules })
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (re, with) in &self.rules {
            if re.is_match(&out) {
                out = re.replace_all(&out, *with).into_owned();
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        Redactor::new().unwrap().redact(s)
    }

    #[test]
    fn secrets_are_removed_and_the_rest_stays() {
        let line = "2026-11-23 backup nightly-1 failed: Authorization: Bearer abc.def.ghi password=hunter2 key AKIAIOSFODNN7EXAMPLE";
        let out = r(line);
        for secret in ["abc.def.ghi", "hunter2", "AKIAIOSFODNN7EXAMPLE"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.contains("backup nightly-1 failed"), "{out}");
    }

    #[test]
    fn json_and_yaml_forms() {
        let out = r(
            r#"{"user":"bob","password":"s3cr\"et","aws_secret_access_key":"wJalrXUtnFEMI/K7MDENG"}"#,
        );
        assert!(!out.contains("s3cr"), "{out}");
        assert!(!out.contains("wJalrXUtnFEMI"), "{out}");
        assert!(out.contains(r#""user":"bob""#), "{out}");
        let out = r("secretAccessKey: abcd1234 region: us-east-1");
        assert!(
            !out.contains("abcd1234") && out.contains("us-east-1"),
            "{out}"
        );
    }

    #[test]
    fn private_keys_whole_and_cut() {
        let pem =
            "a\n-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg\n-----END EC PRIVATE KEY-----\nb\n";
        let out = r(pem);
        assert!(!out.contains("MHcCAQEEIBkg"), "{out}");
        assert!(out.starts_with("a\n") && out.ends_with("\nb\n"), "{out}");
        let cut = "x -----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg";
        assert!(!r(cut).contains("MIGHAgEA"));
        let middle = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgAAAA\n";
        assert!(!r(middle).contains("MIGHAgEA"));
    }

    #[test]
    fn connection_strings_keep_user_and_host() {
        let out = r("dial postgres://px:Sup3r@db.example:5432/backups");
        assert_eq!(out, "dial postgres://px:[REDACTED]@db.example:5432/backups");
        let out = r("token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl end");
        assert!(!out.contains("eyJzdWIiOiJ4In0"), "{out}");
    }
}
