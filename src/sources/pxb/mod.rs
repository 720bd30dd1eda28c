//! The PX-Backup source: polls PX-Backup's REST gateway and feeds the inventory (see
//! `docs/pxb-source.md`).
//!
//! PX-Backup has no watch, so every poll enumerates, for every organization, its clusters,
//! backup locations, backup schedules (with the schedule policies, for their intervals),
//! backups and restores, page by page, and upserts what it finds through the same event path
//! as the other sources. Deletions are found by absence: after a *complete* enumeration of one
//! kind in one organization, `Inventory::resync` of that organization's origin tombstones the
//! backups (and drops the other objects) it no longer lists. An enumeration that fails or is
//! cut short deletes nothing; the last good state stays exported and the source is down
//! (`pxbackup_sidecar_source_up{source="pxb"} 0`) until a poll completes again.
//!
//! Paging is by offset (`object_index`), so an object deleted while a later page is read
//! shifts the rest and one object can be missed. A miss must not become a tombstone (an upsert
//! older than the deletion would never bring it back), so an enumeration is taken at its word
//! only when every page reported the same `total_count` and exactly that many distinct objects
//! were listed. Otherwise (objects came or went while paging) only what neither this nor the
//! previous enumeration listed is deleted: a miss is an accident of one poll, a deletion is
//! absent again from the next. A busy fleet, whose enumerations rarely hold still, thus still
//! sees its deletions, at most two polls late. The cost is one set of uids per organization
//! and kind, kept from one poll to the next.
//!
//! An unchanged poll writes nothing: the inventory ignores a backup equal to the one it holds
//! (the mapping is deterministic), and the source does not upsert again a restore, schedule,
//! cluster or backup location equal to the one it applied last.

pub mod auth;
pub mod client;
pub mod mapping;
pub mod schedule_policy;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use crate::config::PxbSettings;
use crate::model::{Event, Kind, Object, Origin, SourceId};
use crate::sources::{SourceContext, SourceStatus};
pub use client::{CallError, ClientError, PxbClient};
use mapping::{ClusterIndex, Context, Mapped, MappingError, PolicyIntervals};
use wire::{decode_page, Listed};

/// An enumeration longer than this many pages is not an enumeration (a server that never
/// says it is done): it is cut short.
const MAX_PAGES: u64 = 100_000;
/// Log lines about one bad object are written once; the memory of what was said is bounded.
const MAX_REMEMBERED_WARNINGS: usize = 10_000;

/// Why one enumeration (or the organization list) failed.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("{url}: the answer does not parse: {reason}")]
    Page { url: String, reason: String },
    #[error("{url}: the enumeration stopped short: {reason}")]
    CutShort { url: String, reason: String },
}

/// What one poll did, for the log and the tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PollReport {
    /// Every organization was enumerated completely.
    pub complete: bool,
    pub orgs: usize,
    /// Objects listed, by `Kind::index`.
    pub listed: [usize; 5],
    /// Objects upserted (changed or new), by `Kind::index`.
    pub upserted: [usize; 5],
    /// Objects found gone (backups tombstoned, others dropped).
    pub deleted: usize,
    /// Objects that could not be mapped and were skipped.
    pub skipped: usize,
    /// Enumerations whose deletions wait for the next poll (objects changed while paging).
    pub deferred: usize,
    /// What failed, one line per organization.
    pub failures: Vec<String>,
}

/// What the source remembers about one organization between polls.
#[derive(Default)]
struct OrgState {
    /// The last restore, schedule, cluster and backup location upserted, by `Kind::index`
    /// and uid: the inventory renders every upsert of these kinds, so an unchanged one is
    /// not sent again.
    applied: [HashMap<String, Object>; 5],
    /// The schedule policies' intervals from the last poll that could read them.
    intervals: PolicyIntervals,
    /// What the last completed enumeration of each kind listed, by `Kind::index`.
    previous: [Option<HashSet<String>>; 5],
}

/// Logging and counting of what cannot be exported.
struct Reporter {
    status: Arc<SourceStatus>,
    said: HashSet<String>,
}

impl Reporter {
    /// Whether this is the first time `what` is said (then it is remembered).
    fn first_time(&mut self, what: String) -> bool {
        if self.said.len() >= MAX_REMEMBERED_WARNINGS {
            self.said.clear();
        }
        self.said.insert(what)
    }

    fn skipped(&mut self, org: &str, kind: Kind, name: &str, uid: &str, reason: &str) {
        self.status.count_invalid_object(SourceId::Pxb);
        if self.first_time(format!("skip\0{org}\0{kind}\0{uid}\0{name}\0{reason}")) {
            tracing::warn!(
                %org, %kind, %name, %uid, %reason,
                "PX-Backup object skipped: it cannot be mapped (its last good state, if any, stays; said once)"
            );
        }
    }

    fn unknown_status(&mut self, org: &str, kind: Kind, name: &str, uid: &str, what: String) {
        if self.first_time(format!("status\0{org}\0{kind}\0{uid}\0{what}")) {
            tracing::warn!(%org, %kind, %name, %uid, "{what}; exported as Invalid (said once)");
        }
    }
}

/// The result of enumerating one kind in one organization.
struct Enumeration {
    listed: HashSet<String>,
    /// Complete for deletions: `total_count` held still and matched what was listed.
    consistent: bool,
}

/// The poll loop's state. `poll` runs one poll; `run` repeats it.
pub struct Poller {
    ctx: SourceContext,
    settings: PxbSettings,
    reporter: Reporter,
    orgs: BTreeMap<String, OrgState>,
    synced: bool,
    /// Whether the organizations of the backups restored from the journal were checked
    /// against PX-Backup's list (once, at the first list).
    restored_orgs_checked: bool,
    failing: bool,
}

impl Poller {
    pub fn new(ctx: SourceContext, settings: PxbSettings) -> Poller {
        Poller {
            reporter: Reporter {
                status: ctx.status.clone(),
                said: HashSet::new(),
            },
            ctx,
            settings,
            orgs: BTreeMap::new(),
            synced: false,
            restored_orgs_checked: false,
            failing: false,
        }
    }

    /// One poll of every organization; updates the source's health and readiness.
    pub async fn poll(&mut self, client: &mut PxbClient) -> PollReport {
        let started = Instant::now();
        let mut report = PollReport::default();
        let orgs = match self.organizations(client).await {
            Ok(orgs) => orgs,
            Err(e) => {
                report.failures.push(e.to_string());
                self.finish(&report, started);
                return report;
            }
        };
        report.orgs = orgs.len();
        let mut backups_consistent = true;
        for org in &orgs {
            let mut state = self.orgs.remove(org).unwrap_or_default();
            let result = self.poll_org(client, org, &mut state, &mut report).await;
            self.orgs.insert(org.clone(), state);
            match result {
                Ok(consistent) => backups_consistent &= consistent,
                Err(e) => report.failures.push(format!("organization {org}: {e}")),
            }
        }
        if self.settings.orgs.is_empty() {
            self.forget_vanished_orgs(&orgs, &mut report).await;
        }
        report.complete = report.failures.is_empty();
        if report.complete && backups_consistent {
            report.deleted += self.resync_restored_backups(&orgs).await;
        }
        self.finish(&report, started);
        report
    }

    /// The journal (format 2) brings backups back with their organization's origin, so the
    /// per-organization resyncs find those deleted while the sidecar was down. A journal of
    /// the previous release (format 1) kept the source alone: its backups come back under the
    /// source without an organization, and move to their organization's origin when a poll
    /// lists them. One that no organization lists any more was deleted while the sidecar was
    /// down, and only this resync of the bare source can see it. Only after a poll whose
    /// every backup enumeration held still.
    async fn resync_restored_backups(&mut self, orgs: &[String]) -> usize {
        let origin = Origin::source(SourceId::Pxb);
        let slot = Kind::Backup.index();
        if let [org] = orgs {
            // One organization (the usual case): its listing, lent and put back, not copied.
            let Some(listed) = self.orgs.get_mut(org).and_then(|s| s.previous[slot].take()) else {
                return 0;
            };
            let (gone, listed) = self.resync(origin, Kind::Backup, listed).await;
            if let Some(state) = self.orgs.get_mut(org) {
                state.previous[slot] = listed;
            }
            return gone;
        }
        let mut all: HashSet<String> = HashSet::new();
        for org in orgs {
            match self.orgs.get(org).and_then(|s| s.previous[slot].as_ref()) {
                Some(listed) => all.extend(listed.iter().cloned()),
                None => return 0,
            }
        }
        self.resync(origin, Kind::Backup, all).await.0
    }

    /// `--pxb-orgs`, or every organization PX-Backup lists.
    async fn organizations(&mut self, client: &mut PxbClient) -> Result<Vec<String>, PollError> {
        if !self.settings.orgs.is_empty() {
            return Ok(self.settings.orgs.clone());
        }
        let url = client.url(&["v1", "organization"], &[]);
        let body = client.get(url.clone()).await?;
        let page = decode_page::<wire::OrganizationObject>(&body).map_err(|e| PollError::Page {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        let mut orgs: Vec<String> = page
            .items
            .iter()
            .filter(|i| i.problem.is_none())
            .filter_map(|i| mapping::organization_id(&i.object))
            .map(str::to_owned)
            .collect();
        orgs.sort();
        orgs.dedup();
        if orgs.is_empty() {
            // PX-Backup always has its default organization: an empty list is a broken answer,
            // and taken at its word it would delete everything.
            return Err(PollError::CutShort {
                url: url.to_string(),
                reason: "PX-Backup lists no organization".into(),
            });
        }
        Ok(orgs)
    }

    /// An organization PX-Backup no longer lists was deleted, and its objects with it. The
    /// first time, that includes the organizations of the backups the journal brought back:
    /// one deleted while the sidecar was down is seen by no other poll.
    async fn forget_vanished_orgs(&mut self, listed: &[String], report: &mut PollReport) {
        let mut vanished: BTreeSet<String> = self
            .orgs
            .keys()
            .filter(|o| !listed.contains(o))
            .cloned()
            .collect();
        if !self.restored_orgs_checked {
            self.restored_orgs_checked = true;
            let inventory = Arc::clone(&self.ctx.inventory);
            match tokio::task::spawn_blocking(move || inventory.backup_scopes(SourceId::Pxb)).await
            {
                // The bare source is a format 1 journal's: `resync_restored_backups` sees to it.
                Ok(scopes) => vanished.extend(
                    scopes
                        .iter()
                        .filter(|s| !s.is_empty() && !listed.iter().any(|o| o.as_str() == &***s))
                        .map(|s| s.to_string()),
                ),
                Err(e) => tracing::error!(error = %e, "reading the restored organizations failed"),
            }
        }
        for org in vanished {
            tracing::info!(%org, "PX-Backup no longer lists this organization; its objects are deleted");
            for kind in Kind::ALL {
                report.deleted += self
                    .resync(Origin::scoped(SourceId::Pxb, &org), kind, HashSet::new())
                    .await
                    .0;
            }
            self.orgs.remove(&org);
        }
    }

    fn finish(&mut self, report: &PollReport, started: Instant) {
        let status = &self.ctx.status;
        let took = started.elapsed();
        if report.complete {
            if !self.synced {
                self.synced = true;
                status.mark_synced(SourceId::Pxb);
                tracing::info!(url = %self.settings.url, orgs = report.orgs, backups = report.listed[Kind::Backup.index()], ?took, "first complete poll of PX-Backup");
            } else {
                status.set_up(SourceId::Pxb, true);
                if self.failing {
                    tracing::info!(url = %self.settings.url, ?took, "PX-Backup polled completely again");
                }
            }
            self.failing = false;
            tracing::debug!(?report, ?took, "PX-Backup poll");
        } else {
            status.set_up(SourceId::Pxb, false);
            self.failing = true;
            for failure in &report.failures {
                tracing::warn!(url = %self.settings.url, error = %failure, "PX-Backup poll failed; nothing is deleted from what it did not list completely, and the last good state stays");
            }
        }
    }

    /// Enumerates every kind of one organization. Returns whether its backups' enumeration
    /// held still.
    async fn poll_org(
        &mut self,
        client: &mut PxbClient,
        org: &str,
        state: &mut OrgState,
        report: &mut PollReport,
    ) -> Result<bool, PollError> {
        let origin = Origin::scoped(SourceId::Pxb, org);
        let no_clusters = ClusterIndex::default();
        let no_intervals = PolicyIntervals::default();

        // Clusters first: backups, restores and schedules whose cluster_ref has no uid find
        // it by the cluster's name.
        let mut clusters = ClusterIndex::default();
        let ctx = Context {
            org,
            clusters: &no_clusters,
            intervals: &no_intervals,
        };
        let listing = self
            .enumerate(
                client,
                &origin,
                Kind::Cluster,
                &[],
                Some(&mut state.applied),
                report,
                |c: wire::ClusterObject| {
                    clusters.insert(&c.metadata.name, &c.metadata.uid);
                    mapping::cluster(c, &ctx).map(|m| lift(m, Object::Cluster))
                },
            )
            .await?;
        self.finish_kind(&origin, Kind::Cluster, listing, state, report)
            .await;

        let ctx = Context {
            org,
            clusters: &no_clusters,
            intervals: &no_intervals,
        };
        let listing = self
            .enumerate(
                client,
                &origin,
                Kind::BackupLocation,
                &[],
                Some(&mut state.applied),
                report,
                |l| mapping::backup_location(l, &ctx).map(|m| lift(m, Object::BackupLocation)),
            )
            .await?;
        self.finish_kind(&origin, Kind::BackupLocation, listing, state, report)
            .await;

        self.read_policies(client, org, state).await;
        let intervals = state.intervals.clone();
        let ctx = Context {
            org,
            clusters: &clusters,
            intervals: &intervals,
        };
        let listing = self
            .enumerate(
                client,
                &origin,
                Kind::Schedule,
                &[],
                Some(&mut state.applied),
                report,
                |s| mapping::schedule(s, &ctx).map(|m| lift(m, Object::Schedule)),
            )
            .await?;
        self.finish_kind(&origin, Kind::Schedule, listing, state, report)
            .await;

        // The VM and namespace resource lists are "detailed resources": without them the
        // backup's VM resources and namespace resources would be empty.
        let detailed = [("enumerate_options.include_detailed_resources", "true")];
        let backups = self
            .enumerate(
                client,
                &origin,
                Kind::Backup,
                &detailed,
                None,
                report,
                |b| mapping::backup(b, &ctx).map(|m| lift(m, Object::Backup)),
            )
            .await?;
        let backups_consistent = backups.consistent;
        self.finish_kind(&origin, Kind::Backup, backups, state, report)
            .await;

        let listing = self
            .enumerate(
                client,
                &origin,
                Kind::Restore,
                &[],
                Some(&mut state.applied),
                report,
                |r| mapping::restore(r, &ctx).map(|m| lift(m, Object::Restore)),
            )
            .await?;
        self.finish_kind(&origin, Kind::Restore, listing, state, report)
            .await;
        Ok(backups_consistent)
    }

    /// After a complete enumeration: what it no longer lists is gone. When objects came or
    /// went while it was paged, only what the previous enumeration did not list either (see
    /// the module's notes); with no previous one, nothing.
    async fn finish_kind(
        &mut self,
        origin: &Origin,
        kind: Kind,
        listing: Enumeration,
        state: &mut OrgState,
        report: &mut PollReport,
    ) {
        let slot = kind.index();
        report.listed[slot] += listing.listed.len();
        if listing.consistent {
            state.applied[slot].retain(|uid, _| listing.listed.contains(uid));
            let (gone, listed) = self.resync(origin.clone(), kind, listing.listed).await;
            report.deleted += gone;
            state.previous[slot] = listed;
            return;
        }
        report.deferred += 1;
        let listed = listing.listed;
        let Some(mut keep) = state.previous[slot].take() else {
            tracing::info!(org = %origin.scope, %kind, "objects came or went while PX-Backup was paged; deletions are checked at the next poll");
            state.previous[slot] = Some(listed);
            return;
        };
        tracing::info!(org = %origin.scope, %kind, "objects came or went while PX-Backup was paged; only what the previous poll did not list either is deleted");
        // Kept: listed now or last time. Only what is new since is copied in.
        for uid in &listed {
            if !keep.contains(uid) {
                keep.insert(uid.clone());
            }
        }
        let (gone, keep) = self.resync(origin.clone(), kind, keep).await;
        report.deleted += gone;
        if let Some(keep) = keep {
            state.applied[slot].retain(|uid, _| keep.contains(uid));
        }
        state.previous[slot] = Some(listed);
    }

    /// The schedule policies of `org`, for the schedules' intervals. They are a nicety: a
    /// failure keeps the intervals of the last poll that read them and fails nothing.
    async fn read_policies(&mut self, client: &mut PxbClient, org: &str, state: &mut OrgState) {
        let url = client.url(&["v1", "schedulepolicy", org], &[]);
        let result = match client.get(url.clone()).await {
            Ok(body) => decode_page::<wire::SchedulePolicyObject>(&body)
                .map_err(|e| format!("{url}: the answer does not parse: {e}")),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(page) => {
                state.intervals = PolicyIntervals::from_policies(
                    page.items
                        .iter()
                        .filter(|i| i.problem.is_none())
                        .map(|i| &i.object),
                );
            }
            Err(reason) => {
                if self
                    .reporter
                    .first_time(format!("policies\0{org}\0{reason}"))
                {
                    tracing::warn!(%org, %reason, "cannot read PX-Backup's schedule policies; schedules keep the intervals last read (said once)");
                }
            }
        }
    }

    /// Enumerates one kind of one organization page by page, applying each page's upserts as
    /// it comes. `map` turns an object into an inventory object; `applied`, when given, is the
    /// memory of what was last upserted for kinds the inventory does not compare.
    #[allow(clippy::too_many_arguments)] // one call site per kind, all alike
    async fn enumerate<T: Listed>(
        &mut self,
        client: &mut PxbClient,
        origin: &Origin,
        kind: Kind,
        extra_query: &[(&str, &str)],
        mut applied: Option<&mut [HashMap<String, Object>; 5]>,
        report: &mut PollReport,
        mut map: impl FnMut(T) -> Result<Mapped<Object>, MappingError>,
    ) -> Result<Enumeration, PollError> {
        let org: &str = &origin.scope;
        let path = path_of(kind);
        let page_size = self.settings.page_size.to_string();
        let mut listed: HashSet<String> = HashSet::new();
        // Objects without a uid: not in `listed`, but counted by PX-Backup's total.
        let mut unnamed: u64 = 0;
        let mut index: u64 = 0;
        let mut first_total: Option<Option<u64>> = None;
        let mut total_held = true;
        let mut total = None;
        for _ in 0..MAX_PAGES {
            let object_index = index.to_string();
            let mut query = vec![
                ("enumerate_options.max_objects", page_size.as_str()),
                ("enumerate_options.object_index", object_index.as_str()),
            ];
            query.extend_from_slice(extra_query);
            let url = client.url(&["v1", path, org], &query);
            let body = client.get(url.clone()).await?;
            let page = decode_page::<T>(&body).map_err(|e| PollError::Page {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
            drop(body);
            total = page.total_count.filter(|t| *t > 0);
            match first_total {
                None => first_total = Some(total),
                Some(first) => total_held &= first == total,
            }
            let n = page.items.len();
            let before = listed.len() as u64 + unnamed;
            let mut events = Vec::with_capacity(n);
            for item in page.items {
                let meta = item.object.metadata();
                let uid = meta.uid.as_str();
                if let Some(reason) = &item.problem {
                    self.reporter.skipped(org, kind, &meta.name, uid, reason);
                    report.skipped += 1;
                    // Listed all the same: its last good state stays, it is not deleted.
                    if uid.is_empty() {
                        unnamed += 1;
                    } else {
                        listed.insert(uid.to_owned());
                    }
                    continue;
                }
                let uid = uid.to_owned();
                let name = meta.name.clone();
                match map(item.object) {
                    Ok(mapped) => {
                        for unknown in mapped.unknown_statuses {
                            self.reporter.unknown_status(
                                org,
                                mapped.object.kind(),
                                &name,
                                &uid,
                                unknown.to_string(),
                            );
                        }
                        let object = mapped.object;
                        if let Some(applied) = applied.as_deref_mut() {
                            let last = &mut applied[object.kind().index()];
                            if last.get(&uid) == Some(&object) {
                                listed.insert(uid);
                                continue;
                            }
                            last.insert(uid.clone(), object.clone());
                        }
                        report.upserted[object.kind().index()] += 1;
                        events.push(Event::Upsert(object));
                    }
                    Err(e) => {
                        self.reporter
                            .skipped(org, kind, &name, &uid, &e.to_string());
                        report.skipped += 1;
                    }
                }
                if uid.is_empty() {
                    unnamed += 1;
                } else {
                    listed.insert(uid);
                }
            }
            self.apply(origin, events).await;
            let seen = listed.len() as u64 + unnamed;
            let new = seen - before;
            index += n as u64;
            if page.complete == Some(true) {
                return Ok(Enumeration {
                    consistent: total_held && total.is_none_or(|t| t == seen),
                    listed,
                });
            }
            let cut_short = |reason: String| PollError::CutShort {
                url: url.to_string(),
                reason,
            };
            match total {
                Some(t) => {
                    if seen >= t {
                        // Every object counted is listed, though `complete` was not said.
                        return Ok(Enumeration {
                            consistent: total_held && t == seen,
                            listed,
                        });
                    }
                    if n == 0 {
                        return Err(cut_short(format!(
                            "complete is false, {seen} of {t} objects are listed, and there is no more to page"
                        )));
                    }
                    if new == 0 {
                        return Err(cut_short(format!(
                            "the page repeats objects already listed ({seen} of {t})"
                        )));
                    }
                }
                // No total: PX-Backup before 3.0 lists clusters, locations and schedules in
                // one answer and ignores paging. A short page, an empty one, or one that only
                // repeats what was listed is the end.
                None => {
                    // An organization with no objects has no total either (a zero is left out),
                    // so an empty page is the end only in that one-piece shape: saying neither
                    // total nor complete, of a kind once answered so. Otherwise it is a broken
                    // answer that, taken as the end, would delete every object listed before.
                    let one_piece =
                        answered_in_one_piece_before_3_0(kind) && page.complete.is_none();
                    if n == 0 && !one_piece {
                        return Err(cut_short(format!(
                            "complete is false, there is no total_count, {seen} objects are listed, and there is no more to page"
                        )));
                    }
                    if n == 0 || new == 0 || (n as u64) < self.settings.page_size {
                        return Ok(Enumeration {
                            consistent: total_held,
                            listed,
                        });
                    }
                }
            }
        }
        Err(PollError::CutShort {
            url: client.url(&["v1", path, org], &[]).to_string(),
            reason: format!(
                "more than {MAX_PAGES} pages ({} objects, total {total:?})",
                listed.len()
            ),
        })
    }

    /// Applies a page's upserts off the runtime (the journal fsyncs). A journal failure is
    /// logged by the inventory; the change is applied in memory and the next poll repeats it.
    async fn apply(&self, origin: &Origin, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        if let Err(e) = self
            .ctx
            .inventory
            .apply_off_runtime(origin.clone(), events)
            .await
        {
            tracing::warn!(%origin, error = %e, "PX-Backup objects applied in memory only");
        }
    }

    /// `Inventory::resync` off the runtime; returns how many objects were gone, and the set
    /// back (`None` only if the task panicked).
    async fn resync(
        &self,
        origin: Origin,
        kind: Kind,
        listed: HashSet<String>,
    ) -> (usize, Option<HashSet<String>>) {
        let inventory = self.ctx.inventory.clone();
        let done = tokio::task::spawn_blocking(move || {
            let result = inventory.resync(&origin, kind, &listed);
            (origin, result, listed)
        })
        .await;
        match done {
            Ok((origin, Ok(gone), listed)) => {
                if gone > 0 {
                    tracing::info!(%origin, %kind, gone, "no longer listed by PX-Backup: deleted");
                }
                (gone, Some(listed))
            }
            Ok((origin, Err(e), listed)) => {
                tracing::warn!(%origin, %kind, error = %e, "deletions applied in memory only");
                (0, Some(listed))
            }
            Err(e) => {
                tracing::error!(%kind, error = %e, "the resync task failed");
                (0, None)
            }
        }
    }
}

/// The path segment of a kind's enumeration (`GET /v1/<path>/{org_id}`).
fn path_of(kind: Kind) -> &'static str {
    match kind {
        Kind::Backup => "backup",
        Kind::Restore => "restore",
        Kind::Schedule => "backupschedule",
        Kind::Cluster => "cluster",
        Kind::BackupLocation => "backuplocation",
    }
}

/// The kinds PX-Backup before 3.0 answers in one piece, without `total_count` or `complete`.
/// Backups and restores were paged, and end with `complete: true`, in every version.
fn answered_in_one_piece_before_3_0(kind: Kind) -> bool {
    matches!(kind, Kind::Cluster | Kind::BackupLocation | Kind::Schedule)
}

fn lift<T>(m: Mapped<T>, wrap: impl FnOnce(T) -> Object) -> Mapped<Object> {
    Mapped {
        object: wrap(m.object),
        unknown_statuses: m.unknown_statuses,
    }
}

/// Polls PX-Backup every `poll_interval` (from the start of one poll to the start of the
/// next; a poll that takes longer is followed at once by the next) until `shutdown` resolves.
pub async fn run(
    ctx: SourceContext,
    mut client: PxbClient,
    settings: PxbSettings,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    tracing::info!(
        url = %settings.url,
        orgs = ?settings.orgs,
        interval = ?settings.poll_interval,
        page_size = settings.page_size,
        "polling PX-Backup"
    );
    let interval = settings.poll_interval;
    let mut poller = Poller::new(ctx, settings);
    loop {
        let started = tokio::time::Instant::now();
        tokio::select! {
            _ = poller.poll(&mut client) => {}
            () = &mut shutdown => return,
        }
        tokio::select! {
            () = tokio::time::sleep_until(started + interval) => {}
            () = &mut shutdown => return,
        }
    }
}
