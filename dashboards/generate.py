#!/usr/bin/env python3
"""Generates the Grafana dashboards of pxbackup-sidecar.

    python3 dashboards/generate.py

writes dashboards/*.json and the chart's identical copies in
charts/pxbackup-sidecar/files/dashboards/. The JSON files are what Grafana imports; this script
is only the way to keep ~40 panels consistent (ids, grid, datasource, selectors). A test checks
that the committed JSON equals the output, so edit here, not in the JSON.
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


def value_mappings(names):
    def color(n):
        return "red" if n in BAD else "orange" if n in WARN else "green" if n in GOOD else "blue"
    return [{"type": "value", "options": {
        str(i): {"text": n, "color": color(n), "index": i} for i, n in enumerate(names)}}]


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

    def row(self, title):
        self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        return self.place({"type": "row", "title": title, "collapsed": False, "panels": []}, 24, 1)


def base(kind, title, description, targets, defaults, options):
    return {"type": kind, "title": title, "description": description, "datasource": DS,
            "targets": targets, "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": options}


def stat(title, description, expr, unit="none", steps=(), no_value="0", mappings=None,
         legend="", text_mode="value"):
    defaults = {"unit": unit, "noValue": no_value, "color": {"mode": "thresholds"},
                "thresholds": thresholds(*steps), "mappings": mappings or []}
    options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
               "orientation": "auto", "textMode": text_mode, "colorMode": "background",
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


def table(title, description, exprs, mappings=None, units=None, hide=(), sort=None):
    """exprs: instant queries in table format, merged into one row per label set."""
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

    for ref, names in (mappings or {}).items():
        overrides.append({"matcher": {"id": "byName", "options": column(ref)},
                          "properties": [{"id": "mappings", "value": value_mappings(names)},
                                         {"id": "custom.cellOptions",
                                          "value": {"type": "color-background"}}]})
    for ref, unit in (units or {}).items():
        overrides.append({"matcher": {"id": "byName", "options": column(ref)},
                          "properties": [{"id": "unit", "value": unit}]})
    targets = [target(e, "", chr(65 + i), instant=True, table=True) for i, e in enumerate(exprs)]
    excluded = {"Time": True, "__name__": True, "job": True, "instance": True}
    excluded.update({h: True for h in hide})
    transformations = [{"id": "merge", "options": {}},
                       {"id": "organize", "options": {"excludeByName": excluded,
                                                      "renameByName": renames}}]
    options = {"showHeader": True, "frameIndex": 0, "cellHeight": "sm"}
    if sort:
        options["sortBy"] = [{"displayName": sort, "desc": True}]
    panel = base("table", title, description, targets, defaults, options)
    panel["fieldConfig"]["overrides"] = overrides
    panel["transformations"] = transformations
    return panel


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
            "templating": {"list": [DATASOURCE_VAR] + variables}, "panels": panels}


def backups_dashboard():
    L = Layout()
    active = ('label_replace(pxbackup_backup_schedule_status{org_id=~"$org", cluster=~"$cluster"}'
              ' == 0, "schedule_name", "$1", "name", "(.*)")')
    p = [
        L.row("Now"),
        L.place(stat("Failed backups", "Live backups in status Failed (4).",
                     f"count(pxbackup_backup_status{{{BSEL}}} == 4)", steps=[(1, "red")]), 4, 4),
        L.place(stat("Partially successful backups", "Live backups in status PartialSuccess (8).",
                     f"count(pxbackup_backup_status{{{BSEL}}} == 8)",
                     steps=[(1, "orange")]), 4, 4),
        L.place(stat("Cloud backups missing",
                     "Backups whose data is gone from the backup location (CloudBackupMissing, 10).",
                     f"count(pxbackup_backup_status{{{BSEL}}} == 10)", steps=[(1, "red")]), 4, 4),
        L.place(stat("Backups running", "Live backups Pending (1) or InProgress (2).",
                     f"count(pxbackup_backup_status{{{BSEL}}} == 1 or pxbackup_backup_status{{{BSEL}}} == 2)",
                     steps=[]), 4, 4),
        L.place(stat("Oldest last success (active schedules)",
                     "Longest time any Active schedule has gone without a successful backup.",
                     f"max(time() - pxbackup_schedule_last_success_timestamp_seconds{{{BSEL}}}"
                     f" and on (org_id, cluster_uid, schedule_name) {active})",
                     unit="s", no_value="-", steps=[(86400, "orange"), (172800, "red")]), 4, 4),
        L.place(stat("Deleted backups retained",
                     "Deleted backups still shown for the backfill window (status=\"Deleted\").",
                     f'count(pxbackup_backup_object_info{{{BSEL}, status="Deleted"}})',
                     steps=[]), 4, 4),

        L.row("Backup outcomes"),
        L.place(timeseries("Backups by status per cluster",
                           "Live backups counted by PX-Backup status, per application cluster.",
                           [(f'count by (cluster, status) (pxbackup_backup_object_info{{{BSEL}, status!="Deleted"}})',
                             "{{cluster}} {{status}}")], stack=True, by_status=True), 12, 8),
        L.place(timeseries("Backups by status per schedule",
                           "Live scheduled backups counted by status, per schedule.",
                           [(f'count by (schedule_name, status) (pxbackup_backup_object_info{{{BSEL}, schedule_name!="", status!="Deleted"}})',
                             "{{schedule_name}} {{status}}")], stack=True, by_status=True), 12, 8),
        L.place(table("Failing and partial backups now",
                      "Live backups in status Failed, PartialSuccess or CloudBackupMissing.",
                      {f"pxbackup_backup_status{{{BSEL}}} == 4 or pxbackup_backup_status{{{BSEL}}} == 8"
                       f" or pxbackup_backup_status{{{BSEL}}} == 10": "status"},
                      mappings={"A": BACKUP_STATUS}, hide=("uid", "cluster_uid")), 14, 8),
        L.place(bargauge("Time since last successful backup per schedule",
                         "Age of the newest successful backup of each schedule (kept after that "
                         "backup is deleted).",
                         f"time() - pxbackup_schedule_last_success_timestamp_seconds{{{BSEL}}}",
                         "{{cluster}} / {{schedule_name}}", "s",
                         [(86400, "orange"), (172800, "red")]), 10, 8),

        L.row("Sizes and durations"),
        L.place(timeseries("Size of retained backups per schedule",
                           "Sum of the sizes of the live backups of each schedule.",
                           [(f"sum by (cluster, schedule_name) (pxbackup_backup_size_bytes{{{BSEL}}})",
                             "{{cluster}} / {{schedule_name}}")], unit="bytes"), 12, 8),
        L.place(timeseries("Longest backup duration per schedule",
                           "Duration of the slowest live backup of each schedule.",
                           [(f"max by (cluster, schedule_name) (pxbackup_backup_duration_seconds{{{BSEL}}})",
                             "{{cluster}} / {{schedule_name}}")], unit="s"), 12, 8),
        L.place(table("Backups: size, duration, volumes, resources",
                      "One row per live backup.",
                      {f"pxbackup_backup_size_bytes{{{BSEL}}}": "size",
                       f"pxbackup_backup_duration_seconds{{{BSEL}}}": "duration",
                       f"pxbackup_backup_volumes{{{BSEL}}}": "volumes",
                       f"pxbackup_backup_resources{{{BSEL}}}": "resources"},
                      units={"A": "bytes", "B": "s"}, hide=("uid", "cluster_uid"),
                      sort="size"), 24, 8),

        L.row("Restores"),
        L.place(stat("Failed restores", "Restores in status Failed (4).",
                     f"count(pxbackup_restore_status{{{RSEL}}} == 4)", steps=[(1, "red")]), 4, 8),
        L.place(timeseries("Restore duration", "Duration of each restore.",
                           [(f"pxbackup_restore_duration_seconds{{{RSEL}}}", "{{cluster}} / {{name}}")],
                           unit="s"), 8, 8),
        L.place(table("Restores", "Restores with their status, size and duration.",
                      {f"pxbackup_restore_status{{{RSEL}}}": "status",
                       f"pxbackup_restore_size_bytes{{{RSEL}}}": "size",
                       f"pxbackup_restore_duration_seconds{{{RSEL}}}": "duration",
                       f"pxbackup_restore_volumes{{{RSEL}}}": "volumes",
                       f"pxbackup_restore_resources{{{RSEL}}}": "resources"},
                      mappings={"A": RESTORE_STATUS}, units={"B": "bytes", "C": "s"},
                      hide=("uid", "cluster_uid")), 12, 8),

        L.row("Deleted backups (audit)"),
        L.place(table("Deleted backups",
                      "Backups deleted within the backfill window, with their last status "
                      "before deletion and the deletion time.",
                      {f"pxbackup_backup_deleted_timestamp_seconds{{{BSEL}}} * 1000"
                       f" * on (org_id, cluster_uid, uid) group_left (backup_namespace, backup_location)"
                       f' pxbackup_backup_object_info{{{BSEL}, status="Deleted"}}': "deleted at"},
                      units={"A": "dateTimeAsIso"}, hide=("uid", "cluster_uid"),
                      sort="deleted at"), 16, 8),
        L.place(timeseries("Deleted backups by previous status",
                           "Deleted backups still in the backfill window, by their last status.",
                           [(f'count by (previous_status) (pxbackup_backup_object_info{{{BSEL}, status="Deleted"}})',
                             "{{previous_status}}")], stack=True, by_status=True), 8, 8),

        L.row("Clusters and backup locations"),
        L.place(stat("Clusters offline", "Application clusters in status Offline (2).",
                     'count(pxbackup_cluster_status{org_id=~"$org", name=~"$cluster"} == 2)',
                     steps=[(1, "red")]), 4, 8),
        L.place(table("Application clusters", "PX-Backup status of each application cluster.",
                      {'pxbackup_cluster_status{org_id=~"$org", name=~"$cluster"}': "status"},
                      mappings={"A": CLUSTER_STATUS}), 10, 8),
        L.place(table("Backup locations", "PX-Backup status of each backup location.",
                      {'pxbackup_backup_location_status{org_id=~"$org"}': "status"},
                      mappings={"A": LOCATION_STATUS}), 10, 8),
        L.place(table("Backup schedules", "Active or Suspended, per schedule.",
                      {'pxbackup_backup_schedule_status{org_id=~"$org", cluster=~"$cluster", name=~"$schedule"}': "status"},
                      mappings={"A": SCHEDULE_STATUS}), 24, 7),
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
                     legend="{{instance}}"), 6, 4),
        L.place(stat("Version", "pxbackup_sidecar_build_info.",
                     f"pxbackup_sidecar_build_info{{{ISEL}}}", legend="{{version}}",
                     no_value="-", text_mode="name"), 6, 4),
        L.place(stat("Tombstones retained", "Deleted backups kept for the backfill window.",
                     f"sum(pxbackup_sidecar_tombstones_retained{{{ISEL}}})"), 6, 4),
        L.place(stat("Journal errors in range", "Failed writes to the tombstone journal.",
                     f"sum(increase(pxbackup_sidecar_journal_errors_total{{{ISEL}}}[$__range]))",
                     steps=[(1, "red")]), 6, 4),
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
        L.place(stat("Telemetry state", "Enabled in the ConfigMap, registered with Pure1, "
                     "ConfigMap valid (1 = yes).",
                     [(f"max(pxbackup_telemetry_enabled{{{ISEL}}})", "enabled"),
                      (f"max(pxbackup_telemetry_registered{{{ISEL}}})", "registered"),
                      (f"min(pxbackup_telemetry_config_valid{{{ISEL}}})", "config valid")],
                     no_value="-", mappings=value_mappings(["No", "Yes"]),
                     text_mode="value_and_name"), 8, 6),
        L.place(timeseries("Telemetry uploads", "Uploads to Pure1 by kind and result.",
                           [(f"sum by (kind, result) (rate(pxbackup_telemetry_uploads_total{{{ISEL}}}[$__rate_interval]))",
                             "{{kind}} {{result}}")], unit="ops"), 8, 6),
        L.place(bargauge("Time since last successful upload",
                         "Per kind; empty until the first upload succeeds.",
                         f"time() - (pxbackup_telemetry_last_success_timestamp_seconds{{{ISEL}}} > 0)",
                         "{{kind}}", "s", [(3 * 3600, "orange"), (24 * 3600, "red")]), 8, 6),
        L.place(timeseries("Telemetry spool", "Bytes of unsent uploads waiting on disk.",
                           [(f"sum(pxbackup_telemetry_spool_bytes{{{ISEL}}})", "spool")],
                           unit="bytes"), 24, 6),
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
