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
/// has about 100, an OpenPGP key with an RSA-4096 subkey about 220), so that one cut-off key
/// does not silence the rest of a log for ever.
pub const MAX_KEY_LINES: u32 = 512;

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
        // The secret-naming words of keys and flags (password, passphrase, secret, token, api
        // key, access key, account key, private key, credential: aws_secret_access_key,
        // secretAccessKey, client_secret, Azure's AccountKey...).
        const SECRET_WORD: &str = "password|passwd|passphrase|pwd|secret|token|api[_-]?key|access[_-]?key|account[_-]?key|private[_-]?key|credential";
        // A value: double-quoted (escapes allowed), single-quoted, or bare up to a separator.
        const VALUE: &str = r#""(?:[^"\\]|\\.)*"|'[^']*'|[^\s,;&"'}]+"#;
        // A value inside escaped JSON (`\"...\"`), before the forms above.
        const ESCAPED_VALUE: &str = r#"\\"(?:[^"\\]|\\[^"])*\\""#;
        let rules: Vec<(String, &'static str)> = vec![
            // Cookie and Set-Cookie headers: the whole value, to the end of the line (a cookie
            // list has no reliable end).
            (
                r#"(?i)\b((?:set-)?cookie["']?\s*[:=]\s*)\S.*$"#.into(),
                "${1}[REDACTED]",
            ),
            // Authorization headers, whatever the scheme (kept) and however the header is
            // printed: `Authorization: Basic v`, JSON `"Authorization": "Basic v"` (escaped
            // `\"` too), Python `'Authorization': 'Basic v'`, Go `map[Authorization:[Basic v]]`.
            (
                r#"(?i)(\bauthorization\\?["']?\s*[:=]\s*(?:\\?["']|\[)?\s*(?:(?:bearer|basic|token|negotiate|digest)\s+)?)[^\s,;"'\\\]]+"#.into(),
                "${1}[REDACTED]",
            ),
            // Bearer tokens anywhere.
            (r"(?i)(bearer\s+)[A-Za-z0-9\-._~+/]+=*".into(), "${1}[REDACTED]"),
            // Azure shared access signatures: the whole token, and the signature of a SAS URL.
            (
                r#"(?i)(SharedAccessSignature\s*[=:]\s*)[^\s;"']+"#.into(),
                "${1}[REDACTED]",
            ),
            (r#"(?i)\b(sig=)[^\s&;"']+"#.into(), "${1}[REDACTED]"),
            // key=value, key: value, "key": "value" and escaped JSON \"key\":\"value\" for
            // anything that names a secret.
            (
                format!(
                    r#"(?i)(\\?["']?[a-z0-9_.\-]*(?:{SECRET_WORD})[a-z0-9_.\-]*\\?["']?\s*[=:]\s*)({ESCAPED_VALUE}|{VALUE})"#
                ),
                "${1}\"[REDACTED]\"",
            ),
            // `pass=` and `pw=` as whole keys (a query string's `&pass=x`).
            (
                format!(r#"(?i)(\b(?:pass|pw)\s*=\s*)({VALUE})"#),
                "${1}[REDACTED]",
            ),
            // A docker config's `"auth"` (base64 of user:password).
            (
                format!(r#"(?i)(\\?["']auth\\?["']\s*:\s*)({ESCAPED_VALUE}|"(?:[^"\\]|\\.)*"|'[^']*')"#),
                "${1}\"[REDACTED]\"",
            ),
            // Command lines: a flag naming a secret and its value after a space
            // (`--password x`, `--client-secret x`; `--password=x` is a key=value above).
            (
                format!(
                    r#"(?i)((?:^|\s)--?[a-z0-9_\-]*(?:{SECRET_WORD}|pass)[a-z0-9_\-]*\s+)("[^"]*"|'[^']*'|[^\s"']+)"#
                ),
                "${1}[REDACTED]",
            ),
            // curl's (and others') `-u user:password`, `--user`, `--proxy-user`, `-U`.
            (
                r#"((?:^|\s)(?:-u|-U|--user|--proxy-user)\s*[^\s:"']+:)("[^"]*"|'[^']*'|\S+)"#.into(),
                "${1}[REDACTED]",
            ),
            // MySQL's `-pPASSWORD` (no space: `-p` alone prompts), on a mysql/mariadb command line.
            (
                r#"((?i:\b(?:mysql|mariadb)[a-z\-]*)\b[^\n]*?\s-p)("[^"]*"|'[^']*'|[^\s"']\S*)"#.into(),
                "${1}[REDACTED]",
            ),
            // AWS access key ids (long-term AKIA, temporary ASIA).
            (
                r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b".into(),
                "[REDACTED AWS KEY ID]",
            ),
            // JWTs (service-account tokens) even without a Bearer prefix.
            (
                r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+".into(),
                REDACTED,
            ),
            // Connection strings with credentials: scheme://user:password@host, the user
            // possibly empty (`redis://:pw@host`), the password up to the last `@` of the URL
            // (a `/` or `@` in it unescaped).
            (
                r"([A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)\S*@".into(),
                "${1}[REDACTED]@",
            ),
            // A line of bare base64 (the middle of a PEM block that began before the sidecar
            // started reading): removed whatever its letters.
            (r"^\s*[A-Za-z0-9+/]{40,}={0,2}\s*$".into(), REDACTED),
        ];
        let rules = rules
            .into_iter()
            .map(|(re, with)| Ok((Regex::new(&re)?, with)))
            .collect::<Result<Vec<_>, regex::Error>>()?;
        Ok(Redactor {
            // PEM (`PRIVATE KEY`, `RSA PRIVATE KEY`...) and OpenPGP (`PGP PRIVATE KEY BLOCK`).
            begin: Regex::new(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")?,
            end: Regex::new(r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")?,
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

    /// A canary of one form a secret takes in a log line: `form` is how docs/telemetry.md
    /// names it (its list of what is removed), `line` a realistic line holding `secret`,
    /// `kept` what must stay readable around it.
    struct Canary {
        form: &'static str,
        line: &'static str,
        secret: &'static str,
        kept: &'static str,
    }

    /// One canary per form the docs promise to remove, each in the middle of a realistic line.
    const CANARIES: &[Canary] = &[
        Canary {
            form: "`Authorization: <scheme> <value>`",
            line: "2026-11-23T01:00:00Z DEBUG http: GET /v1/backups Authorization: Basic CANARYYm9iOnNlY3JldA== status=200",
            secret: "CANARYYm9i",
            kept: "status=200",
        },
        Canary {
            form: r#"`{"Authorization": "Basic ..."}`"#,
            line: r#"2026-11-23T01:00:00Z DEBUG http: headers {"Accept": "application/json", "Authorization": "Basic CANARYauthjson1", "X-Request-Id": "42"} sent"#,
            secret: "CANARYauthjson1",
            kept: r#""X-Request-Id": "42"} sent"#,
        },
        Canary {
            form: "`{'Authorization': 'Basic ...'}`",
            line: "2026-11-23T01:00:00Z DEBUG requests: headers={'User-Agent': 'python-requests/2.31', 'Authorization': 'Basic CANARYauthpy2'} retry=1",
            secret: "CANARYauthpy2",
            kept: "retry=1",
        },
        Canary {
            form: "`map[Authorization:[Basic ...]]`",
            line: "2026-11-23T01:00:00Z DEBUG client: request headers map[Accept:[application/json] Authorization:[Basic CANARYauthgo3] User-Agent:[px-backup]] sent",
            secret: "CANARYauthgo3",
            kept: "User-Agent:[px-backup]] sent",
        },
        Canary {
            form: "`Bearer <token>`",
            line: "2026-11-23T01:00:00Z DEBUG grpc: metadata bearer CANARYbearer4.part-two for org default",
            secret: "CANARYbearer4",
            kept: "for org default",
        },
        Canary {
            form: "`Cookie:`",
            line: "2026-11-23T01:00:04Z DEBUG http: request Cookie: session=CANARYcookie4; csrftoken=x",
            secret: "CANARYcookie4",
            kept: "DEBUG http: request Cookie:",
        },
        Canary {
            form: "`Set-Cookie:`",
            line: "2026-11-23T01:00:05Z DEBUG http: response Set-Cookie: id=CANARYcookie5; Path=/; HttpOnly",
            secret: "CANARYcookie5",
            kept: "DEBUG http: response Set-Cookie:",
        },
        Canary {
            form: "`key=value`",
            line: "2026-11-23T01:00:07Z INFO oauth: token request client_id=pxb client_secret=CANARYsecret7 scope=backup",
            secret: "CANARYsecret7",
            kept: "scope=backup",
        },
        Canary {
            form: "`key: value`",
            line: "2026-11-23T01:00:03Z INFO ssh: key loaded passphrase: CANARYpass3 user=backup",
            secret: "CANARYpass3",
            kept: "user=backup",
        },
        Canary {
            form: r#"`"key": "value"`"#,
            line: r#"2026-11-23T01:00:06Z INFO s3: config {"region": "us-east-1", "secretAccessKey": "CANARYjson8\"quoted", "bucket": "pxb"} loaded"#,
            secret: "CANARYjson8",
            kept: r#""bucket": "pxb"} loaded"#,
        },
        Canary {
            form: r#"`{\"password\":\"...\"}`"#,
            line: r#"2026-11-23T01:00:06Z ERROR api: body "{\"user\":\"bob\",\"password\":\"CANARYescaped9\",\"org\":\"default\"}" rejected"#,
            secret: "CANARYescaped9",
            kept: r#"\"org\":\"default\"}" rejected"#,
        },
        Canary {
            form: "`AccountKey=`",
            line: "2026-11-23T01:00:00Z INFO azure: DefaultEndpointsProtocol=https;AccountName=pxbstore;AccountKey=CANARYa1B2c3D4e5F6g7H8i9J0kLmNoPqRsTuVwXyZ0123456789abcdEFGH+/==;EndpointSuffix=core.windows.net uploaded",
            secret: "CANARYa1B2",
            kept: "EndpointSuffix=core.windows.net uploaded",
        },
        Canary {
            form: "`&pass=`",
            line: "2026-11-23T01:00:10Z WARN http: GET /login?user=bob&pass=CANARYquery10&next=/home status=302",
            secret: "CANARYquery10",
            kept: "status=302",
        },
        Canary {
            form: r#"`"auth"`"#,
            line: r#"2026-11-23T01:00:11Z DEBUG registry: docker config {"auths": {"registry.example.com": {"auth": "CANARYdockerauth11"}}} read"#,
            secret: "CANARYdockerauth11",
            kept: "read",
        },
        Canary {
            form: "`--password x`",
            line: "2026-11-23T01:00:12Z INFO exec: running px-backup-cli login --user admin --password CANARYflag12 --org default",
            secret: "CANARYflag12",
            kept: "--org default",
        },
        Canary {
            form: "`curl -u user:x`",
            line: "2026-11-23T01:00:13Z INFO hook: curl -sS -u bob:CANARYcurl13 https://hooks.example.com/backup done",
            secret: "CANARYcurl13",
            kept: "https://hooks.example.com/backup done",
        },
        Canary {
            form: "`mysql -px`",
            line: "2026-11-23T01:00:14Z INFO pre-exec rule: mysql -h db -u root -pCANARYmysql14 -e 'FLUSH TABLES WITH READ LOCK' ok",
            secret: "CANARYmysql14",
            kept: "-e 'FLUSH TABLES WITH READ LOCK' ok",
        },
        Canary {
            form: "`SharedAccessSignature=`",
            line: "2026-11-23T01:00:01Z INFO azure: using BlobEndpoint=https://x.blob.core.windows.net/;SharedAccessSignature=sv=2021-06-08&ss=b&sig=CANARYsig1 for backup nightly-1",
            secret: "CANARYsig1",
            kept: "for backup nightly-1",
        },
        Canary {
            form: "`sig=`",
            line: "2026-11-23T01:00:02Z WARN GET https://x.blob.core.windows.net/c/o?sv=2021-06-08&se=2026-12-01&sig=CANARYsig2%3D&sp=r status=403 retrying",
            secret: "CANARYsig2",
            kept: "status=403 retrying",
        },
        Canary {
            form: "`AKIA...`",
            line: "2026-11-23T01:00:15Z INFO s3: signing with AKIAIOSFODNN7CANARY5 for bucket pxb",
            secret: "AKIAIOSFODNN7CANARY5",
            kept: "for bucket pxb",
        },
        Canary {
            form: "`eyJ...`",
            line: "2026-11-23T01:00:16Z DEBUG kube: token eyJhbGciOiJSUzI1NiJ9.eyJDQU5BUlkxNiI6MX0.c2lnbmF0dXJl accepted",
            secret: "eyJDQU5BUlkxNiI6MX0",
            kept: "accepted",
        },
        Canary {
            form: "`-----BEGIN PRIVATE KEY-----`",
            line: r#"2026-11-23T01:00:06Z INFO gcp: credentials {"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7CANARY6\n-----END PRIVATE KEY-----\n", "client_email": "pxb@proj.iam.gserviceaccount.com"} loaded"#,
            secret: "CANARY6",
            kept: r#""client_email": "pxb@proj.iam.gserviceaccount.com"} loaded"#,
        },
        Canary {
            form: "`-----BEGIN PGP PRIVATE KEY BLOCK-----`",
            line: "2026-11-23T01:00:17Z DEBUG gpg: exported\n-----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: GnuPG v2\nComment: CANARYcomment\n\nlQOYBF7CANARYpgp17AQgAy\nCANARYlast\n=CANARYcrc\n-----END PGP PRIVATE KEY BLOCK-----\nto the keyring",
            secret: "CANARY",
            kept: "to the keyring",
        },
        Canary {
            form: "base64 key material",
            line: "2026-11-23T01:00:08Z DEBUG kms: data key MIIBCgKCAQEAtCANARY8xYz9QwErTyUiOpAsDfGhJkLzXcVbNm1234abcdXYZ fetched for location s3-east",
            secret: "CANARY8",
            kept: "fetched for location s3-east",
        },
        Canary {
            form: "`scheme://user:password@host`",
            line: "2026-11-23T01:00:18Z INFO db: dial postgres://px:CANARYconn18@db.example:5432/backups ok",
            secret: "CANARYconn18",
            kept: "@db.example:5432/backups ok",
        },
        Canary {
            form: "`redis://:password@host`",
            line: "2026-11-23T01:00:19Z INFO cache: dial redis://:CANARYredis19@cache.example:6379/0 ok",
            secret: "CANARYredis19",
            kept: "@cache.example:6379/0 ok",
        },
        Canary {
            form: "`/` or `@` in the password",
            line: "2026-11-23T01:00:20Z INFO db: dial mongodb://px:CANARY/sl@sh@at20@mongo.example:27017/admin ok",
            secret: "CANARY",
            kept: "@mongo.example:27017/admin ok",
        },
    ];

    /// Every form the docs promise to remove: the secret goes, the words around it stay.
    #[test]
    fn every_form_has_a_canary_in_the_middle_of_a_line() {
        let red = Redactor::new().unwrap();
        let mut leaked = Vec::new();
        for c in CANARIES {
            let out = red.redact(c.line);
            if out.contains(c.secret) || !out.contains(c.kept) || !out.starts_with(&c.line[..20]) {
                leaked.push(format!("{}:\n  in:  {}\n  out: {out}", c.form, c.line));
            }
        }
        assert!(leaked.is_empty(), "{}", leaked.join("\n"));
    }

    /// The bullets of "What is never sent" in docs/telemetry.md: each names at least one
    /// canary's form, and every canary's form is named in them.
    #[test]
    fn the_docs_list_what_the_canaries_cover() {
        let docs = include_str!("../../docs/telemetry.md");
        let section = docs
            .split("## What is never sent")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("a section \"What is never sent\" in docs/telemetry.md");
        let mut bullets: Vec<String> = Vec::new();
        let mut in_list = false;
        for line in section.lines() {
            if let Some(b) = line.strip_prefix("- ") {
                bullets.push(b.to_owned());
                in_list = true;
            } else if in_list && line.starts_with("  ") {
                if let Some(last) = bullets.last_mut() {
                    last.push(' ');
                    last.push_str(line.trim());
                }
            } else {
                in_list = false;
            }
        }
        assert!(!bullets.is_empty(), "no list in the section");
        for c in CANARIES {
            assert!(
                bullets.iter().any(|b| b.contains(c.form)),
                "the docs' list does not name {}",
                c.form
            );
        }
        for b in &bullets {
            assert!(
                CANARIES.iter().any(|c| b.contains(c.form)),
                "no canary for the docs' item: {b}"
            );
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
