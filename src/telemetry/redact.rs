//! Redaction of operational log text before it leaves the pod. Patterns err on the side of
//! removing too much: a lost log detail is cheap, a leaked credential is not.
//!
//! Lines are redacted one at a time, whole, before any size cut (so a cut never splits a
//! secret into two halves that no pattern recognises); a private key block that spans lines
//! is followed by a flag the caller carries from one line to the next (and across bundles,
//! in the log cursor).

use regex::{Captures, Regex};

const REDACTED: &str = "[REDACTED]";
const PRIVATE_KEY: &str = "[REDACTED PRIVATE KEY]";
/// Base64 runs at least this long are treated as key material when they look random.
const KEY_MATERIAL_MIN: usize = 40;
/// A key block is closed after this many lines even without its END line (an RSA-8192 PEM
/// has about 100), so that one cut-off key does not silence the rest of a log.
pub const MAX_KEY_LINES: u32 = 128;

/// Compiled once per telemetry task; cheap to share by reference.
#[derive(Debug)]
pub struct Redactor {
    begin: Regex,
    end: Regex,
    rules: Vec<(Regex, &'static str)>,
    base64_run: Regex,
}

impl Redactor {
    pub fn new() -> Result<Redactor, regex::Error> {
        let rules: [(&str, &'static str); 10] = [
            // Cookie and Set-Cookie headers: the whole value, to the end of the line (a cookie
            // list has no reliable end).
            (
                r#"(?i)\b((?:set-)?cookie["']?\s*[:=]\s*)\S.*$"#,
                "${1}[REDACTED]",
            ),
            // Authorization headers and bearer tokens, whatever the scheme.
            (
                r"(?i)(authorization\s*[:=]\s*(?:bearer|basic|token|negotiate|digest)?\s*)[^\s,;]+",
                "${1}[REDACTED]",
            ),
            (r"(?i)(bearer\s+)[A-Za-z0-9\-._~+/]+=*", "${1}[REDACTED]"),
            // Azure shared access signatures: the whole token, and the signature of a SAS URL.
            (
                r#"(?i)(SharedAccessSignature\s*[=:]\s*)[^\s;"']+"#,
                "${1}[REDACTED]",
            ),
            (r#"(?i)\b(sig=)[^\s&;"']+"#, "${1}[REDACTED]"),
            // key=value, key: value and "key": "value" for anything that names a secret
            // (password, passphrase, secret, token, api key, access key, account key, private
            // key, aws_secret_access_key, secretAccessKey, client_secret, Azure AccountKey...).
            (
                r#"(?i)(["']?[a-z0-9_.\-]*(?:password|passwd|passphrase|pwd|secret|token|api[_-]?key|access[_-]?key|account[_-]?key|private[_-]?key|credential)[a-z0-9_.\-]*["']?\s*[=:]\s*)("(?:[^"\\]|\\.)*"|'[^']*'|[^\s,;&"'}]+)"#,
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
            // A line of bare base64 (the middle of a PEM block that began before the sidecar
            // started reading): removed whatever its letters.
            (r"^\s*[A-Za-z0-9+/]{40,}={0,2}\s*$", REDACTED),
        ];
        let rules = rules
            .into_iter()
            .map(|(re, with)| Ok((Regex::new(re)?, with)))
            .collect::<Result<Vec<_>, regex::Error>>()?;
        Ok(Redactor {
            begin: Regex::new(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")?,
            end: Regex::new(r"-----END [A-Z0-9 ]*PRIVATE KEY-----")?,
            rules,
            base64_run: Regex::new(r"[A-Za-z0-9+/]{40,}={0,2}")?,
        })
    }

    /// Redacts one line (without its newline). `key_lines`: how many lines ago a private key
    /// block was opened and not closed yet (0: none). Returns the line to send (`None`: the
    /// line is key material and goes nowhere) and the new `key_lines`.
    pub fn redact_line(&self, line: &str, key_lines: u32) -> (Option<String>, u32) {
        let mut rest = line;
        if key_lines > 0 {
            match self.end.find(rest) {
                Some(m) => rest = &rest[m.end()..],
                None if key_lines < MAX_KEY_LINES => return (None, key_lines + 1),
                None => {}
            }
            if rest.trim().is_empty() {
                return (None, 0);
            }
        }
        let mut out = String::new();
        loop {
            let Some(b) = self.begin.find(rest) else {
                out.push_str(&self.redact_text(rest));
                return (Some(out), 0);
            };
            out.push_str(&self.redact_text(&rest[..b.start()]));
            out.push_str(PRIVATE_KEY);
            let after = &rest[b.end()..];
            match self.end.find(after) {
                Some(e) => rest = &after[e.end()..],
                None => return (Some(out), 1),
            }
        }
    }

    /// Redacts a whole text line by line (a key block spanning lines included).
    pub fn redact(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut key_lines = 0;
        for line in text.split_inclusive('\n') {
            let (body, newline) = match line.strip_suffix('\n') {
                Some(b) => (b, "\n"),
                None => (line, ""),
            };
            let (redacted, open) = self.redact_line(body, key_lines);
            key_lines = open;
            if let Some(r) = redacted {
                out.push_str(&r);
                out.push_str(newline);
            }
        }
        out
    }

    /// Every single-line rule, then base64 key material anywhere in the line.
    fn redact_text(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (re, with) in &self.rules {
            if re.is_match(&out) {
                out = re.replace_all(&out, *with).into_owned();
            }
        }
        if self.base64_run.is_match(&out) {
            out = self
                .base64_run
                .replace_all(&out, |c: &Captures<'_>| {
                    let run = &c[0];
                    if looks_random(run) {
                        REDACTED.to_owned()
                    } else {
                        run.to_owned()
                    }
                })
                .into_owned();
        }
        out
    }
}

/// Random base64 of 40 characters or more has upper and lower case letters and digits mixed
/// (a 40-character run without a digit, or with fewer than four of either case, happens about
/// once in a thousand keys and is caught by the whole-line rule when it stands alone). Hex
/// digests (no upper case) and paths of words stay readable.
fn looks_random(run: &str) -> bool {
    let count = |f: fn(&u8) -> bool| run.bytes().filter(f).count();
    run.len() >= KEY_MATERIAL_MIN
        && count(u8::is_ascii_uppercase) >= 4
        && count(u8::is_ascii_lowercase) >= 4
        && count(u8::is_ascii_digit) >= 1
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

    /// One canary per pattern, each in the middle of a realistic log line: the secret goes,
    /// the words around it stay.
    #[test]
    fn canaries_in_the_middle_of_a_line() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "2026-11-23T01:00:00Z INFO azure: DefaultEndpointsProtocol=https;AccountName=pxbstore;AccountKey=CANARYa1B2c3D4e5F6g7H8i9J0kLmNoPqRsTuVwXyZ0123456789abcdEFGH+/==;EndpointSuffix=core.windows.net uploaded",
                "CANARYa1B2",
                "EndpointSuffix=core.windows.net uploaded",
            ),
            (
                "2026-11-23T01:00:01Z INFO azure: using BlobEndpoint=https://x.blob.core.windows.net/;SharedAccessSignature=sv=2021-06-08&ss=b&sig=CANARYsig1 for backup nightly-1",
                "CANARYsig1",
                "for backup nightly-1",
            ),
            (
                "2026-11-23T01:00:02Z WARN GET https://x.blob.core.windows.net/c/o?sv=2021-06-08&se=2026-12-01&sig=CANARYsig2%3D&sp=r status=403 retrying",
                "CANARYsig2",
                "status=403 retrying",
            ),
            (
                "2026-11-23T01:00:03Z INFO ssh: key loaded passphrase=CANARYpass3 user=backup",
                "CANARYpass3",
                "user=backup",
            ),
            (
                "2026-11-23T01:00:04Z DEBUG http: request Cookie: session=CANARYcookie4; csrftoken=x",
                "CANARYcookie4",
                "DEBUG http: request Cookie:",
            ),
            (
                "2026-11-23T01:00:05Z DEBUG http: response Set-Cookie: id=CANARYcookie5; Path=/; HttpOnly",
                "CANARYcookie5",
                "DEBUG http: response Set-Cookie:",
            ),
            (
                r#"2026-11-23T01:00:06Z INFO gcp: credentials {"type": "service_account", "private_key_id": "CANARYkeyid6", "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7CANARY6\n-----END PRIVATE KEY-----\n", "client_email": "pxb@proj.iam.gserviceaccount.com"} loaded"#,
                "CANARY6",
                r#""client_email": "pxb@proj.iam.gserviceaccount.com"} loaded"#,
            ),
            (
                "2026-11-23T01:00:07Z INFO oauth: token request client_id=pxb client_secret=CANARYsecret7 scope=backup",
                "CANARYsecret7",
                "scope=backup",
            ),
            (
                "2026-11-23T01:00:08Z DEBUG kms: data key MIIBCgKCAQEAtCANARY8xYz9QwErTyUiOpAsDfGhJkLzXcVbNm1234abcdXYZ fetched for location s3-east",
                "CANARY8",
                "fetched for location s3-east",
            ),
        ];
        for (line, secret, kept) in cases {
            let out = r(line);
            assert!(!out.contains(secret), "{secret} in {out}");
            assert!(out.contains(kept), "{kept:?} lost: {out}");
            assert!(out.starts_with(&line[..20]), "{out}");
        }
    }

    /// A GCP service-account key whose `private_key` has no PEM markers (a tool that strips
    /// them, or a value cut out of its file): the JSON rule alone must take it. Its base64
    /// comes in short `\n`-separated pieces, too short for the base64 rule to catch.
    #[test]
    fn a_gcp_private_key_without_pem_markers() {
        let line = r#"2026-11-23T01:00:09Z INFO gcp: credentials {"type": "service_account", "project_id": "proj", "private_key_id": "CANARYkeyid9f3a1", "private_key": "MIIEvQIBADANBgkqhkiG9w0BAQEF\nAASCBKcwggSjAgEAAoIBAQC7CANARYk9\n", "client_email": "pxb@proj.iam.gserviceaccount.com"} loaded"#;
        assert_eq!(
            r(line),
            r#"2026-11-23T01:00:09Z INFO gcp: credentials {"type": "service_account", "project_id": "proj", "private_key_id": "[REDACTED]", "private_key": "[REDACTED]", "client_email": "pxb@proj.iam.gserviceaccount.com"} loaded"#
        );
    }

    #[test]
    fn digests_and_paths_stay_readable() {
        let line = "pulled sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 for /apis/stork.libopenstorage.org/v1alpha1/namespaces/shop/applicationbackups/nightly-2026-11-23";
        assert_eq!(r(line), line);
    }

    #[test]
    fn a_key_block_spans_lines_and_calls() {
        let red = Redactor::new().unwrap();
        let (first, open) = red.redact_line("loaded -----BEGIN RSA PRIVATE KEY-----", 0);
        assert_eq!(first.as_deref(), Some("loaded [REDACTED PRIVATE KEY]"));
        assert_eq!(open, 1);
        // The next bundle carries the state: a short last body line never leaks.
        let (mid, open) = red.redact_line("q2w==", open);
        assert_eq!((mid, open), (None, 2));
        let (end, open) = red.redact_line("-----END RSA PRIVATE KEY----- done", open);
        assert_eq!((end.as_deref(), open), (Some(" done"), 0));
        // A block that never ends stops swallowing lines after MAX_KEY_LINES.
        let mut open = 1;
        for _ in 1..MAX_KEY_LINES {
            let (l, o) = red.redact_line("ordinary line", open);
            assert_eq!(l, None);
            open = o;
        }
        assert_eq!(
            red.redact_line("ordinary line", open).0.as_deref(),
            Some("ordinary line")
        );
    }
}
