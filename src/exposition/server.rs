//! HTTP serving: `/metrics`, `/healthz`, `/readyz`, and the listener loop shared with the
//! ingest endpoint (header read timeout, write stall timeout, graceful drain on shutdown).
//!
//! A client that asks for `/metrics` and never reads must not take the scrapes, or the pod,
//! down: at most `MAX_SCRAPES_IN_FLIGHT` scrapes are made and sent at once, each holding at
//! most its writers' buffers (a few chunks of `TEXT_CHUNK`, or one gzip frame); the rest
//! wait up to `SCRAPE_QUEUE_WAIT`, newest first (`slots`), and are answered 503 when no place
//! comes; and a connection whose client stops reading is cut after `WRITE_STALL_TIMEOUT`
//! (`stall`), which frees its place. `/healthz` and `/readyz` take no place.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{
    ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, VARY,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use super::body::{GzipBody, InFlight, Scrape, TextBody, TextScrape};
use super::self_metrics::ScrapeDuration;
use super::slots::ScrapeSlots;
use super::stall::StallGuard;
use super::{accepts_gzip, collect, Collector, Format};
use crate::inventory::Inventory;
use crate::sources::SourceStatus;

/// A client that has not sent its request headers by then is dropped (slow-loris guard).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Handlers that take longer are answered 408 (a wedged scrape must not pile up).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// A client whose socket takes less than `stall::MIN_PROGRESS` (64 KiB) in this long, once a
/// write waits for it, is cut off: well under Prometheus's default scrape timeout (10 s), so
/// a scrape stuck behind clients that never read gets a place in time; far above what a
/// client that reads at all needs (13 KB/s).
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Scrapes made and sent at once. Scrapers are few (a Prometheus pair, an agent, a person
/// with curl); on the 2 cores the sidecar is sized for, more at once would only share the
/// cores and memory. Each holds at most its writers' chunks: a plain-text scrape
/// `(writers + 1) x TEXT_CHUNK` (1.5 MB with one writer, 4 MB with seven on eight cores),
/// a gzip scrape one frame (80 KB) beyond the segments the store shares.
pub const MAX_SCRAPES_IN_FLIGHT: usize = 4;
/// Scrapes that wait for a place, at most: a newer one pushes the oldest out (503), so a
/// crowd of clients that never read cannot keep a fresh scrape from the queue.
pub const MAX_SCRAPES_WAITING: usize = 64;
/// How long a scrape waits for a place before it is answered 503: under Prometheus's
/// default scrape timeout (10 s), with time left to send the body; longer than
/// `WRITE_STALL_TIMEOUT`, so that it outlasts places held by clients that stopped reading.
pub const SCRAPE_QUEUE_WAIT: Duration = Duration::from_secs(8);

/// What the metrics endpoint serves: the inventory's series, then the collectors' families in
/// order (the sidecar's own, telemetry's); readiness from the sources' status.
#[derive(Clone)]
pub struct MetricsContext {
    pub inventory: Arc<Inventory>,
    pub sources: Arc<SourceStatus>,
    pub collectors: Vec<Arc<dyn Collector>>,
    /// Recorded after every scrape; the self metrics export it.
    pub scrape_duration: Arc<ScrapeDuration>,
}

/// What the routes are handed: the context, and the places of the scrapes in flight.
struct Served {
    ctx: Arc<MetricsContext>,
    slots: ScrapeSlots,
}

pub fn metrics_router(ctx: MetricsContext) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(Arc::new(Served {
            ctx: Arc::new(ctx),
            slots: ScrapeSlots::new(
                MAX_SCRAPES_IN_FLIGHT,
                MAX_SCRAPES_WAITING,
                SCRAPE_QUEUE_WAIT,
            ),
        }))
}

/// Assembles one gzip scrape: the inventory's series (stale groups rendered again first) and
/// the sidecar's own families. Blocking: run it off the async workers.
pub fn prepare(ctx: &MetricsContext, format: Format) -> Scrape {
    let started = Instant::now();
    let snapshot = ctx.inventory.snapshot_for_scrape();
    let scrape = Scrape::new(&snapshot, format, own_families(ctx, format));
    ctx.scrape_duration.record(started.elapsed());
    scrape
}

/// Assembles one plain-text scrape: the inventory's entries as they are (rendered as the body
/// is sent) and the sidecar's own families. Blocking: run it off the async workers.
pub fn prepare_text(ctx: &MetricsContext, format: Format) -> TextScrape {
    let started = Instant::now();
    let snapshot = ctx.inventory.text_snapshot();
    let scrape = TextScrape::new(snapshot, format, own_families(ctx, format));
    ctx.scrape_duration.record(started.elapsed());
    scrape
}

fn own_families(ctx: &MetricsContext, format: Format) -> Vec<u8> {
    let collectors: Vec<&dyn Collector> = ctx.collectors.iter().map(|c| c.as_ref()).collect();
    collect(format, &collectors)
}

/// One whole scrape as plain text (tests, tools).
pub fn scrape(ctx: &MetricsContext, format: Format) -> Vec<u8> {
    prepare_text(ctx, format).text()
}

/// Plain text goes out in chunks of this size, written on every core but one, each writer at
/// most one chunk ahead of the network (bounded memory however large the body). Measured at
/// 100,000 backups (`cargo bench --bench targets -- --only plain`): 256 KB chunks two ahead
/// took a quarter more CPU per scrape (a producer waking, a write and a chunk header per
/// quarter megabyte), 1 MB chunks no less than these, and 4 MB more memory at the peak.
const TEXT_CHUNK: usize = 512 * 1024;
const TEXT_CHUNKS_AHEAD: usize = 1;

enum Prepared {
    Gzip(GzipBody),
    Text(TextScrape),
}

async fn metrics(State(served): State<Arc<Served>>, headers: HeaderMap) -> Response {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let format = Format::negotiate(header(ACCEPT));
    let gzip = accepts_gzip(header(ACCEPT_ENCODING));
    let Some(slot) = served.slots.acquire().await else {
        tracing::debug!("every scrape place is taken; a scrape was refused (503)");
        let mut resp = (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many scrapes at once; try again\n",
        )
            .into_response();
        resp.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            HeaderValue::from_static("1"),
        );
        return resp;
    };
    let ctx = served.ctx.clone();
    // From here until the body is sent, the applier and the background refresher give way.
    let scrape = ctx.inventory.scrape_started();
    let prepared = tokio::task::spawn_blocking(move || {
        if gzip {
            Prepared::Gzip(prepare(&ctx, format).gzip())
        } else {
            Prepared::Text(prepare_text(&ctx, format))
        }
    })
    .await;
    let (body, len) = match prepared {
        Ok(Prepared::Gzip(body)) => {
            let len = body.len();
            (
                Body::new(InFlight::new(body, scrape).holding(slot)),
                Some(len),
            )
        }
        Ok(Prepared::Text(text)) => {
            // One core is left to the sending (the kernel's copy into the socket, on the
            // async workers): on two cores one writer made a plain scrape of 100,000 backups
            // take 51 ms and 70 ms of CPU, two writers 66-72 ms and 98 ms of CPU (they and
            // the sending took turns on both cores).
            let producers = std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .saturating_sub(1)
                .max(1);
            let body = TextBody::spawn(text, TEXT_CHUNK, producers, TEXT_CHUNKS_AHEAD);
            (Body::new(InFlight::new(body, scrape).holding(slot)), None)
        }
        Err(e) => {
            tracing::error!(error = %e, "scrape task failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "scrape failed\n").into_response();
        }
    };
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    // Plain text is written as it is sent: its length is not known before, and it goes out
    // chunked.
    if let Some(len) = len {
        h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    }
    h.insert(VARY, HeaderValue::from_static("Accept, Accept-Encoding"));
    if gzip {
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    resp
}

async fn readyz(State(served): State<Arc<Served>>) -> Response {
    let waiting = served.ctx.sources.not_synced();
    if waiting.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        let names: Vec<&str> = waiting.iter().map(|s| s.as_str()).collect();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("waiting for initial sync of: {}\n", names.join(", ")),
        )
            .into_response()
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and drains
/// requests in flight for at most `DRAIN_TIMEOUT`.
pub async fn serve(listener: TcpListener, router: Router, shutdown: impl Future<Output = ()>) {
    serve_admitting(listener, router, || Some(()), shutdown).await;
}

/// `serve`, admitting each connection through `admit`: one it gives nothing for (every place
/// is taken) is accepted and closed at once, so the client fails fast and tries again instead
/// of waiting unanswered in the kernel's backlog behind connections that may never send
/// anything; what it gives (a place) is held by the connection until it ends, and handed to
/// each of its requests as an extension.
pub async fn serve_admitting<P: Clone + Send + Sync + 'static>(
    listener: TcpListener,
    router: Router,
    admit: impl Fn() -> Option<P>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    // Said once per spell at the cap, not once per refused connection (a flood would flood
    // the log too).
    let mut at_cap = false;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                // Held by the connection (its service) until the connection ends.
                let place = match admit() {
                    Some(place) => {
                        at_cap = false;
                        place
                    }
                    None => {
                        if !at_cap {
                            at_cap = true;
                            tracing::warn!(
                                addr = ?listener.local_addr().ok(),
                                "every connection place is taken; further connections are closed at once until one ends"
                            );
                        }
                        drop(stream);
                        continue;
                    }
                };
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    // Vectored writes: a scrape body's frames (packed segments of hundreds of
                    // KB, small ones gathered into 64 KB frames, 256 KB of plain text) go to
                    // the kernel as they are, up to sixteen a syscall. Flattened, hyper would
                    // copy all of them into its own write buffer first (a third of a gzip
                    // scrape's CPU at 100,000 backups).
                    .writev(true);
                let service = tower::ServiceExt::map_request(
                    router.clone(),
                    move |mut request: axum::http::Request<hyper::body::Incoming>| {
                        request.extensions_mut().insert(place.clone());
                        request
                    },
                );
                let conn = builder.serve_connection(
                    TokioIo::new(StallGuard::new(stream, WRITE_STALL_TIMEOUT)),
                    TowerToHyperService::new(service),
                );
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("requests still in flight after the drain timeout; closing them");
        }
    }
}
