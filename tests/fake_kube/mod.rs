//! A small in-process Kubernetes API server for the telemetry ConfigMap path: list and watch
//! of two ConfigMaps by name (the telemetry one and PX-Backup's `px-backup-config`), GET of
//! the kube-system namespace (can be told to fail), GET and server-side-apply PATCH of
//! Secrets, and empty lists and idle watches of Stork's CRs (so that the kube source can run
//! against it too). Enough for kube-runtime's watcher and kube's Api, over plain HTTP.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::broadcast;

pub const KUBE_SYSTEM_UID: &str = "0b7f6a52-kube-system-uid-4d1e";
pub const PAUSE_CM: &str = "px-backup-config";

pub struct FakeKube {
    pub url: String,
    pub state: Arc<KubeState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Data = BTreeMap<String, String>;

pub struct KubeState {
    pub namespace: String,
    pub cm_name: String,
    /// name -> data (None: does not exist) of every ConfigMap the sidecar may read.
    cms: Mutex<BTreeMap<String, Option<Data>>>,
    /// ConfigMaps answered 403, as without the RBAC for them.
    forbidden: Mutex<Vec<String>>,
    rv: AtomicU64,
    pub secrets: Mutex<BTreeMap<String, Value>>,
    /// (ConfigMap name, watch event line)
    events: broadcast::Sender<(String, String)>,
    pub watches: AtomicUsize,
    pub requests: Mutex<Vec<String>>,
    /// Namespace reads still to be answered 500.
    pub namespace_failures: AtomicUsize,
}

impl KubeState {
    fn configmap(&self, name: &str, data: &Data, rv: u64) -> Value {
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": self.namespace,
                         "uid": format!("cm-uid-{name}"), "resourceVersion": rv.to_string()},
            "data": data,
        })
    }
}

impl FakeKube {
    pub async fn start(
        namespace: &str,
        cm_name: &str,
        data: Option<BTreeMap<String, String>>,
    ) -> FakeKube {
        let cms = BTreeMap::from([(cm_name.to_owned(), data), (PAUSE_CM.to_owned(), None)]);
        let state = Arc::new(KubeState {
            namespace: namespace.to_owned(),
            cm_name: cm_name.to_owned(),
            cms: Mutex::new(cms),
            forbidden: Mutex::new(Vec::new()),
            rv: AtomicU64::new(100),
            secrets: Mutex::new(BTreeMap::new()),
            events: broadcast::channel(64).0,
            watches: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
            namespace_failures: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/api/v1/namespaces/{ns}", get(namespace_get))
            .route(
                "/apis/stork.libopenstorage.org/v1alpha1/{plural}",
                get(stork),
            )
            .route("/api/v1/namespaces/{ns}/configmaps", get(configmaps))
            .route(
                "/api/v1/namespaces/{ns}/secrets/{name}",
                get(secret_get).patch(secret_patch),
            )
            .fallback(|| async { (StatusCode::NOT_FOUND, "not served by the fake") })
            .layer(axum::middleware::from_fn_with_state(state.clone(), record))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeKube { url, state, task }
    }

    /// What `kubectl patch configmap ... --type merge -p '{"data":{...}}'` does to the
    /// telemetry ConfigMap.
    pub fn patch_configmap(&self, pairs: &[(&str, &str)]) {
        self.patch_named(&self.state.cm_name.clone(), pairs);
    }

    /// The same for any ConfigMap the fake serves (created when missing: ADDED).
    pub fn patch_named(&self, name: &str, pairs: &[(&str, &str)]) {
        let s = &self.state;
        let mut cms = s.cms.lock().unwrap();
        let slot = cms.entry(name.to_owned()).or_default();
        let kind = if slot.is_some() { "MODIFIED" } else { "ADDED" };
        let d = slot.get_or_insert_with(BTreeMap::new);
        for (k, v) in pairs {
            d.insert(k.to_string(), v.to_string());
        }
        let rv = s.rv.fetch_add(1, SeqCst) + 1;
        let ev = json!({"type": kind, "object": s.configmap(name, d, rv)});
        let _ = s.events.send((name.to_owned(), format!("{ev}\n")));
    }

    /// `kubectl delete configmap ...` of the telemetry ConfigMap.
    pub fn delete_configmap(&self) {
        self.delete_named(&self.state.cm_name.clone());
    }

    pub fn delete_named(&self, name: &str) {
        let s = &self.state;
        let Some(d) = s.cms.lock().unwrap().get_mut(name).and_then(Option::take) else {
            return;
        };
        let rv = s.rv.fetch_add(1, SeqCst) + 1;
        let ev = json!({"type": "DELETED", "object": s.configmap(name, &d, rv)});
        let _ = s.events.send((name.to_owned(), format!("{ev}\n")));
    }

    /// How many times the kube-system namespace was asked for.
    pub fn namespace_gets(&self) -> usize {
        self.state
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.starts_with("GET /api/v1/namespaces/kube-system"))
            .count()
    }

    /// A kubeconfig pointing at this server, without credentials.
    pub fn kubeconfig(&self, path: &std::path::Path) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: nobody\n\
             current-context: fake\nusers:\n- name: nobody\n  user: {{}}\n",
            self.url
        );
        std::fs::write(path, text).unwrap();
    }

    /// Answers 403 for this ConfigMap from now on (`false`: serves it again).
    pub fn forbid(&self, name: &str, forbidden: bool) {
        let mut f = self.state.forbidden.lock().unwrap();
        f.retain(|n| n != name);
        if forbidden {
            f.push(name.to_owned());
        }
    }

    pub fn secret(&self, name: &str) -> Option<Value> {
        self.state.secrets.lock().unwrap().get(name).cloned()
    }
}

async fn record(
    State(st): State<Arc<KubeState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    st.requests
        .lock()
        .unwrap()
        .push(format!("{} {}", req.method(), req.uri()));
    next.run(req).await
}

fn not_found(what: &str) -> Response {
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "message": format!("{what} not found"), "reason": "NotFound", "code": 404});
    (StatusCode::NOT_FOUND, axum::Json(status)).into_response()
}

async fn namespace_get(State(st): State<Arc<KubeState>>, Path(ns): Path<String>) -> Response {
    if ns != "kube-system" {
        return not_found("namespace");
    }
    let failing = st
        .namespace_failures
        .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": "etcd is down", "reason": "InternalError", "code": 500});
        return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(status)).into_response();
    }
    axum::Json(json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "kube-system", "uid": KUBE_SYSTEM_UID, "resourceVersion": "1"}}))
    .into_response()
}

/// An empty list, or a watch that never sends anything: the kube source finds no backups.
async fn stork(Path(plural): Path<String>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let stream = futures::stream::pending::<Result<Bytes, std::convert::Infallible>>();
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from_stream(stream))
            .unwrap();
    }
    let kind = match plural.as_str() {
        "applicationbackups" => "ApplicationBackupList",
        "applicationrestores" => "ApplicationRestoreList",
        "applicationbackupschedules" => "ApplicationBackupScheduleList",
        _ => return not_found("resource"),
    };
    axum::Json(
        json!({"apiVersion": "stork.libopenstorage.org/v1alpha1", "kind": kind,
        "metadata": {"resourceVersion": "1"}, "items": []}),
    )
    .into_response()
}

async fn configmaps(
    State(st): State<Arc<KubeState>>,
    Path(ns): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let name = q
        .get("fieldSelector")
        .and_then(|f| f.strip_prefix("metadata.name="))
        .map(str::to_owned);
    let known = name
        .as_ref()
        .is_some_and(|n| st.cms.lock().unwrap().contains_key(n));
    let Some(name) = name.filter(|_| ns == st.namespace && known) else {
        // The sidecar must only ever look at its ConfigMaps, by name.
        return (
            StatusCode::FORBIDDEN,
            "only the telemetry ConfigMaps by name",
        )
            .into_response();
    };
    if st.forbidden.lock().unwrap().contains(&name) {
        let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": format!("configmaps \"{name}\" is forbidden"), "reason": "Forbidden", "code": 403});
        return (StatusCode::FORBIDDEN, axum::Json(status)).into_response();
    }
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        st.watches.fetch_add(1, SeqCst);
        let rx = st.events.subscribe();
        let stream = futures::stream::unfold((rx, name), |(mut rx, name)| async move {
            loop {
                match rx.recv().await {
                    Ok((n, line)) if n == name => {
                        return Some((
                            Ok::<_, std::convert::Infallible>(Bytes::from(line)),
                            (rx, name),
                        ))
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from_stream(stream))
            .unwrap();
    }
    let rv = st.rv.load(SeqCst);
    let items: Vec<Value> = st
        .cms
        .lock()
        .unwrap()
        .get(&name)
        .cloned()
        .flatten()
        .map(|d| vec![st.configmap(&name, &d, rv)])
        .unwrap_or_default();
    axum::Json(json!({"apiVersion": "v1", "kind": "ConfigMapList",
        "metadata": {"resourceVersion": rv.to_string()}, "items": items}))
    .into_response()
}

async fn secret_get(
    State(st): State<Arc<KubeState>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    if ns != st.namespace {
        return not_found("secret");
    }
    match st.secrets.lock().unwrap().get(&name) {
        Some(s) => axum::Json(s.clone()).into_response(),
        None => not_found("secret"),
    }
}

async fn secret_patch(
    State(st): State<Arc<KubeState>>,
    Path((ns, name)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let ssa = headers
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/apply-patch"));
    if ns != st.namespace || !ssa {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "server-side apply only").into_response();
    }
    let Ok(mut obj) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    obj["metadata"]["namespace"] = json!(ns);
    obj["metadata"]["resourceVersion"] = json!(st.rv.fetch_add(1, SeqCst).to_string());
    st.secrets.lock().unwrap().insert(name, obj.clone());
    axum::Json(obj).into_response()
}
