//! The Kubernetes source: watches Stork's ApplicationBackup, ApplicationRestore and
//! ApplicationBackupSchedule CRs and feeds the inventory (see `docs/kube-source.md`).
//!
//! One kube-runtime watcher per resource and per namespace (or one per resource across all
//! namespaces) runs in its own task and reports `tracker::Signal`s over a channel to one
//! consumer, the `Tracker`, which alone applies events; so the lost-delete bookkeeping needs
//! no lock. A watch stream that simply ends is resumed by kube-runtime from the last
//! resourceVersion; any error (a failed list or watch, 410 Gone, a 5xx) makes the watcher
//! start over with a full list after a backoff (kube-runtime's `DefaultBackoff`), the way
//! client-go's reflector does, and the re-list finds what was deleted meanwhile.

pub mod crd;
pub mod mapping;
pub mod tracker;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::core::DeserializeGuard;
use kube::runtime::watcher::{self, DefaultBackoff};
use kube::{Api, Client, Resource};
use tokio::sync::mpsc;

use crate::kubernetes::Kubernetes;
use crate::model::{Event, SourceId};
use crate::state::Shared;
use crd::{ApplicationBackup, ApplicationBackupSchedule, ApplicationRestore};
use mapping::{ClusterIdentity, StorkResource};
use tracker::{Signal, Tracker};

/// Upper bound of a backoff step when `DefaultBackoff` gives none (it always does today).
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What to watch and how to label it.
#[derive(Clone, Debug)]
pub struct Scope {
    pub cluster_name: String,
    /// Empty: all namespaces.
    pub namespaces: Vec<String>,
}

/// Runs the source until `shutdown` resolves.
pub async fn run(
    shared: Arc<Shared>,
    kube: Arc<Kubernetes>,
    scope: Scope,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    if scope.cluster_name.is_empty() {
        tracing::warn!(
            "--cluster-name is empty: the cluster label of every kube object will be empty"
        );
    }
    // The one lookup of the process, shared with telemetry (see `crate::kubernetes`).
    let uid = tokio::select! {
        uid = kube.cluster_uid() => uid,
        () = &mut shutdown => return,
    };
    let cluster = ClusterIdentity {
        name: scope.cluster_name.clone(),
        uid,
    };
    tracing::info!(cluster = %cluster.name, cluster_uid = %cluster.uid, "cluster identified");
    let client = kube.client();

    let mut listed: Vec<String> = scope
        .namespaces
        .iter()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .collect();
    listed.sort();
    listed.dedup();
    // No namespace listed: one watcher per resource across the whole cluster.
    let namespaces: Vec<Option<String>> = if listed.is_empty() {
        vec![None]
    } else {
        listed.into_iter().map(Some).collect()
    };
    let (tx, mut rx) = mpsc::channel::<(usize, Signal)>(1024);
    let mut watchers = tokio::task::JoinSet::new();
    let mut kinds = Vec::new();
    let mut task_watcher = HashMap::new();
    let ctx = Arc::new(WatchContext {
        shared: shared.clone(),
        cluster: cluster.clone(),
    });
    for ns in &namespaces {
        for spawn in [
            spawn_watcher::<ApplicationBackup>,
            spawn_watcher::<ApplicationRestore>,
            spawn_watcher::<ApplicationBackupSchedule>,
        ] {
            let task = spawn(&mut watchers, &mut kinds, &client, ns, &ctx, &tx);
            task_watcher.insert(task, kinds.len() - 1);
        }
    }
    drop(tx);

    let mut tracker = Tracker::new(&shared.inventory, &shared.sources, cluster, &kinds);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                // Applying may fsync the journal: tell the runtime this worker blocks.
                Some((watcher, signal)) => {
                    tokio::task::block_in_place(|| tracker.handle(watcher, signal));
                }
                None => {
                    tracing::error!("every kube watcher stopped");
                    shared.sources.set_up(SourceId::Kube, false);
                    break;
                }
            },
            // Watchers loop for ever: one that ends has panicked (a bug). Its resource is no
            // longer watched, so the source stays down until a restart rather than look fine.
            Some(done) = watchers.join_next_with_id() => {
                let (task, why) = match done {
                    Ok((task, ())) => (task, "returned".to_owned()),
                    Err(e) => (e.id(), e.to_string()),
                };
                if let Some(watcher) = task_watcher.get(&task) {
                    tracing::error!(watcher, %why, "a kube watcher stopped; restart the sidecar");
                    tokio::task::block_in_place(|| tracker.handle(*watcher, Signal::Failed));
                }
            }
            () = &mut shutdown => break,
        }
    }
    watchers.abort_all();
}

struct WatchContext {
    shared: Arc<Shared>,
    cluster: ClusterIdentity,
}

fn spawn_watcher<K: StorkResource>(
    tasks: &mut tokio::task::JoinSet<()>,
    kinds: &mut Vec<crate::model::Kind>,
    client: &Client,
    namespace: &Option<String>,
    ctx: &Arc<WatchContext>,
    tx: &mpsc::Sender<(usize, Signal)>,
) -> tokio::task::Id {
    let id = kinds.len();
    kinds.push(K::KIND);
    let api: Api<DeserializeGuard<K>> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (ctx, tx) = (ctx.clone(), tx.clone());
    let target = format!(
        "{}/{} in {}",
        K::group(&()),
        K::plural(&()),
        namespace.as_deref().unwrap_or("all namespaces")
    );
    tasks
        .spawn(async move { watch::<K>(id, api, target, ctx, tx).await })
        .id()
}

/// One watcher, for ever: reports what it sees; on an error, reports it, waits out the
/// backoff and starts over with a full list.
async fn watch<K: StorkResource>(
    id: usize,
    api: Api<DeserializeGuard<K>>,
    target: String,
    ctx: Arc<WatchContext>,
    tx: mpsc::Sender<(usize, Signal)>,
) {
    // Resets itself after 120 s without an error, so a server that fails every watch (but
    // lists fine) is not re-listed in a tight loop.
    let mut backoff = DefaultBackoff::default();
    loop {
        let mut stream = std::pin::pin!(watcher::watcher(api.clone(), watcher::Config::default()));
        while let Some(item) = stream.next().await {
            let signal = match item {
                Ok(watcher::Event::Init) => Signal::Relist,
                Ok(watcher::Event::InitApply(obj)) => match ctx.observe(obj) {
                    Some((uid, event)) => Signal::Listed { uid, event },
                    None => continue,
                },
                Ok(watcher::Event::InitDone) => Signal::ListDone,
                Ok(watcher::Event::Apply(obj)) => match ctx.observe(obj) {
                    Some((uid, event)) => Signal::Changed { uid, event },
                    None => continue,
                },
                Ok(watcher::Event::Delete(obj)) => match deletion(&obj) {
                    Some((uid, event)) => Signal::Gone { uid, event },
                    None => continue,
                },
                Err(e) => {
                    tracing::warn!(watch = %target, error = %e, "watch failed; will list again");
                    if tx.send((id, Signal::Failed)).await.is_err() {
                        return;
                    }
                    break;
                }
            };
            if tx.send((id, signal)).await.is_err() {
                return; // the source is shutting down
            }
        }
        tokio::time::sleep(backoff.next().unwrap_or(MAX_BACKOFF)).await;
    }
}

impl WatchContext {
    /// The inventory uid of an added, modified or listed object, and the event to apply
    /// (`None` for a malformed object, which is logged and counted). `None` altogether for an
    /// object without a uid, which the API server never sends.
    fn observe<K: StorkResource>(
        &self,
        obj: DeserializeGuard<K>,
    ) -> Option<(String, Option<Event>)> {
        let meta = obj.meta();
        let (namespace, name) = (
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        );
        let Some(uid) = K::inventory_uid(meta) else {
            tracing::warn!(kind = %K::KIND, %namespace, %name, "object without a uid; skipped");
            self.shared.sources.count_invalid_object(SourceId::Kube);
            return None;
        };
        let cr = match obj.0 {
            Ok(cr) => cr,
            Err(invalid) => {
                tracing::warn!(
                    kind = %K::KIND, %namespace, %name, error = %invalid.error,
                    "malformed object skipped (its last good state, if any, stays)"
                );
                self.shared.sources.count_invalid_object(SourceId::Kube);
                return Some((uid, None));
            }
        };
        match cr.to_object(&self.cluster) {
            Ok(mapped) => {
                for unknown in &mapped.unknown_statuses {
                    tracing::warn!(kind = %K::KIND, %namespace, %name, "{unknown}; exported as Invalid");
                }
                Some((uid, Some(Event::Upsert(mapped.object))))
            }
            Err(e) => {
                tracing::warn!(kind = %K::KIND, %namespace, %name, error = %e, "object skipped");
                self.shared.sources.count_invalid_object(SourceId::Kube);
                Some((uid, None))
            }
        }
    }
}

/// The delete event for a deleted object; its `deletionTimestamp`, when set, is when the
/// deletion was asked for, which is the deletion time PXB shows.
fn deletion<K: StorkResource>(obj: &DeserializeGuard<K>) -> Option<(String, Event)> {
    let meta = obj.meta();
    let uid = K::inventory_uid(meta)?;
    let event = Event::Delete {
        kind: K::KIND,
        uid: uid.clone(),
        deleted_at: meta.deletion_timestamp.as_ref().map(mapping::timestamp),
    };
    Some((uid, event))
}
