"""A synthetic service-provider fleet, pushed through the sidecar's ingest endpoint.

Used by the scale check (test_scale.py), the benchmark (benches/dashboards.py) and
render_dashboards.py. The shape grows with the number of backups: 4 orgs, one cluster per 2,500
backups (at least 4), 25 schedules per cluster (hourly, 4-hourly, daily or every 15 minutes; one
in 25 Suspended), one backup in 10 taken by hand (no schedule), two volumes per backup.
One schedule per cluster backs up virtual machines (namespace vm-farm, backup_object_type
VirtualMachine): two VMs per backup, each with two VM resources. Every other backup is a
namespace backup with its namespace's resource counts in two resource types (real namespaces
have more types: the per-type families grow with them), and each backup carries its failed
resource and volume counts. Each schedule's oldest runs are deleted (tombstones, deleted in the last 23 h, inside the 24 h
backfill window) and its newer ones are live. Statuses are drawn with `bad_share` of the live and
deleted runs Failed or PartialSuccess (half each); a few old live backups are CloudBackupMissing
and some schedules have a run in progress.

    fleet = Fleet(100_000, tombstone_share=0.5, bad_share=0.5)
    fleet.push("http://127.0.0.1:9978/v1/events")
"""
import datetime
import json
import random

import requests

ORGS = ["default", "finance", "retail", "media"]
NAMESPACES = ["shop", "payments", "catalog", "ledger", "crm", "search", "media", "auth",
              "orders", "billing", "reports", "sessions", "vm-farm", "analytics"]
INTERVALS = [(900, "every-15m"), (3600, "hourly"), (4 * 3600, "every-4h"), (86400, "nightly")]
STORAGE_CLASSES = ["px-csi-db", "px-csi-replicated", "px-csi-shared"]
# The VMs of a VM backup: (name, guest OS); and the resource types namespaces hold.
VMS = [("erp-db", "rhel9"), ("erp-app", "windows2022")]
RESOURCE_TYPES = ["apps/v1/Deployment", "/v1/ConfigMap", "/v1/Secret", "apps/v1/StatefulSet",
                  "/v1/Service", "batch/v1/CronJob", "/v1/PersistentVolumeClaim"]


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


class Fleet:
    def __init__(self, backups, tombstone_share=0.5, bad_share=0.5, seed=7, now=None,
                 restores=None):
        self.rng = random.Random(seed)
        self.now = int(now if now is not None else datetime.datetime.now().timestamp())
        self.backups = backups
        self.tombstone_share = tombstone_share
        self.bad_share = bad_share
        self.n_restores = backups // 50 if restores is None else restores
        self.upserts, self.deletes = [], []
        self.schedules = []  # (org, cluster, schedule name, status)
        self.failed_adhoc = 0
        self._build()

    def uuid(self):
        return "%08x-%04x-4%03x-%04x-%012x" % (
            self.rng.getrandbits(32), self.rng.getrandbits(16), self.rng.getrandbits(12),
            0x8000 | self.rng.getrandbits(14), self.rng.getrandbits(48))

    def outcome(self):
        r = self.rng.random()
        if r < self.bad_share / 2:
            return "Failed"
        if r < self.bad_share:
            return "PartialSuccess"
        return "Success"

    def _build(self):
        rng = self.rng
        n_clusters = max(4, round(self.backups / 2500))
        clusters = []
        for i in range(n_clusters):
            org = ORGS[i % len(ORGS)]
            name = f"{org}-{['east', 'west', 'north', 'south', 'edge'][i // len(ORGS) % 5]}-{i:03d}"
            status = "Offline" if i % 17 == 3 else "Online"
            clusters.append((org, name, self.uuid(), status))
            self.upserts.append({"type": "cluster", "op": "upsert", "uid": clusters[-1][2],
                                 "org_id": org, "name": name, "status": status})
        for org in ORGS:
            for j, (kind, status) in enumerate([("s3", "Valid"), ("azure", "Valid"),
                                                ("nfs", "LimitedAvailability" if org == "retail" else "Valid")]):
                self.upserts.append({"type": "backup_location", "op": "upsert",
                                     "uid": self.uuid(), "org_id": org,
                                     "name": f"{kind}-{org}", "location_type": kind,
                                     "status": status})
        plans = []  # (cluster, schedule name, interval, namespace, location, object type)
        for (org, cname, cuid, cstatus) in clusters:
            for k in range(25):
                interval, prefix = INTERVALS[k % len(INTERVALS)]
                ns = NAMESPACES[k % len(NAMESPACES)]
                suspended = k == 24 or cstatus == "Offline"
                sname = f"{prefix}-{ns}-{k:02d}"
                kind = "VirtualMachine" if ns == "vm-farm" else "All"
                plans.append(((org, cname, cuid), sname, interval, ns,
                              ["s3", "azure", "nfs"][k % 3] + "-" + org, kind))
                self.schedules.append((org, cname, sname, "Suspended" if suspended else "Active"))
                self.upserts.append({"type": "schedule", "op": "upsert", "uid": self.uuid(),
                                     "org_id": org, "name": sname, "cluster": cname,
                                     "cluster_uid": cuid,
                                     "status": "Suspended" if suspended else "Active",
                                     "interval_seconds": interval})
        adhoc = self.backups // 10
        per_schedule, extra = divmod(self.backups - adhoc, len(plans))
        for i, plan in enumerate(plans):
            self._schedule_runs(plan, per_schedule + (1 if i < extra else 0))
        for i in range(adhoc):
            (org, cname, cuid) = clusters[i % n_clusters][:3]
            ns = NAMESPACES[rng.randrange(len(NAMESPACES))]
            created = self.now - rng.randrange(600, 7 * 86400)
            self._backup((org, cname, cuid), f"manual-{ns}-{i:06d}", "", ns,
                         f"s3-{org}", "All", created, self.outcome(),
                         deleted=rng.random() < self.tombstone_share)
        for i in range(self.n_restores):
            (org, cname, cuid) = clusters[i % n_clusters][:3]
            r = rng.random()
            status = "Failed" if r < 0.08 else "PartialSuccess" if r < 0.12 else \
                "InProgress" if r < 0.14 else "Success"
            created = self.now - rng.randrange(600, 2 * 86400)
            ev = {"type": "restore", "op": "upsert", "uid": self.uuid(), "org_id": org,
                  "name": f"restore-{i:06d}", "cluster": cname, "cluster_uid": cuid,
                  "backup": f"manual-shop-{i:06d}", "status": status,
                  "size_bytes": rng.randrange(1 << 28, 1 << 36),
                  "resource_count": rng.randrange(5, 300), "volume_count": 2,
                  "created_at": rfc3339(created)}
            if status != "InProgress":
                ev["completed_at"] = rfc3339(created + rng.randrange(30, 3600))
            self.upserts.append(ev)

    def _schedule_runs(self, plan, runs):
        owner, sname, interval, ns, location, kind = plan
        rng = self.rng
        dead = round(runs * self.tombstone_share)
        # Spaced by the interval, newest first; the oldest `dead` runs were deleted by retention.
        start = self.now - runs * interval
        for k in range(runs):
            created = start + k * interval + rng.randrange(0, 60)
            latest = k == runs - 1
            if latest and rng.random() < 0.05:
                status = "InProgress"
            elif not latest and k >= dead and rng.random() < 0.01:
                status = "CloudBackupMissing"
            else:
                status = self.outcome()
            self._backup(owner, f"{sname}-{created}", sname, ns, location, kind, created,
                         status, deleted=k < dead, delete_rank=(k, dead))

    def _backup(self, owner, name, schedule, ns, location, kind, created, status, deleted,
                delete_rank=None):
        org, cname, cuid = owner
        rng = self.rng
        uid = self.uuid()
        running = status == "InProgress"
        completed = min(created + rng.randrange(60, 3600), self.now - 1)
        vol_status = ["Success", "Success"] if status in ("Success", "CloudBackupMissing") else \
            ["Success", "Failed"] if status == "PartialSuccess" else \
            ["InProgress", "InProgress"] if running else ["Failed", "Failed"]
        ev = {"type": "backup", "op": "upsert", "uid": uid, "org_id": org, "name": name,
              "cluster": cname, "cluster_uid": cuid, "schedule_name": schedule,
              "namespaces": [ns], "backup_location": location, "backup_object_type": kind,
              "status": status, "size_bytes": rng.randrange(1 << 26, 1 << 38),
              "resource_count": rng.randrange(5, 400),
              "volumes": [{"volume": f"pvc-{uid[:8]}-{v}", "pvc": f"{ns}-data-{v}",
                           "pvc_namespace": ns, "storage_class": STORAGE_CLASSES[v],
                           "driver": "pxd", "status": vol_status[v]} for v in range(2)],
              "created_at": rfc3339(created)}
        if not running:
            ev["completed_at"] = rfc3339(completed)
        failed_volumes = vol_status.count("Failed")
        if kind == "VirtualMachine":
            self._vm_details(ev, ns, status)
        else:
            self._namespace_details(ev, ns, status, failed_volumes)
        self.upserts.append(ev)
        if not schedule and status == "Failed" and not deleted:
            self.failed_adhoc += 1
        if deleted:
            if delete_rank:  # older runs were deleted earlier, all inside the last 23 h
                k, dead = delete_rank
                deleted_at = self.now - 23 * 3600 + (k + 1) * (23 * 3600 - 120) // (dead + 1)
            else:
                deleted_at = self.now - rng.randrange(120, 23 * 3600)
            self.deletes.append({"type": "backup", "op": "delete", "uid": uid,
                                 "deleted_at": rfc3339(max(deleted_at, completed + 1))})

    def _vm_details(self, ev, ns, status):
        """Two VMs per backup; a partial backup failed its second VM."""
        vm_status = {"PartialSuccess": ["Success", "Failed"], "Failed": ["Failed", "Failed"],
                     "InProgress": ["InProgress", "InProgress"]}.get(status,
                                                                      ["Success", "Success"])
        ev["virtual_machines"] = [{"name": name, "namespace": ns, "os_name": os,
                                   "status": vm_status[i]} for i, (name, os) in enumerate(VMS)]
        ev["vm_resources"] = [r for name, _ in VMS for r in (
            {"group": "kubevirt.io", "version": "v1", "kind": "VirtualMachine", "name": name,
             "namespace": ns, "virtual_machines": [name]},
            {"group": "", "version": "v1", "kind": "PersistentVolumeClaim",
             "name": f"{name}-rootdisk", "namespace": ns, "virtual_machines": [name]})]
        ev["failed_resource_count"] = 0 if vm_status[1] != "Failed" else 2
        ev["failed_volume_count"] = vm_status.count("Failed")

    def _namespace_details(self, ev, ns, status, failed_volumes):
        """The namespace's resources in two of its resource types; a failed backup failed them
        all, a partial one a few of its first type."""
        rng = self.rng
        total = ev["resource_count"]
        failed = total if status == "Failed" else rng.randrange(1, 6) \
            if status == "PartialSuccess" else 0
        k = NAMESPACES.index(ns) if ns in NAMESPACES else 0
        first = min(total, rng.randrange(1, total + 1))
        types = [(RESOURCE_TYPES[k % len(RESOURCE_TYPES)], first, min(failed, first)),
                 (RESOURCE_TYPES[(k + 3) % len(RESOURCE_TYPES)], total - first,
                  failed - min(failed, first))]
        ns_status = {"CloudBackupMissing": "Success"}.get(status, status)
        ev["namespace_resources"] = [{
            "namespace": ns, "status": ns_status, "total_resources": total, "total_volumes": 2,
            "failed_resources": failed, "failed_volumes": failed_volumes,
            "resource_types": [{"name": name, "total_resources": n, "failed_resources": f}
                               for name, n, f in types]}]
        ev["failed_resource_count"] = failed
        ev["failed_volume_count"] = failed_volumes

    def lines(self):
        return [json.dumps(e, separators=(",", ":")) for e in self.upserts + self.deletes]

    def push(self, url, batch=4000, headers=None):
        """Posts every upsert, then every delete, in NDJSON batches. Returns events applied."""
        applied = 0
        for events in (self.upserts, self.deletes):
            for i in range(0, len(events), batch):
                body = "\n".join(json.dumps(e, separators=(",", ":"))
                                 for e in events[i:i + batch]) + "\n"
                r = requests.post(url, data=body.encode(), headers=headers or {}, timeout=120)
                r.raise_for_status()
                applied += r.json()["applied"]
        return applied
