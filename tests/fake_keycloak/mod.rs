//! A stand-in for px-central's Keycloak on 127.0.0.1 (axum): the realm `master` under `/auth`
//! (as px-central serves it: `KC_HTTP_RELATIVE_PATH=/auth`, Service `pxcentral-keycloak-http`),
//! its OpenID discovery document and its token endpoint with the `password`,
//! `refresh_token` and `client_credentials` grants.
//!
//! The answers follow Keycloak's (26.x) token endpoint: a success is `{access_token,
//! expires_in, refresh_expires_in, refresh_token, token_type: "Bearer", not-before-policy,
//! session_state, scope}` (client credentials: no refresh token, `refresh_expires_in: 0`);
//! errors are RFC 6749 5.2 bodies with Keycloak's statuses and descriptions: a wrong password
//! `401 invalid_grant "Invalid user credentials"`, an unknown client `401 invalid_client
//! "Invalid client or Invalid client credentials"`, an expired refresh token `400
//! invalid_grant "Token is not active"`, a session ended `400 invalid_grant "Session not
//! active"`, client credentials for a public client `401 unauthorized_client "Public client
//! not allowed to retrieve service account"`. Tokens are opaque random strings (Keycloak's are
//! JWTs; the sidecar never reads inside them).
//!
//! Lifetimes are short and set by the test: access tokens (`expires_in`), the session's idle
//! time (each refresh moves it on) and its maximum (Keycloak's "SSO Session Max"), which
//! `refresh_expires_in` counts down to as Keycloak's does. Validity is judged on the real
//! clock. The fake PX-Backup asks `valid` whether a token it is shown is live. Every grant is
//! recorded (its path, type, client and user, never a secret); every token issued is kept, for
//! the tests that look for them where they must not be.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

pub const REALM_PATH: &str = "/auth/realms/master";

/// A Keycloak client.
#[derive(Clone, Debug)]
pub struct Client {
    /// `None`: a public client (px-central's `pxcentral`).
    pub secret: Option<String>,
    /// "Direct access grants" (the password grant).
    pub direct_access: bool,
    /// "Service accounts roles" (the client-credentials grant).
    pub service_account: bool,
}

#[derive(Clone, Debug)]
pub struct Grant {
    pub path: String,
    pub grant_type: String,
    pub client_id: String,
    pub username: Option<String>,
    /// The answer's status.
    pub status: u16,
    pub at: Instant,
}

struct Session {
    client_id: String,
    /// When the session's refresh tokens stop being accepted (SSO session idle: each refresh
    /// moves it on, up to `ends`).
    idle_until: Instant,
    /// SSO session max.
    ends: Instant,
    ended: bool,
}

struct Inner {
    users: HashMap<String, String>,
    clients: HashMap<String, Client>,
    access_lifetime: Duration,
    refresh_lifetime: Duration,
    session_max: Duration,
    /// Besides Keycloak's own path, the token endpoint the discovery document advertises.
    advertised: Option<String>,
    issued: Vec<String>,
    /// access token -> when it expires
    access: HashMap<String, Instant>,
    /// refresh token -> session id
    refresh: HashMap<String, u64>,
    sessions: HashMap<u64, Session>,
    next_session: u64,
    discovery: bool,
    grants: Vec<Grant>,
    /// Answer every grant with this status and a non-OAuth body (a proxy's error page).
    broken: Option<u16>,
}

#[derive(Clone)]
pub struct FakeKeycloak {
    /// The realm's URL, what `--pxb-oidc-url` is given.
    pub realm_url: String,
    pub base: String,
    inner: Arc<Mutex<Inner>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeKeycloak {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

fn random_token(prefix: &str) -> String {
    let mut t = String::from(prefix);
    for _ in 0..40 {
        t.push(fastrand::alphanumeric());
    }
    t
}

impl FakeKeycloak {
    /// A realm with px-central's public client `pxcentral` (password grant allowed) and no
    /// user; tokens live `access`, sessions `refresh` without a refresh (10 h at most).
    pub async fn start(access: Duration, refresh: Duration) -> FakeKeycloak {
        let mut clients = HashMap::new();
        clients.insert(
            "pxcentral".to_owned(),
            Client {
                secret: None,
                direct_access: true,
                service_account: false,
            },
        );
        let inner = Arc::new(Mutex::new(Inner {
            users: HashMap::new(),
            clients,
            access_lifetime: access,
            refresh_lifetime: refresh,
            session_max: Duration::from_secs(10 * 3600),
            advertised: None,
            issued: Vec::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            sessions: HashMap::new(),
            next_session: 1,
            discovery: true,
            grants: Vec::new(),
            broken: None,
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let base = format!("http://{addr}");
        let app = Router::new()
            .route(
                &format!("{REALM_PATH}/.well-known/openid-configuration"),
                get(discovery),
            )
            .route(
                &format!("{REALM_PATH}/protocol/openid-connect/token"),
                post(token),
            )
            .route("/advertised/token", post(token))
            .with_state((inner.clone(), base.clone()));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeKeycloak {
            realm_url: format!("{base}{REALM_PATH}"),
            base,
            inner,
            task: Arc::new(task),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add_user(&self, name: &str, password: &str) {
        self.lock()
            .users
            .insert(name.to_owned(), password.to_owned());
    }

    pub fn add_client(&self, id: &str, client: Client) {
        self.lock().clients.insert(id.to_owned(), client);
    }

    /// Whether `token` is an access token this realm issued and that has not expired.
    pub fn valid(&self, token: &str) -> bool {
        self.lock()
            .access
            .get(token)
            .is_some_and(|expires| Instant::now() < *expires)
    }

    /// A closure for the fake PX-Backup's token check.
    pub fn validator(&self) -> Arc<dyn Fn(&str) -> bool + Send + Sync> {
        let me = self.clone();
        Arc::new(move |t| me.valid(t))
    }

    /// Ends every session (as an administrator's "sign out all sessions"): their refresh
    /// tokens are refused; access tokens stay valid until they expire.
    pub fn end_sessions(&self) {
        for s in self.lock().sessions.values_mut() {
            s.ended = true;
        }
    }

    /// Revokes every access token issued so far (PX-Backup will refuse them).
    pub fn revoke_access_tokens(&self) {
        self.lock().access.clear();
    }

    /// Sessions end this long after their login, refreshed or not.
    pub fn session_max(&self, max: Duration) {
        self.lock().session_max = max;
    }

    /// The discovery document advertises `/advertised/token` (served too) instead of
    /// Keycloak's own path, so that a test sees which one a client found.
    pub fn advertise_other_endpoint(&self) {
        self.lock().advertised = Some("/advertised/token".into());
    }

    /// Every access and refresh token issued so far.
    pub fn issued(&self) -> Vec<String> {
        self.lock().issued.clone()
    }

    pub fn discovery(&self, on: bool) {
        self.lock().discovery = on;
    }

    pub fn broken(&self, status: Option<u16>) {
        self.lock().broken = status;
    }

    pub fn grants(&self) -> Vec<Grant> {
        self.lock().grants.clone()
    }

    pub fn count(&self, grant_type: &str, status: u16) -> usize {
        self.grants()
            .iter()
            .filter(|g| g.grant_type == grant_type && g.status == status)
            .count()
    }
}

type Shared = (Arc<Mutex<Inner>>, String);

async fn discovery(State((inner, base)): State<Shared>) -> Response {
    let (on, advertised) = {
        let g = inner.lock().unwrap_or_else(|p| p.into_inner());
        (g.discovery, g.advertised.clone())
    };
    if !on {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    }
    let realm = format!("{base}{REALM_PATH}");
    let oidc = format!("{realm}/protocol/openid-connect");
    let token_endpoint =
        advertised.map_or_else(|| format!("{oidc}/token"), |p| format!("{base}{p}"));
    // The fields of Keycloak's document that matter here, with its values.
    Json(json!({
        "issuer": realm,
        "authorization_endpoint": format!("{oidc}/auth"),
        "token_endpoint": token_endpoint,
        "introspection_endpoint": format!("{oidc}/token/introspect"),
        "userinfo_endpoint": format!("{oidc}/userinfo"),
        "end_session_endpoint": format!("{oidc}/logout"),
        "jwks_uri": format!("{oidc}/certs"),
        "grant_types_supported": ["authorization_code", "implicit", "refresh_token", "password",
            "client_credentials", "urn:openid:params:grant-type:ciba",
            "urn:ietf:params:oauth:grant-type:device_code"],
        "response_types_supported": ["code", "none", "id_token", "token", "id_token token",
            "code id_token", "code token", "code id_token token"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic",
            "client_secret_post", "tls_client_auth", "client_secret_jwt"],
        "subject_types_supported": ["public", "pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
    .into_response()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [("cache-control", "no-store"), ("pragma", "no-cache")],
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

async fn token(State((inner, _)): State<Shared>, uri: axum::http::Uri, body: Bytes) -> Response {
    let form = parse_form(&body);
    let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
    let grant_type = form.get("grant_type").cloned().unwrap_or_default();
    let client_id = form.get("client_id").cloned().unwrap_or_default();
    let response = answer(&mut g, &grant_type, &client_id, &form);
    g.grants.push(Grant {
        path: uri.path().to_owned(),
        grant_type,
        client_id,
        username: form.get("username").cloned(),
        status: response.status().as_u16(),
        at: Instant::now(),
    });
    response
}

/// `application/x-www-form-urlencoded`, read by the URL parser's query decoder (the same
/// encoding).
fn parse_form(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    reqwest::Url::parse(&format!("http://form/?{text}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

fn answer(
    g: &mut Inner,
    grant_type: &str,
    client_id: &str,
    form: &HashMap<String, String>,
) -> Response {
    if let Some(status) = g.broken {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        return (
            status,
            [("content-type", "text/html")],
            "<html><body>upstream error</body></html>",
        )
            .into_response();
    }
    let Some(client) = g.clients.get(client_id).cloned() else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Invalid client or Invalid client credentials",
        );
    };
    if let Some(secret) = &client.secret {
        match form.get("client_secret") {
            None => {
                return oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized_client",
                    "Client secret not provided in request",
                )
            }
            Some(given) if given != secret => {
                return oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized_client",
                    "Invalid client or Invalid client credentials",
                )
            }
            Some(_) => {}
        }
    }
    let now = Instant::now();
    match grant_type {
        "password" => {
            if !client.direct_access {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "unauthorized_client",
                    "Client not allowed for direct access grants",
                );
            }
            let user = form.get("username").map(String::as_str).unwrap_or_default();
            let password = form.get("password").map(String::as_str).unwrap_or_default();
            if g.users.get(user).map(String::as_str) != Some(password) || user.is_empty() {
                return oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_grant",
                    "Invalid user credentials",
                );
            }
            let id = g.next_session;
            g.next_session += 1;
            let ends = now + g.session_max;
            g.sessions.insert(
                id,
                Session {
                    client_id: client_id.to_owned(),
                    idle_until: (now + g.refresh_lifetime).min(ends),
                    ends,
                    ended: false,
                },
            );
            issue(g, Some(id), now)
        }
        "refresh_token" => {
            let given = form
                .get("refresh_token")
                .map(String::as_str)
                .unwrap_or_default();
            let Some(id) = g.refresh.get(given).copied() else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Invalid refresh token",
                );
            };
            let lifetime = g.refresh_lifetime;
            let Some(session) = g.sessions.get_mut(&id) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Session not active",
                );
            };
            if session.client_id != client_id {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Invalid refresh token. Token client and authorized client don't match",
                );
            }
            if session.ended {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Session not active",
                );
            }
            if now >= session.idle_until {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Token is not active",
                );
            }
            session.idle_until = (now + lifetime).min(session.ends);
            issue(g, Some(id), now)
        }
        "client_credentials" => {
            if client.secret.is_none() {
                return oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized_client",
                    "Public client not allowed to retrieve service account",
                );
            }
            if !client.service_account {
                return oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized_client",
                    "Client not enabled to retrieve service account",
                );
            }
            issue(g, None, now)
        }
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Unsupported grant_type",
        ),
    }
}

fn issue(g: &mut Inner, session: Option<u64>, now: Instant) -> Response {
    let access = random_token("at-");
    g.access.insert(access.clone(), now + g.access_lifetime);
    g.issued.push(access.clone());
    let mut body = json!({
        "access_token": access,
        "expires_in": g.access_lifetime.as_secs(),
        "refresh_expires_in": 0,
        "token_type": "Bearer",
        "not-before-policy": 0,
        "scope": "email profile",
    });
    if let Some(id) = session {
        let refresh = random_token("rt-");
        g.refresh.insert(refresh.clone(), id);
        g.issued.push(refresh.clone());
        let left = g.sessions.get(&id).map_or(Duration::ZERO, |s| {
            s.idle_until.saturating_duration_since(now)
        });
        body["refresh_token"] = json!(refresh);
        body["refresh_expires_in"] = json!(left.as_secs());
        body["session_state"] = json!(format!("session-{id}"));
    }
    (
        [("cache-control", "no-store"), ("pragma", "no-cache")],
        Json(body),
    )
        .into_response()
}
