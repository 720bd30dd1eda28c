//! The two requests the session makes of Keycloak, over reqwest: the realm's OpenID discovery
//! document (`<realm>/.well-known/openid-configuration`, for its `token_endpoint`, falling back
//! to Keycloak's `<realm>/protocol/openid-connect/token`), and the token endpoint's grants
//! (RFC 6749: `password` 4.3, `client_credentials` 4.4, `refresh_token` 6), form-encoded, the
//! client authenticated with `client_secret` in the body when it has one (Keycloak takes
//! `client_secret_post`). Answers are read as RFC 6749 5.1 (success) and 5.2 (error).
//!
//! Hand-written rather than the `oauth2` crate: that crate is built on reqwest 0.12 (a second
//! HTTP stack beside ours) and does no discovery; two grants and one GET are small enough to
//! own and test here.
//!
//! Redirects are not followed (a 307 would carry the password elsewhere), ambient proxies are
//! ignored (Keycloak is PX-Backup's neighbour), and nothing an answer says is quoted without
//! being cut short, stripped of control characters and of any secret the request carried.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use bytes::BytesMut;
use secrecy::{ExposeSecret, SecretString};

use super::session::{Credentials, Granted, Grants};
use super::{BearerToken, SetupError};
use crate::config::OidcSettings;

/// One request to Keycloak, answer included.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A token answer is a few kilobytes; a discovery document a few more.
const MAX_ANSWER_BYTES: usize = 1 << 20;
/// The most of a server's text (an OAuth error description) quoted in a message.
const MAX_QUOTED_CHARS: usize = 200;

/// Why a grant gave no token. The text never holds a secret.
#[derive(Debug, thiserror::Error)]
pub(super) enum GrantError {
    /// An OAuth 2.0 error answer (RFC 6749 5.2): the credentials or the refresh token were
    /// refused.
    #[error("{endpoint} refused the {grant} grant (HTTP {status}): {error}{}", description.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    Refused {
        endpoint: String,
        grant: &'static str,
        status: u16,
        error: String,
        description: Option<String>,
    },
    #[error("{endpoint}: HTTP {status} ({content_type}, {bytes} bytes), not an OAuth 2.0 answer; is --pxb-oidc-url the realm's URL (e.g. http://pxcentral-keycloak-http/auth/realms/master)?")]
    NotOAuth {
        endpoint: String,
        status: u16,
        content_type: String,
        bytes: usize,
    },
    #[error("{endpoint}: HTTP {status}, a redirect to {location:?}, is not followed; give --pxb-oidc-url the realm's address as Keycloak serves it")]
    Redirect {
        endpoint: String,
        status: u16,
        location: String,
    },
    #[error("{endpoint}: no answer within {timeout:?}")]
    Timeout { endpoint: String, timeout: Duration },
    #[error("{endpoint}: {reason}")]
    Transport { endpoint: String, reason: String },
    #[error("{endpoint}: {reason}")]
    Answer { endpoint: String, reason: String },
    #[error("{0}")]
    Credentials(String),
}

impl GrantError {
    /// Keycloak said no (rather than not answering): a refresh token it refuses is replaced
    /// by a login.
    pub(super) fn is_refusal(&self) -> bool {
        matches!(self, GrantError::Refused { .. })
    }
}

/// Keycloak's realm, as the session reaches it.
pub(super) struct Keycloak {
    http: reqwest::Client,
    realm: reqwest::Url,
    /// The discovered token endpoint, once discovery has answered.
    endpoint: Mutex<Option<reqwest::Url>>,
    /// Whether a failed discovery was already logged at info.
    discovery_said: AtomicBool,
}

impl Keycloak {
    pub(super) fn new(
        settings: &OidcSettings,
        ca_pem: Option<&[u8]>,
    ) -> Result<Keycloak, SetupError> {
        crate::tls::install_crypto_provider();
        let realm =
            reqwest::Url::parse(&settings.url).map_err(|e| SetupError::Build(e.to_string()))?;
        let mut b = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("pxbackup-sidecar/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| SetupError::Build(e.to_string()))?;
            b = b.tls_certs_merge(certs);
        }
        let http = b.build().map_err(|e| SetupError::Build(e.to_string()))?;
        Ok(Keycloak {
            http,
            realm,
            endpoint: Mutex::new(None),
            discovery_said: AtomicBool::new(false),
        })
    }

    fn under_realm(&self, segments: &[&str]) -> reqwest::Url {
        let mut url = self.realm.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Keycloak's own path of the token endpoint, used when discovery does not answer.
    fn conventional_endpoint(&self) -> reqwest::Url {
        self.under_realm(&["protocol", "openid-connect", "token"])
    }

    /// The token endpoint: discovered once, or the conventional one while discovery fails
    /// (discovery is tried again at the next grant).
    async fn token_endpoint(&self) -> reqwest::Url {
        if let Some(known) = self.cached_endpoint() {
            return known;
        }
        let discovery = self.under_realm(&[".well-known", "openid-configuration"]);
        match self.discover(&discovery).await {
            Ok(found) => {
                tracing::info!(discovery = %discovery, token_endpoint = %found, "Keycloak's token endpoint found through OpenID discovery");
                if let Ok(mut slot) = self.endpoint.lock() {
                    *slot = Some(found.clone());
                }
                found
            }
            Err(reason) => {
                let fallback = self.conventional_endpoint();
                if self.discovery_said.swap(true, Relaxed) {
                    tracing::debug!(discovery = %discovery, %reason, token_endpoint = %fallback, "OpenID discovery failed; using Keycloak's token endpoint");
                } else {
                    tracing::info!(discovery = %discovery, %reason, token_endpoint = %fallback, "OpenID discovery failed; using Keycloak's token endpoint (discovery is tried again at the next login)");
                }
                fallback
            }
        }
    }

    fn cached_endpoint(&self) -> Option<reqwest::Url> {
        self.endpoint.lock().ok().and_then(|slot| slot.clone())
    }

    async fn discover(&self, url: &reqwest::Url) -> Result<reqwest::Url, String> {
        #[derive(serde::Deserialize)]
        struct Discovery {
            token_endpoint: Option<String>,
        }
        let response = self
            .http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| chain(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("HTTP {}", status.as_u16()));
        }
        let body = read_capped(response).await.map_err(|e| match e {
            Capped::TooLarge => format!("more than {MAX_ANSWER_BYTES} bytes"),
            Capped::Transport(e) => chain(&e),
        })?;
        let doc: Discovery = serde_json::from_slice(&body).map_err(|e| {
            format!(
                "not a discovery document (line {}, column {})",
                e.line(),
                e.column()
            )
        })?;
        let text = doc
            .token_endpoint
            .ok_or_else(|| "the document has no token_endpoint".to_owned())?;
        let found = reqwest::Url::parse(&text)
            .map_err(|e| format!("token_endpoint {:?}: {e}", quote(&text, &[])))?;
        if !matches!(found.scheme(), "http" | "https") {
            return Err(format!(
                "token_endpoint {:?} is not http(s)",
                quote(&text, &[])
            ));
        }
        Ok(found)
    }

    /// POSTs one grant; `secrets` are what the form carries that no message may repeat.
    async fn grant(
        &self,
        grant: &'static str,
        form: &[(&str, &str)],
        secrets: &[&str],
    ) -> Result<Granted, GrantError> {
        let endpoint = self.token_endpoint().await;
        let name = endpoint.to_string();
        let response = self
            .http
            .post(endpoint)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(form)
            .send()
            .await
            .map_err(|e| transport(&name, &e))?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| "no content type".to_owned(), |v| quote(v, secrets));
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|v| quote(v, secrets));
        let body = read_capped(response).await.map_err(|e| match e {
            Capped::TooLarge => GrantError::Answer {
                endpoint: name.clone(),
                reason: format!("the answer is larger than {MAX_ANSWER_BYTES} bytes"),
            },
            Capped::Transport(e) => transport(&name, &e),
        })?;
        if status.is_success() {
            return granted(&name, &body);
        }
        if status.is_redirection() {
            return Err(GrantError::Redirect {
                endpoint: name,
                status: status.as_u16(),
                location: location.unwrap_or_default(),
            });
        }
        // RFC 6749 5.2: 400 (401 for invalid_client; Keycloak also answers invalid_grant with
        // 401). A 5xx is Keycloak failing, not refusing, whatever its body says.
        if status.is_client_error() {
            if let Ok(e) = serde_json::from_slice::<ErrorAnswer>(&body) {
                return Err(GrantError::Refused {
                    endpoint: name,
                    grant,
                    status: status.as_u16(),
                    error: quote(&e.error, secrets),
                    description: e
                        .error_description
                        .filter(|d| !d.trim().is_empty())
                        .map(|d| quote(&d, secrets)),
                });
            }
        }
        // The body is not quoted: a proxy's error page may echo the request, password included.
        Err(GrantError::NotOAuth {
            endpoint: name,
            status: status.as_u16(),
            content_type,
            bytes: body.len(),
        })
    }
}

impl Grants for Keycloak {
    async fn login(&self, creds: &Credentials) -> Result<Granted, GrantError> {
        let mut form = vec![("client_id", creds.client_id.as_str())];
        let mut secrets = Vec::new();
        let grant = match &creds.user {
            Some(user) => {
                let password = user.password.expose_secret();
                form.extend([
                    ("grant_type", "password"),
                    ("username", user.name.as_str()),
                    ("password", password),
                ]);
                secrets.push(password);
                "password"
            }
            None => {
                form.push(("grant_type", "client_credentials"));
                "client_credentials"
            }
        };
        if let Some(secret) = &creds.client_secret {
            form.push(("client_secret", secret.expose_secret()));
            secrets.push(secret.expose_secret());
        }
        self.grant(grant, &form, &secrets).await
    }

    async fn refresh(
        &self,
        creds: &Credentials,
        refresh_token: &SecretString,
    ) -> Result<Granted, GrantError> {
        let token = refresh_token.expose_secret();
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", creds.client_id.as_str()),
        ];
        let mut secrets = vec![token];
        if let Some(secret) = &creds.client_secret {
            form.push(("client_secret", secret.expose_secret()));
            secrets.push(secret.expose_secret());
        }
        if let Some(user) = &creds.user {
            secrets.push(user.password.expose_secret());
        }
        self.grant("refresh_token", &form, &secrets).await
    }
}

/// RFC 6749 5.2.
#[derive(serde::Deserialize)]
struct ErrorAnswer {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// RFC 6749 5.1, and Keycloak's `refresh_expires_in`. Unknown fields (`scope`,
/// `session_state`, `not-before-policy`, `id_token`) are skipped.
#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    token_type: Option<String>,
    #[serde(default, deserialize_with = "seconds")]
    expires_in: Option<u64>,
    refresh_token: Option<String>,
    #[serde(default, deserialize_with = "seconds")]
    refresh_expires_in: Option<u64>,
}

/// A lifetime in seconds: a JSON number (as the RFC has it) or a decimal string (as some
/// servers send); 0 and absent both mean "not stated".
fn seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Seconds {
        Int(u64),
        Float(f64),
        Text(String),
    }
    Ok(match Option::<Seconds>::deserialize(d)? {
        None => None,
        Some(Seconds::Int(n)) => Some(n),
        Some(Seconds::Float(f)) if f.is_finite() && f >= 0.0 => Some(f as u64),
        Some(Seconds::Float(_)) => None,
        Some(Seconds::Text(t)) => t.trim().parse().ok(),
    }
    .filter(|n| *n > 0))
}

use serde::Deserialize as _;

/// A success answer made into a token, or why it cannot be used.
fn granted(endpoint: &str, body: &[u8]) -> Result<Granted, GrantError> {
    let bad = |reason: String| GrantError::Answer {
        endpoint: endpoint.to_owned(),
        reason,
    };
    // serde_json's messages may quote a value: only the position is said.
    let answer: TokenAnswer = serde_json::from_slice(body).map_err(|e| {
        bad(format!(
            "the answer is not an OAuth 2.0 token answer (JSON line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    if let Some(t) = answer
        .token_type
        .as_deref()
        .filter(|t| !t.eq_ignore_ascii_case("bearer"))
    {
        return Err(bad(format!("token_type {:?} is not Bearer", quote(t, &[]))));
    }
    let access = answer
        .access_token
        .map(SecretString::from)
        .ok_or_else(|| bad("the answer has no access_token".into()))?;
    let access = BearerToken::new(access.expose_secret())
        .ok_or_else(|| bad("the access_token is empty".into()))?;
    if access.header_value().is_none() {
        return Err(bad(
            "the access_token holds characters an HTTP header may not".into(),
        ));
    }
    Ok(Granted {
        access,
        lifetime: answer.expires_in.map(Duration::from_secs),
        refresh: answer
            .refresh_token
            .filter(|t| !t.is_empty())
            .map(SecretString::from),
        refresh_lifetime: answer.refresh_expires_in.map(Duration::from_secs),
    })
}

enum Capped {
    TooLarge,
    Transport(reqwest::Error),
}

async fn read_capped(mut response: reqwest::Response) -> Result<BytesMut, Capped> {
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(Capped::Transport)? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(Capped::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn transport(endpoint: &str, e: &reqwest::Error) -> GrantError {
    if e.is_timeout() {
        return GrantError::Timeout {
            endpoint: endpoint.to_owned(),
            timeout: REQUEST_TIMEOUT,
        };
    }
    GrantError::Transport {
        endpoint: endpoint.to_owned(),
        reason: chain(e),
    }
}

/// reqwest's message is terse ("error sending request"); its sources say why.
fn chain(e: &reqwest::Error) -> String {
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        source = s.source();
    }
    reason
}

/// A server's text made fit for a log line: no secret of the request, no control
/// characters, at most `MAX_QUOTED_CHARS`.
pub(super) fn quote(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret, "[REDACTED]");
    }
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_QUOTED_CHARS)
        .collect();
    if text.chars().count() > MAX_QUOTED_CHARS {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keycloak_answer_becomes_a_token() {
        // Keycloak's answer to the password grant (fields as Keycloak 26 writes them).
        let body = br#"{"access_token":"eyJhbGciOi.eyJleHAiOjE3.c2ln","expires_in":300,
            "refresh_expires_in":1800,"refresh_token":"eyJyZWZyZXNo.x.y","token_type":"Bearer",
            "not-before-policy":0,"session_state":"9f1c","scope":"email profile"}"#;
        let g = granted("http://kc/token", body).unwrap();
        assert_eq!(g.access.expose(), "eyJhbGciOi.eyJleHAiOjE3.c2ln");
        assert_eq!(g.lifetime, Some(Duration::from_secs(300)));
        assert_eq!(
            g.refresh.as_ref().map(|r| r.expose_secret()),
            Some("eyJyZWZyZXNo.x.y")
        );
        assert_eq!(g.refresh_lifetime, Some(Duration::from_secs(1800)));
        // Client credentials (Keycloak 12 and later): no refresh token, refresh_expires_in 0.
        let g = granted(
            "http://kc/token",
            br#"{"access_token":"a","expires_in":"60","refresh_expires_in":0,"token_type":"bearer"}"#,
        )
        .unwrap();
        assert!(g.refresh.is_none() && g.refresh_lifetime.is_none());
        assert_eq!(g.lifetime, Some(Duration::from_secs(60)));
    }

    #[test]
    fn unusable_answers_are_named_without_their_content() {
        for (body, needle) in [
            (&br#"{"token_type":"Bearer"}"#[..], "no access_token"),
            (br#"{"access_token":"","token_type":"Bearer"}"#, "empty"),
            (
                br#"{"access_token":"s3cr3t","token_type":"mac"}"#,
                "\"mac\" is not Bearer",
            ),
            (
                br#"{"access_token":"s3cr3t\n","token_type":"Bearer"}"#,
                "header",
            ),
            (br#"{"access_token":"s3cr3t", "#, "column"),
            (br#"<html>s3cr3t</html>"#, "not an OAuth 2.0 token answer"),
        ] {
            let e = granted("http://kc/token", body).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
            assert!(!e.contains("s3cr3t"), "{e}");
        }
    }

    #[test]
    fn quoted_text_loses_secrets_control_characters_and_length() {
        assert_eq!(
            quote("bad password hunter2\nagain", &["hunter2", ""]),
            "bad password [REDACTED] again"
        );
        let long = "x".repeat(500);
        assert_eq!(quote(&long, &[]).len(), MAX_QUOTED_CHARS + 3);
    }

    #[test]
    fn a_refusal_names_the_oauth_error() {
        let e = GrantError::Refused {
            endpoint: "http://kc/auth/realms/master/protocol/openid-connect/token".into(),
            grant: "password",
            status: 401,
            error: "invalid_grant".into(),
            description: Some("Invalid user credentials".into()),
        };
        assert!(e.is_refusal());
        assert_eq!(
            e.to_string(),
            "http://kc/auth/realms/master/protocol/openid-connect/token refused the password grant (HTTP 401): invalid_grant: Invalid user credentials"
        );
    }
}
