//! The Kubernetes source: watches Stork's ApplicationBackup, ApplicationRestore and
//! ApplicationBackupSchedule CRs and feeds the inventory, and the SchedulePolicy and
//! NamespacedSchedulePolicy CRs that give schedules their interval (see
//! `docs/kube-source.md`).
//!
//! One kube-runtime watcher per resource and per namespace (or one per resource across all
//! namespaces; cluster-scoped SchedulePolicies always have one) runs in its own task and
//! reports `tracker::Signal`s over a channel to one consumer, the `Tracker`, which alone
//! applies events; so the lost-delete bookkeeping needs no lock. Each namespace's watchers
//! apply under their own `Origin`, so that a re-list deletes only within its namespace. A watch stream that simply ends is resumed by kube-runtime from the last
//! resourceVersion; any error (a failed list or watch, 410 Gone, a 5xx) makes the watcher
//! start over with a full list after a backoff (kube-runtime's `DefaultBackoff`), the way
//! client-go's reflector does, and the re-list finds what was deleted meanwhile.

pub mod crd;
pub mod mapping;
pub mod policy;
pub mod tracker;

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{DeserializeGuard, NamespaceResourceScope};
use kube::runtime::watcher::{self, DefaultBackoff};
use kube::{Api, Client, Resource};
use tokio::sync::mpsc;

use crate::model::{Event, Origin, SourceId};
use crate::state::Shared;
use crd::{
    ApplicationBackup, ApplicationBackupSchedule, ApplicationRestore, NamespacedSchedulePolicy,
    SchedulePolicy,
};
use mapping::{ClusterIdentity, Item, StorkResource, Watched};
use tracker::{Signal, Tracker, WatcherSpec};

/// Upper bound of a backoff step when `DefaultBackoff` gives none (it always does today).
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum KubeSourceError {
    #[error("--kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("no Kubernetes configuration (no --kubeconfig / KUBECONFIG, ~/.kube/config or in-cluster service account): {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("cannot build the Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// Builds the API client from `--kubeconfig`, or else the usual places (KUBECONFIG,
/// ~/.kube/config, the in-cluster service account). Reads files only: no request is made.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, KubeSourceError> {
    crate::tls::install_crypto_provider();
    let config = match kubeconfig {
        Some(path) => {
            let wrap = |source| KubeSourceError::Kubeconfig {
                path: path.display().to_string(),
                source,
            };
            let file = Kubeconfig::read_from(path).map_err(wrap)?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(wrap)?
        }
        None => kube::Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

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
    client: Client,
    scope: Scope,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    if scope.cluster_name.is_empty() {
        tracing::warn!(
            "--cluster-name is empty: the cluster label of every kube object will be empty"
        );
    }
    let uid = tokio::select! {
        uid = cluster_uid(&client) => uid,
        () = &mut shutdown => return,
    };
    let cluster = ClusterIdentity {
        name: scope.cluster_name.clone(),
        uid,
    };
    tracing::info!(cluster = %cluster.name, cluster_uid = %cluster.uid, "cluster identified");

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
            shared: shared.clone(),
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

    let mut tracker = Tracker::new(&shared.inventory, &shared.sources, cluster, &specs);
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

/// The cluster's UUID: the UID of the `kube-system` namespace, which lives as long as the
/// cluster. Retried with backoff until the API answers; nothing is labelled without it.
async fn cluster_uid(client: &Client) -> String {
    let api: Api<Namespace> = Api::all(client.clone());
    let mut backoff = DefaultBackoff::default();
    loop {
        match api.get("kube-system").await {
            Ok(ns) => match ns.metadata.uid.filter(|u| !u.is_empty()) {
                Some(uid) => return uid,
                None => tracing::warn!("the kube-system namespace has no uid; retrying"),
            },
            Err(e) => tracing::warn!(
                error = %e,
                "cannot read the kube-system namespace (its uid identifies the cluster); retrying"
            ),
        }
        tokio::time::sleep(backoff.next().unwrap_or(MAX_BACKOFF)).await;
    }
}

struct WatchContext {
    shared: Arc<Shared>,
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
                    Some((uid, item)) => Signal::Listed { uid, item },
                    None => continue,
                },
                Ok(watcher::Event::InitDone) => Signal::ListDone,
                Ok(watcher::Event::Apply(obj)) => match ctx.observe(obj) {
                    Some((uid, item)) => Signal::Changed { uid, item },
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
    /// The uid of an added, modified or listed object, and what it means for the tracker
    /// (`None` for a malformed object, which is logged and counted). `None` altogether for an
    /// object without a uid, which the API server never sends.
    fn observe<K: StorkResource>(
        &self,
        obj: DeserializeGuard<K>,
    ) -> Option<(String, Option<Item>)> {
        let meta = obj.meta();
        let (namespace, name) = (
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        );
        let what = K::kind(&());
        let Some(uid) = K::inventory_uid(meta) else {
            tracing::warn!(kind = %what, %namespace, %name, "object without a uid; skipped");
            self.shared.sources.count_invalid_object(SourceId::Kube);
            return None;
        };
        let cr = match obj.0 {
            Ok(cr) => cr,
            Err(invalid) => {
                tracing::warn!(
                    kind = %what, %namespace, %name, error = %invalid.error,
                    "malformed object skipped (its last good state, if any, stays)"
                );
                self.shared.sources.count_invalid_object(SourceId::Kube);
                return Some((uid, K::observe_malformed(&invalid.metadata)));
            }
        };
        match cr.observe(&self.cluster) {
            Ok(observed) => {
                for warning in &observed.warnings {
                    tracing::warn!(kind = %what, %namespace, %name, "{warning}");
                }
                if observed.invalid {
                    self.shared.sources.count_invalid_object(SourceId::Kube);
                }
                Some((uid, Some(observed.item)))
            }
            Err(e) => {
                tracing::warn!(kind = %what, %namespace, %name, error = %e, "object skipped");
                self.shared.sources.count_invalid_object(SourceId::Kube);
                Some((uid, None))
            }
        }
    }
}

/// The uid of a deleted object and its deletion for the inventory (none for a schedule
/// policy). Its `deletionTimestamp`, when set, is when the deletion was asked for, which is
/// the deletion time PXB shows.
fn deletion<K: StorkResource>(obj: &DeserializeGuard<K>) -> Option<(String, Option<Event>)> {
    let meta = obj.meta();
    let uid = K::inventory_uid(meta)?;
    let event = match K::WATCHED {
        Watched::Objects(kind) => Some(Event::Delete {
            kind,
            uid: uid.clone(),
            deleted_at: meta.deletion_timestamp.as_ref().map(mapping::timestamp),
        }),
        Watched::SchedulePolicies => None,
    };
    Some((uid, event))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_https_kubeconfig_builds_a_client() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("kubeconfig");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443\n\
             contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n\
             current-context: c\nusers:\n- name: u\n  user:\n    token: t\n",
        )
        .expect("write kubeconfig");
        client(Some(&path))
            .await
            .expect("a client for an https server");
    }

    #[tokio::test]
    async fn a_missing_kubeconfig_names_the_file() {
        let Err(err) = client(Some(Path::new("/nonexistent/kubeconfig"))).await else {
            panic!("a client from a file that does not exist");
        };
        assert!(err.to_string().contains("/nonexistent/kubeconfig"), "{err}");
    }
}
