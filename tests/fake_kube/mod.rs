//! A small in-process Kubernetes API server for the telemetry ConfigMap path: list and watch
//! of ConfigMaps (one object), GET of the kube-system namespace, GET and server-side-apply
//! PATCH of Secrets. Enough for kube-runtime's watcher and kube's Api, over plain HTTP.
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

pub struct KubeState {
    pub namespace: String,
    pub cm_name: String,
    cm_data: Mutex<Option<BTreeMap<String, String>>>,
    rv: AtomicU64,
    pub secrets: Mutex<BTreeMap<String, Value>>,
    events: broadcast::Sender<String>,
    pub watches: AtomicUsize,
    pub requests: Mutex<Vec<String>>,
}

impl KubeState {
    fn configmap(&self, data: &BTreeMap<String, String>, rv: u64) -> Value {
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": self.cm_name, "namespace": self.namespace,
                         "uid": "cm-uid-1", "resourceVersion": rv.to_string()},
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
        let state = Arc::new(KubeState {
            namespace: namespace.to_owned(),
            cm_name: cm_name.to_owned(),
            cm_data: Mutex::new(data),
            rv: AtomicU64::new(100),
            secrets: Mutex::new(BTreeMap::new()),
            events: broadcast::channel(64).0,
            watches: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/api/v1/namespaces/{ns}", get(namespace_get))
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

    /// What `kubectl patch configmap ... --type merge -p '{"data":{...}}'` does.
    pub fn patch_configmap(&self, pairs: &[(&str, &str)]) {
        let s = &self.state;
        let mut data = s.cm_data.lock().unwrap();
        let d = data.get_or_insert_with(BTreeMap::new);
        for (k, v) in pairs {
            d.insert(k.to_string(), v.to_string());
        }
        let rv = s.rv.fetch_add(1, SeqCst) + 1;
        let ev = json!({"type": "MODIFIED", "object": s.configmap(d, rv)});
        let _ = s.events.send(format!("{ev}\n"));
    }

    /// `kubectl delete configmap ...`
    pub fn delete_configmap(&self) {
        let s = &self.state;
        let Some(d) = s.cm_data.lock().unwrap().take() else {
            return;
        };
        let rv = s.rv.fetch_add(1, SeqCst) + 1;
        let ev = json!({"type": "DELETED", "object": s.configmap(&d, rv)});
        let _ = s.events.send(format!("{ev}\n"));
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

async fn namespace_get(Path(ns): Path<String>) -> Response {
    if ns != "kube-system" {
        return not_found("namespace");
    }
    axum::Json(json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "kube-system", "uid": KUBE_SYSTEM_UID, "resourceVersion": "1"}}))
    .into_response()
}

async fn configmaps(
    State(st): State<Arc<KubeState>>,
    Path(ns): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let selector_ok = q
        .get("fieldSelector")
        .is_some_and(|f| f == &format!("metadata.name={}", st.cm_name));
    if ns != st.namespace || !selector_ok {
        // The sidecar must only ever look at its one ConfigMap.
        return (
            StatusCode::FORBIDDEN,
            "only the telemetry ConfigMap by name",
        )
            .into_response();
    }
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        st.watches.fetch_add(1, SeqCst);
        let rx = st.events.subscribe();
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(line) => {
                        return Some((Ok::<_, std::convert::Infallible>(Bytes::from(line)), rx))
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
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
        .cm_data
        .lock()
        .unwrap()
        .as_ref()
        .map(|d| vec![st.configmap(d, rv)])
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
