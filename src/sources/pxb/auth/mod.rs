//! How the pxb source authenticates to PX-Backup: every call carries `Authorization: Bearer`
//! with a token of PX-Backup's Keycloak (px-central's). The token comes from one of:
//!
//! - nothing: calls carry no token (a PX-Backup without auth, or a test);
//! - `--pxb-token-file`: a file the operator keeps up to date (a mounted Secret), re-read when
//!   it changes and when PX-Backup refuses the token;
//! - the source's own OIDC session (`--pxb-oidc-*`): it logs in to Keycloak at start (password
//!   or client-credentials grant), keeps the access token in memory only, refreshes it with the
//!   refresh token at three quarters of its lifetime, logs in again when the refresh token is
//!   refused or expired, and re-reads its credential files when they change. Failures are
//!   retried with backoff; the source is down meanwhile (`session`, `keycloak`).
//!
//! Whatever the way, a 401/403 from PX-Backup gets one fresh token (`TokenSource::refused`)
//! and the call is made once more, never more. Passwords, client secrets and tokens are
//! `secrecy` types: no `Debug`, log line or error shows them.

mod file;
mod keycloak;
mod session;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::config::PxbSettings;
use file::TokenFile;
use keycloak::Keycloak;
use session::{CredentialFiles, Driver, Session};

/// A bearer token. It is never printed: neither `Debug` nor any error shows it, and its
/// memory is wiped when the last copy is dropped.
#[derive(Clone)]
pub struct BearerToken(Arc<SecretString>);

impl BearerToken {
    /// `None` for an empty token.
    fn new(text: &str) -> Option<BearerToken> {
        (!text.is_empty()).then(|| BearerToken(Arc::new(SecretString::from(text))))
    }

    fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// `Bearer <token>`, marked sensitive (kept out of hyper's and reqwest's debug output);
    /// `None` when the token holds what a header may not.
    pub fn header_value(&self) -> Option<reqwest::header::HeaderValue> {
        let mut v =
            reqwest::header::HeaderValue::try_from(format!("Bearer {}", self.expose())).ok()?;
        v.set_sensitive(true);
        Some(v)
    }
}

impl PartialEq for BearerToken {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}
impl Eq for BearerToken {}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// The result of one grant asked of Keycloak, as counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantResult {
    Success,
    /// Keycloak answered with an OAuth 2.0 error (RFC 6749 section 5.2): wrong password,
    /// unknown client, refresh token no longer active.
    Refused,
    /// No usable answer: Keycloak unreachable, a timeout, an answer that is not OAuth 2.0, or
    /// a credential file that cannot be read.
    Failed,
}

impl GrantResult {
    pub const ALL: [GrantResult; 3] = [
        GrantResult::Success,
        GrantResult::Refused,
        GrantResult::Failed,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            GrantResult::Success => "success",
            GrantResult::Refused => "refused",
            GrantResult::Failed => "failed",
        }
    }
}

/// What the OIDC session did, for the sidecar's own metrics (read at scrape time).
#[derive(Debug, Default)]
pub struct AuthStats {
    logins: [AtomicU64; 3],
    refreshes: [AtomicU64; 3],
    /// Unix seconds; 0 = no token from Keycloak (yet), or one without a stated lifetime.
    expiry: AtomicU64,
}

impl AuthStats {
    /// Logins (password or client-credentials grant) with this result.
    pub fn logins(&self, result: GrantResult) -> u64 {
        self.logins[result as usize].load(Relaxed)
    }
    /// Refresh-token grants with this result.
    pub fn refreshes(&self, result: GrantResult) -> u64 {
        self.refreshes[result as usize].load(Relaxed)
    }
    /// When the access token in use expires (Unix seconds), 0 when there is none.
    pub fn token_expiry_unix_seconds(&self) -> u64 {
        self.expiry.load(Relaxed)
    }
    fn count_login(&self, result: GrantResult) {
        self.logins[result as usize].fetch_add(1, Relaxed);
    }
    fn count_refresh(&self, result: GrantResult) {
        self.refreshes[result as usize].fetch_add(1, Relaxed);
    }
    fn set_expiry(&self, lifetime: Option<Duration>) {
        let at = lifetime
            .and_then(|l| std::time::SystemTime::now().checked_add(l))
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        self.expiry.store(at, Relaxed);
    }
}

/// What keeps the source from starting.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("--pxb-token-file {path}: {reason}")]
    TokenFile { path: String, reason: String },
    #[error("cannot build the HTTP client for Keycloak: {0}")]
    Build(String),
    #[error("the Keycloak session needs a Tokio runtime to run in")]
    NoRuntime,
}

/// Why a call has no token to carry. Never holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no PX-Backup token: {0}")]
    NoToken(String),
    #[error("no PX-Backup token: Keycloak gave none within {0:?}")]
    Timeout(Duration),
    #[error("no PX-Backup token: the Keycloak session has stopped")]
    Stopped,
}

/// Where the source's bearer token comes from (see the module's notes).
pub struct TokenSource(Way);

enum Way {
    None,
    File(TokenFile),
    Oidc(OidcSource),
}

/// The OIDC session, logging in from the moment the source is built.
struct OidcSource {
    session: Session,
    /// "Keycloak <url> (client <id>)", for messages.
    described: String,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Way::None => f.write_str("TokenSource::None"),
            Way::File(t) => write!(f, "TokenSource::File({})", t.path.display()),
            Way::Oidc(o) => write!(f, "TokenSource::Oidc({})", o.described),
        }
    }
}

impl TokenSource {
    /// The way `settings` give, counted in `stats`. The OIDC session starts logging in at
    /// once (on the current Tokio runtime) and stops when the source is dropped.
    pub fn new(settings: &PxbSettings, stats: Arc<AuthStats>) -> Result<TokenSource, SetupError> {
        if let Some(oidc) = &settings.oidc {
            let runtime =
                tokio::runtime::Handle::try_current().map_err(|_| SetupError::NoRuntime)?;
            let keycloak = Keycloak::new(oidc, settings.ca_pem.as_deref())?;
            let described = format!("Keycloak {} (client {})", oidc.url, oidc.client_id);
            let driver = Driver::new(keycloak, CredentialFiles::new(oidc), stats, &oidc.url);
            return Ok(TokenSource(Way::Oidc(OidcSource {
                session: Session::spawn_on(&runtime, driver),
                described,
            })));
        }
        match settings.token_file.as_deref() {
            Some(path) => Ok(TokenSource(Way::File(TokenFile::open(path)?))),
            None => Ok(TokenSource(Way::None)),
        }
    }

    /// Calls carry no token.
    pub fn none() -> TokenSource {
        TokenSource(Way::None)
    }

    pub fn is_none(&self) -> bool {
        matches!(self.0, Way::None)
    }

    /// The token for the next call (`None`: calls carry none). A token file is re-read when it
    /// changed; the OIDC session's token is waited for when a login is under way.
    pub async fn current(&mut self) -> Result<Option<BearerToken>, TokenError> {
        match &mut self.0 {
            Way::None => Ok(None),
            Way::File(t) => {
                t.refresh(false);
                Ok(t.token.clone())
            }
            Way::Oidc(o) => o.session.current().await.map(Some),
        }
    }

    /// PX-Backup refused `used`: a fresh token, got once (the file re-read; the session's
    /// token refreshed unless it is already newer than `used`, or was just issued).
    pub async fn refused(&mut self, used: &BearerToken) -> Result<BearerToken, TokenError> {
        match &mut self.0 {
            Way::None => Err(TokenError::NoToken("no token is configured".into())),
            Way::File(t) => {
                t.refresh(true);
                t.token
                    .clone()
                    .ok_or_else(|| TokenError::NoToken("the token file is unreadable".into()))
            }
            Way::Oidc(o) => o.session.refused(used).await,
        }
    }

    /// What was done before PX-Backup refused a fresh token, and what to check.
    pub fn refusal_hint(&self) -> String {
        match &self.0 {
            Way::None => "without a token; give one (--pxb-oidc-* or --pxb-token-file)".into(),
            Way::File(t) => format!(
                "after the token file was re-read; put a valid token in {}",
                t.path.display()
            ),
            Way::Oidc(o) => format!(
                "with a fresh token from {}; check that the user may read the organizations polled",
                o.described
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_never_prints_and_compares_by_value() {
        let a = BearerToken::new("s3cr3t-token").unwrap();
        let b = BearerToken::new("s3cr3t-token").unwrap();
        assert_eq!(a, b);
        assert!(!format!("{a:?}").contains("s3cr3t"));
        let h = a.header_value().unwrap();
        assert!(h.is_sensitive());
        assert!(!format!("{h:?}").contains("s3cr3t"), "{h:?}");
        assert!(BearerToken::new("").is_none());
        assert!(BearerToken::new("bad\ntoken")
            .unwrap()
            .header_value()
            .is_none());
    }

    #[test]
    fn expiry_is_unix_time_or_zero() {
        let stats = AuthStats::default();
        assert_eq!(stats.token_expiry_unix_seconds(), 0);
        stats.set_expiry(Some(Duration::from_secs(300)));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let at = stats.token_expiry_unix_seconds();
        assert!((now + 299..=now + 301).contains(&at), "{at} vs {now}");
        stats.set_expiry(None);
        assert_eq!(stats.token_expiry_unix_seconds(), 0);
    }
}
