#!/usr/bin/env python3
"""Generates the Grafana dashboards of pxbackup-sidecar.

    python3 dashboards/generate.py

writes dashboards/*.json and the chart's identical copies in
charts/pxbackup-sidecar/files/dashboards/. The JSON files are what Grafana imports; this script
is only the way to keep ~40 panels consistent (ids, grid, datasource, selectors). A test checks
that the committed JSON equals the output, so edit here, not in the JSON.

Fleet scale (100,000 backups and more, half of them deleted and kept as tombstones): no panel
lists the fleet and no time series aggregates raw per-backup series over its time range.

- Stats and time series read the recording rules of alerts/pxbackup-sidecar.rules.yaml
  (REC_*: backups counted per schedule, object type and status; each schedule's latest finished
  run; sizes and durations per schedule), a few thousand series instead of 700,000.
- Every table is a bounded slice, `topk(ROWS, ...)` by time, size or duration (most recent or
  worst first), with the total it was cut from in a count stat beside it (`bounded_table`).
- Top-N lists of schedules or clusters are instant bar gauges or `topk(TOP, ...)` time series.
- Tables with org, cluster and schedule columns link to this dashboard filtered on that row
  (`drill_link`): from a schedule or cluster to its backups.
- The per-backup tables (the only queries of per-backup series) sit in a collapsed row, which
  Grafana queries only when it is opened, typically after drilling down to a schedule.

Namespace and VM backups are split as PX-Backup 3.0's UI splits them: a "Namespace backups" row
(pxbackup_namespace_resource_info and the per-namespace and per-resource-type counts, read
through REC_NS_*) and a "Virtual machine backups" row (pxbackup_virtual_machine_info, read
through REC_VM_*), each with its per-backup tables in the collapsed row.
"""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT_DIRS = [ROOT / "dashboards", ROOT / "charts" / "pxbackup-sidecar" / "files" / "dashboards"]
SCHEMA_VERSION = 41
DS = {"type": "prometheus", "uid": "${datasource}"}

# Label selectors shared by the backup panels: all three variables are multi-value with
# allValue ".*", so schedule_name="" (manual backups) matches "All".
BSEL = 'org_id=~"$org", cluster=~"$cluster", schedule_name=~"$schedule"'
RSEL = 'org_id=~"$org", cluster=~"$cluster"'
ISEL = 'instance=~"$instance"'
# Row limit of every table (a table shows at most ROWS rows) and length of top-N lists.
ROWS = 100
TOP = 10

# Recording rules (alerts/pxbackup-sidecar.rules.yaml) the backup panels read.
REC_SCHEDULE = "pxbackup_schedule:backups:count"  # live, by org, cluster, schedule, type, status
REC_DELETED = "pxbackup_schedule:deleted_backups:count"  # tombstones, by ... previous_status
REC_RESTORES = "pxbackup_cluster:restores:count"  # by org, cluster, status
REC_LATEST = "pxbackup_schedule:latest_run:created_timestamp_seconds"
REC_SIZE = "pxbackup_schedule:backup_size_bytes:sum"
REC_DURATION = "pxbackup_schedule:backup_duration_seconds:max"
# VMs of live backups by org, cluster, schedule, os_name, status; of deleted ones by
# previous_status; the latest finished backup of each VM (value: its creation time).
REC_VM = "pxbackup_schedule:virtual_machine_backups:count"
REC_VM_DELETED = "pxbackup_schedule:deleted_virtual_machine_backups:count"
REC_VM_LATEST = "pxbackup_virtual_machine:latest_backup:created_timestamp_seconds"
# Namespaces of live backups by org, cluster, schedule, backup_namespace, status; failed
# resources of the live backups by schedule and namespace, and by namespace and resource type
# (only what failed is recorded).
REC_NS = "pxbackup_schedule:namespace_backups:count"
REC_NS_FAILED = "pxbackup_schedule:namespace_failed_resources:sum"
REC_TYPE_FAILED = "pxbackup_schedule:namespace_resource_type_failed_resources:sum"
# Labels of one VM (its latest backup: REC_VM_LATEST).
VMKEY = "org_id, cluster_uid, virtual_machine_namespace, virtual_machine"
# Labels of one schedule (backups taken by hand: schedule_name="").
SKEY = "org_id, cluster, cluster_uid, schedule_name"
FAILING = "Failed|PartialSuccess|CloudBackupMissing"

BACKUP_STATUS = ["Invalid", "Pending", "InProgress", "Aborted", "Failed", "Deleting", "Success",
                 "Captured", "PartialSuccess", "DeletePending", "CloudBackupMissing"]
RESTORE_STATUS = ["Invalid", "Pending", "InProgress", "Aborted", "Failed", "Deleting", "Success",
                  "Retained", "PartialSuccess"]
CLUSTER_STATUS = ["Invalid", "Online", "Offline", "DeletePending", "Pending", "Failed", "Success"]
LOCATION_STATUS = ["Invalid", "Valid", "DeletePending", "ValidationInProgress", "ValidationFailed",
                   "LimitedAvailability"]
SCHEDULE_STATUS = ["Active", "Suspended"]
BAD = {"Failed", "Aborted", "Offline", "ValidationFailed", "CloudBackupMissing", "Invalid", "Down"}
WARN = {"PartialSuccess", "LimitedAvailability", "Suspended", "DeletePending", "Deleting"}
GOOD = {"Success", "Online", "Valid", "Active", "Up", "Yes"}


def status_color(n):
    return "red" if n in BAD else "orange" if n in WARN else "green" if n in GOOD else "blue"


def value_mappings(names):
    """Colors and names for a numeric status enum (value i is names[i])."""
    return [{"type": "value", "options": {
        str(i): {"text": n, "color": status_color(n), "index": i} for i, n in enumerate(names)}}]


def text_mappings(names):
    """Colors for a status label, which holds the name itself."""
    return [{"type": "value", "options": {
        n: {"text": n, "color": status_color(n), "index": i} for i, n in enumerate(names)}}]


def thresholds(*steps):
    """steps: (value, color) after the base color green."""
    return {"mode": "absolute", "steps": [{"color": "green", "value": None}] +
            [{"color": c, "value": v} for v, c in steps]}


def target(expr, legend="", ref="A", instant=False, table=False):
    t = {"refId": ref, "datasource": DS, "expr": expr, "legendFormat": legend or "__auto",
         "range": not instant, "instant": instant, "editorMode": "code"}
    if table:
        t["format"] = "table"
    return t


class Layout:
    """Left-to-right, top-to-bottom placement on Grafana's 24-column grid."""

    def __init__(self):
        self.x = self.y = self.row_h = 0
        self.next_id = 1

    def place(self, panel, w, h):
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel["id"] = self.next_id
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.next_id += 1
        self.x += w
        self.row_h = max(self.row_h, h)
        return panel

    def row(self, title, collapsed=False):
        """A row; the panels placed after a collapsed row go inside it (see nest_rows)."""
        self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        return self.place({"type": "row", "title": title, "collapsed": collapsed, "panels": []},
                          24, 1)


def nest_rows(panels):
    """Grafana keeps the panels of a collapsed row inside it, and loads them when it opens."""
    out = []
    for p in panels:
        if p["type"] != "row" and out and out[-1]["type"] == "row" and out[-1]["collapsed"]:
            out[-1]["panels"].append(p)
        else:
            out.append(p)
    return out


def base(kind, title, description, targets, defaults, options):
    return {"type": kind, "title": title, "description": description, "datasource": DS,
            "targets": targets, "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": options}


def stat(title, description, expr, unit="none", steps=(), no_value="0", mappings=None,
         legend="", text_mode="value", color_mode="background"):
    defaults = {"unit": unit, "noValue": no_value, "color": {"mode": "thresholds"},
                "thresholds": thresholds(*steps), "mappings": mappings or []}
    options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
               "orientation": "auto", "textMode": text_mode, "colorMode": color_mode,
               "graphMode": "none", "justifyMode": "auto", "wideLayout": True,
               "showPercentChange": False, "percentChangeColorMode": "standard"}
    exprs = expr if isinstance(expr, list) else [(expr, legend)]
    targets = [target(e, lg, chr(65 + i), instant=True) for i, (e, lg) in enumerate(exprs)]
    return base("stat", title, description, targets, defaults, options)


# Series colours by PX-Backup status, for panels whose legend ends with a status name.
STATUS_COLORS = {"Success": "green", "PartialSuccess": "orange", "Failed": "red",
                 "CloudBackupMissing": "dark-red", "Aborted": "purple", "InProgress": "blue",
                 "Pending": "light-blue", "Deleting": "yellow", "DeletePending": "yellow"}


def status_overrides():
    return [{"matcher": {"id": "byRegexp", "options": f"^(.* )?{status}$"},
             "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}]}
            for status, color in STATUS_COLORS.items()]


def timeseries(title, description, exprs, unit="none", stack=False, bars=False, min_zero=True,
               by_status=False):
    custom = {"drawStyle": "bars" if bars else "line", "lineWidth": 1,
              "fillOpacity": 60 if bars else 10, "showPoints": "never", "spanNulls": False,
              "stacking": {"mode": "normal" if stack else "none", "group": "A"}}
    defaults = {"unit": unit, "custom": custom, "color": {"mode": "palette-classic"},
                "thresholds": thresholds(), "mappings": []}
    if min_zero:
        defaults["min"] = 0
    options = {"legend": {"calcs": [], "displayMode": "list", "placement": "bottom",
                          "showLegend": True},
               "tooltip": {"mode": "multi", "sort": "desc"}}
    targets = [target(e, lg, chr(65 + i)) for i, (e, lg) in enumerate(exprs)]
    panel = base("timeseries", title, description, targets, defaults, options)
    if by_status:
        panel["fieldConfig"]["overrides"] = status_overrides()
    return panel


BACKUP_COLUMNS = ["org_id", "cluster", "schedule_name", "name", "status", "previous_status"]


def table(title, description, exprs, mappings=None, units=None, hide=(), sort=None,
          label_mappings=None, links=None, order=BACKUP_COLUMNS, ascending=False):
    """exprs: instant queries in table format, merged into one row per label set (so every
    query of a table must return the same label names).

    mappings: {refId: enum names} for numeric status columns; label_mappings: {label: enum
    names} for status labels; links: {column: data link url} (see drill_link); sort: the
    column Grafana sorts by, descending unless ascending."""
    defaults = {"custom": {"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False},
                "mappings": [], "thresholds": thresholds()}
    overrides = []
    # Grafana names the value column "Value" for one query and "Value #<refId>" for several;
    # the organize step renames it, and overrides match the new (display) name.
    labels = list(exprs.values())
    renames = {("Value" if len(exprs) == 1 else f"Value #{chr(65 + i)}"): label
               for i, label in enumerate(labels)}

    def column(ref):
        return labels[ord(ref) - 65]

    def colored(name, names, mapping=value_mappings):
        return {"matcher": {"id": "byName", "options": name},
                "properties": [{"id": "mappings", "value": mapping(names)},
                               {"id": "custom.cellOptions",
                                "value": {"type": "color-background"}}]}

    for ref, names in (mappings or {}).items():
        overrides.append(colored(column(ref), names))
    for label, names in (label_mappings or {}).items():
        overrides.append(colored(label, names, text_mappings))
    for ref, unit in (units or {}).items():
        overrides.append({"matcher": {"id": "byName", "options": column(ref)},
                          "properties": [{"id": "unit", "value": unit}]})
    for name, url in (links or {}).items():
        overrides.append({"matcher": {"id": "byName", "options": name},
                          "properties": [{"id": "links", "value": [
                              {"title": f"Backups of this {name.replace('_name', '')}",
                               "url": url}]}]})
    targets = [target(e, "", chr(65 + i), instant=True, table=True) for i, e in enumerate(exprs)]
    excluded = {"Time": True, "__name__": True, "job": True, "instance": True}
    excluded.update({h: True for h in hide})
    columns = list(order) + list(renames)
    transformations = [{"id": "merge", "options": {}},
                       {"id": "organize", "options": {
                           "excludeByName": excluded, "renameByName": renames,
                           "indexByName": {c: i for i, c in enumerate(columns)}}}]
    options = {"showHeader": True, "frameIndex": 0, "cellHeight": "sm"}
    if sort:
        options["sortBy"] = [{"displayName": sort, "desc": not ascending}]
    panel = base("table", title, description, targets, defaults, options)
    panel["fieldConfig"]["overrides"] = overrides
    panel["transformations"] = transformations
    return panel


def drill_link(org="org_id", cluster="cluster", schedule="schedule_name"):
    """URL of this dashboard filtered on a table row's org, cluster and (when given) schedule,
    keeping the time range and data source. A row of backups taken by hand has
    schedule_name="", which filters on exactly those."""
    sched = f"${{__data.fields.{schedule}}}" if schedule else "$__all"
    return ("/d/pxbackup-backups/pxbackup-backups?${__url_time_range}&${datasource:queryparam}"
            f"&var-org=${{__data.fields.{org}}}&var-cluster=${{__data.fields.{cluster}}}"
            f"&var-schedule={sched}")


def bounded_table(L, count_title, count_expr, panel, w=21, h=9, count_w=3):
    """A table and, to its left, the total count of what the table is a slice of."""
    return [L.place(stat(count_title, f"Total; the table beside shows at most {ROWS}.",
                         count_expr, color_mode="none"), count_w, h),
            L.place(panel, w, h)]


def bargauge(title, description, expr, legend, unit, steps):
    defaults = {"unit": unit, "color": {"mode": "thresholds"}, "thresholds": thresholds(*steps),
                "mappings": [], "min": 0}
    options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
               "orientation": "horizontal", "displayMode": "gradient", "valueMode": "color",
               "namePlacement": "auto", "showUnfilled": True, "sizing": "auto",
               "minVizWidth": 8, "minVizHeight": 16, "maxVizHeight": 300,
               "legend": {"calcs": [], "displayMode": "list", "placement": "bottom",
                          "showLegend": False}}
    return base("bargauge", title, description, [target(expr, legend, instant=True)], defaults,
                options)


def query_var(name, label, query, multi=True):
    return {"type": "query", "name": name, "label": label, "datasource": DS,
            "query": {"query": query, "refId": f"{name}-query"},
            "refresh": 2, "includeAll": True, "multi": multi, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "sort": 1, "hide": 0, "options": [], "regex": ""}


DATASOURCE_VAR = {"type": "datasource", "name": "datasource", "label": "Data source",
                  "query": "prometheus", "hide": 0, "refresh": 1, "regex": "",
                  "options": [], "includeAll": False, "multi": False}


def dashboard(uid, title, description, variables, panels, tags):
    return {"uid": uid, "title": title, "description": description, "tags": tags,
            "schemaVersion": SCHEMA_VERSION, "version": 1, "editable": True,
            "graphTooltip": 1, "refresh": "1m", "timezone": "browser",
            "time": {"from": "now-24h", "to": "now"}, "fiscalYearStartMonth": 0,
            "liveNow": False, "links": [], "annotations": {"list": []},
            "templating": {"list": [DATASOURCE_VAR] + variables}, "panels": nest_rows(panels)}


def backups_dashboard():
    L = Layout()
    ssel = 'org_id=~"$org", cluster=~"$cluster", name=~"$schedule"'
    csel = 'org_id=~"$org", name=~"$cluster"'
    active = ('label_replace(pxbackup_backup_schedule_status{org_id=~"$org", cluster=~"$cluster"}'
              ' == 0, "schedule_name", "$1", "name", "(.*)")')

    def count(status):
        """Backups in a status (regex), from the recording: no scan of the backups."""
        return f'sum({REC_SCHEDULE}{{{BSEL}, status=~"{status}"}})'

    def per_schedule(metric):
        """A schedule family (labelled name) keyed like the backups (schedule_name)."""
        return (f'max by ({SKEY}) (label_replace({metric}{{{ssel}}}, "schedule_name", "$1",'
                f' "name", "(.*)"))')

    # Every VM, those whose latest backup did not succeed first (their creation time lifted
    # above any other), cut to ROWS; the table shows each one's own creation time.
    vms_worst_first = (f'topk({ROWS}, {REC_VM_LATEST}{{{BSEL}, status!="Success"}} + 1e12'
                       f" or {REC_VM_LATEST}{{{BSEL}}})")
    # One query (each join walks the namespaces of every live backup once).
    ns_failing = (f"topk({ROWS}, pxbackup_namespace_failed_resources{{{BSEL}}}"
                  " * on (org_id, cluster_uid, uid, backup_namespace) group_left (status)"
                  f' pxbackup_namespace_resource_info{{{BSEL}, status=~"Failed|PartialSuccess"}})')
    since_success = (f"time() - max by ({SKEY}) "
                     f"(pxbackup_schedule_last_success_timestamp_seconds{{{BSEL}}})")
    worst_schedules = f"topk({ROWS}, {since_success})"
    failed_restores = (f"pxbackup_restore_status{{{RSEL}}} == 4 or "
                       f"pxbackup_restore_status{{{RSEL}}} == 8")
    slowest_failed_restores = (f"topk({ROWS}, pxbackup_restore_duration_seconds{{{RSEL}}}"
                               f" and on (org_id, cluster_uid, uid) ({failed_restores}))")
    p = [
        L.row("Now"),
        L.place(stat("Schedules failing",
                     "Schedules whose latest finished run Failed (one PxBackupBackupFailed "
                     "alert each).",
                     f'count({REC_LATEST}{{{BSEL}, status="Failed"}}) or vector(0)',
                     steps=[(1, "red")]), 3, 4),
        L.place(stat("Schedules partially succeeding",
                     "Schedules whose latest finished run is PartialSuccess.",
                     f'count({REC_LATEST}{{{BSEL}, status="PartialSuccess"}}) or vector(0)',
                     steps=[(1, "orange")]), 3, 4),
        L.place(stat("Failed backups", "Live (retained) backups in status Failed, all runs.",
                     count("Failed"), steps=[(1, "red")]), 3, 4),
        L.place(stat("Partially successful backups",
                     "Live backups in status PartialSuccess, all runs.",
                     count("PartialSuccess"), steps=[(1, "orange")]), 3, 4),
        L.place(stat("Cloud backups missing",
                     "Backups whose data is gone from the backup location (CloudBackupMissing).",
                     f"{count('CloudBackupMissing')} or vector(0)", steps=[(1, "red")]), 3, 4),
        L.place(stat("Backups running", "Live backups Pending or InProgress.",
                     count("Pending|InProgress"), steps=[]), 3, 4),
        L.place(stat("Oldest last success (active schedules)",
                     "Longest time any Active schedule has gone without a successful backup.",
                     f"max(time() - pxbackup_schedule_last_success_timestamp_seconds{{{BSEL}}}"
                     f" and on (org_id, cluster_uid, schedule_name) {active})",
                     unit="s", no_value="-", steps=[(86400, "orange"), (172800, "red")]), 3, 4),
        L.place(stat("Deleted backups retained",
                     "Deleted backups still shown for the backfill window (status=\"Deleted\").",
                     f"sum({REC_DELETED}{{{BSEL}}})", steps=[]), 3, 4),

        L.row("Schedules"),
        *bounded_table(
            L, "Schedules failing or partial",
            f'count({REC_LATEST}{{{BSEL}, status=~"Failed|PartialSuccess"}}) or vector(0)',
            table("Schedules whose latest run failed or partially succeeded",
                  "Most recent first: the latest finished run of each schedule, when it Failed "
                  "or is PartialSuccess. Click a schedule for its backups.",
                  {f'topk({ROWS}, {REC_LATEST}{{{BSEL}, status=~"Failed|PartialSuccess"}})'
                   " * 1000": "run created"},
                  units={"A": "dateTimeAsIso"}, label_mappings={"status": BACKUP_STATUS},
                  hide=("uid", "cluster_uid"), sort="run created",
                  links={"schedule_name": drill_link()}), w=13),
        L.place(bargauge("Longest without a successful backup (top 20 active schedules)",
                         "Age of the newest successful backup of each Active schedule (kept "
                         "after that backup is deleted).",
                         f"topk(20, {since_success} and on (org_id, cluster_uid, schedule_name)"
                         f" {active})",
                         "{{cluster}} / {{schedule_name}}", "s",
                         [(86400, "orange"), (172800, "red")]), 8, 9),
        *bounded_table(
            L, "Schedules", f"count(pxbackup_backup_schedule_status{{{ssel}}})",
            table("Backup schedules, longest without a success first",
                  "Schedules that have had a successful backup, the longest without one first, "
                  "with their state, interval and live runs. Click a schedule for its backups.",
                  {worst_schedules: "since last success",
                   f"{per_schedule('pxbackup_backup_schedule_status')}"
                   f" and on ({SKEY}) {worst_schedules}": "state",
                   f"{per_schedule('pxbackup_backup_schedule_interval_seconds')}"
                   f" and on ({SKEY}) {worst_schedules}": "interval",
                   f'sum by ({SKEY}) ({REC_SCHEDULE}{{{BSEL}, status=~"Failed|PartialSuccess"}})'
                   f" and on ({SKEY}) {worst_schedules}": "failed or partial runs",
                   f"sum by ({SKEY}) ({REC_SCHEDULE}{{{BSEL}}})"
                   f" and on ({SKEY}) {worst_schedules}": "live runs"},
                  mappings={"B": SCHEDULE_STATUS}, units={"A": "s", "C": "s"},
                  hide=("cluster_uid",), sort="since last success",
                  links={"schedule_name": drill_link()})),

        L.row("Backup outcomes"),
        L.place(timeseries("Live backups by status",
                           "Live backups counted by PX-Backup status.",
                           [(f"sum by (status) ({REC_SCHEDULE}{{{BSEL}}})",
                             "{{status}}")], stack=True, by_status=True), 8, 8),
        L.place(timeseries("Live backups by object type",
                           "Live backups by backup_object_type (All, VirtualMachine) and status.",
                           [(f"sum by (backup_object_type, status) "
                             f"({REC_SCHEDULE}{{{BSEL}}})",
                             "{{backup_object_type}} {{status}}")], stack=True, by_status=True),
                8, 8),
        L.place(timeseries(f"Failed and partial backups, top {TOP} clusters",
                           "Live backups in status Failed or PartialSuccess, per org and "
                           f"application cluster; the {TOP} clusters with the most at each "
                           "instant.",
                           [(f"topk({TOP}, sum by (org_id, cluster) "
                             f'({REC_SCHEDULE}{{{BSEL}, status=~"Failed|PartialSuccess"}}))',
                             "{{org_id}} / {{cluster}}")]), 8, 8),
        L.place(bargauge(f"Most failed and partial backups (top {TOP} schedules)",
                         "Live backups in status Failed or PartialSuccess per schedule.",
                         f"topk({TOP}, sum by (cluster, schedule_name) "
                         f'({REC_SCHEDULE}{{{BSEL}, schedule_name!="",'
                         f' status=~"Failed|PartialSuccess"}}))',
                         "{{cluster}} / {{schedule_name}}", "none", [(1, "orange")]), 12, 9),
        L.place(timeseries("Deleted backups by previous status",
                           "Deleted backups still in the backfill window, by their last status.",
                           [(f"sum by (previous_status) ({REC_DELETED}{{{BSEL}}})",
                             "{{previous_status}}")], stack=True, by_status=True), 12, 9),

        # Namespace and VM backups apart, as PX-Backup's UI shows them; first load: recordings.
        L.row("Namespace backups"),
        L.place(stat("Namespaces backed up",
                     "Distinct namespaces (per org and cluster) in live backups.",
                     f"count(count by (org_id, cluster_uid, backup_namespace) ({REC_NS}{{{BSEL}}}))",
                     color_mode="none"), 6, 4),
        L.place(stat("Namespaces failed or partial",
                     "Namespaces of live backups (every retained run) whose backup is Failed or "
                     "PartialSuccess.",
                     f'sum({REC_NS}{{{BSEL}, status=~"Failed|PartialSuccess"}}) or vector(0)',
                     steps=[(1, "orange")]), 6, 4),
        L.place(stat("Failed resources",
                     "Resources that were not backed up, summed over the namespaces of the live "
                     "backups (every retained run).",
                     f"sum({REC_NS_FAILED}{{{BSEL}}}) or vector(0)", steps=[(1, "orange")]), 6, 4),
        L.place(stat("Resource types with failures",
                     "Resource types (group/version/kind) with failed resources in live backups.",
                     f"count(count by (resource_type) ({REC_TYPE_FAILED}{{{BSEL}}})) or vector(0)",
                     steps=[(1, "orange")]), 6, 4),
        L.place(timeseries("Namespaces of live backups by status",
                           "Namespaces of the live backups (every retained run) by their status "
                           "in the backup.",
                           [(f"sum by (status) ({REC_NS}{{{BSEL}}})", "{{status}}")],
                           stack=True, by_status=True), 8, 8),
        L.place(bargauge(f"Failed resources, top {TOP} namespaces",
                         "Resources not backed up per namespace, summed over the live backups.",
                         f"topk({TOP}, sum by (cluster, backup_namespace) ({REC_NS_FAILED}{{{BSEL}}}))",
                         "{{cluster}} / {{backup_namespace}}", "none", [(1, "orange")]), 8, 8),
        L.place(bargauge(f"Failed resources, top {TOP} resource types",
                         "Resources not backed up per resource type (group/version/kind), summed "
                         "over the live backups.",
                         f"topk({TOP}, sum by (resource_type) ({REC_TYPE_FAILED}{{{BSEL}}}))",
                         "{{resource_type}}", "none", [(1, "orange")]), 8, 8),
        *bounded_table(
            L, "Namespace and type pairs with failures", f"count({REC_TYPE_FAILED}{{{BSEL}}}) or vector(0)",
            table("Failed resources by schedule, namespace and resource type, most first",
                  "Resources not backed up, summed over the live backups of each schedule, per "
                  "namespace and resource type. Click a schedule for its backups (the "
                  "per-backup row below lists their namespaces).",
                  {f"topk({ROWS}, {REC_TYPE_FAILED}{{{BSEL}}})": "failed resources"},
                  hide=("cluster_uid",), sort="failed resources",
                  order=["org_id", "cluster", "schedule_name", "backup_namespace", "resource_type"],
                  links={"schedule_name": drill_link()}), h=8),

        L.row("Virtual machine backups"),
        L.place(stat("VM backups", "Live backups of object type VirtualMachine (every run).",
                     f'sum({REC_SCHEDULE}{{{BSEL}, backup_object_type="VirtualMachine"}})'
                     " or vector(0)", color_mode="none"), 6, 4),
        L.place(stat("VM backups failed or partial",
                     "Live VM backups (every run) in status Failed or PartialSuccess.",
                     f'sum({REC_SCHEDULE}{{{BSEL}, backup_object_type="VirtualMachine",'
                     ' status=~"Failed|PartialSuccess"}) or vector(0)',
                     steps=[(1, "orange")]), 6, 4),
        L.place(stat("VMs whose latest backup failed",
                     "VMs whose newest finished backup reports the VM Failed or Aborted.",
                     f'count({REC_VM_LATEST}{{{BSEL}, status=~"Failed|Aborted"}}) or vector(0)',
                     steps=[(1, "red")]), 6, 4),
        L.place(stat("Deleted VM backups",
                     "VM backups deleted within the backfill window (status=\"Deleted\"); their "
                     "VMs are in the audit panels.",
                     f'sum({REC_DELETED}{{{BSEL}, backup_object_type="VirtualMachine"}})'
                     " or vector(0)", color_mode="none"), 6, 4),
        L.place(timeseries("VMs by status of their latest backup",
                           "Each VM counted once, with the status its newest finished backup "
                           "reports for it.",
                           [(f"count by (status) ({REC_VM_LATEST}{{{BSEL}}})", "{{status}}")],
                           stack=True, by_status=True), 8, 8),
        L.place(timeseries(f"VMs by operating system (top {TOP})",
                           "VMs with a finished backup, by the guest OS their backup reports.",
                           [(f"topk({TOP}, count by (os_name) ({REC_VM_LATEST}{{{BSEL}}}))",
                             "{{os_name}}")], stack=True), 8, 8),
        L.place(timeseries("VMs of deleted backups by previous status",
                           "The audit of deleted VM backups: VMs of the backups deleted within "
                           "the backfill window, by the backup's last status before deletion.",
                           [(f"sum by (previous_status) ({REC_VM_DELETED}{{{BSEL}}})",
                             "{{previous_status}}")], stack=True, by_status=True), 8, 8),
        *bounded_table(
            L, "Virtual machines", f"count({REC_VM_LATEST}{{{BSEL}}})",
            table("Virtual machines and their latest backup, not successful first",
                  "Every VM with the newest finished backup that holds it (name, OS, the VM's "
                  "status in that backup): VMs whose latest backup did not succeed first, then "
                  "the most recently backed up. Click a schedule for its backups.",
                  {f"{REC_VM_LATEST}{{{BSEL}}} * 1000 and on ({VMKEY}) {vms_worst_first}":
                   "latest backup"},
                  units={"A": "dateTimeAsIso"}, label_mappings={"status": BACKUP_STATUS},
                  hide=("uid", "cluster_uid", "previous_status"), sort="status", ascending=True,
                  order=["org_id", "cluster", "virtual_machine_namespace", "virtual_machine",
                         "os_name", "status", "schedule_name", "name"],
                  links={"schedule_name": drill_link()}), h=8),

        L.row("Sizes and durations"),
        L.place(timeseries(f"Size of retained backups, top {TOP} clusters",
                           "Sum of the sizes of the live backups of each application cluster.",
                           [(f"topk({TOP}, sum by (cluster) ({REC_SIZE}{{{BSEL}}}))",
                             "{{cluster}}")], unit="bytes"), 12, 8),
        L.place(timeseries(f"Longest backup duration, top {TOP} schedules",
                           "Duration of the slowest live backup of each schedule; the "
                           f"{TOP} slowest schedules at each instant.",
                           [(f"topk({TOP}, {REC_DURATION}{{{BSEL}}})",
                             "{{cluster}} / {{schedule_name}}")], unit="s"), 12, 8),
        L.row("Restores"),
        L.place(stat("Failed or partial restores",
                     f"Restores in status Failed or PartialSuccess; the table shows at most "
                     f"{ROWS}.",
                     f'sum({REC_RESTORES}{{{RSEL}, status=~"Failed|PartialSuccess"}})',
                     steps=[(1, "red")]), 3, 8),
        L.place(timeseries("Restores by status", "Restores counted by status.",
                           [(f"sum by (status) ({REC_RESTORES}{{{RSEL}}})", "{{status}}")],
                           stack=True, by_status=True), 8, 8),
        L.place(table("Failed and partial restores, slowest first",
                      "Restores in status Failed or PartialSuccess, longest first.",
                      {slowest_failed_restores: "duration",
                       f"pxbackup_restore_status{{{RSEL}}} and on (org_id, cluster_uid, uid)"
                       f" {slowest_failed_restores}": "status",
                       f"pxbackup_restore_size_bytes{{{RSEL}}} and on (org_id, cluster_uid, uid)"
                       f" {slowest_failed_restores}": "size"},
                      mappings={"B": RESTORE_STATUS}, units={"A": "s", "C": "bytes"},
                      hide=("uid", "cluster_uid"), sort="duration",
                      order=["org_id", "cluster", "name", "backup"]), 13, 8),

        L.row("Clusters and backup locations"),
        L.place(stat("Clusters", f"Total; the table shows at most {ROWS}, not Online first.",
                     f"count(pxbackup_cluster_status{{{csel}}})", color_mode="none"), 3, 8),
        L.place(stat("Clusters offline", "Application clusters in status Offline (2).",
                     f"count(pxbackup_cluster_status{{{csel}}} == 2)", steps=[(1, "red")]), 3, 8),
        L.place(table("Application clusters", "PX-Backup status of each application cluster, "
                      "not Online first. Click a cluster for its backups.",
                      {f"pxbackup_cluster_status{{{csel}}} and on (org_id, uid)"
                       f" topk({ROWS}, pxbackup_cluster_status{{{csel}}} != bool 1)": "status"},
                      mappings={"A": CLUSTER_STATUS}, hide=("uid",), order=["org_id", "name"],
                      links={"name": drill_link(cluster="name", schedule=None)}), 6, 8),
        L.place(stat("Locations", f"Total; the table shows at most {ROWS}, not Valid first.",
                     'count(pxbackup_backup_location_status{org_id=~"$org"})',
                     color_mode="none"), 3, 8),
        L.place(stat("Locations unhealthy", "Backup locations ValidationFailed (4) or "
                     "LimitedAvailability (5).",
                     'count(pxbackup_backup_location_status{org_id=~"$org"} == 4 or'
                     ' pxbackup_backup_location_status{org_id=~"$org"} == 5)',
                     steps=[(1, "orange")]), 3, 8),
        L.place(table("Backup locations", "PX-Backup status of each backup location, not Valid "
                      "first.",
                      {'pxbackup_backup_location_status{org_id=~"$org"} and on (org_id, uid)'
                       f' topk({ROWS}, pxbackup_backup_location_status{{org_id=~"$org"}} != bool 1)':
                       "status"},
                      mappings={"A": LOCATION_STATUS}, hide=("uid",),
                      order=["org_id", "name", "type"]), 6, 8),

        # Per-backup tables: collapsed, so a dashboard load never walks every backup; opened
        # after picking (or clicking) a schedule, cluster or org they list that one's backups.
        L.row("Backups of the selected schedules (per backup)", collapsed=True),
        *bounded_table(
            L, "Failed, partial or missing backups", count(FAILING),
            table("Failed, partial and missing backups, most recent first",
                  "Live backups in status Failed, PartialSuccess or CloudBackupMissing, every "
                  "retained run, newest first. Pick a schedule (or click one) to see its own.",
                  {f"topk({ROWS}, pxbackup_backup_created_timestamp_seconds{{{BSEL}}}"
                   " * on (org_id, cluster_uid, uid) group_left (backup_namespace,"
                   " backup_location, backup_object_type, status)"
                   f" pxbackup_backup_object_info{{{BSEL},"
                   f' status=~"{FAILING}"}}) * 1000': "created"},
                  units={"A": "dateTimeAsIso"}, label_mappings={"status": BACKUP_STATUS},
                  hide=("uid", "cluster_uid"), sort="created",
                  order=BACKUP_COLUMNS + ["backup_object_type", "backup_namespace",
                                          "backup_location"],
                  links={"schedule_name": drill_link()})),
        L.place(stat("Live backups", f"Total; the tables beside show at most {ROWS} each.",
                     f"sum({REC_SCHEDULE}{{{BSEL}}})", color_mode="none"), 4, 9),
        L.place(table("Largest backups", "Live backups, largest first.",
                      {f"topk({ROWS}, pxbackup_backup_size_bytes{{{BSEL}}})": "size"},
                      units={"A": "bytes"}, hide=("uid", "cluster_uid"), sort="size",
                      links={"schedule_name": drill_link()}), 10, 9),
        L.place(table("Slowest backups", "Live backups, longest duration first.",
                      {f"topk({ROWS}, pxbackup_backup_duration_seconds{{{BSEL}}})": "duration"},
                      units={"A": "s"}, hide=("uid", "cluster_uid"), sort="duration",
                      links={"schedule_name": drill_link()}), 10, 9),

        *bounded_table(
            L, "Deleted backups", f"sum({REC_DELETED}{{{BSEL}}})",
            table("Recently deleted backups",
                  "Backups deleted within the backfill window, newest deletion first, with "
                  "their last status before deletion.",
                  {f"topk({ROWS}, pxbackup_backup_deleted_timestamp_seconds{{{BSEL}}}) * 1000"
                   " * on (org_id, cluster_uid, uid) group_left (backup_namespace,"
                   " backup_location, backup_object_type)"
                   f' pxbackup_backup_object_info{{{BSEL}, status="Deleted"}}':
                   "deleted at"},
                  units={"A": "dateTimeAsIso"}, label_mappings={"previous_status": BACKUP_STATUS},
                  hide=("uid", "cluster_uid"), sort="deleted at",
                  order=BACKUP_COLUMNS + ["backup_object_type", "backup_namespace",
                                          "backup_location"],
                  links={"schedule_name": drill_link()})),

        *bounded_table(
            L, "VMs in live backups", f"sum({REC_VM}{{{BSEL}}})",
            table("VM backups, most recent first",
                  "The VMs of each live backup (every retained run), newest backup first, with "
                  "their namespace, OS and status in that backup.",
                  {f"topk({ROWS}, pxbackup_virtual_machine_info{{{BSEL}, status!=\"Deleted\"}}"
                   " * on (org_id, cluster_uid, uid) group_left ()"
                   f" pxbackup_backup_created_timestamp_seconds{{{BSEL}}}) * 1000": "created"},
                  units={"A": "dateTimeAsIso"}, label_mappings={"status": BACKUP_STATUS},
                  hide=("uid", "cluster_uid", "previous_status"), sort="created",
                  order=BACKUP_COLUMNS[:4] + ["virtual_machine_namespace", "virtual_machine",
                                              "os_name", "status"],
                  links={"schedule_name": drill_link()})),
        *bounded_table(
            L, "VMs in deleted backups", f"sum({REC_VM_DELETED}{{{BSEL}}}) or vector(0)",
            table("Recently deleted VM backups",
                  "The VMs of backups deleted within the backfill window, newest deletion first, "
                  "with the backup's last status before deletion.",
                  {f"topk({ROWS}, pxbackup_virtual_machine_info{{{BSEL}, status=\"Deleted\"}}"
                   " * on (org_id, cluster_uid, uid) group_left ()"
                   f" pxbackup_backup_deleted_timestamp_seconds{{{BSEL}}}) * 1000": "deleted at"},
                  units={"A": "dateTimeAsIso"},
                  label_mappings={"previous_status": BACKUP_STATUS},
                  hide=("uid", "cluster_uid", "status"), sort="deleted at",
                  order=BACKUP_COLUMNS[:4] + ["virtual_machine_namespace", "virtual_machine",
                                              "os_name", "previous_status"],
                  links={"schedule_name": drill_link()})),
        *bounded_table(
            L, "Failed or partial namespaces",
            f'sum({REC_NS}{{{BSEL}, status=~"Failed|PartialSuccess"}}) or vector(0)',
            table("Namespaces of failed and partial backups, most failed resources first",
                  "Each namespace of a live backup whose status in that backup is Failed or "
                  "PartialSuccess, with the number of its resources not backed up. The "
                  "resource types concerned are in \"Failed resources by schedule, namespace and "
                  "resource type\" above.",
                  {ns_failing: "failed resources"},
                  label_mappings={"status": BACKUP_STATUS},
                  hide=("uid", "cluster_uid"), sort="failed resources",
                  order=BACKUP_COLUMNS[:4] + ["backup_namespace", "status"],
                  links={"schedule_name": drill_link()})),

    ]
    variables = [
        query_var("org", "Organization", "label_values(pxbackup_cluster_status, org_id)"),
        query_var("cluster", "Cluster",
                  'label_values(pxbackup_cluster_status{org_id=~"$org"}, name)'),
        query_var("schedule", "Schedule",
                  'label_values(pxbackup_backup_schedule_status{org_id=~"$org", cluster=~"$cluster"}, name)'),
    ]
    return dashboard("pxbackup-backups", "PX-Backup: backups",
                     "Backup and restore outcomes, schedules, deleted-backup audit and "
                     "infrastructure health, from pxbackup-sidecar.",
                     variables, p, ["pxbackup", "backup"])


def sidecar_dashboard():
    L = Layout()
    p = [
        L.row("Sidecar"),
        L.place(stat("Scrape target up", "Prometheus's last scrape of the sidecar.",
                     f'up{{job=~".*pxbackup.*", {ISEL}}}', no_value="absent",
                     steps=[], mappings=value_mappings(["Down", "Up"]),
                     legend="{{instance}}"), 4, 4),
        L.place(stat("Version", "pxbackup_sidecar_build_info.",
                     f"pxbackup_sidecar_build_info{{{ISEL}}}", legend="{{version}}",
                     no_value="-", text_mode="name"), 4, 4),
        L.place(stat("Backfill window", "How long a deleted backup stays visible "
                     "(status=\"Deleted\"), as the sidecar applies it, and the PX-Backup mode "
                     "(classic: 24 h by default, federated: 1 h).",
                     f"max by (mode) (pxbackup_sidecar_backfill_window_seconds{{{ISEL}}})",
                     unit="s", no_value="-", legend="{{mode}}", text_mode="value_and_name",
                     color_mode="none"), 4, 4),
        L.place(stat("Tombstones retained", "Deleted backups kept for the backfill window.",
                     f"sum(pxbackup_sidecar_tombstones_retained{{{ISEL}}})"), 4, 4),
        L.place(stat("Journal errors in range", "Failed writes to the tombstone journal.",
                     f"sum(increase(pxbackup_sidecar_journal_errors_total{{{ISEL}}}[$__range]))",
                     steps=[(1, "red")]), 4, 4),
        L.place(stat("Resource series dropped in range",
                     "VM, VM resource, namespace and resource type series not exported because a "
                     "backup had more than --max-resource-series-per-backup of them.",
                     f"sum(increase(pxbackup_sidecar_resource_series_dropped_total{{{ISEL}}}[$__range]))",
                     steps=[(1, "orange")]), 4, 4),
        L.place(timeseries("Sources up", "1 while a source (demo, ingest, kube) is healthy.",
                           [(f"pxbackup_sidecar_source_up{{{ISEL}}}", "{{source}}")]), 8, 8),
        L.place(timeseries("Objects by kind", "Objects held in the inventory.",
                           [(f"sum by (kind) (pxbackup_sidecar_objects{{{ISEL}}})", "{{kind}}")]),
                8, 8),
        L.place(timeseries("Scrape duration", "Time the sidecar took to render the last scrape.",
                           [(f"pxbackup_sidecar_scrape_duration_seconds{{{ISEL}}}", "{{instance}}")],
                           unit="s"), 8, 8),
        L.place(timeseries("Events applied", "Lifecycle events applied to the inventory.",
                           [(f"sum by (source) (rate(pxbackup_sidecar_events_applied_total{{{ISEL}}}[$__rate_interval]))",
                             "{{source}}")], unit="ops"), 8, 8),
        L.place(timeseries("Events ignored", "Events dropped, by reason.",
                           [(f"sum by (reason) (rate(pxbackup_sidecar_events_ignored_total{{{ISEL}}}[$__rate_interval]))",
                             "{{reason}}")], unit="ops"), 8, 8),
        L.place(timeseries("Ingest batches", "POST /v1/events batches by result.",
                           [(f"sum by (result) (rate(pxbackup_sidecar_ingest_batches_total{{{ISEL}}}[$__rate_interval]))",
                             "{{result}}")], unit="ops"), 8, 8),
        L.place(timeseries("Invalid source objects", "Objects a source could not map, per source.",
                           [(f"sum by (source) (rate(pxbackup_sidecar_source_objects_invalid_total{{{ISEL}}}[$__rate_interval]))",
                             "{{source}}")], unit="ops"), 8, 8),
        L.place(timeseries("Tombstones", "Retained tombstones and expiries per second.",
                           [(f"sum(pxbackup_sidecar_tombstones_retained{{{ISEL}}})", "retained"),
                            (f"sum(rate(pxbackup_sidecar_tombstones_expired_total{{{ISEL}}}[$__rate_interval]))",
                             "expired/s")]), 8, 8),
        L.place(timeseries("Journal health", "Journal write errors and records skipped at load.",
                           [(f"sum(increase(pxbackup_sidecar_journal_errors_total{{{ISEL}}}[$__rate_interval]))",
                             "errors"),
                            (f"sum(increase(pxbackup_sidecar_journal_records_skipped_total{{{ISEL}}}[$__rate_interval]))",
                             "skipped records")]), 8, 8),

        L.row("Pure1 telemetry"),
        L.place(stat("Telemetry state", "Uploads running (the ConfigMap's enabled is true and "
                     "PX-Backup does not pause them), registered with Pure1, ConfigMap valid.",
                     [(f"max(pxbackup_telemetry_enabled{{{ISEL}}})", "uploading"),
                      (f"max(pxbackup_telemetry_registered{{{ISEL}}})", "registered"),
                      (f"min(pxbackup_telemetry_config_valid{{{ISEL}}})", "config valid")],
                     no_value="-", mappings=value_mappings(["No", "Yes"]),
                     text_mode="value_and_name"), 6, 6),
        L.place(stat("Paused by PX-Backup",
                     "PX-Backup's own switch, TELEMETRY_COLLECTION_ENABLED in its ConfigMap "
                     "px-backup-config, set to anything but true: nothing is uploaded, whatever "
                     "px-backup-telemetry-config says.",
                     f"max(pxbackup_telemetry_paused{{{ISEL}}})", no_value="-",
                     mappings=[{"type": "value", "options": {
                         "0": {"text": "No", "color": "green", "index": 0},
                         "1": {"text": "Paused", "color": "orange", "index": 1}}}]), 4, 6),
        L.place(timeseries("Telemetry uploads", "Uploads to Pure1 by kind and result.",
                           [(f"sum by (kind, result) (rate(pxbackup_telemetry_uploads_total{{{ISEL}}}[$__rate_interval]))",
                             "{{kind}} {{result}}")], unit="ops"), 7, 6),
        L.place(bargauge("Time since last successful upload",
                         "Per kind; empty until the first upload succeeds.",
                         f"time() - (pxbackup_telemetry_last_success_timestamp_seconds{{{ISEL}}} > 0)",
                         "{{kind}}", "s", [(3 * 3600, "orange"), (24 * 3600, "red")]), 7, 6),
        L.place(timeseries("Bundles dropped by reason",
                           "Bundles removed unsent: disabled or paused (switched off, the spool "
                           "is emptied), identity_changed (new appliance id or endpoint), "
                           "spool_full and unreadable (data lost; these also alert).",
                           [(f"sum by (reason) (increase(pxbackup_telemetry_bundles_dropped_total{{{ISEL}}}[$__rate_interval]))",
                             "{{reason}}")], bars=True), 12, 6),
        L.place(timeseries("Telemetry spool", "Bytes of unsent uploads waiting on disk.",
                           [(f"sum(pxbackup_telemetry_spool_bytes{{{ISEL}}})", "spool")],
                           unit="bytes"), 12, 6),
    ]
    variables = [query_var("instance", "Instance",
                           "label_values(pxbackup_sidecar_build_info, instance)")]
    return dashboard("pxbackup-sidecar", "PX-Backup: sidecar and telemetry",
                     "Health of pxbackup-sidecar itself and of its Pure1 telemetry uploads.",
                     variables, p, ["pxbackup", "sidecar"])


DASHBOARDS = {"pxbackup-backups.json": backups_dashboard, "pxbackup-sidecar.json": sidecar_dashboard}


def render():
    return {name: json.dumps(build(), indent=2) + "\n" for name, build in DASHBOARDS.items()}


if __name__ == "__main__":
    for out in OUT_DIRS:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in render().items():
            (out / name).write_text(text)
    sys.exit(0)
