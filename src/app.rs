//! Wiring: builds the shared state from `Settings`, starts the sources, the expiry task and
//! the listeners, and shuts everything down in order on SIGTERM or SIGINT.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{Settings, TelemetryConfigSource};
use crate::exposition::server;
use crate::inventory::{Inventory, JournalError};
use crate::kubernetes::{KubeClientError, Kubernetes};
use crate::model::SourceId;
use crate::sources::{self, SourceStatus};
use crate::state::Shared;

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
        }
    }
}

/// Opens the inventory, replaying the journal when there is a state dir.
pub fn open_inventory(settings: &Settings, clock: Clock) -> Result<Inventory, JournalError> {
    match &settings.state_dir {
        Some(dir) => {
            let (inv, report) = Inventory::open(clock, settings.inventory_options(), dir)?;
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

/// Starts `source` feeding `shared.inventory` until `stop`, its task in `tasks`; a push
/// source has nothing to start and is synced at once. `kube`: the process's one Kubernetes
/// client, built here when the first part needs it.
pub async fn start_source(
    source: SourceId,
    shared: &Arc<Shared>,
    settings: &Settings,
    kube: &mut Option<Arc<Kubernetes>>,
    stop: &CancellationToken,
    tasks: &mut tokio::task::JoinSet<()>,
) -> Result<(), AppError> {
    match source {
        SourceId::Demo => {
            let (shared, stop) = (shared.clone(), stop.clone());
            let (seed, interval) = (settings.demo_seed, settings.demo_interval);
            tasks.spawn(async move {
                sources::demo::run(shared, seed, interval, stop.cancelled_owned()).await
            });
        }
        // Push has no initial state to wait for.
        SourceId::Ingest => shared.sources.mark_synced(SourceId::Ingest),
        SourceId::Pxb => {
            let client = sources::pxb::PxbClient::new(&settings.pxb)?;
            let (shared, stop, pxb) = (shared.clone(), stop.clone(), settings.pxb.clone());
            tasks.spawn(async move {
                sources::pxb::run(shared, client, pxb, stop.cancelled_owned()).await
            });
        }
        SourceId::Kube => {
            let kube = Kubernetes::get_or_connect(kube, settings).await?;
            let scope = sources::kube::Scope {
                cluster_name: settings.cluster_name.clone(),
                namespaces: settings.namespaces.clone(),
            };
            let (shared, stop) = (shared.clone(), stop.clone());
            tasks.spawn(async move {
                sources::kube::run(shared, kube, scope, stop.cancelled_owned()).await
            });
        }
    }
    Ok(())
}

pub async fn run(settings: Settings) -> Result<(), AppError> {
    // One clock for every time decision (tombstone expiry, telemetry's wall times).
    let clock = Clock::System;
    let inventory = Arc::new(open_inventory(&settings, clock.clone())?);
    // The one Kubernetes client, built when a part first needs it and shared after that.
    let mut kube = None;
    let shared = Arc::new(Shared::new(inventory, SourceStatus::new(&settings.sources)));
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
        let inv = shared.inventory.clone();
        let stop = stop.clone();
        tasks.spawn(async move { inv.run_expiry(stop.cancelled_owned()).await });
    }
    {
        let inv = shared.inventory.clone();
        let stop = stop.clone();
        tasks.spawn(async move { inv.run_refresher(stop.cancelled_owned()).await });
    }
    for source in &settings.sources {
        start_source(*source, &shared, &settings, &mut kube, &stop, &mut tasks).await?;
    }
    if settings.telemetry_config != TelemetryConfigSource::None {
        let kube = match settings.telemetry_config {
            TelemetryConfigSource::ConfigMap { .. } => {
                Some(Kubernetes::get_or_connect(&mut kube, &settings).await?)
            }
            _ => None,
        };
        let (shared, stop, settings) = (shared.clone(), stop.clone(), settings.clone());
        let clock = clock.clone();
        tasks
            .spawn(async move { crate::telemetry::run(shared, settings, kube, clock, stop).await });
    }
    if let Some(listener) = ingest_listener {
        tracing::info!(addr = %settings.ingest_listen, "ingest listening");
        let router = sources::ingest::router(shared.clone(), settings.ingest_token.clone());
        let stop = stop.clone();
        tasks.spawn(async move { server::serve(listener, router, stop.cancelled_owned()).await });
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
    let router = server::metrics_router(shared.clone());
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
    let inventory = shared.inventory.clone();
    match tokio::task::spawn_blocking(move || inventory.compact_journal()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "journal compaction at shutdown failed; the journal as written stays valid")
        }
        Err(e) => tracing::warn!(error = %e, "journal compaction at shutdown failed"),
    }
    tracing::info!("stopped");
    Ok(())
}
