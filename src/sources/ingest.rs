//! Push ingest: `POST /v1/events`, a batch of NDJSON events applied whole or not at all.
//!
//! For producers that are not Kubernetes objects (the PXB server, scripts). Unknown fields and
//! fields that do not belong to the event's type are errors, so that typos are caught; a bad
//! line gets 400 naming its line number and the reason, and nothing of the batch is applied.
//!
//! The endpoint defends itself before it spends anything on a request: the bearer token is
//! checked (in constant time, the scheme in any case, the file read again when it changes)
//! before anything else, and a request without it is answered 401 and its connection closed;
//! the body must arrive within a deadline and without long stalls; only so many authenticated
//! requests are served at once, the excess is answered 503 at once; only so many connections
//! that presented the token stay open, and only so many that did not yet (`ConnectionPlaces`):
//! clients without the token cannot keep a producer out. A batch that is applied but could
//! not be written to the journal is answered 503 too: the producer sends it again, and
//! applying it again is idempotent.

use std::error::Error as StdError;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONNECTION, CONTENT_LENGTH, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{BoxError, Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceBuilder;

use crate::inventory::ApplyError;
use crate::model::{
    Backup, BackupLocation, Cluster, Event, Kind, NamespaceResources, Object, Origin, Owner,
    ResourceType, Restore, Schedule, SourceId, Timestamp, VirtualMachine, VmResource, Volume,
};
use crate::priority::BackgroundThread;
use crate::sources::SourceContext;

/// Largest batch accepted; larger bodies get 413.
pub const MAX_BATCH_BYTES: usize = 16 << 20;

/// How a producer may use the endpoint: limits that keep a slow or flooding client from
/// tying up the sidecar.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The whole body must have arrived by then (a client trickling bytes is cut off).
    pub body_deadline: Duration,
    /// Longest silence between two chunks of a body (a stalled client is cut off early).
    pub body_idle: Duration,
    /// Authenticated requests served at once; more are answered 503 at once. HTTP/1 carries
    /// one request at a time per connection.
    pub in_flight: usize,
    /// Connections that presented the token, open at once, idle ones included: a producer
    /// keeps its connection alive between batches. Several times `in_flight`, so that such
    /// producers are not refused while requests have room. One more that presents the token
    /// is answered 503 and closed.
    pub connections: usize,
    /// Connections that have not presented the token yet (just accepted, sending their first
    /// request): each costs a task, a socket and hyper's buffers for at most the header read
    /// timeout, and one without the token is answered 401 and closed. More are closed as soon
    /// as they are accepted. Four times `connections`: clients without the token, however
    /// many connect again and again, take these places, never a producer's.
    pub unauthenticated_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body_deadline: Duration::from_secs(60),
            body_idle: Duration::from_secs(10),
            in_flight: 16,
            connections: 64,
            unauthenticated_connections: 256,
        }
    }
}

/// The places of the ingest listener's connections: one from the unauthenticated ones when a
/// connection is accepted (`admit`), traded for an authenticated one when its first request
/// presents the token. Held until the connection ends.
#[derive(Clone, Debug)]
pub struct ConnectionPlaces {
    unauthenticated: Arc<Semaphore>,
    authenticated: Arc<Semaphore>,
}

impl ConnectionPlaces {
    pub fn new(limits: &Limits) -> ConnectionPlaces {
        ConnectionPlaces {
            unauthenticated: Arc::new(Semaphore::new(limits.unauthenticated_connections)),
            authenticated: Arc::new(Semaphore::new(limits.connections)),
        }
    }

    /// A place for a connection just accepted; None when every unauthenticated place is
    /// taken (the listener then closes it at once).
    pub fn admit(&self) -> Option<ConnectionPlace> {
        let permit = self.unauthenticated.clone().try_acquire_owned().ok()?;
        Some(ConnectionPlace {
            state: Arc::new(Mutex::new(Place::Unauthenticated(permit))),
            authenticated: self.authenticated.clone(),
        })
    }
}

/// One connection's place; each of its requests carries it (a request extension).
#[derive(Clone, Debug)]
pub struct ConnectionPlace {
    state: Arc<Mutex<Place>>,
    authenticated: Arc<Semaphore>,
}

#[derive(Debug)]
enum Place {
    Unauthenticated(#[allow(dead_code)] OwnedSemaphorePermit),
    Authenticated(#[allow(dead_code)] OwnedSemaphorePermit),
}

impl ConnectionPlace {
    /// The connection presented the token: it takes an authenticated place (once), giving
    /// back its unauthenticated one. False when none is left.
    fn authenticate(&self) -> bool {
        let mut place = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(*place, Place::Authenticated(_)) {
            return true;
        }
        match self.authenticated.clone().try_acquire_owned() {
            Ok(permit) => {
                *place = Place::Authenticated(permit);
                true
            }
            Err(_) => false,
        }
    }
}

/// The bearer token ingest requests must present.
#[derive(Clone, Debug, Default)]
pub enum IngestToken {
    /// None is asked for (ingest listens on loopback by default).
    #[default]
    None,
    /// This one (tests, tools).
    Fixed(SecretString),
    /// The one in a file, read again when the file changes: a rotated Secret volume is taken
    /// up without a restart, the old token refused from then on.
    File(Arc<TokenFile>),
}

impl IngestToken {
    pub fn fixed(token: &str) -> IngestToken {
        IngestToken::Fixed(SecretString::from(token))
    }

    /// Whether `headers` carry the token (any request does when none is asked for).
    fn accepts(&self, headers: &HeaderMap) -> bool {
        match self {
            IngestToken::None => true,
            IngestToken::Fixed(token) => authorized(Some(token.expose_secret()), headers),
            IngestToken::File(file) => {
                let token = file.current();
                authorized(Some(token.expose_secret()), headers)
            }
        }
    }
}

/// What identifies a version of the token file: kubelet's update of a Secret volume swaps
/// the `..data` link, which changes the inode behind the path; an edit in place changes the
/// size or the modification time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    dev: u64,
    ino: u64,
}

impl FileStamp {
    fn of(path: &Path) -> std::io::Result<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(FileStamp {
            len: m.len(),
            modified: m.modified().ok(),
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

/// A token file's text, at most `MAX_TOKEN_FILE_BYTES` of it (a token is far shorter; a file
/// swapped for something huge is not read whole on every request's behalf). A regular file
/// only, opened without waiting: this runs on the request's worker, which a FIFO put in the
/// file's place must not hang.
fn read_token(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut text = String::new();
    file.take(MAX_TOKEN_FILE_BYTES).read_to_string(&mut text)?;
    Ok(text)
}

const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;

/// The token file (`--ingest-token-file`) and the last token read from it. Looked at (one
/// `stat`) on every request; read again when it changed. A file that cannot be read or is
/// empty (mid-rotation) leaves the last good token in use, and says so once.
#[derive(Debug)]
pub struct TokenFile {
    path: PathBuf,
    read: Mutex<(Option<FileStamp>, SecretString)>,
}

impl TokenFile {
    /// The file at `path`, whose token `token` was read at start (and checked there).
    pub fn new(path: &Path, token: SecretString) -> TokenFile {
        TokenFile {
            path: path.to_owned(),
            read: Mutex::new((FileStamp::of(path).ok(), token)),
        }
    }

    fn current(&self) -> SecretString {
        let mut read = self.read.lock().unwrap_or_else(PoisonError::into_inner);
        let stamp = FileStamp::of(&self.path).ok();
        if stamp.is_some() && stamp != read.0 {
            read.0 = stamp;
            match read_token(&self.path) {
                Ok(text) if !text.trim().is_empty() => {
                    read.1 = SecretString::from(text.trim());
                    tracing::info!(file = %self.path.display(), "ingest token file read again");
                }
                Ok(_) => tracing::warn!(
                    file = %self.path.display(),
                    "the ingest token file is empty; the last token read stays in use"
                ),
                Err(e) => tracing::warn!(
                    file = %self.path.display(), error = %e,
                    "cannot read the ingest token file again; the last token read stays in use"
                ),
            }
        }
        read.1.clone()
    }
}

/// What a producer is told to wait before sending a refused batch again.
const RETRY_AFTER_SECS: &str = "1";

#[derive(Debug, Default)]
pub struct IngestStats {
    pub applied: AtomicU64,
    pub rejected: AtomicU64,
    pub unauthorized: AtomicU64,
    /// Applied in memory, but the journal write failed: answered 503 so that it is sent again.
    pub not_durable: AtomicU64,
    /// Too many requests at once: answered 503 without being read.
    pub overloaded: AtomicU64,
    /// The body did not arrive in time (408).
    pub timed_out: AtomicU64,
}

/// A line of a batch that could not be taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {reason}")]
pub struct LineError {
    pub line: usize,
    pub reason: String,
}

#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum WireKind {
    Backup,
    Restore,
    Schedule,
    Cluster,
    BackupLocation,
}

#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Op {
    Upsert,
    Delete,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct WireVolume {
    #[serde(default)]
    volume: String,
    #[serde(default)]
    pvc: String,
    #[serde(default)]
    pvc_namespace: String,
    #[serde(default)]
    storage_class: String,
    #[serde(default)]
    driver: String,
    status: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct WireVirtualMachine {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    os_name: String,
    status: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct WireVmResource {
    #[serde(default)]
    group: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    virtual_machines: Vec<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct WireNamespaceResources {
    #[serde(default)]
    namespace: String,
    status: Option<String>,
    total_resources: Option<u64>,
    total_volumes: Option<u64>,
    failed_resources: Option<u64>,
    failed_volumes: Option<u64>,
    #[serde(default)]
    resource_types: Vec<WireResourceType>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct WireResourceType {
    #[serde(default)]
    name: String,
    total_resources: Option<u64>,
    failed_resources: Option<u64>,
}

/// One line as sent. Every type's fields live here; `check_fields` rejects those that do not
/// belong to the line's type.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct WireEvent {
    #[serde(rename = "type")]
    kind: WireKind,
    op: Op,
    uid: String,
    org_id: Option<String>,
    name: Option<String>,
    cluster: Option<String>,
    cluster_uid: Option<String>,
    schedule_name: Option<String>,
    namespaces: Option<Vec<String>>,
    backup_location: Option<String>,
    backup_object_type: Option<String>,
    backup: Option<String>,
    location_type: Option<String>,
    status: Option<String>,
    size_bytes: Option<u64>,
    resource_count: Option<u64>,
    volume_count: Option<u64>,
    interval_seconds: Option<u64>,
    volumes: Option<Vec<WireVolume>>,
    created_at: Option<String>,
    completed_at: Option<String>,
    deleted_at: Option<String>,
    failed_resource_count: Option<u64>,
    failed_volume_count: Option<u64>,
    virtual_machines: Option<Vec<WireVirtualMachine>>,
    vm_resources: Option<Vec<WireVmResource>>,
    namespace_resources: Option<Vec<WireNamespaceResources>>,
}

const OWNER: &[&str] = &["org_id", "name", "cluster", "cluster_uid"];

impl WireEvent {
    fn present(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        macro_rules! check {
            ($($field:ident),*) => {
                $(if self.$field.is_some() { out.push(stringify!($field)); })*
            };
        }
        check!(
            org_id,
            name,
            cluster,
            cluster_uid,
            schedule_name,
            namespaces,
            backup_location,
            backup_object_type,
            backup,
            location_type,
            status,
            size_bytes,
            resource_count,
            volume_count,
            interval_seconds,
            volumes,
            created_at,
            completed_at,
            deleted_at,
            failed_resource_count,
            failed_volume_count,
            virtual_machines,
            vm_resources,
            namespace_resources
        );
        out
    }

    fn allowed(&self) -> Vec<&'static str> {
        let own = |extra: &[&'static str]| [OWNER, extra].concat();
        match (self.op, self.kind) {
            (Op::Delete, _) => vec!["deleted_at"],
            (Op::Upsert, WireKind::Backup) => own(&[
                "schedule_name",
                "namespaces",
                "backup_location",
                "backup_object_type",
                "status",
                "size_bytes",
                "resource_count",
                "volumes",
                "created_at",
                "completed_at",
                "failed_resource_count",
                "failed_volume_count",
                "virtual_machines",
                "vm_resources",
                "namespace_resources",
            ]),
            (Op::Upsert, WireKind::Restore) => own(&[
                "backup",
                "status",
                "size_bytes",
                "resource_count",
                "volume_count",
                "created_at",
                "completed_at",
            ]),
            (Op::Upsert, WireKind::Schedule) => own(&["status", "interval_seconds"]),
            (Op::Upsert, WireKind::Cluster) => vec!["org_id", "name", "status"],
            (Op::Upsert, WireKind::BackupLocation) => {
                vec!["org_id", "name", "location_type", "status"]
            }
        }
    }

    fn kind(&self) -> Kind {
        match self.kind {
            WireKind::Backup => Kind::Backup,
            WireKind::Restore => Kind::Restore,
            WireKind::Schedule => Kind::Schedule,
            WireKind::Cluster => Kind::Cluster,
            WireKind::BackupLocation => Kind::BackupLocation,
        }
    }

    fn into_event(self) -> Result<Event, String> {
        if self.uid.is_empty() {
            return Err("uid must not be empty".into());
        }
        let allowed = self.allowed();
        if let Some(f) = self.present().into_iter().find(|f| !allowed.contains(f)) {
            let what = match self.op {
                Op::Delete => "a delete".to_owned(),
                Op::Upsert => format!("a {} upsert", self.kind().as_str()),
            };
            return Err(format!("field `{f}` does not belong to {what}"));
        }
        if self.op == Op::Delete {
            return Ok(Event::Delete {
                kind: self.kind(),
                uid: self.uid,
                deleted_at: time("deleted_at", self.deleted_at.as_deref())?,
            });
        }
        let status = self
            .status
            .as_deref()
            .ok_or_else(|| "missing field `status`".to_owned())?;
        let owner = Owner {
            org_id: self.org_id.unwrap_or_default(),
            cluster: self.cluster.unwrap_or_default(),
            cluster_uid: self.cluster_uid.unwrap_or_default(),
        };
        let name = self.name.unwrap_or_default();
        let created_at = time("created_at", self.created_at.as_deref())?;
        let completed_at = time("completed_at", self.completed_at.as_deref())?;
        let object = match self.kind {
            WireKind::Backup => Object::Backup(Backup {
                uid: self.uid,
                name,
                owner,
                schedule_name: self.schedule_name.unwrap_or_default(),
                namespaces: self.namespaces.unwrap_or_default(),
                backup_location: self.backup_location.unwrap_or_default(),
                backup_object_type: self.backup_object_type.unwrap_or_default(),
                status: parse(status)?,
                size_bytes: self.size_bytes,
                resource_count: self.resource_count,
                volumes: self
                    .volumes
                    .unwrap_or_default()
                    .into_iter()
                    .map(|v| {
                        Ok(Volume {
                            status: v.status.as_deref().map(parse).transpose()?,
                            volume: v.volume,
                            pvc: v.pvc,
                            pvc_namespace: v.pvc_namespace,
                            storage_class: v.storage_class,
                            driver: v.driver,
                        })
                    })
                    .collect::<Result<_, String>>()?,
                created_at,
                completed_at,
                failed_resource_count: self.failed_resource_count,
                failed_volume_count: self.failed_volume_count,
                virtual_machines: self
                    .virtual_machines
                    .unwrap_or_default()
                    .into_iter()
                    .map(|vm| {
                        Ok(VirtualMachine {
                            status: vm.status.as_deref().map(parse).transpose()?,
                            name: vm.name,
                            namespace: vm.namespace,
                            os_name: vm.os_name,
                        })
                    })
                    .collect::<Result<_, String>>()?,
                vm_resources: self
                    .vm_resources
                    .unwrap_or_default()
                    .into_iter()
                    .map(|r| VmResource {
                        group: r.group,
                        version: r.version,
                        kind: r.kind,
                        name: r.name,
                        namespace: r.namespace,
                        virtual_machines: r.virtual_machines,
                    })
                    .collect(),
                namespace_resources: self
                    .namespace_resources
                    .unwrap_or_default()
                    .into_iter()
                    .map(|n| {
                        Ok(NamespaceResources {
                            status: n.status.as_deref().map(parse).transpose()?,
                            namespace: n.namespace,
                            total_resources: n.total_resources,
                            total_volumes: n.total_volumes,
                            failed_resources: n.failed_resources,
                            failed_volumes: n.failed_volumes,
                            resource_types: n
                                .resource_types
                                .into_iter()
                                .map(|t| ResourceType {
                                    name: t.name,
                                    total_resources: t.total_resources,
                                    failed_resources: t.failed_resources,
                                })
                                .collect(),
                        })
                    })
                    .collect::<Result<_, String>>()?,
            }),
            WireKind::Restore => Object::Restore(Restore {
                uid: self.uid,
                name,
                owner,
                backup: self.backup.unwrap_or_default(),
                status: parse(status)?,
                size_bytes: self.size_bytes,
                resource_count: self.resource_count,
                volume_count: self.volume_count,
                created_at,
                completed_at,
            }),
            WireKind::Schedule => Object::Schedule(Schedule {
                uid: self.uid,
                name,
                owner,
                status: parse(status)?,
                interval_seconds: self.interval_seconds,
            }),
            WireKind::Cluster => Object::Cluster(Cluster {
                uid: self.uid,
                name,
                org_id: owner.org_id,
                status: parse(status)?,
            }),
            WireKind::BackupLocation => Object::BackupLocation(BackupLocation {
                uid: self.uid,
                name,
                org_id: owner.org_id,
                location_type: self.location_type.unwrap_or_default(),
                status: parse(status)?,
            }),
        };
        Ok(Event::Upsert(object))
    }
}

fn parse<T: std::str::FromStr>(s: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e: T::Err| e.to_string())
}

fn time(field: &str, value: Option<&str>) -> Result<Option<Timestamp>, String> {
    value
        .map(|v| Timestamp::parse_rfc3339(v).map_err(|e| format!("{field}: {e}")))
        .transpose()
}

/// Parses a whole NDJSON batch. Blank lines are skipped; the first bad line fails the batch.
pub fn parse_batch(body: &[u8]) -> Result<Vec<Event>, LineError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        let line = body[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        LineError {
            line,
            reason: "not valid UTF-8".into(),
        }
    })?;
    let mut events = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        // What a producer sent is quoted in the answer and the log up to a bound, on one line.
        let line_error = |reason: String| LineError {
            line: i + 1,
            reason: crate::logging::bounded(&reason),
        };
        let wire: WireEvent = serde_json::from_str(raw).map_err(|e| line_error(e.to_string()))?;
        events.push(wire.into_event().map_err(line_error)?);
    }
    Ok(events)
}

#[derive(Clone)]
struct IngestContext {
    source: SourceContext,
    stats: Arc<IngestStats>,
    token: IngestToken,
    limits: Limits,
    /// Batches are parsed here, at background priority (`crate::priority`), not on an async
    /// worker: a 16 MiB batch takes a worker for a tenth of a second, and a burst of batches
    /// must not take the cores from scrapes. A batch is parsed only once no scrape is in
    /// flight (`Inventory::give_way_to_scrapes`, bounded): on two cores, parsing beside a
    /// scrape made a mass deletion's scrapes about a tenth slower.
    parser: Arc<BackgroundThread>,
}

/// The ingest routes: batches go into `source.inventory`, what became of each is counted in
/// `stats` (the self metrics read them).
pub fn router(source: SourceContext, stats: Arc<IngestStats>, token: IngestToken) -> Router {
    router_with(source, stats, token, Limits::default())
}

/// The ingest routes with the given limits (tests shorten them). Served through a listener
/// that admits connections with `ConnectionPlaces::admit`, each request carries its
/// connection's place; without one (a test's `oneshot`), only the token is checked.
pub fn router_with(
    source: SourceContext,
    stats: Arc<IngestStats>,
    token: IngestToken,
    limits: Limits,
) -> Router {
    let overloaded = {
        let stats = stats.clone();
        move |e: BoxError| {
            let stats = stats.clone();
            async move { refused(&stats, &*e) }
        }
    };
    let ctx = IngestContext {
        source,
        stats,
        token,
        limits,
        parser: Arc::new(BackgroundThread::start("ingest-parse")),
    };
    Router::new()
        .route("/v1/events", post(post_events))
        // Outermost first: at the cap a request is refused before anything else runs; the
        // body, once a handler reads it, may not stall longer than `body_idle`.
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(overloaded))
                .layer(tower::load_shed::LoadShedLayer::new())
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                    limits.in_flight,
                ))
                .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
                    limits.body_idle,
                )),
        )
        // Outermost of all: the token before anything counts the request.
        .layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            authenticate,
        ))
        .with_state(ctx)
}

/// The token first: a request without it is answered 401 and its connection closed (a
/// client without the token keeps no place); one with it takes its connection an
/// authenticated place, or is answered 503 and closed when none is left.
async fn authenticate(State(ctx): State<IngestContext>, request: Request, next: Next) -> Response {
    if !ctx.token.accepts(request.headers()) {
        ctx.stats.unauthorized.fetch_add(1, Relaxed);
        return closing(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": "missing or wrong bearer token"}),
        );
    }
    let placed = request
        .extensions()
        .get::<ConnectionPlace>()
        .is_none_or(ConnectionPlace::authenticate);
    if !placed {
        ctx.stats.overloaded.fetch_add(1, Relaxed);
        tracing::warn!(
            connections = ctx.limits.connections,
            "ingest: every place for a producer's connection is taken; refused one (503)"
        );
        let mut resp = closing(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"error": "too many producer connections at once; send again later"}),
        );
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
        return resp;
    }
    next.run(request).await
}

/// An answer after which the connection is closed.
fn closing(status: StatusCode, body: serde_json::Value) -> Response {
    let mut resp = (status, Json(body)).into_response();
    resp.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// The answer to a request the layers refused (only the load shedder fails requests).
fn refused(stats: &IngestStats, e: &(dyn StdError + 'static)) -> Response {
    if e.is::<tower::load_shed::error::Overloaded>() {
        stats.overloaded.fetch_add(1, Relaxed);
        tracing::warn!("ingest: too many requests at once; refused one (503)");
        return retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"error": "too many requests at once; send again later"}),
        );
    }
    tracing::error!(error = %e, "ingest: a request failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(serde_json::json!({"error": "the request failed"})),
    )
        .into_response()
}

fn retry_later(status: StatusCode, body: serde_json::Value) -> Response {
    let mut resp = (status, Json(body)).into_response();
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
    resp
}

fn authorized(expected: Option<&str>, headers: &HeaderMap) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    // `Bearer <token>`, the scheme in any case (RFC 7235, 2.1).
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token.trim_start_matches(' '));
    // Constant time over the token's bytes, so timing does not reveal a matching prefix
    // (only whether the length matches).
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// Whether `e` or anything it was caused by is a `T`.
fn caused_by<T: StdError + 'static>(e: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if err.is::<T>() {
            return true;
        }
        next = err.source();
    }
    false
}

/// Why a body could not be read, as an answer.
enum BodyError {
    TooLarge,
    TooSlow,
    Broken(String),
}

async fn read_body(body: Body, headers: &HeaderMap, limits: &Limits) -> Result<Vec<u8>, BodyError> {
    // A declared size over the cap is refused before a byte is read.
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BATCH_BYTES as u64) {
        return Err(BodyError::TooLarge);
    }
    let read = tokio::time::timeout(
        limits.body_deadline,
        axum::body::to_bytes(body, MAX_BATCH_BYTES),
    )
    .await;
    match read {
        Err(_elapsed) => Err(BodyError::TooSlow),
        Ok(Ok(bytes)) => Ok(bytes.to_vec()),
        Ok(Err(e)) => {
            let e = e.into_inner();
            if caused_by::<http_body_util::LengthLimitError>(&*e) {
                Err(BodyError::TooLarge)
            } else if caused_by::<tower_http::timeout::TimeoutError>(&*e) {
                Err(BodyError::TooSlow)
            } else {
                Err(BodyError::Broken(e.to_string()))
            }
        }
    }
}

async fn post_events(State(ctx): State<IngestContext>, headers: HeaderMap, body: Body) -> Response {
    let stats = &ctx.stats;
    // The token was checked (`authenticate`) before a byte of the body is read.
    let body = match read_body(body, &headers, &ctx.limits).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            stats.rejected.fetch_add(1, Relaxed);
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                Json(serde_json::json!({
                    "error": format!("a batch is at most {MAX_BATCH_BYTES} bytes; split it")
                })),
            )
                .into_response();
        }
        Err(BodyError::TooSlow) => {
            stats.timed_out.fetch_add(1, Relaxed);
            tracing::warn!("ingest: the request body did not arrive in time (408)");
            return (
                StatusCode::REQUEST_TIMEOUT,
                Json(serde_json::json!({"error": "the request body did not arrive in time"})),
            )
                .into_response();
        }
        Err(BodyError::Broken(reason)) => {
            stats.rejected.fetch_add(1, Relaxed);
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({
                    "error": format!(
                        "the request body could not be read: {}",
                        crate::logging::bounded(&reason)
                    )
                })),
            )
                .into_response();
        }
    };
    let inventory = Arc::clone(&ctx.source.inventory);
    let events = match ctx
        .parser
        .run(move || {
            inventory.give_way_to_scrapes();
            parse_batch(&body)
        })
        .await
    {
        Ok(Ok(events)) => events,
        Err(e) => {
            tracing::error!(error = %e, "parsing an ingest batch failed");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(serde_json::json!({"error": "the batch could not be parsed"})),
            )
                .into_response();
        }
        Ok(Err(e)) => {
            stats.rejected.fetch_add(1, Relaxed);
            tracing::warn!(line = e.line, reason = %e.reason, "ingest batch rejected");
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({"error": e.to_string(), "line": e.line})),
            )
                .into_response();
        }
    };
    let applied = ctx
        .source
        .inventory
        .apply_off_runtime(Origin::source(SourceId::Ingest), events)
        .await;
    match applied {
        Ok(outcome) => {
            stats.applied.fetch_add(1, Relaxed);
            Json(serde_json::json!({"applied": outcome.applied, "ignored": outcome.ignored}))
                .into_response()
        }
        // Acknowledging it would let the producer forget a change that a restart loses.
        Err(ApplyError::NotDurable(e)) => {
            stats.not_durable.fetch_add(1, Relaxed);
            tracing::error!(error = %e, "ingest batch applied but not journaled; answered 503");
            retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({
                    "error": format!("{e}; send the batch again (applying it twice is harmless)")
                }),
            )
        }
        Err(e @ (ApplyError::Task(_) | ApplyError::Applier(_))) => {
            tracing::error!(error = %e, "applying an ingest batch failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(serde_json::json!({"error": "the batch could not be applied"})),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BackupStatus;

    const BACKUP: &str = r#"{"type":"backup","op":"upsert","uid":"9b1c","org_id":"default","name":"nightly-1","cluster":"prod-east","cluster_uid":"3e0f","schedule_name":"nightly","namespaces":["shop"],"backup_location":"s3-east","backup_object_type":"All","status":"Success","size_bytes":1073741824,"resource_count":42,"volumes":[{"volume":"pvc-1a2b","pvc":"data","pvc_namespace":"shop","storage_class":"px-csi","driver":"pxd","status":"Success"}],"created_at":"2026-11-23T01:00:00Z","completed_at":"2026-11-23T01:04:10Z"}"#;

    #[test]
    fn design_example_parses() {
        let body = format!(
            "{BACKUP}\n\n{}\n",
            r#"{"type":"backup","op":"delete","uid":"9b1c","deleted_at":"2026-11-23T09:00:00Z"}"#
        );
        let events = parse_batch(body.as_bytes()).unwrap();
        assert_eq!(events.len(), 2);
        let Event::Upsert(Object::Backup(b)) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(b.status, BackupStatus::Success);
        assert_eq!(b.volumes[0].storage_class, "px-csi");
        assert_eq!(
            events[1],
            Event::Delete {
                kind: Kind::Backup,
                uid: "9b1c".into(),
                deleted_at: Some(Timestamp::parse_rfc3339("2026-11-23T09:00:00Z").unwrap())
            }
        );
    }

    fn error_of(body: &str) -> LineError {
        parse_batch(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn bad_lines_are_named() {
        let typo = BACKUP.replace("\"status\"", "\"sttaus\"");
        let e = error_of(&format!("{BACKUP}\n{typo}\n"));
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("sttaus"), "{e}");

        let e = error_of(&BACKUP.replace("\"Success\",\"size", "\"Sucess\",\"size"));
        assert_eq!(e.line, 1);
        assert!(e.reason.contains("\"Sucess\""), "{e}");

        let e = error_of(
            r#"{"type":"restore","op":"upsert","uid":"r","status":"Success","volumes":[]}"#,
        );
        assert!(
            e.reason
                .contains("`volumes` does not belong to a restore upsert"),
            "{e}"
        );

        let e = error_of(r#"{"type":"backup","op":"delete","uid":"x","deleted_at":"yesterday"}"#);
        assert!(e.reason.contains("\"yesterday\""), "{e}");

        let e = error_of(r#"{"type":"volume","op":"upsert","uid":"x"}"#);
        assert!(e.reason.contains("volume"), "{e}");

        let e = error_of(r#"{"type":"cluster","op":"upsert","uid":""}"#);
        assert!(e.reason.contains("uid"), "{e}");

        let e = error_of("{\"type\":\"cluster\"\n");
        assert_eq!(e.line, 1);
    }

    #[test]
    fn schedules_carry_their_interval() {
        let events = parse_batch(
            br#"{"type":"schedule","op":"upsert","uid":"s1","name":"nightly","status":"Active","interval_seconds":86400}"#,
        )
        .unwrap();
        let Event::Upsert(Object::Schedule(s)) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(s.interval_seconds, Some(86_400));
        let e = error_of(
            r#"{"type":"cluster","op":"upsert","uid":"c","status":"Online","interval_seconds":60}"#,
        );
        assert!(
            e.reason
                .contains("`interval_seconds` does not belong to a cluster upsert"),
            "{e}"
        );
    }

    #[test]
    fn token_compare() {
        let mut h = HeaderMap::new();
        assert!(authorized(None, &h));
        assert!(!authorized(Some("s3cret"), &h));
        h.insert(AUTHORIZATION, "Bearer s3cre".parse().unwrap());
        assert!(!authorized(Some("s3cret"), &h));
        h.insert(AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(authorized(Some("s3cret"), &h));
        // The scheme in any case (RFC 7235); the token exactly.
        for given in ["bearer s3cret", "BEARER s3cret", "Bearer  s3cret"] {
            h.insert(AUTHORIZATION, given.parse().unwrap());
            assert!(authorized(Some("s3cret"), &h), "{given}");
        }
        for given in ["Basic s3cret", "Bearer S3CRET", "Bearers3cret", "s3cret"] {
            h.insert(AUTHORIZATION, given.parse().unwrap());
            assert!(!authorized(Some("s3cret"), &h), "{given}");
        }
    }

    #[test]
    fn times_with_offsets_are_taken_and_zoneless_times_name_their_field() {
        let line = BACKUP.replace(
            r#""created_at":"2026-11-23T01:00:00Z""#,
            r#""created_at":"2026-11-23T03:00:00+02:00""#,
        );
        let events = parse_batch(line.as_bytes()).unwrap();
        let Event::Upsert(Object::Backup(b)) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(b.created_at, Some(Timestamp::from_secs(1_795_395_600)));

        let zoneless = BACKUP.replace("01:04:10Z", "01:04:10");
        let e = error_of(&zoneless);
        assert!(
            e.reason.starts_with("completed_at: ") && e.reason.contains("no time zone"),
            "{e}"
        );
        let e = error_of(
            r#"{"type":"backup","op":"delete","uid":"x","deleted_at":"2026-11-23 09:00"}"#,
        );
        assert!(e.reason.starts_with("deleted_at: "), "{e}");
    }

    #[test]
    fn backups_carry_vms_vm_resources_namespaces_and_failed_counts() {
        let line = BACKUP.replace(
            r#""created_at""#,
            r#""failed_resource_count":1,"failed_volume_count":0,
               "virtual_machines":[{"name":"vm-1","namespace":"vms","os_name":"rhel9","status":"Success"}],
               "vm_resources":[{"group":"","version":"v1","kind":"PersistentVolumeClaim","name":"vm-1-disk","namespace":"vms","virtual_machines":["vm-1"]}],
               "namespace_resources":[{"namespace":"shop","status":"PartialSuccess","total_resources":3,"total_volumes":1,"failed_resources":1,"failed_volumes":0,
                  "resource_types":[{"name":"apps/v1/Deployment","total_resources":2,"failed_resources":1}]}],
               "created_at""#,
        ).replace('\n', "");
        let events = parse_batch(line.as_bytes()).unwrap();
        let Event::Upsert(Object::Backup(b)) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(
            (b.failed_resource_count, b.failed_volume_count),
            (Some(1), Some(0))
        );
        assert_eq!(
            b.virtual_machines,
            [VirtualMachine {
                name: "vm-1".into(),
                namespace: "vms".into(),
                os_name: "rhel9".into(),
                status: Some(BackupStatus::Success),
            }]
        );
        assert_eq!(b.vm_resources[0].kind, "PersistentVolumeClaim");
        assert_eq!(b.vm_resources[0].virtual_machines, ["vm-1"]);
        let ns = &b.namespace_resources[0];
        assert_eq!(
            ns.status,
            Some(crate::model::NamespaceStatus::PartialSuccess)
        );
        assert_eq!(
            (ns.total_resources, ns.failed_resources),
            (Some(3), Some(1))
        );
        assert_eq!(
            ns.resource_types,
            [ResourceType {
                name: "apps/v1/Deployment".into(),
                total_resources: Some(2),
                failed_resources: Some(1),
            }]
        );

        // Statuses use their enum's names; nested objects refuse unknown fields too.
        let bad = BACKUP.replace(
            r#""created_at""#,
            r#""namespace_resources":[{"namespace":"a","status":"Partial"}],"created_at""#,
        );
        assert!(
            error_of(&bad).reason.contains("\"Partial\""),
            "{}",
            error_of(&bad)
        );
        let bad = BACKUP.replace(
            r#""created_at""#,
            r#""virtual_machines":[{"name":"v","os":"x"}],"created_at""#,
        );
        assert!(error_of(&bad).reason.contains("`os`"), "{}", error_of(&bad));
        let e = error_of(
            r#"{"type":"restore","op":"upsert","uid":"r","status":"Success","vm_resources":[]}"#,
        );
        assert!(
            e.reason
                .contains("`vm_resources` does not belong to a restore upsert"),
            "{e}"
        );
    }

    mod endpoint {
        use std::convert::Infallible;

        use axum::http::Request;
        use bytes::Bytes;
        use futures::StreamExt;
        use tower::ServiceExt;

        use super::*;
        use crate::clock::Clock;
        use crate::inventory::Inventory;
        use crate::sources::SourceStatus;

        fn source() -> SourceContext {
            let inventory = Inventory::in_memory(Clock::System, Duration::from_secs(3600));
            SourceContext {
                inventory: Arc::new(inventory),
                status: Arc::new(SourceStatus::new(&[SourceId::Ingest])),
            }
        }

        fn post(body: Body, token: Option<&str>) -> Request<Body> {
            let mut req = Request::post("/v1/events");
            if let Some(token) = token {
                req = req.header(AUTHORIZATION, format!("Bearer {token}"));
            }
            req.body(body).expect("request")
        }

        /// A body whose bytes never come.
        fn stalled() -> Body {
            Body::from_stream(futures::stream::pending::<Result<Bytes, Infallible>>())
        }

        /// A body that sends a byte every `every`, for ever.
        fn trickle(every: Duration) -> Body {
            Body::from_stream(futures::stream::repeat(()).then(move |()| async move {
                tokio::time::sleep(every).await;
                Ok::<_, Infallible>(Bytes::from_static(b" "))
            }))
        }

        async fn json(resp: Response) -> serde_json::Value {
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .expect("answer body");
            serde_json::from_slice(&bytes).expect("a JSON answer")
        }

        #[tokio::test(start_paused = true)]
        async fn a_wrong_token_is_refused_before_the_body_is_read() {
            let stats = Arc::new(IngestStats::default());
            let app = router(source(), stats.clone(), IngestToken::fixed("s3cret"));
            let started = tokio::time::Instant::now();
            for token in [None, Some("wrong"), Some("s3cre"), Some("s3cret-and-more")] {
                let resp = app.clone().oneshot(post(stalled(), token)).await.unwrap();
                assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{token:?}");
            }
            // Time is paused and advances only while something waits on a timer: a handler
            // that waited for the (never sent) body would have hit the body timeout instead.
            assert_eq!(started.elapsed(), Duration::ZERO);
            assert_eq!(stats.unauthorized.load(Relaxed), 4);

            let resp = app
                .oneshot(post(Body::from(BACKUP), Some("s3cret")))
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
        }

        #[tokio::test(start_paused = true)]
        async fn a_stalled_or_trickling_body_times_out() {
            let stats = Arc::new(IngestStats::default());
            let limits = Limits::default();
            let app = router_with(source(), stats.clone(), IngestToken::None, limits);

            let started = tokio::time::Instant::now();
            let resp = app.clone().oneshot(post(stalled(), None)).await.unwrap();
            assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
            assert_eq!(
                started.elapsed(),
                limits.body_idle,
                "cut off after the idle gap"
            );

            // Never silent for long, never done: the overall deadline ends it.
            let started = tokio::time::Instant::now();
            let resp = app
                .oneshot(post(trickle(limits.body_idle / 2), None))
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
            assert_eq!(started.elapsed(), limits.body_deadline);
            assert_eq!(stats.timed_out.load(Relaxed), 2);
        }

        #[tokio::test]
        async fn under_scrapes_back_to_back_a_batch_waits_its_bounds_and_is_applied() {
            let source = source();
            let inventory = Arc::clone(&source.inventory);
            let app = router(source, Arc::new(IngestStats::default()), IngestToken::None);
            let _endless = inventory.scrape_started();
            let started = std::time::Instant::now();
            let resp = app.oneshot(post(Body::from(BACKUP), None)).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            // Parsing waited its bound, then applying waited its own: slower, never stopped.
            let waited = started.elapsed();
            let bound = crate::inventory::give_way::APPLY_WAIT;
            assert!(waited >= bound * 2, "{waited:?}");
            assert_eq!(inventory.counts().live_objects.iter().sum::<usize>(), 1);
        }

        #[tokio::test]
        async fn requests_beyond_the_cap_are_refused_at_once() {
            let stats = Arc::new(IngestStats::default());
            let limits = Limits {
                in_flight: 2,
                ..Limits::default()
            };
            let app = router_with(source(), stats.clone(), IngestToken::None, limits);
            let busy: Vec<_> = (0..2)
                .map(|_| tokio::spawn(app.clone().oneshot(post(stalled(), None))))
                .collect();
            // Let both take their place.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let resp = app
                .clone()
                .oneshot(post(Body::from(BACKUP), None))
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(resp.headers()[RETRY_AFTER], RETRY_AFTER_SECS);
            assert!(json(resp).await["error"]
                .as_str()
                .is_some_and(|e| e.contains("too many")));
            assert_eq!(stats.overloaded.load(Relaxed), 1);

            for task in busy {
                task.abort();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            let resp = app.oneshot(post(Body::from(BACKUP), None)).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "room again");
        }

        /// A journal write failure, for real: the journal is opened in a state dir whose
        /// rewrite cannot happen (a directory holds its temp file's place), and must be
        /// rewritten, because it refused a record over its size limit.
        #[tokio::test]
        async fn a_batch_the_journal_cannot_take_is_answered_503_with_a_reason() {
            let dir = tempfile::tempdir().expect("temp dir");
            let options = crate::inventory::Options::with_backfill(Duration::from_secs(3600));
            let (inventory, _) =
                Inventory::open(Clock::System, options, dir.path()).expect("journal");
            let source = SourceContext {
                inventory: Arc::new(inventory),
                status: Arc::new(SourceStatus::new(&[SourceId::Ingest])),
            };
            let blocked = dir.path().join("tombstones.journal.tmp");
            std::fs::create_dir(&blocked).expect("block the rewrite");
            // A name of 17 MiB: over the journal's 16 MiB record limit.
            let huge = parse_batch(
                BACKUP
                    .replace("nightly-1", &"n".repeat(17 << 20))
                    .as_bytes(),
            )
            .expect("a batch");
            let primed = source
                .inventory
                .apply_off_runtime(Origin::source(SourceId::Ingest), huge)
                .await;
            assert!(
                matches!(primed, Err(ApplyError::NotDurable(_))),
                "the journal took a record over its limit, or was rewritten: {primed:?}"
            );

            let stats = Arc::new(IngestStats::default());
            let app = router(source, stats.clone(), IngestToken::None);
            let other = BACKUP.replace("9b1c", "a7e2");
            let resp = app
                .clone()
                .oneshot(post(Body::from(other.clone()), None))
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(resp.headers()[RETRY_AFTER], RETRY_AFTER_SECS);
            let answer = json(resp).await;
            let reason = answer["error"].as_str().unwrap_or_default();
            assert!(
                reason.contains("not written to the journal")
                    && reason.contains("tombstones.journal.tmp")
                    && reason.contains("send the batch again"),
                "{answer}"
            );
            assert_eq!(stats.not_durable.load(Relaxed), 1);

            // The rewrite can happen again: the same batch, sent again, is durable.
            std::fs::remove_dir(&blocked).expect("unblock");
            let resp = app.oneshot(post(Body::from(other), None)).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(stats.applied.load(Relaxed), 1);
        }

        #[tokio::test]
        async fn an_oversized_batch_is_refused_by_its_declared_length() {
            let app = router(source(), Arc::default(), IngestToken::None);
            let req = Request::post("/v1/events")
                .header(CONTENT_LENGTH, (MAX_BATCH_BYTES + 1).to_string())
                .body(stalled())
                .expect("request");
            let resp = app.clone().oneshot(req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
            // Without a declared length the cap holds while reading.
            let big = vec![b' '; MAX_BATCH_BYTES + 1];
            let resp = app
                .oneshot(post(
                    Body::from_stream(futures::stream::iter([Ok::<_, Infallible>(Bytes::from(
                        big,
                    ))])),
                    None,
                ))
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        }
    }
}
