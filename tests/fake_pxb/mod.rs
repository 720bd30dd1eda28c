//! A stand-in for PX-Backup's REST gateway on 127.0.0.1 (axum), following the REST mapping of
//! `pkg/apis/v1/api.proto` (grpc-gateway v1): `GET /v1/organization`, and
//! `GET /v1/{backup,restore,backupschedule,cluster,backuplocation,schedulepolicy}/{org_id}`
//! with `enumerate_options.max_objects` / `enumerate_options.object_index` paging. Like
//! grpc-gateway's default marshaler it leaves out `complete: false` and `total_count: 0`, and
//! answers errors as `{"error", "code", "message", "details"}`.
//!
//! Objects are stored as the JSON the test wants sent (nested or flattened, enums as names or
//! numbers): the fake only pages them. Tests can require a bearer token (refused with 401 or
//! 403), fail a page, cut an enumeration short, answer an empty page that is not complete,
//! delete an object while paging, or hang; every request is recorded.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

/// The JSON key of each enumeration's list.
pub fn list_key(kind: &str) -> &'static str {
    match kind {
        "backup" => "backups",
        "restore" => "restores",
        "backupschedule" => "backup_schedules",
        "cluster" => "clusters",
        "backuplocation" => "backup_locations",
        "schedulepolicy" => "schedule_policies",
        other => panic!("no enumeration {other}"),
    }
}

#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub query: HashMap<String, String>,
    pub authorization: Option<String>,
    pub status: u16,
}

/// A page of `kind` at `object_index` (in `org`, or in every org) gets `status` instead of
/// its answer.
#[derive(Clone, Debug)]
pub struct Failure {
    pub kind: String,
    pub object_index: u64,
    pub status: u16,
    pub org: Option<String>,
}

impl Failure {
    pub fn at(kind: &str, object_index: u64, status: u16) -> Failure {
        Failure {
            kind: kind.into(),
            object_index,
            status,
            org: None,
        }
    }
    pub fn in_org(mut self, org: &str) -> Failure {
        self.org = Some(org.into());
        self
    }
}

/// Whether a bearer token is live (a fake Keycloak's answer).
pub type TokenCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;

#[derive(Default)]
struct Inner {
    /// org -> kind -> objects, in the order they are listed.
    orgs: BTreeMap<String, BTreeMap<String, Vec<Value>>>,
    token: Option<String>,
    /// Judges tokens instead of `token` (a fake Keycloak's: live tokens only).
    valid: Option<TokenCheck>,
    /// The status a missing or wrong token gets (PX-Backup answers 401 or 403).
    refusal: Option<StatusCode>,
    failure: Option<Failure>,
    /// Enumerations of this kind say `complete: false` and give an empty page after the first.
    cut_short: Option<String>,
    /// Every page of this kind is empty and not complete, without `total_count`, as a broken
    /// datastore would answer; with `true`, `"complete": false` is written out (a marshaler
    /// that emits zero values), otherwise left out as grpc-gateway's default does.
    empty_incomplete: Option<(String, bool)>,
    /// When a page of (kind, object_index) is asked for, the first object of that kind is
    /// deleted just before answering: a deletion while paging.
    delete_first_on: Option<(String, u64)>,
    /// Requests for this kind wait this long before answering.
    hang: Option<(String, Duration)>,
    /// PX-Backup before 3.0: clusters, locations and schedules come in one answer without
    /// `total_count` or `complete`, whatever paging was asked for.
    legacy: bool,
    /// Answers of this kind are this body (JSON that does not parse, say).
    raw: Option<(String, String)>,
    requests: Vec<Recorded>,
}

#[derive(Clone)]
pub struct FakePxb {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Drop for FakePxb {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

fn router(inner: Arc<Mutex<Inner>>) -> Router {
    Router::new()
        .route("/v1/organization", get(organizations))
        .route("/v1/{kind}/{org}", get(enumerate))
        .with_state(inner)
}

impl FakePxb {
    pub async fn start() -> FakePxb {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = router(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakePxb {
            url: format!("http://{addr}"),
            inner,
            task: Arc::new(task),
        }
    }

    /// The same fake over https, with a certificate for 127.0.0.1 signed by a private CA,
    /// whose PEM is returned.
    pub async fn start_tls() -> (FakePxb, String) {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};

        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.distinguished_name
            .push(DnType::CommonName, "px-backup test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer =
            CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("key")).expect("CA");
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .expect("params")
            .signed_by(&key, &issuer)
            .expect("server certificate");
        let tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).expect("key"),
            )
            .expect("TLS config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = router(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(
                            hyper_util::rt::TokioIo::new(tls),
                            hyper_util::service::TowerToHyperService::new(app),
                        )
                        .await;
                });
            }
        });
        let fake = FakePxb {
            url: format!("https://127.0.0.1:{}", addr.port()),
            inner,
            task: Arc::new(task),
        };
        (fake, issuer.pem())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds or replaces (same `metadata.uid`, or top-level `uid` when flattened) an object.
    pub fn put(&self, org: &str, kind: &str, object: Value) {
        let mut inner = self.lock();
        let list = inner
            .orgs
            .entry(org.to_owned())
            .or_default()
            .entry(kind.to_owned())
            .or_default();
        let uid = uid_of(&object);
        match list
            .iter_mut()
            .find(|o| !uid.is_empty() && uid_of(o) == uid)
        {
            Some(slot) => *slot = object,
            None => list.push(object),
        }
    }

    /// Creates an organization with nothing in it.
    pub fn add_org(&self, org: &str) {
        self.lock().orgs.entry(org.to_owned()).or_default();
    }

    pub fn remove_org(&self, org: &str) {
        self.lock().orgs.remove(org);
    }

    pub fn delete(&self, org: &str, kind: &str, uid: &str) {
        let mut inner = self.lock();
        if let Some(list) = inner.orgs.get_mut(org).and_then(|o| o.get_mut(kind)) {
            list.retain(|o| uid_of(o) != uid);
        }
    }

    pub fn require_token(&self, token: Option<&str>) {
        self.lock().token = token.map(str::to_owned);
    }

    /// Accepts the tokens `valid` says are live, and only those.
    pub fn accept_tokens(&self, valid: TokenCheck) {
        self.lock().valid = Some(valid);
    }

    /// A missing or wrong token gets `status` (401 when never set).
    pub fn refuse_with(&self, status: u16) {
        self.lock().refusal = StatusCode::from_u16(status).ok();
    }

    pub fn fail(&self, failure: Option<Failure>) {
        self.lock().failure = failure;
    }

    pub fn cut_short(&self, kind: Option<&str>) {
        self.lock().cut_short = kind.map(str::to_owned);
    }

    /// `kind`'s pages are empty, not complete and without a total; `said` writes
    /// `"complete": false` out.
    pub fn empty_incomplete(&self, kind: Option<(&str, bool)>) {
        self.lock().empty_incomplete = kind.map(|(k, said)| (k.to_owned(), said));
    }

    pub fn delete_first_while_paging(&self, kind: &str, object_index: u64) {
        self.lock().delete_first_on = Some((kind.to_owned(), object_index));
    }

    pub fn hang(&self, kind: Option<(&str, Duration)>) {
        self.lock().hang = kind.map(|(k, d)| (k.to_owned(), d));
    }

    pub fn legacy(&self, yes: bool) {
        self.lock().legacy = yes;
    }

    pub fn raw(&self, kind: Option<(&str, &str)>) {
        self.lock().raw = kind.map(|(k, b)| (k.to_owned(), b.to_owned()));
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// Requests of one enumeration path prefix, e.g. "/v1/backup/default".
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// How many polls started: the sidecar asks for the organizations first (or, with
    /// --pxb-orgs, for the clusters of the first org).
    pub fn count(&self, path: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.path == path)
            .count()
    }
}

pub fn uid_of(o: &Value) -> String {
    o.pointer("/metadata/uid")
        .or_else(|| o.get("uid"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn gateway_error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        Json(json!({"error": message, "code": code, "message": message, "details": []})),
    )
        .into_response()
}

/// Records the request; checks the token. `Err` is the answer to give instead.
#[allow(clippy::result_large_err)] // a test handler's early answer, built once per request
fn admit(
    inner: &mut Inner,
    path: String,
    query: HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<(), Response> {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let refusal = inner.refusal.unwrap_or(StatusCode::UNAUTHORIZED);
    let ok = match (&inner.valid, &inner.token) {
        (Some(valid), _) => authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer "))
            .is_some_and(|t| valid(t)),
        (None, None) => true,
        (None, Some(t)) => authorization.as_deref() == Some(&format!("Bearer {t}")),
    };
    inner.requests.push(Recorded {
        path,
        query,
        authorization,
        status: if ok { 200 } else { refusal.as_u16() },
    });
    if ok {
        Ok(())
    } else {
        Err(gateway_error(
            refusal,
            16,
            "access denied: invalid or expired token",
        ))
    }
}

async fn organizations(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap) -> Response {
    let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
    if let Err(r) = admit(&mut g, "/v1/organization".into(), HashMap::new(), &headers) {
        return r;
    }
    let orgs: Vec<Value> = g
        .orgs
        .keys()
        .map(|name| json!({"metadata": {"name": name, "uid": format!("uid-of-{name}")}}))
        .collect();
    Json(json!({ "organizations": orgs })).into_response()
}

async fn enumerate(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path((kind, org)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let hang = {
        let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
        let path = format!("/v1/{kind}/{org}");
        if let Err(r) = admit(&mut g, path, query.clone(), &headers) {
            return r;
        }
        g.hang.as_ref().filter(|(k, _)| *k == kind).map(|(_, d)| *d)
    };
    if let Some(d) = hang {
        tokio::time::sleep(d).await;
    }
    let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
    let number = |key: &str| {
        query
            .get(&format!("enumerate_options.{key}"))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let max = number("max_objects").filter(|m| *m > 0);
    let index = number("object_index").unwrap_or(0);
    if let Some((_, body)) = g.raw.as_ref().filter(|(k, _)| *k == kind) {
        return ([("content-type", "application/json")], body.clone()).into_response();
    }
    if let Some((_, said)) = g.empty_incomplete.as_ref().filter(|(k, _)| *k == kind) {
        let mut body = serde_json::Map::new();
        body.insert(list_key(&kind).into(), Value::Array(Vec::new()));
        if *said {
            body.insert("complete".into(), json!(false));
        }
        return Json(Value::Object(body)).into_response();
    }
    if let Some(f) = &g.failure {
        let org_matches = f.org.as_ref().is_none_or(|o| *o == org);
        if f.kind == kind && f.object_index == index && org_matches {
            let status =
                StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return gateway_error(status, 13, "datastore unavailable");
        }
    }
    if g.delete_first_on.as_ref() == Some(&(kind.clone(), index)) {
        g.delete_first_on = None;
        if let Some(list) = g.orgs.get_mut(&org).and_then(|o| o.get_mut(&kind)) {
            if !list.is_empty() {
                list.remove(0);
            }
        }
    }
    let Some(objects) = g.orgs.get(&org) else {
        return gateway_error(
            StatusCode::NOT_FOUND,
            5,
            &format!("organization {org} not found"),
        );
    };
    let all: &[Value] = objects.get(&kind).map_or(&[], Vec::as_slice);
    let total = all.len() as u64;
    let unpaged = kind == "schedulepolicy"
        || (g.legacy
            && matches!(
                kind.as_str(),
                "cluster" | "backuplocation" | "backupschedule"
            ));
    let (start, end) = match max {
        _ if unpaged => (0, all.len()),
        Some(m) => (index.min(total) as usize, (index + m).min(total) as usize),
        None => (index.min(total) as usize, all.len()),
    };
    let mut page: Vec<Value> = all[start..end].to_vec();
    let mut complete = end as u64 >= total;
    if g.cut_short.as_deref() == Some(kind.as_str()) && index > 0 {
        page.clear();
        complete = false;
    }
    let mut body = serde_json::Map::new();
    body.insert(list_key(&kind).into(), Value::Array(page));
    // grpc-gateway's default marshaler leaves out zero values; uint64 as a string.
    if total > 0 && !unpaged {
        body.insert("total_count".into(), json!(total.to_string()));
    }
    if complete && !unpaged {
        body.insert("complete".into(), json!(true));
    }
    Json(Value::Object(body)).into_response()
}
