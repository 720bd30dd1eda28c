//! Wiring: builds every part's pieces from `Settings` and hands each part only what it needs,
//! starts the sources, the expiry task and the listeners, and shuts everything down in order
//! on SIGTERM or SIGINT. The one module that knows every other.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{Settings, TelemetryConfigSource};
use crate::exposition::self_metrics::{ScrapeDuration, SelfMetrics};
use crate::exposition::server::{self, MetricsContext};
use crate::inventory::{Inventory, JournalError};
use crate::kubernetes::{KubeClientError, Kubernetes};
use crate::model::SourceId;
use crate::sources::ingest::IngestStats;
use crate::sources::pxb::auth::{AuthStats, TokenSource};
use crate::sources::{self, SourceContext, SourceStatus};
use crate::telemetry::metrics::TelemetryMetrics;
use crate::telemetry::preview::{self, Preview, PreviewError};
use crate::telemetry::{self, TelemetryContext};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    StateDir(#[from] JournalError),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot install the signal handler: {0}")]
    Signal(std::io::Error),
    #[error("Kubernetes: {0}")]
    Kube(#[from] KubeClientError),
    #[error("pxb source: {0}")]
    Pxb(#[from] sources::pxb::ClientError),
    #[error("{0}")]
    Preview(#[from] PreviewError),
}

impl AppError {
    /// 64 (EX_USAGE) for what the operator must fix in the configuration, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::StateDir(_)
            | AppError::Bind { .. }
            | AppError::Kube(_)
            | AppError::Pxb(_) => 64,
            AppError::Signal(_) => 1,
            AppError::Preview(e) => e.exit_code(),
        }
    }
}

/// The pieces the parts share, each made once; every part is handed its own selection.
struct Parts {
    inventory: Arc<Inventory>,
    sources: Arc<SourceStatus>,
    ingest: Arc<IngestStats>,
    telemetry: Arc<TelemetryMetrics>,
    scrape_duration: Arc<ScrapeDuration>,
    self_metrics: Arc<SelfMetrics>,
    pxb_auth: Arc<AuthStats>,
}

impl Parts {
    fn new(inventory: Inventory, configured: &[SourceId]) -> Parts {
        let inventory = Arc::new(inventory);
        let sources = Arc::new(SourceStatus::new(configured));
        let ingest = Arc::new(IngestStats::default());
        let scrape_duration = Arc::new(ScrapeDuration::default());
        let pxb_auth = Arc::new(AuthStats::default());
        let self_metrics = Arc::new(SelfMetrics {
            inventory: inventory.clone(),
            sources: sources.clone(),
            ingest: ingest.clone(),
            scrape_duration: scrape_duration.clone(),
            pxb_auth: pxb_auth.clone(),
        });
        Parts {
            inventory,
            sources,
            ingest,
            telemetry: Arc::new(TelemetryMetrics::default()),
            scrape_duration,
            self_metrics,
            pxb_auth,
        }
    }

    fn source(&self) -> SourceContext {
        SourceContext {
            inventory: self.inventory.clone(),
            status: self.sources.clone(),
        }
    }

    fn telemetry(&self) -> TelemetryContext {
        TelemetryContext {
            inventory: self.inventory.clone(),
            sources: self.sources.clone(),
            metrics: self.telemetry.clone(),
            self_metrics: self.self_metrics.clone(),
        }
    }

    /// Telemetry's families are served whether or not telemetry runs: `enabled 0` is news too.
    fn metrics(&self) -> MetricsContext {
        MetricsContext {
            inventory: self.inventory.clone(),
            sources: self.sources.clone(),
            collectors: vec![self.self_metrics.clone(), self.telemetry.clone()],
            scrape_duration: self.scrape_duration.clone(),
        }
    }
}

/// Opens the inventory, replaying the journal when there is a state dir.
pub fn open_inventory(settings: &Settings, clock: Clock) -> Result<Inventory, JournalError> {
    match &settings.state_dir {
        Some(dir) => {
            let started = std::time::Instant::now();
            let (inv, report) = Inventory::open(clock, settings.inventory_options(), dir)?;
            let took = started.elapsed();
            // Damage is logged range by range by the journal itself; this is the summary.
            if report.skipped_records > 0 {
                tracing::warn!(
                    skipped_records = report.skipped_records,
                    skipped_bytes = report.skipped_bytes,
                    damaged_ranges = ?report.damaged_ranges,
                    torn_tail_bytes = report.truncated_tail_bytes,
                    "the journal was damaged; what the damage touched is lost, the rest came back"
                );
            }
            if report.unreadable_records > 0 || report.undecodable_backups > 0 {
                tracing::warn!(
                    records = report.unreadable_records,
                    backups = report.undecodable_backups,
                    "the journal holds records of a later release; they are kept as they are"
                );
            }
            if let Some(format) = report.upgraded_from {
                tracing::info!(from = format, "journal upgraded to format 2");
            }
            tracing::info!(
                tombstones = report.tombstones,
                live_backups = report.live_backups,
                expired = report.expired,
                journal_bytes = report.journal_bytes,
                took = ?took,
                dir = %dir.display(),
                "journal replayed"
            );
            Ok(inv)
        }
        None => {
            tracing::warn!("no --state-dir: deleted backups will not survive a restart");
            Ok(Inventory::new(clock, settings.inventory_options()))
        }
    }
}

async fn bind(what: &'static str, addr: std::net::SocketAddr) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { what, addr, source })
}

/// Resolves on SIGTERM or SIGINT.
async fn termination() -> Result<impl std::future::Future<Output = ()>, AppError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(AppError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(AppError::Signal)?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    })
}

/// Starts `source` feeding `ctx.inventory` until `stop`, its task in `tasks`; a push source
/// has nothing to start and is synced at once. `kube`: the process's one Kubernetes client,
/// built here when the first part needs it; `pxb_auth`: what the pxb source's Keycloak
/// session counts.
pub async fn start_source(
    source: SourceId,
    ctx: &SourceContext,
    pxb_auth: &Arc<AuthStats>,
    settings: &Settings,
    kube: &mut Option<Arc<Kubernetes>>,
    stop: &CancellationToken,
    tasks: &mut tokio::task::JoinSet<()>,
) -> Result<(), AppError> {
    match source {
        SourceId::Demo => {
            let (ctx, stop) = (ctx.clone(), stop.clone());
            let (seed, interval) = (settings.demo_seed, settings.demo_interval);
            tasks.spawn(async move {
                sources::demo::run(ctx, seed, interval, stop.cancelled_owned()).await
            });
        }
        // Push has no initial state to wait for.
        SourceId::Ingest => ctx.status.mark_synced(SourceId::Ingest),
        SourceId::Pxb => {
            let token = TokenSource::new(&settings.pxb, pxb_auth.clone())
                .map_err(sources::pxb::ClientError::from)?;
            let client = sources::pxb::PxbClient::with_token(&settings.pxb, token)?;
            let (ctx, stop, pxb) = (ctx.clone(), stop.clone(), settings.pxb.clone());
            tasks.spawn(async move {
                sources::pxb::run(ctx, client, pxb, stop.cancelled_owned()).await
            });
        }
        SourceId::Kube => {
            let kube = Kubernetes::get_or_connect(kube, settings).await?;
            let scope = sources::kube::Scope {
                cluster_name: settings.cluster_name.clone(),
                namespaces: settings.namespaces.clone(),
            };
            let (ctx, stop) = (ctx.clone(), stop.clone());
            tasks.spawn(async move {
                sources::kube::run(ctx, kube, scope, stop.cancelled_owned()).await
            });
        }
    }
    Ok(())
}

pub async fn run(settings: Settings) -> Result<(), AppError> {
    // One clock for every time decision (tombstone expiry, telemetry's wall times).
    let clock = Clock::System;
    let parts = Parts::new(open_inventory(&settings, clock.clone())?, &settings.sources);
    // The one Kubernetes client, built when a part first needs it and shared after that.
    let mut kube = None;
    let stop = CancellationToken::new();
    let terminated = termination().await?;

    let metrics_listener = bind("metrics", settings.listen).await?;
    let ingest_listener = if settings.sources.contains(&SourceId::Ingest) {
        Some(bind("ingest", settings.ingest_listen).await?)
    } else {
        None
    };

    let mut tasks = tokio::task::JoinSet::new();
    {
        let inv = parts.inventory.clone();
        let stop = stop.clone();
        tasks.spawn(async move { inv.run_expiry(stop.cancelled_owned()).await });
    }
    {
        let inv = parts.inventory.clone();
        let stop = stop.clone();
        tasks.spawn(async move { inv.run_refresher(stop.cancelled_owned()).await });
    }
    let source_ctx = parts.source();
    for source in &settings.sources {
        start_source(
            *source,
            &source_ctx,
            &parts.pxb_auth,
            &settings,
            &mut kube,
            &stop,
            &mut tasks,
        )
        .await?;
    }
    if settings.telemetry_config != TelemetryConfigSource::None {
        let kube = match settings.telemetry_config {
            TelemetryConfigSource::ConfigMap { .. } => {
                Some(Kubernetes::get_or_connect(&mut kube, &settings).await?)
            }
            _ => None,
        };
        let (sidecar, stop, settings) = (parts.telemetry(), stop.clone(), settings.clone());
        let clock = clock.clone();
        tasks.spawn(async move { telemetry::run(sidecar, settings, kube, clock, stop).await });
    }
    if let Some(listener) = ingest_listener {
        tracing::info!(addr = %settings.ingest_listen, "ingest listening");
        let limits = sources::ingest::Limits::default();
        let token = match (&settings.ingest_token, &settings.ingest_token_file) {
            (Some(token), Some(file)) => sources::ingest::IngestToken::File(Arc::new(
                sources::ingest::TokenFile::new(file, token.clone()),
            )),
            (Some(token), None) => sources::ingest::IngestToken::Fixed(token.clone()),
            (None, _) => sources::ingest::IngestToken::None,
        };
        let router =
            sources::ingest::router_with(source_ctx.clone(), parts.ingest.clone(), token, limits);
        let places = sources::ingest::ConnectionPlaces::new(&limits);
        let stop = stop.clone();
        tasks.spawn(async move {
            server::serve_admitting(
                listener,
                router,
                move || places.admit(),
                stop.cancelled_owned(),
            )
            .await
        });
    }
    let backfill = settings.inventory_options().backfill;
    tracing::info!(
        addr = %settings.listen,
        sources = ?settings.sources,
        mode = backfill.mode(),
        backfill_window = %humantime::format_duration(backfill.window),
        max_resource_series_per_backup = settings.max_resource_series_per_backup,
        "serving metrics"
    );
    let router = server::metrics_router(parts.metrics());
    {
        let stop = stop.clone();
        tasks.spawn(async move {
            server::serve(metrics_listener, router, stop.cancelled_owned()).await
        });
    }

    terminated.await;
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    // Every applied batch was fsynced when it was applied: nothing is left to flush. A
    // compaction now makes the next start replay only what is live.
    let inventory = parts.inventory.clone();
    match tokio::task::spawn_blocking(move || inventory.compact_journal()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "journal compaction at shutdown failed; the journal as written stays valid")
        }
        Err(e) => tracing::warn!(error = %e, "journal compaction at shutdown failed"),
    }
    // And the series as made now, so that the next start sends them instead of rendering
    // every backup again.
    let inventory = parts.inventory.clone();
    match tokio::task::spawn_blocking(move || inventory.save_series_cache()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "the series cache was not written at shutdown; the next start renders every backup")
        }
        Err(e) => tracing::warn!(error = %e, "writing the series cache at shutdown failed"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// `telemetry preview`: the inventory rebuilt in memory by the sources (the journal is not
/// opened: a running sidecar owns it), then the bundles telemetry would make of it.
pub async fn preview_telemetry(settings: Settings, clock: Clock) -> Result<Preview, AppError> {
    crate::tls::install_crypto_provider();
    let mut kube = None;
    let wanted = preview::read_config(&settings, &mut kube).await?;
    let inventory = Inventory::in_memory(clock.clone(), settings.backfill);
    let parts = Parts::new(inventory, &settings.sources);
    let stop = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    let source_ctx = parts.source();
    for id in &settings.sources {
        start_source(
            *id,
            &source_ctx,
            &parts.pxb_auth,
            &settings,
            &mut kube,
            &stop,
            &mut tasks,
        )
        .await?;
    }
    preview::wait_for_sources(&parts.sources).await?;
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    Ok(preview::bundles(&settings, wanted, &parts.telemetry(), &clock).await?)
}
