//! An in-process fake Kubernetes API server for the kube source's tests (no real
//! kube-apiserver can be installed where these tests run).
//!
//! It follows the list/watch protocol that kube-runtime's watcher speaks: a LIST answers a
//! `...List` with `metadata.resourceVersion`; a WATCH (`?watch=true&resourceVersion=N`)
//! replays every change after N and then streams new ones as newline-delimited WatchEvents
//! (ADDED, MODIFIED, DELETED, BOOKMARK, ERROR) with increasing resourceVersions. A watch from a
//! resourceVersion older than the compaction point is answered 410 Gone, as an ERROR event in
//! a 200 stream (what kube-apiserver does) or, on request, as an HTTP 410. The test drives it
//! through the methods of `FakeApiServer`.
//!
//! Lists can be paginated (`limit` / `continue`, and a server-side page size), a continue
//! token can be made to expire (`410 Expired`, as kube-apiserver answers once the list's
//! snapshot is compacted), and the lists of a resource in a namespace can be held back, so
//! that a test decides in which order watchers finish their lists.
#![allow(dead_code)] // each test uses a different part

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

pub const STORK: &str = "stork.libopenstorage.org/v1alpha1";

/// (plural, namespace, name)
type Key = (String, String, String);

struct Change {
    rv: u64,
    plural: String,
    namespace: String,
    kind: &'static str,
    object: Value,
}

struct Watch {
    plural: String,
    /// `None`: all namespaces.
    namespace: Option<String>,
    tx: mpsc::UnboundedSender<Bytes>,
}

struct World {
    rv: u64,
    kube_system_uid: String,
    objects: BTreeMap<Key, Value>,
    history: Vec<Change>,
    /// A watch from an older resourceVersion gets 410 Gone.
    compacted_before: u64,
    gone_as_http: bool,
    failing: bool,
    watches: Vec<Watch>,
    lists: u64,
    watch_requests: u64,
    failed_requests: u64,
    uid_serial: u64,
    /// Largest page the server answers, whatever `limit` the client asks for.
    page_size: Option<usize>,
    /// What is left of each paginated list, by continue token: the items and the list's
    /// resourceVersion.
    pages: HashMap<String, (Vec<Value>, u64)>,
    page_serial: u64,
    /// The next request with a continue token gets 410 Expired.
    expire_next_continue: bool,
    continues_expired: u64,
    /// (plural, namespace) whose LIST requests wait until released; `None`: all namespaces.
    held: HashSet<(String, Option<String>)>,
    /// Bumped on every release, to wake the held requests.
    gate: watch::Sender<u64>,
    waiting_lists: usize,
}

pub struct FakeApiServer {
    pub addr: SocketAddr,
    world: Arc<Mutex<World>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn kind_of(plural: &str) -> &'static str {
    match plural {
        "applicationbackups" => "ApplicationBackup",
        "applicationrestores" => "ApplicationRestore",
        "applicationbackupschedules" => "ApplicationBackupSchedule",
        "schedulepolicies" => "SchedulePolicy",
        "namespacedschedulepolicies" => "NamespacedSchedulePolicy",
        _ => "Unknown",
    }
}

/// Resources without a namespace (stored under namespace "").
fn cluster_scoped(plural: &str) -> bool {
    plural == "schedulepolicies"
}

/// `(namespace, plural)` of a Stork path: `/apis/<stork>/<plural>` or
/// `/apis/<stork>/namespaces/<ns>/<plural>`.
fn stork_route(path: &str) -> Option<(Option<String>, String)> {
    let rest = path.strip_prefix(&format!("/apis/{STORK}/"))?;
    match rest.split('/').collect::<Vec<_>>()[..] {
        [plural] => Some((None, plural.to_owned())),
        ["namespaces", ns, plural] => Some((Some(ns.to_owned()), plural.to_owned())),
        _ => None,
    }
}

fn line(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn status_response(code: u16, reason: &str, message: &str) -> Response {
    let code_ = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        code_,
        [("content-type", "application/json")],
        status(code, reason, message).to_string(),
    )
        .into_response()
}

impl World {
    fn send(&mut self, change: &Change) {
        let event = json!({"type": change.kind, "object": change.object});
        let bytes = line(&event);
        self.watches.retain(|w| {
            if w.plural != change.plural
                || w.namespace
                    .as_ref()
                    .is_some_and(|ns| *ns != change.namespace)
            {
                return true;
            }
            w.tx.send(bytes.clone()).is_ok()
        });
    }

    fn record(&mut self, plural: &str, namespace: &str, kind: &'static str, object: Value) {
        let change = Change {
            rv: self.rv,
            plural: plural.to_owned(),
            namespace: namespace.to_owned(),
            kind,
            object,
        };
        self.send(&change);
        self.history.push(change);
    }
}

impl FakeApiServer {
    pub async fn start(kube_system_uid: &str) -> FakeApiServer {
        let world = Arc::new(Mutex::new(World {
            rv: 100,
            kube_system_uid: kube_system_uid.to_owned(),
            objects: BTreeMap::new(),
            history: Vec::new(),
            compacted_before: 0,
            gone_as_http: false,
            failing: false,
            watches: Vec::new(),
            lists: 0,
            watch_requests: 0,
            failed_requests: 0,
            uid_serial: 0,
            page_size: None,
            pages: HashMap::new(),
            page_serial: 0,
            expire_next_continue: false,
            continues_expired: 0,
            held: HashSet::new(),
            gate: watch::channel(0).0,
            waiting_lists: 0,
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake API server");
        let addr = listener.local_addr().expect("local addr");
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(world.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeApiServer { addr, world, task }
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().expect("fake API server state")
    }

    /// A kubeconfig pointing at this server over plain http, without credentials.
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
             current-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            self.addr
        );
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    /// Creates or replaces an object (ADDED or MODIFIED), as the API server would: a new
    /// resourceVersion, and a uid and creationTimestamp on creation.
    pub fn put(&self, plural: &str, mut object: Value) -> u64 {
        let mut w = self.world();
        w.rv += 1;
        let rv = w.rv;
        let ns = if cluster_scoped(plural) {
            String::new()
        } else {
            object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_owned()
        };
        let name = object["metadata"]["name"]
            .as_str()
            .expect("metadata.name")
            .to_owned();
        let key = (plural.to_owned(), ns.clone(), name);
        let existing = w.objects.get(&key).cloned();
        let meta = object["metadata"].as_object_mut().expect("metadata object");
        if let Some(old) = &existing {
            // Set by the server on creation, immutable after.
            for field in ["uid", "creationTimestamp"] {
                meta.insert(field.into(), old["metadata"][field].clone());
            }
        } else {
            if !meta.contains_key("creationTimestamp") {
                let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
                meta.insert("creationTimestamp".into(), json!(now.to_string()));
            }
            if !meta.contains_key("uid") {
                w.uid_serial += 1;
                let serial = w.uid_serial;
                let meta = object["metadata"].as_object_mut().expect("metadata object");
                meta.insert(
                    "uid".into(),
                    json!(format!("00000000-0000-4000-8000-{serial:012}")),
                );
            }
        }
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        object["apiVersion"] = json!(STORK);
        object["kind"] = json!(kind_of(plural));
        w.objects.insert(key, object.clone());
        let kind = if existing.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        w.record(plural, &ns, kind, object);
        rv
    }

    pub fn get(&self, plural: &str, namespace: &str, name: &str) -> Value {
        self.world()
            .objects
            .get(&(plural.into(), namespace.into(), name.into()))
            .cloned()
            .expect("object exists")
    }

    /// Deletes an object and tells the watchers (DELETED, with the object's last state).
    pub fn delete(&self, plural: &str, namespace: &str, name: &str) {
        let mut w = self.world();
        let mut object = w
            .objects
            .remove(&(plural.into(), namespace.into(), name.into()))
            .expect("object to delete exists");
        w.rv += 1;
        object["metadata"]["resourceVersion"] = json!(w.rv.to_string());
        w.record(plural, namespace, "DELETED", object);
    }

    /// Sends a BOOKMARK with the current resourceVersion on every open watch.
    pub fn bookmark(&self) {
        let mut w = self.world();
        let rv = w.rv.to_string();
        w.watches.retain(|watch| {
            let event = json!({"type": "BOOKMARK", "object": {
                "apiVersion": STORK, "kind": kind_of(&watch.plural),
                "metadata": {"resourceVersion": rv}}});
            watch.tx.send(line(&event)).is_ok()
        });
    }

    /// Ends every open watch stream (a clean end: the client resumes from its last
    /// resourceVersion).
    pub fn drop_watches(&self) {
        self.world().watches.clear();
    }

    /// While disconnected, deletes an object and compacts the history: the client's resumed
    /// watch gets 410 Gone, so it must list again, and only the list can tell it about this
    /// deletion.
    pub fn delete_while_disconnected(&self, plural: &str, namespace: &str, name: &str) {
        let mut w = self.world();
        w.watches.clear();
        w.objects
            .remove(&(plural.into(), namespace.into(), name.into()))
            .expect("object to delete exists");
        w.rv += 1;
        w.compacted_before = w.rv;
        w.history.clear();
    }

    /// 410 Gone as an HTTP status on the watch request instead of an ERROR event.
    pub fn set_gone_as_http(&self, yes: bool) {
        self.world().gone_as_http = yes;
    }

    /// While failing, every request is answered 500 and open watches are ended.
    pub fn set_failing(&self, failing: bool) {
        let mut w = self.world();
        w.failing = failing;
        if failing {
            w.watches.clear();
        }
    }

    /// Lists are answered in pages of at most `size` items (`None`: as the client asks).
    pub fn set_page_size(&self, size: Option<usize>) {
        self.world().page_size = size;
    }

    /// The next request that carries a continue token is answered 410 Expired, as
    /// kube-apiserver does once the list's snapshot has been compacted away.
    pub fn expire_next_continue(&self) {
        self.world().expire_next_continue = true;
    }

    pub fn continues_expired(&self) -> u64 {
        self.world().continues_expired
    }

    /// LIST requests of `plural` in `namespace` (`None`: across all namespaces) wait until
    /// `release_lists`.
    pub fn hold_lists(&self, plural: &str, namespace: Option<&str>) {
        self.world()
            .held
            .insert((plural.to_owned(), namespace.map(str::to_owned)));
    }

    pub fn release_lists(&self, plural: &str, namespace: Option<&str>) {
        let mut w = self.world();
        w.held
            .remove(&(plural.to_owned(), namespace.map(str::to_owned)));
        w.gate.send_modify(|n| *n += 1);
    }

    /// LIST requests waiting in `hold_lists`.
    pub fn waiting_lists(&self) -> usize {
        self.world().waiting_lists
    }

    /// Open watches of `plural` in `namespace` (`None`: across all namespaces).
    pub fn open_watches_on(&self, plural: &str, namespace: Option<&str>) -> usize {
        let mut w = self.world();
        w.watches.retain(|watch| !watch.tx.is_closed());
        w.watches
            .iter()
            .filter(|watch| watch.plural == plural && watch.namespace.as_deref() == namespace)
            .count()
    }

    pub fn lists(&self) -> u64 {
        self.world().lists
    }
    pub fn watch_requests(&self) -> u64 {
        self.world().watch_requests
    }
    pub fn failed_requests(&self) -> u64 {
        self.world().failed_requests
    }
    pub fn open_watches(&self) -> usize {
        let mut w = self.world();
        w.watches.retain(|watch| !watch.tx.is_closed());
        w.watches.len()
    }
}

/// Routes `/api/v1/namespaces/kube-system`, `/apis/<stork>/<plural>` and
/// `/apis/<stork>/namespaces/<ns>/<plural>`.
async fn handle(
    State(world): State<Arc<Mutex<World>>>,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let is_watch = query.get("watch").map(String::as_str) == Some("true");
    if let (false, Some((namespace, plural))) = (is_watch, stork_route(uri.path())) {
        wait_while_held(&world, &plural, namespace).await;
    }
    let mut w = match world.lock() {
        Ok(w) => w,
        Err(_) => return status_response(500, "InternalError", "poisoned"),
    };
    if w.failing {
        w.failed_requests += 1;
        return status_response(
            500,
            "InternalError",
            "the fake API server is failing on purpose",
        );
    }
    let path = uri.path();
    if path == "/api/v1/namespaces/kube-system" {
        let body = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "kube-system", "uid": w.kube_system_uid,
                         "resourceVersion": "12", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        return ([("content-type", "application/json")], body.to_string()).into_response();
    }
    let Some((namespace, plural)) = stork_route(path) else {
        return status_response(404, "NotFound", &format!("no route for {path}"));
    };
    if kind_of(&plural) == "Unknown" {
        return status_response(404, "NotFound", &format!("no resource {plural}"));
    }
    let in_scope = |ns: &str| namespace.as_deref().is_none_or(|want| want == ns);

    if !is_watch {
        w.lists += 1;
        let token = query.get("continue").filter(|t| !t.is_empty());
        let (items, rv) = match token {
            Some(_) if std::mem::take(&mut w.expire_next_continue) => {
                w.continues_expired += 1;
                return status_response(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list \
                     result. You can start a new list without the continue parameter.",
                );
            }
            Some(token) => match w.pages.remove(token) {
                Some(rest) => rest,
                None => return status_response(410, "Expired", "unknown continue token"),
            },
            None => (
                w.objects
                    .iter()
                    .filter(|((p, ns, _), _)| *p == plural && in_scope(ns))
                    .map(|(_, v)| v.clone())
                    .collect::<Vec<Value>>(),
                w.rv,
            ),
        };
        let limit = query
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0);
        let page = [limit, w.page_size].into_iter().flatten().min();
        let (items, next) = match page {
            Some(n) if items.len() > n => {
                let mut items = items;
                let rest = items.split_off(n);
                w.page_serial += 1;
                let token = format!("page-{}", w.page_serial);
                w.pages.insert(token.clone(), (rest, rv));
                (items, Some(token))
            }
            _ => (items, None),
        };
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if let Some(next) = next {
            metadata["continue"] = json!(next);
        }
        let body = json!({"apiVersion": STORK, "kind": format!("{}List", kind_of(&plural)),
                          "metadata": metadata, "items": items});
        return ([("content-type", "application/json")], body.to_string()).into_response();
    }

    w.watch_requests += 1;
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0);
    if from < w.compacted_before {
        let message = format!("too old resource version: {from} ({})", w.compacted_before);
        if w.gone_as_http {
            return status_response(410, "Expired", &message);
        }
        let event = json!({"type": "ERROR", "object": status(410, "Expired", &message)});
        return (
            [("content-type", "application/json")],
            line(&event).to_vec(),
        )
            .into_response();
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    for change in w
        .history
        .iter()
        .filter(|c| c.rv > from && c.plural == plural && in_scope(&c.namespace))
    {
        let _ = tx.send(line(&json!({"type": change.kind, "object": change.object})));
    }
    w.watches.push(Watch {
        plural,
        namespace,
        tx,
    });
    let stream = futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|b| b.map(Ok::<_, std::io::Error>))
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| status_response(500, "InternalError", "response"))
}

/// Waits while LIST requests of `plural` in `namespace` are held (`hold_lists`).
async fn wait_while_held(world: &Mutex<World>, plural: &str, namespace: Option<String>) {
    let key = (plural.to_owned(), namespace);
    let mut counted = false;
    loop {
        let mut gate = {
            let Ok(mut w) = world.lock() else { return };
            if !w.held.contains(&key) {
                if counted {
                    w.waiting_lists -= 1;
                }
                return;
            }
            if !counted {
                w.waiting_lists += 1;
                counted = true;
            }
            // Subscribed under the lock: a release after this point wakes us.
            w.gate.subscribe()
        };
        if gate.changed().await.is_err() {
            return;
        }
    }
}
