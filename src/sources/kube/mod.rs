//! The Kubernetes source: watches Stork's ApplicationBackup, ApplicationRestore and
//! ApplicationBackupSchedule CRs and feeds the inventory, and the SchedulePolicy and
//! NamespacedSchedulePolicy CRs that give schedules their interval (see
//! `docs/kube-source.md`).
//!
//! One kube-runtime watcher per resource and per namespace (or one per resource across all
//! namespaces; cluster-scoped SchedulePolicies always have one) runs in its own task and
//! reports `tracker::Signal`s over a channel to one consumer, the `Tracker`, which alone
//! applies events (through `Inventory::apply_off_runtime`, as every source does); so the
//! lost-delete bookkeeping needs no lock. Every object is applied under its namespace's
//! `Origin`, so that a namespace's re-list deletes only within it (an all-namespaces watcher's
//! covers them all). A watch stream that simply ends is resumed by kube-runtime from the last
//! resourceVersion; any error (a failed list or watch, 410 Gone, a 5xx) makes the watcher
//! start over with a full list after a backoff (kube-runtime's `DefaultBackoff`), the way
//! client-go's reflector does, and the re-list finds what was deleted meanwhile.

pub mod crd;
pub mod mapping;
pub mod policy;
pub mod tracker;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::core::{DeserializeGuard, NamespaceResourceScope};
use kube::runtime::watcher::{self, DefaultBackoff};
use kube::{Api, Client, Resource};
use tokio::sync::mpsc;

use crate::kubernetes::Kubernetes;
use crate::model::{Origin, SourceId};
use crate::sources::{SourceContext, SourceStatus};
use crd::{
    ApplicationBackup, ApplicationBackupSchedule, ApplicationRestore, NamespacedSchedulePolicy,
    SchedulePolicy,
};
use mapping::{ClusterIdentity, CrId, Item, StorkResource, Watched};
use tracker::{Signal, Tracker, WatcherSpec};

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
    ctx: SourceContext,
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
    let mut set = WatcherSet {
        tasks: tokio::task::JoinSet::new(),
        specs: Vec::new(),
        task_watcher: HashMap::new(),
        ctx: Arc::new(WatchContext {
            status: ctx.status.clone(),
            cluster: cluster.clone(),
        }),
        tx,
    };
    for ns in &namespaces {
        set.namespaced::<ApplicationBackup>(&client, ns.as_deref());
        set.namespaced::<ApplicationRestore>(&client, ns.as_deref());
        set.namespaced::<ApplicationBackupSchedule>(&client, ns.as_deref());
        set.namespaced::<NamespacedSchedulePolicy>(&client, ns.as_deref());
    }
    // Cluster-scoped: one watcher, whatever the namespaces.
    set.spawn::<SchedulePolicy>(
        Api::all(client.clone()),
        Origin::source(SourceId::Kube),
        None,
    );
    let WatcherSet {
        tasks: mut watchers,
        specs,
        task_watcher,
        tx,
        ..
    } = set;
    drop(tx);

    let mut tracker =
        Tracker::new(ctx.inventory.clone(), ctx.status.clone(), cluster, &specs).await;
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some((watcher, signal)) => tracker.handle(watcher, signal).await,
                None => {
                    tracing::error!("every kube watcher stopped");
                    ctx.status.set_up(SourceId::Kube, false);
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
                    tracker.handle(*watcher, Signal::Failed).await;
                }
            }
            () = &mut shutdown => break,
        }
    }
    watchers.abort_all();
}

struct WatchContext {
    status: Arc<SourceStatus>,
    cluster: ClusterIdentity,
}

/// The watcher tasks being started, and what the tracker must know of each.
struct WatcherSet {
    tasks: tokio::task::JoinSet<()>,
    /// By watcher number.
    specs: Vec<WatcherSpec>,
    task_watcher: HashMap<tokio::task::Id, usize>,
    ctx: Arc<WatchContext>,
    tx: mpsc::Sender<(usize, Signal)>,
}

impl WatcherSet {
    /// A watcher of a namespaced resource in `namespace`, or across all namespaces; what it
    /// applies is of that namespace's origin (of the whole source across all namespaces).
    fn namespaced<K>(&mut self, client: &Client, namespace: Option<&str>)
    where
        K: StorkResource + Resource<Scope = NamespaceResourceScope>,
    {
        match namespace {
            Some(ns) => self.spawn::<K>(
                Api::namespaced(client.clone(), ns),
                Origin::scoped(SourceId::Kube, ns),
                Some(ns),
            ),
            None => self.spawn::<K>(
                Api::all(client.clone()),
                Origin::source(SourceId::Kube),
                None,
            ),
        }
    }

    fn spawn<K: StorkResource>(
        &mut self,
        api: Api<DeserializeGuard<K>>,
        origin: Origin,
        namespace: Option<&str>,
    ) {
        let id = self.specs.len();
        self.specs.push(WatcherSpec {
            watched: K::WATCHED,
            origin,
        });
        let (ctx, tx) = (self.ctx.clone(), self.tx.clone());
        let target = format!(
            "{}/{} in {}",
            K::group(&()),
            K::plural(&()),
            namespace.unwrap_or("all namespaces")
        );
        let task = self
            .tasks
            .spawn(async move { watch::<K>(id, api, target, ctx, tx).await })
            .id();
        self.task_watcher.insert(task, id);
    }
}

/// How often a resource type the API server does not serve is looked for again.
const TYPE_RECHECK: Duration = Duration::from_secs(300);

/// The first list answered 404: the API server does not serve this resource type.
fn type_not_installed(e: &watcher::Error) -> bool {
    matches!(e, watcher::Error::InitialListFailed(kube::Error::Api(status)) if status.is_not_found())
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
                    Some((id, item)) => Signal::Listed { id, item },
                    None => continue,
                },
                Ok(watcher::Event::InitDone) => Signal::ListDone,
                Ok(watcher::Event::Apply(obj)) => match ctx.observe(obj) {
                    Some((id, item)) => Signal::Changed { id, item },
                    None => continue,
                },
                Ok(watcher::Event::Delete(obj)) => match K::cr_id(obj.meta()) {
                    // Its `deletionTimestamp`, when set, is when the deletion was asked for,
                    // which is the deletion time PXB shows.
                    Some(id) => Signal::Gone {
                        id,
                        deleted_at: obj
                            .meta()
                            .deletion_timestamp
                            .as_ref()
                            .map(mapping::timestamp),
                    },
                    None => continue,
                },
                Err(e) if K::WATCHED == Watched::SchedulePolicies && type_not_installed(&e) => {
                    // Older Stork releases lack the policy types: that is an empty list, not
                    // a failure, or the source would never become ready. Looked for again
                    // now and then, in case Stork is upgraded.
                    tracing::info!(watch = %target, "this Stork has no such resource type; schedules get no interval from it (checked again every 5 minutes)");
                    for signal in [Signal::Relist, Signal::ListDone] {
                        if tx.send((id, signal)).await.is_err() {
                            return;
                        }
                    }
                    tokio::time::sleep(TYPE_RECHECK).await;
                    continue;
                }
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
    /// Who an added, modified or listed object is, and what it means for the tracker (`None`
    /// for a malformed object, which is logged and counted). `None` altogether for an object
    /// without a uid, which the API server never sends.
    fn observe<K: StorkResource>(&self, obj: DeserializeGuard<K>) -> Option<(CrId, Option<Item>)> {
        let meta = obj.meta();
        let (namespace, name) = (
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        );
        let what = K::kind(&());
        let Some(id) = K::cr_id(meta) else {
            tracing::warn!(kind = %what, %namespace, %name, "object without a uid; skipped");
            self.status.count_invalid_object(SourceId::Kube);
            return None;
        };
        let cr = match obj.0 {
            Ok(cr) => cr,
            Err(invalid) => {
                tracing::warn!(
                    kind = %what, %namespace, %name, error = %invalid.error,
                    "malformed object skipped (its last good state, if any, stays)"
                );
                self.status.count_invalid_object(SourceId::Kube);
                return Some((id, K::observe_malformed(&invalid.metadata)));
            }
        };
        match cr.observe(&self.cluster) {
            Ok(observed) => {
                for warning in &observed.warnings {
                    tracing::warn!(kind = %what, %namespace, %name, "{warning}");
                }
                if observed.invalid {
                    self.status.count_invalid_object(SourceId::Kube);
                }
                Some((id, Some(observed.item)))
            }
            Err(e) => {
                tracing::warn!(kind = %what, %namespace, %name, error = %e, "object skipped");
                self.status.count_invalid_object(SourceId::Kube);
                Some((id, None))
            }
        }
    }
}
