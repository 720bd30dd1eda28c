//! The source's own Keycloak session: a task (`Driver::run`) that logs in, refreshes and
//! retries, publishing the current access token on a watch channel, and the handle the HTTP
//! client reads it through (`Session`).
//!
//! Timing, on the monotonic clock, from the moment each grant was sent (so a slow answer only
//! makes the token look shorter-lived than it is):
//!
//! - an access token is refreshed at three quarters of its lifetime (`expires_in`), with the
//!   refresh token while that is unexpired (`refresh_expires_in`, less a second) and accepted;
//!   otherwise, and when Keycloak refuses the refresh token, the source logs in again;
//! - a failed grant is retried after an exponential backoff with jitter (1 s doubling to
//!   5 min, each delay between half and all of its step); the token in hand stays in use
//!   while it lives;
//! - the credential files are looked at every few seconds; when they change (a rotated
//!   Secret) the source logs in again with what they now hold, at once, even mid-backoff;
//! - a token PX-Backup refuses is replaced once (a refresh), unless a newer one is already
//!   there or it was issued less than two seconds ago (then PX-Backup refuses the user, not
//!   the token, and asking Keycloak again would only load it).
//!
//! A failure is logged once as a warning naming the realm, the client, the user and
//! Keycloak's `error` / `error_description`; the same failure again is logged at debug, and the
//! first success after failures at info. Secrets are never logged: the messages are built
//! from `GrantError`, which holds none.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::file::FileStamp;
use super::keycloak::{GrantError, REQUEST_TIMEOUT};
use super::{AuthStats, BearerToken, GrantResult, TokenError};
use crate::config::OidcSettings;

/// The share of an access token's lifetime after which it is refreshed.
const REFRESH_AT: f64 = 0.75;
/// When Keycloak states no lifetime: refresh this often (PX-Backup's refusal is the backstop).
const UNSTATED_LIFETIME_REFRESH: Duration = Duration::from_secs(60);
/// Never ask Keycloak more often than this for a healthy session.
const MIN_REFRESH_DELAY: Duration = Duration::from_millis(500);
/// A refresh token this close to its expiry is not used: the login is surer.
const REFRESH_TOKEN_MARGIN: Duration = Duration::from_secs(1);
/// How often the credential files are looked at.
pub(super) const CREDENTIAL_CHECK: Duration = Duration::from_secs(5);
/// A token younger than this is not replaced when PX-Backup refuses it.
pub(super) const MIN_AGE_TO_REPLACE: Duration = Duration::from_secs(2);
/// How long a call waits for a token being obtained: one discovery and one grant.
const WAIT_FOR_TOKEN: Duration = Duration::from_secs(2 * REQUEST_TIMEOUT.as_secs() + 5);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// What one grant gave (its `Debug` shows no token).
#[derive(Debug)]
pub(super) struct Granted {
    pub access: BearerToken,
    /// `expires_in`; `None` when not stated.
    pub lifetime: Option<Duration>,
    pub refresh: Option<SecretString>,
    /// `refresh_expires_in`; `None` when not stated (or 0: no idle expiry).
    pub refresh_lifetime: Option<Duration>,
}

/// The grants the session asks of Keycloak (`keycloak::Keycloak`; a scripted one in tests).
pub(super) trait Grants: Send + Sync + 'static {
    /// The password grant with a user, the client-credentials grant without.
    fn login(
        &self,
        creds: &Credentials,
    ) -> impl std::future::Future<Output = Result<Granted, GrantError>> + Send;
    fn refresh(
        &self,
        creds: &Credentials,
        refresh_token: &SecretString,
    ) -> impl std::future::Future<Output = Result<Granted, GrantError>> + Send;
}

/// What the credential files hold.
#[derive(Debug)]
pub(super) struct Credentials {
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub user: Option<User>,
}

#[derive(Debug)]
pub(super) struct User {
    pub name: String,
    pub password: SecretString,
}

impl Credentials {
    fn grant(&self) -> &'static str {
        if self.user.is_some() {
            "password"
        } else {
            "client_credentials"
        }
    }
    fn user_name(&self) -> &str {
        self.user.as_ref().map_or("-", |u| u.name.as_str())
    }
    fn same_as(&self, other: &Credentials) -> bool {
        let secret = |s: &Option<SecretString>| s.as_ref().map(|s| s.expose_secret().to_owned());
        self.client_id == other.client_id
            && secret(&self.client_secret) == secret(&other.client_secret)
            && match (&self.user, &other.user) {
                (Some(a), Some(b)) => {
                    a.name == b.name && a.password.expose_secret() == b.password.expose_secret()
                }
                (None, None) => true,
                _ => false,
            }
    }
}

/// The credential files and the versions last read.
pub(super) struct CredentialFiles {
    client_id: String,
    /// (flag, path), in the order: username, password, client secret.
    files: Vec<(&'static str, PathBuf)>,
    has_user: bool,
    stamps: Vec<Option<FileStamp>>,
}

impl CredentialFiles {
    pub(super) fn new(settings: &OidcSettings) -> CredentialFiles {
        let mut files = Vec::new();
        if let Some((user, password)) = &settings.user_files {
            files.push(("--pxb-oidc-username-file", user.clone()));
            files.push(("--pxb-oidc-password-file", password.clone()));
        }
        if let Some(secret) = &settings.client_secret_file {
            files.push(("--pxb-oidc-client-secret-file", secret.clone()));
        }
        CredentialFiles {
            client_id: settings.client_id.clone(),
            stamps: vec![None; files.len()],
            has_user: settings.user_files.is_some(),
            files,
        }
    }

    /// Whether a file is not the version last read (or cannot be looked at).
    fn changed(&self) -> bool {
        self.files
            .iter()
            .zip(&self.stamps)
            .any(|((_, path), stamp)| FileStamp::of(path).ok() != *stamp)
    }

    /// Reads every file, remembering the versions read (an unreadable one too: it is read
    /// again when it changes). A username is trimmed; a password or secret loses only the
    /// line ending a file written by `echo` has.
    fn read(&mut self) -> Result<Credentials, String> {
        let mut texts = Vec::with_capacity(self.files.len());
        for (i, (flag, path)) in self.files.iter().enumerate() {
            let err = |reason: String| format!("{flag} {}: {reason}", path.display());
            self.stamps[i] = FileStamp::of(path).ok();
            let raw =
                SecretString::from(std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?);
            let text = raw.expose_secret().trim_end_matches(['\r', '\n']);
            if text.trim().is_empty() {
                return Err(err("the file is empty".into()));
            }
            texts.push(SecretString::from(text));
        }
        let mut texts = texts.into_iter();
        let user = if self.has_user {
            let (Some(name), Some(password)) = (texts.next(), texts.next()) else {
                return Err("the username and password files were not read".into());
            };
            Some(User {
                name: name.expose_secret().trim().to_owned(),
                password,
            })
        } else {
            None
        };
        Ok(Credentials {
            client_id: self.client_id.clone(),
            client_secret: texts.next(),
            user,
        })
    }
}

/// The token in use.
#[derive(Clone, Debug)]
struct Current {
    bearer: BearerToken,
    issued: Instant,
    /// `None`: no lifetime stated; used until PX-Backup refuses it.
    expires: Option<Instant>,
    generation: u64,
}

impl Current {
    fn usable(&self, now: Instant) -> bool {
        self.expires.is_none_or(|e| now < e)
    }
}

/// What the driver publishes.
#[derive(Clone, Debug, Default)]
struct Published {
    token: Option<Current>,
    /// Why the last attempt failed; `None` once one succeeds.
    failure: Option<Arc<str>>,
    /// Failed attempts so far.
    failures: u64,
}

/// The handle calls read the session through; dropping it stops the session.
pub(super) struct Session {
    rx: watch::Receiver<Published>,
    refusals: mpsc::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Session {
    pub(super) fn spawn_on<G: Grants>(
        runtime: &tokio::runtime::Handle,
        driver: Driver<G>,
    ) -> Session {
        let (tx, rx) = watch::channel(Published::default());
        // One refusal waits at most: more would ask for the same thing.
        let (refusals, requests) = mpsc::channel(1);
        let task = runtime.spawn(driver.run(tx, requests));
        Session { rx, refusals, task }
    }

    /// The token in use; waits for one being obtained, fails at once when the last attempt
    /// failed and no token is left.
    pub(super) async fn current(&mut self) -> Result<BearerToken, TokenError> {
        let deadline = Instant::now() + WAIT_FOR_TOKEN;
        loop {
            {
                let p = self.rx.borrow_and_update();
                if let Some(c) = p.token.as_ref().filter(|c| c.usable(Instant::now())) {
                    return Ok(c.bearer.clone());
                }
                if let Some(reason) = &p.failure {
                    return Err(TokenError::NoToken(reason.to_string()));
                }
            }
            self.changed(deadline).await?;
        }
    }

    /// PX-Backup refused `used`: the token that replaces it (see the module's notes).
    pub(super) async fn refused(&mut self, used: &BearerToken) -> Result<BearerToken, TokenError> {
        let now = Instant::now();
        let (generation, failures) = {
            let p = self.rx.borrow_and_update();
            match p.token.as_ref() {
                Some(c) if c.bearer != *used && c.usable(now) => return Ok(c.bearer.clone()),
                Some(c) if c.usable(now) && now.duration_since(c.issued) < MIN_AGE_TO_REPLACE => {
                    return Ok(c.bearer.clone())
                }
                Some(c) => (c.generation, p.failures),
                None => {
                    let reason = p.failure.as_deref().unwrap_or("no token was obtained yet");
                    return Err(TokenError::NoToken(reason.to_owned()));
                }
            }
        };
        // Full: a refusal is already waiting, which this one joins.
        let _ = self.refusals.try_send(generation);
        let deadline = Instant::now() + WAIT_FOR_TOKEN;
        loop {
            self.changed(deadline).await?;
            let p = self.rx.borrow_and_update();
            if let Some(c) = p
                .token
                .as_ref()
                .filter(|c| c.generation > generation && c.usable(Instant::now()))
            {
                return Ok(c.bearer.clone());
            }
            if p.failures > failures {
                let reason = p.failure.as_deref().unwrap_or("the refresh failed");
                return Err(TokenError::NoToken(reason.to_owned()));
            }
        }
    }

    async fn changed(&mut self, deadline: Instant) -> Result<(), TokenError> {
        match tokio::time::timeout_at(deadline, self.rx.changed()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(TokenError::Stopped),
            Err(_) => Err(TokenError::Timeout(WAIT_FOR_TOKEN)),
        }
    }
}

/// A refresh token and when it expires.
struct RefreshToken {
    token: SecretString,
    expires: Option<Instant>,
}

/// Why the driver wakes up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wake {
    /// Start, refresh time, or the end of a backoff.
    Due,
    /// PX-Backup refused the current token.
    Refused,
    /// A credential file changed.
    Credentials,
}

/// The session's task (see the module's notes).
pub(super) struct Driver<G> {
    grants: G,
    files: CredentialFiles,
    creds: Option<Credentials>,
    refresh: Option<RefreshToken>,
    stats: Arc<AuthStats>,
    /// The realm's URL, for log lines.
    realm: Arc<str>,
    current: Option<Current>,
    generation: u64,
    failures: u64,
    /// The failure last logged as a warning.
    said: Option<String>,
    logged_in: bool,
    backoff: backon::ExponentialBackoff,
}

fn backoff() -> backon::ExponentialBackoff {
    backon::ExponentialBuilder::default()
        .with_min_delay(BACKOFF_MIN / 2)
        .with_max_delay(BACKOFF_MAX / 2)
        .with_jitter()
        .without_max_times()
        .build()
}

impl<G: Grants> Driver<G> {
    pub(super) fn new(
        grants: G,
        files: CredentialFiles,
        stats: Arc<AuthStats>,
        realm: &str,
    ) -> Driver<G> {
        Driver {
            grants,
            files,
            creds: None,
            refresh: None,
            stats,
            realm: Arc::from(realm),
            current: None,
            generation: 0,
            failures: 0,
            said: None,
            logged_in: false,
            backoff: backoff(),
        }
    }

    async fn run(mut self, tx: watch::Sender<Published>, mut refusals: mpsc::Receiver<u64>) {
        let mut wake = Wake::Due;
        loop {
            let due = match self.obtain(wake).await {
                Ok(next) => {
                    self.backoff = backoff();
                    tx.send_replace(self.published(None));
                    next
                }
                Err(e) => {
                    let delay = self.backoff.next().unwrap_or(BACKOFF_MAX);
                    self.failed(&e, delay);
                    tx.send_replace(self.published(Some(Arc::from(e.to_string()))));
                    Instant::now() + delay
                }
            };
            wake = loop {
                let check = (Instant::now() + CREDENTIAL_CHECK).min(due);
                tokio::select! {
                    () = tokio::time::sleep_until(check) => {
                        if self.files.changed() {
                            match self.reread() {
                                Ok(true) => break Wake::Credentials,
                                Ok(false) => {}
                                Err(e) => {
                                    self.failed(&e, due.saturating_duration_since(Instant::now()));
                                    tx.send_replace(self.published(Some(Arc::from(e.to_string()))));
                                }
                            }
                        }
                        if Instant::now() >= due {
                            break Wake::Due;
                        }
                    }
                    refused = refusals.recv() => match refused {
                        None => return,
                        Some(g) if self.current.as_ref().is_some_and(|c| c.generation == g) => {
                            break Wake::Refused;
                        }
                        Some(_) => {}
                    },
                }
            };
        }
    }

    /// Reads the credential files again: whether they now hold other credentials (then the
    /// refresh token, issued for the old ones, is dropped). Unreadable files leave the last
    /// credentials read in use.
    fn reread(&mut self) -> Result<bool, GrantError> {
        let creds = match self.files.read() {
            Ok(c) => c,
            Err(reason) => {
                self.stats.count_login(GrantResult::Failed);
                return Err(GrantError::Credentials(reason));
            }
        };
        let differ = self.creds.as_ref().is_none_or(|old| !old.same_as(&creds));
        if differ && self.creds.is_some() {
            tracing::info!(keycloak = %self.realm, client = %creds.client_id, user = %creds.user_name(), "the Keycloak credential files changed; logging in again with what they hold");
            self.refresh = None;
        }
        self.creds = Some(creds);
        Ok(differ)
    }

    fn published(&self, failure: Option<Arc<str>>) -> Published {
        Published {
            token: self.current.clone(),
            failure,
            failures: self.failures,
        }
    }

    /// Gets a token: a refresh when the session has a usable refresh token and the
    /// credentials did not change, a login otherwise. Returns when to refresh it.
    async fn obtain(&mut self, wake: Wake) -> Result<Instant, GrantError> {
        if self.creds.is_none() {
            self.reread()?;
        }
        let Some(creds) = self.creds.as_ref() else {
            return Err(GrantError::Credentials("no credentials were read".into()));
        };
        let now = Instant::now();
        if let Some(refresh) = self
            .refresh
            .as_ref()
            .filter(|r| r.expires.is_none_or(|e| now + REFRESH_TOKEN_MARGIN < e))
        {
            let sent = Instant::now();
            match self.grants.refresh(creds, &refresh.token).await {
                Ok(granted) => {
                    self.stats.count_refresh(GrantResult::Success);
                    tracing::debug!(keycloak = %self.realm, client = %creds.client_id, why = ?wake, "PX-Backup token refreshed");
                    return Ok(self.adopt(granted, sent));
                }
                Err(e) if e.is_refusal() => {
                    self.stats.count_refresh(GrantResult::Refused);
                    tracing::info!(keycloak = %self.realm, client = %creds.client_id, user = %creds.user_name(), error = %e, "Keycloak no longer accepts the refresh token; logging in again");
                    self.refresh = None;
                }
                Err(e) => {
                    self.stats.count_refresh(GrantResult::Failed);
                    return Err(e);
                }
            }
        } else if self.refresh.take().is_some() {
            tracing::debug!(keycloak = %self.realm, "the refresh token has expired; logging in again");
        }
        let Some(creds) = self.creds.as_ref() else {
            return Err(GrantError::Credentials("no credentials were read".into()));
        };
        let sent = Instant::now();
        match self.grants.login(creds).await {
            Ok(granted) => {
                self.stats.count_login(GrantResult::Success);
                let (client, user, grant) = (
                    creds.client_id.clone(),
                    creds.user_name().to_owned(),
                    creds.grant(),
                );
                let lifetime = granted.lifetime;
                let next = self.adopt(granted, sent);
                if !self.logged_in {
                    tracing::info!(keycloak = %self.realm, %client, %user, grant, expires_in = ?lifetime, "logged in to PX-Backup's Keycloak; the token is refreshed before it expires");
                } else {
                    tracing::debug!(keycloak = %self.realm, %client, %user, why = ?wake, "logged in to PX-Backup's Keycloak");
                }
                self.logged_in = true;
                self.said = None;
                Ok(next)
            }
            Err(e) => {
                self.stats.count_login(if e.is_refusal() {
                    GrantResult::Refused
                } else {
                    GrantResult::Failed
                });
                Err(e)
            }
        }
    }

    /// Puts a granted token in use; returns when to refresh it.
    fn adopt(&mut self, granted: Granted, sent: Instant) -> Instant {
        self.generation += 1;
        let expires = granted.lifetime.map(|l| sent + l);
        self.current = Some(Current {
            bearer: granted.access,
            issued: sent,
            expires,
            generation: self.generation,
        });
        self.stats
            .set_expiry(expires.map(|e| e.saturating_duration_since(Instant::now())));
        if let Some(token) = granted.refresh {
            self.refresh = Some(RefreshToken {
                token,
                expires: granted.refresh_lifetime.map(|l| sent + l),
            });
        } else {
            // Client credentials: no refresh token; the next token is a login.
            self.refresh = None;
        }
        if self.said.is_some() && self.logged_in {
            tracing::info!(keycloak = %self.realm, "PX-Backup's Keycloak gives tokens again");
            self.said = None;
        }
        let wait = granted
            .lifetime
            .map_or(UNSTATED_LIFETIME_REFRESH, |l| l.mul_f64(REFRESH_AT))
            .max(MIN_REFRESH_DELAY);
        sent + wait
    }

    /// Logs a failed attempt: as a warning the first time it is seen, at debug when it
    /// repeats.
    fn failed(&mut self, e: &GrantError, retry_in: Duration) {
        self.failures += 1;
        let text = e.to_string();
        let (client, user) = self
            .creds
            .as_ref()
            .map_or(("-".to_owned(), "-".to_owned()), |c| {
                (c.client_id.clone(), c.user_name().to_owned())
            });
        let token_left = self
            .current
            .as_ref()
            .is_some_and(|c| c.usable(Instant::now()));
        if self.said.as_deref() == Some(text.as_str()) {
            tracing::debug!(keycloak = %self.realm, %client, %user, error = %text, ?retry_in, "PX-Backup's Keycloak still gives no token");
            return;
        }
        if token_left {
            tracing::warn!(keycloak = %self.realm, %client, %user, error = %text, ?retry_in, "cannot get a new PX-Backup token from Keycloak; the current one stays in use while it lives (retrying with backoff)");
        } else {
            tracing::warn!(keycloak = %self.realm, %client, %user, error = %text, ?retry_in, "cannot get a PX-Backup token from Keycloak; the pxb source is down until it can (retrying with backoff)");
        }
        self.said = Some(text);
    }
}

#[cfg(test)]
mod tests {
    //! The session's timing on tokio's paused clock, against a scripted Keycloak that judges
    //! tokens on the same clock: hours of lifetimes, expiries and backoffs in milliseconds.

    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    const PASSWORD: &str = "pa55-w0rd-canary";
    const CLIENT_SECRET: &str = "client-s3cret-canary";

    #[derive(Default)]
    struct Script {
        access: Duration,
        /// The session's whole life (Keycloak's SSO session max): refresh tokens say what is
        /// left of it, and are refused after it.
        session_max: Option<Duration>,
        /// Issue no refresh token (client credentials).
        no_refresh: bool,
        /// Keycloak refuses every refresh token from now on (sessions ended).
        sessions_ended: bool,
        down: bool,
        latency: Duration,
        users: HashMap<String, String>,
        issued: HashMap<String, Instant>,
        refresh: HashMap<String, Instant>,
        n: u64,
        logins: Vec<(Instant, String, bool)>,
        refreshes: Vec<(Instant, bool)>,
    }

    #[derive(Clone)]
    struct Scripted(Arc<Mutex<Script>>);

    impl Scripted {
        fn new(access: Duration) -> Scripted {
            let mut s = Script {
                access,
                latency: Duration::from_millis(20),
                ..Script::default()
            };
            s.users.insert("reader".into(), PASSWORD.into());
            s.users.insert("other".into(), "other-pw".into());
            Scripted(Arc::new(Mutex::new(s)))
        }
        fn with<R>(&self, f: impl FnOnce(&mut Script) -> R) -> R {
            f(&mut self.0.lock().unwrap())
        }
        fn valid(&self, t: &BearerToken) -> bool {
            self.with(|s| {
                s.issued
                    .get(t.expose())
                    .is_some_and(|e| Instant::now() < *e)
            })
        }
        fn logins(&self) -> usize {
            self.with(|s| s.logins.len())
        }
        fn refreshes(&self) -> usize {
            self.with(|s| s.refreshes.len())
        }
        fn refused(error: &str, description: &str) -> GrantError {
            GrantError::Refused {
                endpoint: "http://kc/auth/realms/master/protocol/openid-connect/token".into(),
                grant: "password",
                status: 401,
                error: error.into(),
                description: Some(description.into()),
            }
        }
        fn issue(s: &mut Script, session_left: Option<Duration>) -> Granted {
            s.n += 1;
            let now = Instant::now();
            let access = format!("access-{}", s.n);
            s.issued.insert(access.clone(), now + s.access);
            let (refresh, refresh_lifetime) = if s.no_refresh {
                (None, None)
            } else {
                let r = format!("refresh-{}", s.n);
                let left = session_left
                    .or(s.session_max)
                    .unwrap_or(Duration::from_secs(3600));
                s.refresh.insert(r.clone(), now + left);
                (Some(SecretString::from(r)), Some(left))
            };
            Granted {
                access: BearerToken::new(&access).unwrap(),
                lifetime: Some(s.access),
                refresh,
                refresh_lifetime,
            }
        }
    }

    impl Grants for Scripted {
        async fn login(&self, creds: &Credentials) -> Result<Granted, GrantError> {
            let latency = self.with(|s| s.latency);
            tokio::time::sleep(latency).await;
            self.with(|s| {
                if s.down {
                    s.logins.push((Instant::now(), String::new(), false));
                    return Err(GrantError::Transport {
                        endpoint: "http://kc/token".into(),
                        reason: "connection refused".into(),
                    });
                }
                let ok = match &creds.user {
                    Some(u) => {
                        s.users.get(&u.name).map(String::as_str) == Some(u.password.expose_secret())
                    }
                    None => {
                        creds.client_secret.as_ref().map(|c| c.expose_secret())
                            == Some(CLIENT_SECRET)
                    }
                };
                let who = creds
                    .user
                    .as_ref()
                    .map_or("client".to_owned(), |u| u.name.clone());
                s.logins.push((Instant::now(), who, ok));
                if !ok {
                    return Err(Scripted::refused(
                        "invalid_grant",
                        "Invalid user credentials",
                    ));
                }
                Ok(Scripted::issue(s, None))
            })
        }

        async fn refresh(
            &self,
            _: &Credentials,
            token: &SecretString,
        ) -> Result<Granted, GrantError> {
            let latency = self.with(|s| s.latency);
            tokio::time::sleep(latency).await;
            self.with(|s| {
                let now = Instant::now();
                if s.down {
                    s.refreshes.push((now, false));
                    return Err(GrantError::Transport {
                        endpoint: "http://kc/token".into(),
                        reason: "connection refused".into(),
                    });
                }
                let until = s.refresh.get(token.expose_secret()).copied();
                let ok = !s.sessions_ended && until.is_some_and(|u| now < u);
                s.refreshes.push((now, ok));
                match until {
                    Some(u) if ok => Ok(Scripted::issue(s, Some(u - now))),
                    _ => Err(Scripted::refused("invalid_grant", "Token is not active")),
                }
            })
        }
    }

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new(user: &str, password: &str) -> Files {
            let f = Files {
                dir: tempfile::tempdir().unwrap(),
            };
            f.put("username", user);
            f.put("password", &format!("{password}\n"));
            f.put("secret", &format!("{CLIENT_SECRET}\n"));
            f
        }
        /// As kubelet does: written beside, renamed over.
        fn put(&self, name: &str, text: &str) {
            let next = self.dir.path().join(format!(".{name}.new"));
            std::fs::write(&next, text).unwrap();
            std::fs::rename(&next, self.dir.path().join(name)).unwrap();
        }
        fn settings(&self, user: bool) -> OidcSettings {
            let p = |n: &str| self.dir.path().join(n);
            OidcSettings {
                url: "http://kc/auth/realms/master".into(),
                client_id: "pxcentral".into(),
                user_files: user.then(|| (p("username"), p("password"))),
                client_secret_file: (!user).then(|| p("secret")),
            }
        }
    }

    fn start(kc: &Scripted, files: &Files, user: bool) -> (Session, Arc<AuthStats>) {
        let stats = Arc::new(AuthStats::default());
        let driver = Driver::new(
            kc.clone(),
            CredentialFiles::new(&files.settings(user)),
            stats.clone(),
            "http://kc/auth/realms/master",
        );
        (
            Session::spawn_on(&tokio::runtime::Handle::current(), driver),
            stats,
        )
    }

    /// Asks for a token every `step` for `span`; every one must be live.
    async fn always_valid(session: &mut Session, kc: &Scripted, span: Duration, step: Duration) {
        let end = Instant::now() + span;
        while Instant::now() < end {
            let t = session.current().await.expect("a token");
            assert!(kc.valid(&t), "an expired token was handed out");
            tokio::time::sleep(step).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn eight_second_tokens_are_refreshed_at_six_for_ten_minutes() {
        let kc = Scripted::new(Duration::from_secs(8));
        let files = Files::new("reader", PASSWORD);
        let (mut session, stats) = start(&kc, &files, true);
        always_valid(
            &mut session,
            &kc,
            Duration::from_secs(600),
            Duration::from_millis(250),
        )
        .await;
        assert_eq!(kc.logins(), 1);
        // One refresh every 6 s (three quarters of 8 s).
        let refreshes = kc.refreshes();
        assert!((98..=101).contains(&refreshes), "{refreshes}");
        assert_eq!(stats.logins(GrantResult::Success), 1);
        assert_eq!(stats.refreshes(GrantResult::Success), refreshes as u64);
        assert!(stats.token_expiry_unix_seconds() > 0);
        let gaps: Vec<Duration> =
            kc.with(|s| s.refreshes.windows(2).map(|w| w[1].0 - w[0].0).collect());
        assert!(
            gaps.iter()
                .all(|g| *g >= Duration::from_millis(5_990) && *g <= Duration::from_millis(6_100)),
            "{gaps:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_refresh_token_at_its_end_or_refused_means_a_login() {
        let kc = Scripted::new(Duration::from_secs(8));
        kc.with(|s| s.session_max = Some(Duration::from_secs(20)));
        let files = Files::new("reader", PASSWORD);
        let (mut session, stats) = start(&kc, &files, true);
        always_valid(
            &mut session,
            &kc,
            Duration::from_secs(120),
            Duration::from_millis(250),
        )
        .await;
        // Each session lasts 20 s: logged in at 0, refreshed at 6, 12, 18; at 24 the refresh
        // token has expired (the session said so), so the source logs in without asking.
        let logins = kc.logins();
        assert!((5..=7).contains(&logins), "{logins}");
        assert!(
            kc.with(|s| s.refreshes.iter().all(|(_, ok)| *ok)),
            "an expired refresh token was sent"
        );
        // Keycloak ends the sessions: the refresh is refused, and a login follows at once.
        kc.with(|s| s.sessions_ended = true);
        let before = kc.logins();
        always_valid(
            &mut session,
            &kc,
            Duration::from_secs(30),
            Duration::from_millis(250),
        )
        .await;
        assert!(kc.logins() > before);
        assert!(stats.refreshes(GrantResult::Refused) >= 1);
    }

    #[tokio::test(start_paused = true)]
    async fn client_credentials_log_in_again_at_three_quarters() {
        let kc = Scripted::new(Duration::from_secs(8));
        kc.with(|s| s.no_refresh = true);
        let files = Files::new("-", "-");
        let (mut session, _) = start(&kc, &files, false);
        always_valid(
            &mut session,
            &kc,
            Duration::from_secs(60),
            Duration::from_millis(250),
        )
        .await;
        assert_eq!(kc.refreshes(), 0);
        let logins = kc.logins();
        assert!((10..=11).contains(&logins), "{logins}");
        assert!(kc.with(|s| s.logins.iter().all(|(_, who, ok)| who == "client" && *ok)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wrong_password_backs_off_and_a_fixed_secret_is_used_at_once() {
        let kc = Scripted::new(Duration::from_secs(8));
        let files = Files::new("reader", "wrong-password");
        let (mut session, stats) = start(&kc, &files, true);
        let e = session.current().await.unwrap_err().to_string();
        assert!(e.contains("invalid_grant: Invalid user credentials"), "{e}");
        assert!(!e.contains("wrong-password"), "{e}");
        tokio::time::sleep(Duration::from_secs(60)).await;
        // Backoff: 0.5-1 s, 1-2 s, 2-4 s, ... so within a minute at most 8 attempts.
        let attempts = kc.logins();
        assert!((5..=8).contains(&attempts), "{attempts}");
        let times: Vec<Instant> = kc.with(|s| s.logins.iter().map(|l| l.0).collect());
        let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            gaps.windows(2)
                .all(|g| g[1] + Duration::from_millis(100) >= g[0] / 2),
            "{gaps:?}"
        );
        assert!(gaps.last().unwrap() >= &Duration::from_secs(4), "{gaps:?}");
        assert_eq!(stats.logins(GrantResult::Refused), attempts as u64);
        assert!(session.current().await.is_err());
        // The Secret is fixed: the next look at the files (every 5 s) logs in, long before
        // the backoff's next attempt.
        files.put("password", PASSWORD);
        tokio::time::sleep(CREDENTIAL_CHECK + Duration::from_millis(100)).await;
        let t = session.current().await.expect("a token after the fix");
        assert!(kc.valid(&t));
        assert_eq!(stats.logins(GrantResult::Success), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn keycloak_down_keeps_the_token_while_it_lives() {
        let kc = Scripted::new(Duration::from_secs(8));
        let files = Files::new("reader", PASSWORD);
        let (mut session, stats) = start(&kc, &files, true);
        let first = session.current().await.unwrap();
        kc.with(|s| s.down = true);
        // At 6 s the refresh fails; the token lives until 8 s.
        tokio::time::sleep(Duration::from_millis(7_500)).await;
        assert_eq!(session.current().await.unwrap(), first);
        assert!(stats.refreshes(GrantResult::Failed) >= 1);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let e = session.current().await.unwrap_err().to_string();
        assert!(e.contains("connection refused"), "{e}");
        // Back: a retry (at most the backoff's step later) refreshes with the token in hand.
        kc.with(|s| s.down = false);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let t = session
            .current()
            .await
            .expect("a token once Keycloak is back");
        assert!(kc.valid(&t));
        assert_eq!(kc.logins(), 1, "the session's refresh token was still good");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_token_is_replaced_once() {
        let kc = Scripted::new(Duration::from_secs(300));
        let files = Files::new("reader", PASSWORD);
        let (mut session, _) = start(&kc, &files, true);
        let first = session.current().await.unwrap();
        // Just issued: PX-Backup refuses the user, not the token; Keycloak is not asked.
        assert_eq!(session.refused(&first).await.unwrap(), first);
        assert_eq!(kc.refreshes(), 0);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let second = session.refused(&first).await.unwrap();
        assert_ne!(second, first);
        assert_eq!(kc.refreshes(), 1);
        // A refusal of a token already replaced asks nothing more.
        assert_eq!(session.refused(&first).await.unwrap(), second);
        assert_eq!(kc.refreshes(), 1);
        assert_eq!(session.current().await.unwrap(), second);
    }

    #[tokio::test(start_paused = true)]
    async fn changed_credential_files_log_in_again_and_unreadable_ones_keep_the_last() {
        let kc = Scripted::new(Duration::from_secs(300));
        let files = Files::new("reader", PASSWORD);
        let (mut session, stats) = start(&kc, &files, true);
        session.current().await.unwrap();
        // Rewritten with the same content: nothing to do.
        files.put("username", "reader");
        tokio::time::sleep(CREDENTIAL_CHECK * 2).await;
        assert_eq!(kc.logins(), 1);
        files.put("username", "other\n");
        files.put("password", "other-pw");
        tokio::time::sleep(CREDENTIAL_CHECK + Duration::from_millis(100)).await;
        assert_eq!(kc.with(|s| s.logins.last().unwrap().1.clone()), "other");
        let t = session.current().await.unwrap();
        assert!(kc.valid(&t));
        // Emptied mid-rotation: the credentials last read stay, the token too.
        files.put("password", "");
        tokio::time::sleep(CREDENTIAL_CHECK + Duration::from_millis(100)).await;
        assert_eq!(session.current().await.unwrap(), t);
        assert_eq!(stats.logins(GrantResult::Failed), 1);
        assert_eq!(kc.logins(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_repeated_failure_is_one_warning_and_no_secret_is_logged() {
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let writer = {
            let out = out.clone();
            move || Capture(out.clone())
        };
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(writer)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let kc = Scripted::new(Duration::from_secs(8));
        let files = Files::new("reader", "wr0ng-canary");
        let (mut session, _) = start(&kc, &files, true);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(kc.logins() >= 4);
        files.put("password", PASSWORD);
        tokio::time::sleep(Duration::from_secs(20)).await;
        let t = session.current().await.unwrap();
        let log = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
        assert_eq!(warnings.len(), 1, "{log}");
        let w = warnings[0];
        for needle in [
            "keycloak=http://kc/auth/realms/master",
            "client=pxcentral",
            "user=reader",
            "invalid_grant: Invalid user credentials",
        ] {
            assert!(w.contains(needle), "{needle} missing: {w}");
        }
        assert!(
            log.contains("logged in to PX-Backup's Keycloak; the token is refreshed"),
            "{log}"
        );
        for secret in ["wr0ng-canary", PASSWORD, t.expose(), "refresh-"] {
            assert!(!log.contains(secret), "{secret} in the log:\n{log}");
        }
        assert!(!format!("{:?}", session.rx.borrow()).contains(t.expose()));
    }

    #[derive(Clone)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
