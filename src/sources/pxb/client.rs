//! HTTP to PX-Backup's REST gateway: the bearer token from the source's `TokenSource` (a
//! file, or its own Keycloak session; a refused token is replaced once), a timeout on every
//! request, and a cap on the size of an answer.

use std::fmt;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::StatusCode;

use super::auth::{BearerToken, SetupError, TokenError, TokenSource};
use crate::config::PxbSettings;

/// The most one answer may weigh: a page of 1,000 backups with their resource details is
/// tens of megabytes; more means the page size is too large for this fleet.
pub const MAX_ANSWER_BYTES: usize = 512 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Auth(#[from] SetupError),
    #[error("--pxb-ca-file: {0}")]
    Ca(String),
    #[error("cannot build the HTTP client for PX-Backup: {0}")]
    Build(String),
}

/// Why one call to PX-Backup failed. Never carries the token.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{url}: PX-Backup refused the bearer token (HTTP {status}) {hint}")]
    Refused {
        url: String,
        status: u16,
        /// What was done before the second refusal, and what to check.
        hint: String,
    },
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(
        "{url}: PX-Backup asks for a bearer token (HTTP {status}); give OIDC credentials (--pxb-oidc-*) or --pxb-token-file"
    )]
    NoToken { url: String, status: u16 },
    #[error("{url}: HTTP {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url}: no complete answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("{url}: the answer is larger than {MAX_ANSWER_BYTES} bytes; lower --pxb-page-size")]
    TooLarge { url: String },
}

/// PX-Backup's REST gateway.
pub struct PxbClient {
    http: reqwest::Client,
    base: reqwest::Url,
    token: TokenSource,
    timeout: Duration,
}

impl fmt::Debug for PxbClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PxbClient")
            .field("base", &self.base.as_str())
            .field("token", &self.token)
            .finish()
    }
}

impl PxbClient {
    /// A client whose token source is counted nowhere (tests, tools).
    pub fn new(settings: &PxbSettings) -> Result<PxbClient, ClientError> {
        let token = TokenSource::new(settings, Default::default())?;
        PxbClient::with_token(settings, token)
    }

    pub fn with_token(
        settings: &PxbSettings,
        token: TokenSource,
    ) -> Result<PxbClient, ClientError> {
        crate::tls::install_crypto_provider();
        let base =
            reqwest::Url::parse(&settings.url).map_err(|e| ClientError::Build(e.to_string()))?;
        let mut b = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(settings.request_timeout))
            // PX-Backup is a neighbour (same pod or namespace): a cluster-wide HTTP(S)_PROXY
            // meant for the internet must not reroute these calls.
            .no_proxy()
            .user_agent(concat!("pxbackup-sidecar/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &settings.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ClientError::Ca(e.to_string()))?;
            b = b.tls_certs_merge(certs);
        }
        let http = b.build().map_err(|e| ClientError::Build(e.to_string()))?;
        if token.is_none() {
            tracing::warn!(url = %settings.url, "neither OIDC credentials nor --pxb-token-file: calls to PX-Backup carry no bearer token");
        }
        Ok(PxbClient {
            http,
            base,
            token,
            timeout: settings.request_timeout,
        })
    }

    /// The URL of `segments` (each escaped) under the base URL, with `query`.
    pub fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> reqwest::Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// GETs `url` and returns the body of a 2xx answer. On 401/403 the token is replaced
    /// once (`TokenSource::refused`) and the call made once more.
    pub async fn get(&mut self, url: reqwest::Url) -> Result<Bytes, CallError> {
        let token = self.token.current().await?;
        let first = self.send(&url, token.as_ref()).await?;
        let status = first.status();
        let response = if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            drop(first);
            let Some(used) = token else {
                return Err(CallError::NoToken {
                    url: url.to_string(),
                    status: status.as_u16(),
                });
            };
            let fresh = self.token.refused(&used).await?;
            let again = self.send(&url, Some(&fresh)).await?;
            let status = again.status();
            if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                return Err(CallError::Refused {
                    url: url.to_string(),
                    status: status.as_u16(),
                    hint: self.token.refusal_hint(),
                });
            }
            again
        } else {
            first
        };
        self.body(&url, response).await
    }

    async fn send(
        &self,
        url: &reqwest::Url,
        token: Option<&BearerToken>,
    ) -> Result<reqwest::Response, CallError> {
        let mut req = self
            .http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(v) = token.and_then(BearerToken::header_value) {
            req = req.header(reqwest::header::AUTHORIZATION, v);
        }
        req.send().await.map_err(|e| self.transport(url, &e))
    }

    fn transport(&self, url: &reqwest::Url, e: &reqwest::Error) -> CallError {
        if e.is_timeout() {
            return CallError::Timeout {
                url: url.to_string(),
                timeout: self.timeout,
            };
        }
        // reqwest's message is terse ("error sending request"); its sources say why.
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            reason.push_str(": ");
            reason.push_str(&s.to_string());
            source = s.source();
        }
        CallError::Transport {
            url: url.to_string(),
            reason,
        }
    }

    async fn body(
        &self,
        url: &reqwest::Url,
        mut response: reqwest::Response,
    ) -> Result<Bytes, CallError> {
        let status = response.status();
        if response
            .content_length()
            .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
        {
            return Err(CallError::TooLarge {
                url: url.to_string(),
            });
        }
        let mut body = BytesMut::with_capacity(
            response
                .content_length()
                .map_or(64 << 10, |n| n as usize)
                .min(MAX_ANSWER_BYTES),
        );
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport(url, &e))?
        {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(CallError::TooLarge {
                    url: url.to_string(),
                });
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(CallError::Status {
                url: url.to_string(),
                status: status.as_u16(),
                message: gateway_message(&body),
            });
        }
        Ok(body.freeze())
    }
}

/// The message of a grpc-gateway error body (`{"error": ..., "code": 16, "message": ...}`), or
/// the start of whatever else came.
fn gateway_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct GatewayError {
        #[serde(default)]
        message: String,
        #[serde(default)]
        error: String,
    }
    let text = match serde_json::from_slice::<GatewayError>(body) {
        Ok(e) if !e.message.is_empty() => e.message,
        Ok(e) if !e.error.is_empty() => e.error,
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    let mut text: String = text.chars().take(300).collect();
    if text.is_empty() {
        text.push_str("(no message)");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_escape_their_segments() {
        let settings = PxbSettings {
            url: "http://pxb:10001/prefix".into(),
            ..PxbSettings::default()
        };
        let c = PxbClient::new(&settings).unwrap();
        let url = c.url(
            &["v1", "backup", "org a/b"],
            &[("enumerate_options.max_objects", "10")],
        );
        assert_eq!(
            url.as_str(),
            "http://pxb:10001/prefix/v1/backup/org%20a%2Fb?enumerate_options.max_objects=10"
        );
    }

    #[test]
    fn gateway_errors_give_their_message() {
        assert_eq!(
            gateway_message(br#"{"error":"boom","code":13,"message":"boom","details":[]}"#),
            "boom"
        );
        assert_eq!(gateway_message(b"upstream down"), "upstream down");
        assert_eq!(gateway_message(b""), "(no message)");
    }
}
