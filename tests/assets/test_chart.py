"""The Helm chart, rendered by Helm's own engine (helm-python-sdk wraps Helm's Go SDK), linted,
and every object validated offline against the Kubernetes OpenAPI schemas."""
import json
import re
import shutil

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from pxtest import ALERTS, CHART, DASHBOARD_DIR, ROOT

NS = "px-backup"
K8S_VERSION = "1.30.0"
MONITORING_KINDS = {"ServiceMonitor", "PrometheusRule"}

VALUE_SETS = {
    "defaults": {},
    "federated": {"pxbackup": {"federated": True}},
    "backfill-48h": {"pxbackup": {"backupInfoMetricsBackfillHours": 48}},
    "sidecar-mode": {"mode": "sidecar", "networkPolicy": {"enabled": True}},
    "telemetry-on-file": {"telemetry": {"source": "file", "logPaths": ["/var/log/px-backup.log"],
                                        "configMap": {"data": {"enabled": "true",
                                                               "environment": "staging"}}}},
    "telemetry-off": {"telemetry": {"source": "none"}},
    "monitoring-on": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
                      "prometheusRule": {"enabled": True,
                                         "runbookBaseUrl": "https://git.example.com/pxb/blob/main/",
                                         "ruleLabels": {"team": "storage"}},
                      "dashboards": {"enabled": True, "namespace": "monitoring"}},
    "pvc-state": {"state": {"type": "pvc", "pvc": {"storageClassName": "px-csi-db"}}},
    "ingest-exposed": {"sources": ["kube", "ingest"],
                       "ingest": {"address": "0.0.0.0", "token": {"value": "s3cr3t"}},
                       "networkPolicy": {"enabled": True,
                                         "ingestFrom": [{"podSelector": {"matchLabels": {"app": "px-backup"}}}]}},
    "kube-namespaces": {"kube": {"clusterName": "prod-east", "namespaces": ["shop", "crm"]}},
    "demo": {"sources": ["demo"], "telemetry": {"source": "none"}},
    "pxb": {"sources": ["pxb"], "pxb": {"auth": {"mode": "tokenSecret"},
                                        "tokenSecret": {"name": "px-backup-api-token"}}},
    "pxb-https-ca": {"sources": ["pxb", "ingest"], "telemetry": {"source": "none"},
                     "networkPolicy": {"enabled": True},
                     "pxb": {"url": "https://px-backup.px-backup.svc:10001",
                             "auth": {"mode": "tokenSecret"},
                             "tokenSecret": {"name": "px-backup-api-token", "key": "bearer"},
                             "caSecret": {"name": "px-backup-ca"},
                             "orgs": ["default", "finance"], "pollInterval": "1m",
                             "pageSize": 250}},
    "pxb-sidecar-mode": {"mode": "sidecar", "sources": ["pxb"],
                         "pxb": {"auth": {"oidc": {"credentialsSecret": {"name": "pxb-keycloak"}}}}},
    "pxb-oidc": {"sources": ["pxb"],
                 "pxb": {"auth": {"oidc": {"credentialsSecret": {"name": "pxb-keycloak"}}}}},
    "pxb-oidc-client-credentials": {
        "sources": ["pxb"], "telemetry": {"source": "none"}, "networkPolicy": {"enabled": True},
        "pxb": {"namespace": "central",
                "auth": {"mode": "oidc",
                         "oidc": {"clientId": "pxbackup-sidecar", "grant": "clientCredentials",
                                  "credentialsSecret": {"name": "pxb-keycloak-client"}}}}},
}


@pytest.fixture(scope="module")
def chart():
    with helm.Chart.load(CHART) as c:
        yield c


def render(chart, values, name="pxb"):
    out = chart.render(values, name=name, namespace=NS, is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def env_of(container):
    return {e["name"]: e.get("value") for e in container["env"]}


def deployment_container(docs):
    (dep,) = by_kind(docs, "Deployment")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    return dep, c


@pytest.mark.parametrize("case", sorted(VALUE_SETS))
def test_lint_clean(case):
    report = helm.lint(str(CHART), VALUE_SETS[case], strict=True, namespace=NS,
                       kube_version=f"v{K8S_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, problems


@pytest.mark.parametrize("case", sorted(VALUE_SETS))
def test_renders_valid_kubernetes_objects(chart, case):
    docs = render(chart, VALUE_SETS[case])
    assert docs
    for d in docs:
        where = f"{case}: {d['kind']}/{d['metadata']['name']}"
        if d["kind"] in MONITORING_KINDS:
            check_monitoring_object(d, where)
            continue
        try:
            kubernetes_validate.validate(d, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{where}: {err.message} at {list(err.path)}")


def check_monitoring_object(d, where):
    """kubernetes-validate has no CRD schemas; check the fields Prometheus Operator needs."""
    assert d["apiVersion"] == "monitoring.coreos.com/v1", where
    assert d["metadata"]["namespace"] == NS, where
    spec = d["spec"]
    if d["kind"] == "ServiceMonitor":
        assert set(spec) <= {"jobLabel", "selector", "namespaceSelector", "endpoints"}, where
        assert spec["selector"]["matchLabels"], where
        for ep in spec["endpoints"]:
            assert ep["port"] == "http-metrics" and ep["path"] == "/metrics", where
    else:
        assert set(spec) == {"groups"}, where
        for g in spec["groups"]:
            assert set(g) <= {"name", "rules", "interval"} and g["rules"], where
            for r in g["rules"]:
                if "record" in r:
                    assert set(r) <= {"record", "expr", "labels"}, where
                    continue
                assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}, where
                assert all(isinstance(v, str) for v in r["annotations"].values()), where


def test_schema_rejects_wrong_type_and_unknown_key(chart):
    bad_values = [
        ({"pxbackup": {"federated": "yes"}}, "/pxbackup/federated"),
        ({"pxbackup": {"backupInfoMetricsBackfillHours": "24h"}}, "backupInfoMetricsBackfillHours"),
        ({"pxbackup": {"backupInfoMetricsBackfillHours": -1}}, "backupInfoMetricsBackfillHours"),
        ({"sources": "kube"}, "/sources"),
        ({"sources": ["kube", "etcd"]}, "/sources/1"),
        ({"metrics": {"port": "9977"}}, "/metrics/port"),
        ({"replicaCount": 2}, "replicaCount"),
        ({"telemetry": {"configMap": {"data": {"enabled": "yes"}}}}, "enabled"),
        ({"telemetry": {"configMap": {"data": {"enable": "true"}}}}, "enable"),
        ({"securityContext": {"runAsRoot": True}}, "runAsRoot"),
        ({"state": {"pvc": {"sise": "1Gi"}}}, "sise"),
    ]
    for values, needle in bad_values:
        with pytest.raises(helm.HelmValuesError) as err:
            chart.render(values, name="pxb", namespace=NS)
        assert needle in str(err.value), f"{values}: {err.value}"
    chart.validate_schema({"pxbackup": {"backupInfoMetricsBackfillHours": 12}})


def test_every_values_key_is_in_the_schema(chart):
    """additionalProperties: false on every object of the schema, and defaults valid."""
    def walk(node, path):
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path} allows unknown keys"
            for k, v in node["properties"].items():
                walk(v, f"{path}.{k}")
    walk(chart.schema, "values")
    chart.validate_schema(chart.values)


def test_defaults_are_least_privilege_and_hardened(chart):
    docs = render(chart, {})
    dep, c = deployment_container(docs)
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert [p["name"] for p in c["ports"]] == ["http-metrics"]
    (svc,) = by_kind(docs, "Service")
    assert svc["spec"]["ports"][0]["port"] == 9977
    # kube source: Stork CRs read-only, kube-system namespace only; telemetry: one ConfigMap and
    # one Secret by name (create cannot be limited by name).
    (cr,) = by_kind(docs, "ClusterRole")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): r for r in cr["rules"]}
    ns_rule = rules[(("",), ("namespaces",))]
    assert ns_rule["resourceNames"] == ["kube-system"] and ns_rule["verbs"] == ["get"]
    stork = rules[(("stork.libopenstorage.org",),
                   ("applicationbackups", "applicationrestores", "applicationbackupschedules",
                    "namespacedschedulepolicies"))]
    assert stork["verbs"] == ["get", "list", "watch"]
    policies = rules[(("stork.libopenstorage.org",), ("schedulepolicies",))]
    assert policies["verbs"] == ["get", "list", "watch"]
    (role,) = by_kind(docs, "Role")
    for r in role["rules"]:
        assert r["apiGroups"] == [""]
        if r["verbs"] != ["create"]:
            assert r["resourceNames"] in (["px-backup-telemetry-config"], ["pure-telemetry-certs"],
                                          ["px-backup-config"])
    # PX-Backup's pause switch: read only, exactly that one ConfigMap.
    (pause,) = [r for r in role["rules"] if r.get("resourceNames") == ["px-backup-config"]]
    assert pause["resources"] == ["configmaps"] and pause["verbs"] == ["list", "watch"]
    assert not by_kind(docs, "NetworkPolicy") and not by_kind(docs, "PersistentVolumeClaim")
    assert not [d for d in docs if d["kind"] in MONITORING_KINDS]


def test_backfill_and_federated_follow_pxbackup(chart):
    _, c = deployment_container(render(chart, {}))
    env = env_of(c)
    assert "BACKUP_INFO_METRICS_BACKFILL_HOURS" not in env, "'' must leave the binary default"
    assert env["PX_BACKUP_FEDERATED"] == "false"
    assert env["PXBACKUP_SOURCES"] == "kube" and env["PXBACKUP_LISTEN"] == "0.0.0.0:9977"
    _, c = deployment_container(render(chart, VALUE_SETS["federated"]))
    assert env_of(c)["PX_BACKUP_FEDERATED"] == "true"
    assert "BACKUP_INFO_METRICS_BACKFILL_HOURS" not in env_of(c)
    _, c = deployment_container(render(chart, VALUE_SETS["backfill-48h"]))
    assert env_of(c)["BACKUP_INFO_METRICS_BACKFILL_HOURS"] == "48"
    # --set-string gives a string; 0 is meaningful (drop deleted backups at once)
    for given in ("48", 0):
        _, c = deployment_container(render(chart, {"pxbackup": {"backupInfoMetricsBackfillHours": given}}))
        assert env_of(c)["BACKUP_INFO_METRICS_BACKFILL_HOURS"] == str(given)


def test_telemetry_configmap_created_disabled_and_kept(chart):
    docs = render(chart, {})
    (cm,) = [d for d in by_kind(docs, "ConfigMap")
             if d["metadata"]["name"] == "px-backup-telemetry-config"]
    assert cm["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert cm["data"]["enabled"] == "false"
    _, c = deployment_container(docs)
    assert env_of(c)["PXBACKUP_TELEMETRY_CONFIGMAP"] == f"{NS}/px-backup-telemetry-config"
    assert env_of(c)["PXBACKUP_TELEMETRY_PAUSE_CONFIGMAP"] == "px-backup-config"


def test_telemetry_file_mode_mounts_configmap_without_rbac(chart):
    docs = render(chart, VALUE_SETS["telemetry-on-file"])
    dep, c = deployment_container(docs)
    env = env_of(c)
    assert env["PXBACKUP_TELEMETRY_CONFIG_FILE"] == "/etc/pxbackup-sidecar/telemetry"
    assert env["PXBACKUP_TELEMETRY_LOG_PATHS"] == "/var/log/px-backup.log"
    assert "PXBACKUP_TELEMETRY_CONFIGMAP" not in env
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert vols["pxbackup-sidecar-telemetry-config"]["configMap"]["name"] == \
        "px-backup-telemetry-config"
    assert not by_kind(docs, "Role"), "file mode needs no telemetry RBAC"
    (cm,) = [d for d in by_kind(docs, "ConfigMap")]
    assert cm["data"]["enabled"] == "true" and cm["data"]["environment"] == "staging"


def test_no_telemetry_no_configmap_no_role(chart):
    docs = render(chart, VALUE_SETS["telemetry-off"])
    assert not by_kind(docs, "ConfigMap") and not by_kind(docs, "Role")
    _, c = deployment_container(docs)
    assert not [k for k in env_of(c) if k.startswith("PXBACKUP_TELEMETRY")]


def test_demo_only_needs_no_rbac(chart):
    docs = render(chart, VALUE_SETS["demo"])
    assert not [d for d in docs if d["kind"].endswith(("Role", "RoleBinding"))]


def test_restricted_namespaces_get_roles_not_cluster_wide_access(chart):
    docs = render(chart, VALUE_SETS["kube-namespaces"])
    (cr,) = by_kind(docs, "ClusterRole")
    # SchedulePolicies are cluster-scoped: the one Stork grant a ClusterRole must hold.
    assert [r["resources"] for r in cr["rules"]] == [["namespaces"], ["schedulepolicies"]]
    stork_roles = [r for r in by_kind(docs, "Role") if r["metadata"]["name"].endswith("-stork")]
    assert sorted(r["metadata"]["namespace"] for r in stork_roles) == ["crm", "shop"]
    for role in stork_roles:
        assert role["rules"][0]["resources"] == [
            "applicationbackups", "applicationrestores", "applicationbackupschedules",
            "namespacedschedulepolicies"]
    _, c = deployment_container(docs)
    assert env_of(c)["PXBACKUP_NAMESPACES"] == "shop,crm"
    assert env_of(c)["PXBACKUP_CLUSTER_NAME"] == "prod-east"


def test_pvc_state(chart):
    docs = render(chart, VALUE_SETS["pvc-state"])
    (pvc,) = by_kind(docs, "PersistentVolumeClaim")
    assert pvc["spec"]["storageClassName"] == "px-csi-db"
    dep, _ = deployment_container(docs)
    assert dep["spec"]["strategy"]["type"] == "Recreate"
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert vols["pxbackup-sidecar-state"]["persistentVolumeClaim"]["claimName"] == \
        pvc["metadata"]["name"]


def test_ingest_exposed_with_token_and_policy(chart):
    docs = render(chart, VALUE_SETS["ingest-exposed"])
    dep, c = deployment_container(docs)
    env = env_of(c)
    assert env["PXBACKUP_SOURCES"] == "kube,ingest"
    assert env["PXBACKUP_INGEST_LISTEN"] == "0.0.0.0:9978"
    (secret,) = by_kind(docs, "Secret")
    assert secret["stringData"] == {"token": "s3cr3t"}
    assert env["PXBACKUP_INGEST_TOKEN_FILE"] == "/etc/pxbackup-sidecar/ingest/token"
    (svc,) = by_kind(docs, "Service")
    assert {p["name"] for p in svc["spec"]["ports"]} == {"http-metrics", "ingest"}
    (np,) = by_kind(docs, "NetworkPolicy")
    ingest_rule = [r for r in np["spec"]["ingress"] if r["ports"][0]["port"] == "ingest"]
    assert ingest_rule and ingest_rule[0]["from"], "ingest must be limited to ingestFrom peers"
    # on loopback (the default) the port is not published at all
    docs = render(chart, {"sources": ["ingest"]})
    (svc,) = by_kind(docs, "Service")
    assert [p["name"] for p in svc["spec"]["ports"]] == ["http-metrics"]


def test_sidecar_mode_binds_pxbackup_account_and_creates_no_workload(chart):
    docs = render(chart, VALUE_SETS["sidecar-mode"])
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"Deployment", "ServiceAccount", "NetworkPolicy"}, kinds
    for b in by_kind(docs, "ClusterRoleBinding") + by_kind(docs, "RoleBinding"):
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": "px-backup-account",
                                  "namespace": NS}]
    (svc,) = by_kind(docs, "Service")
    assert svc["spec"]["selector"] == {"app": "px-backup"}


def test_monitoring_objects(chart):
    docs = render(chart, VALUE_SETS["monitoring-on"])
    (sm,) = by_kind(docs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "prom"
    (pr,) = by_kind(docs, "PrometheusRule")
    canonical = yaml.safe_load(ALERTS.read_text())
    got = pr["spec"]["groups"]
    assert [g["name"] for g in got] == [g["name"] for g in canonical["groups"]]
    for g_got, g_src in zip(got, canonical["groups"]):
        for r_got, r_src in zip(g_got["rules"], g_src["rules"], strict=True):
            assert r_got["expr"] == r_src["expr"] and r_got.get("for") == r_src.get("for")
            if "record" in r_src:  # recording rules verbatim: no extra labels, no annotations
                assert r_got == r_src
                continue
            assert r_got["labels"] == {**r_src["labels"], "team": "storage"}
            assert r_got["annotations"]["runbook_url"] == \
                "https://git.example.com/pxb/blob/main/" + r_src["annotations"]["runbook_url"]
            assert r_got["annotations"]["description"] == r_src["annotations"]["description"]
    (cm,) = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboards")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "monitoring"
    for f in DASHBOARD_DIR.glob("*.json"):
        assert json.loads(cm["data"][f.name]) == json.loads(f.read_text())


def test_rule_labels_never_override_a_rules_own_labels(chart):
    """ruleLabels are added to alerts only, and a rule's own label (severity) keeps its value."""
    docs = render(chart, {"prometheusRule": {"enabled": True,
                                             "ruleLabels": {"severity": "page", "team": "t"}}})
    (pr,) = by_kind(docs, "PrometheusRule")
    canonical = {r.get("alert") or r["record"]: r
                 for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}
    for g in pr["spec"]["groups"]:
        for r in g["rules"]:
            src = canonical[r.get("alert") or r["record"]]
            if "record" in r:
                assert r == src
            else:
                assert r["labels"] == {**src["labels"], "team": "t"}, r["alert"]


def test_prometheus_rule_without_options_is_the_file_verbatim(chart):
    docs = render(chart, {"prometheusRule": {"enabled": True}})
    (pr,) = by_kind(docs, "PrometheusRule")
    assert pr["spec"] == yaml.safe_load(ALERTS.read_text())


def test_parent_chart_can_add_the_container_to_its_pod(tmp_path):
    """The documented sidecar use: a parent chart includes the named templates."""
    parent = tmp_path / "px-backup"
    (parent / "templates").mkdir(parents=True)
    (parent / "charts").mkdir()
    shutil.copytree(CHART, parent / "charts" / "pxbackup-sidecar")
    (parent / "Chart.yaml").write_text(
        "apiVersion: v2\nname: px-backup\nversion: 3.0.0\ndependencies:\n"
        "  - name: pxbackup-sidecar\n    version: 0.1.0\n")
    (parent / "values.yaml").write_text(
        "pxbackup-sidecar:\n  mode: sidecar\n  pxbackup:\n    federated: true\n")
    (parent / "templates" / "deployment.yaml").write_text(
        (CHART / "README.md").read_text().split("```yaml parent-deployment")[1].split("```")[0])
    with helm.Chart.load(parent) as c:
        out = c.render({}, name="px-backup", namespace=NS, is_install=True)
    dep = yaml.safe_load(out["px-backup/templates/deployment.yaml"])
    kubernetes_validate.validate(dep, K8S_VERSION, strict=True)
    pod = dep["spec"]["template"]["spec"]
    names = [c["name"] for c in pod["containers"]]
    assert names == ["px-backup", "pxbackup-sidecar"]
    side = pod["containers"][1]
    assert env_of(side)["PX_BACKUP_FEDERATED"] == "true"
    mounts = {m["name"] for m in side["volumeMounts"]}
    assert mounts <= {v["name"] for v in pod["volumes"]}
    assert not any(p.endswith("/deployment.yaml") and "pxbackup-sidecar/" in p and v.strip()
                   for p, v in out.items()), "the subchart must not add its own Deployment"


def test_offline_validation_is_strict():
    """The validator must reject an unknown field, or the checks above prove nothing."""
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
           "spec": {"ports": [{"port": 9977}], "selectr": {"app": "x"}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(svc, K8S_VERSION, strict=True)


def test_api_telemetry_without_kube_source_may_read_the_cluster_uid(chart):
    # The appliance id defaults to the kube-system namespace UID: the api telemetry source
    # needs that read even when the kube source is off; nothing of Stork is granted then.
    docs = render(chart, {"sources": ["ingest"], "telemetry": {"source": "api"}})
    (cr,) = by_kind(docs, "ClusterRole")
    assert cr["rules"] == [{"apiGroups": [""], "resources": ["namespaces"],
                            "resourceNames": ["kube-system"], "verbs": ["get"]}]
    assert not [r for r in by_kind(docs, "Role") if r["metadata"]["name"].endswith("-stork")]
    _, c = deployment_container(docs)
    assert env_of(c)["PXBACKUP_TELEMETRY_SECRET"] == "pure-telemetry-certs"


def _values_from_set_flags(command):
    """The values a `helm install ... --set k=v` command line gives (the forms the README uses:
    dotted keys, `{a,b}` lists, true/false)."""
    values = {}
    for flag in re.findall(r"--set\s+'?([^'\s]+)'?", command):
        key, raw = flag.split("=", 1)
        if raw.startswith("{") and raw.endswith("}"):
            value = [v for v in raw[1:-1].split(",") if v]
        else:
            value = {"true": True, "false": False}.get(raw, raw)
        *path, last = key.split(".")
        node = values
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return values


def test_the_readme_install_example_renders_valid_objects(chart):
    readme = (ROOT / "README.md").read_text()
    (command,) = re.findall(r"helm install pxbackup-sidecar [^`]*?(?=\n```)", readme, re.S)
    values = _values_from_set_flags(command.replace("\\\n", " "))
    assert values["sources"] == ["kube"] and values["serviceMonitor"]["enabled"] is True
    docs = render(chart, values)
    for d in docs:
        if d["kind"] in MONITORING_KINDS:
            continue
        kubernetes_validate.validate(d, K8S_VERSION, strict=True)
    assert by_kind(docs, "PersistentVolumeClaim") and by_kind(docs, "ServiceMonitor")
    _, c = deployment_container(docs)
    assert env_of(c)["PXBACKUP_CLUSTER_NAME"] == "prod-east"


PXB_TOKEN_DIR = "/etc/pxbackup-sidecar/pxb-token"


def test_pxb_source_polls_the_pxbackup_service_with_a_mounted_token(chart):
    docs = render(chart, VALUE_SETS["pxb"])
    dep, c = deployment_container(docs)
    env = env_of(c)
    assert env["PXBACKUP_SOURCES"] == "pxb"
    # px-central's Service: px-backup, port http-rest-api 10001, in PX-Backup's namespace.
    assert env["PXBACKUP_PXB_URL"] == f"http://px-backup.{NS}.svc:10001"
    assert env["PXBACKUP_PXB_TOKEN_FILE"] == f"{PXB_TOKEN_DIR}/token"
    assert env["PXBACKUP_PXB_POLL_INTERVAL"] == "30s"
    assert env["PXBACKUP_PXB_PAGE_SIZE"] == "1000"
    assert "PXBACKUP_PXB_CA_FILE" not in env and "PXBACKUP_PXB_ORGS" not in env
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    token = vols["pxbackup-sidecar-pxb-token"]["secret"]
    assert token["secretName"] == "px-backup-api-token"
    assert token["items"] == [{"key": "token", "path": "token"}]
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == "pxbackup-sidecar-pxb-token"]
    # A directory, not subPath: kubelet refreshes a rotated Secret only there.
    assert mount["mountPath"] == PXB_TOKEN_DIR and mount["readOnly"] and "subPath" not in mount
    # Nothing of Kubernetes is read for the pxb source: only telemetry's cluster-uid rule.
    (cr,) = by_kind(docs, "ClusterRole")
    assert [r["resources"] for r in cr["rules"]] == [["namespaces"]]
    assert not [r for r in by_kind(docs, "Role") if r["metadata"]["name"].endswith("-stork")]


def test_pxb_source_needs_no_rbac_at_all(chart):
    docs = render(chart, {**VALUE_SETS["pxb"], "telemetry": {"source": "none"}})
    assert not [d for d in docs if d["kind"].endswith(("Role", "RoleBinding"))]


def test_pxb_https_with_a_private_ca_and_chosen_orgs(chart):
    docs = render(chart, VALUE_SETS["pxb-https-ca"])
    dep, c = deployment_container(docs)
    env = env_of(c)
    assert env["PXBACKUP_SOURCES"] == "pxb,ingest"
    assert env["PXBACKUP_PXB_URL"] == "https://px-backup.px-backup.svc:10001"
    assert env["PXBACKUP_PXB_TOKEN_FILE"] == f"{PXB_TOKEN_DIR}/bearer"
    assert env["PXBACKUP_PXB_CA_FILE"] == "/etc/pxbackup-sidecar/pxb-ca/ca.crt"
    assert env["PXBACKUP_PXB_ORGS"] == "default,finance"
    assert env["PXBACKUP_PXB_POLL_INTERVAL"] == "1m"
    assert env["PXBACKUP_PXB_PAGE_SIZE"] == "250"
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert vols["pxbackup-sidecar-pxb-ca"]["secret"]["secretName"] == "px-backup-ca"
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["pxbackup-sidecar-pxb-ca"] == "/etc/pxbackup-sidecar/pxb-ca"
    # The service of another namespace when PX-Backup lives elsewhere.
    _, c = deployment_container(render(chart, {**VALUE_SETS["pxb"],
                                               "pxb": {"namespace": "central",
                                                       "auth": {"mode": "tokenSecret"},
                                                       "tokenSecret": {"name": "t"}}}))
    assert env_of(c)["PXBACKUP_PXB_URL"] == "http://px-backup.central.svc:10001"


def test_pxb_source_without_its_secret_does_not_render(chart):
    for mode in ("standalone", "sidecar"):
        for auth, needle in [({}, "pxb.auth.oidc.credentialsSecret.name"),
                             ({"mode": "tokenSecret"}, "pxb.tokenSecret.name")]:
            with pytest.raises(helm.HelmError) as err:
                chart.render({"mode": mode, "sources": ["pxb"], "pxb": {"auth": auth}},
                             name="pxb", namespace=NS)
            assert needle in str(err.value), f"{mode} {auth}: {err.value}"
    # Both ways at once: the binary would exit 64; the chart says so first.
    with pytest.raises(helm.HelmError) as err:
        chart.render({"sources": ["pxb"],
                      "pxb": {"tokenSecret": {"name": "t"},
                              "auth": {"oidc": {"credentialsSecret": {"name": "c"}}}}},
                     name="pxb", namespace=NS)
    assert "pxb.tokenSecret.name is set while pxb.auth.mode is oidc" in str(err.value)


PXB_OIDC_DIR = "/etc/pxbackup-sidecar/pxb-oidc"


def test_pxb_oidc_logs_in_to_px_centrals_keycloak_with_a_mounted_secret(chart):
    docs = render(chart, VALUE_SETS["pxb-oidc"])
    dep, c = deployment_container(docs)
    env = env_of(c)
    # px-central's Keycloak: the Service pxcentral-keycloak-http (port 80, path /auth), realm
    # master, as px-central gives it to PX-Backup; its public client pxcentral.
    assert env["PXBACKUP_PXB_OIDC_URL"] == "http://pxcentral-keycloak-http/auth/realms/master"
    assert env["PXBACKUP_PXB_OIDC_CLIENT_ID"] == "pxcentral"
    assert env["PXBACKUP_PXB_OIDC_USERNAME_FILE"] == f"{PXB_OIDC_DIR}/username"
    assert env["PXBACKUP_PXB_OIDC_PASSWORD_FILE"] == f"{PXB_OIDC_DIR}/password"
    assert "PXBACKUP_PXB_OIDC_CLIENT_SECRET_FILE" not in env
    assert "PXBACKUP_PXB_TOKEN_FILE" not in env, "the binary refuses both (exit 64)"
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert "pxbackup-sidecar-pxb-token" not in vols
    secret = vols["pxbackup-sidecar-pxb-oidc"]["secret"]
    assert secret["secretName"] == "pxb-keycloak"
    assert secret["items"] == [{"key": "username", "path": "username"},
                               {"key": "password", "path": "password"}]
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == "pxbackup-sidecar-pxb-oidc"]
    # A directory, not subPath: kubelet refreshes a rotated Secret only there.
    assert mount["mountPath"] == PXB_OIDC_DIR and mount["readOnly"] and "subPath" not in mount
    # Still nothing of Kubernetes read for it.
    (cr,) = by_kind(docs, "ClusterRole")
    assert [r["resources"] for r in cr["rules"]] == [["namespaces"]]
    # The notes say where it logs in, and the token Secret's mode says its Secret.
    for case, needles in [("pxb-oidc", ["Keycloak http://pxcentral-keycloak-http/auth/realms/master",
                                        "client pxcentral", "Secret pxb-keycloak"]),
                          ("pxb", ["token in Secret px-backup-api-token"])]:
        out = chart.render(VALUE_SETS[case], name="pxb", namespace=NS, is_install=True)
        (notes,) = [v for p, v in out.items() if p.endswith("NOTES.txt")]
        for needle in needles:
            assert needle in " ".join(notes.split()), f"{case}: {needle}: {notes}"


def test_pxb_oidc_client_credentials_in_another_namespace(chart):
    docs = render(chart, VALUE_SETS["pxb-oidc-client-credentials"])
    dep, c = deployment_container(docs)
    env = env_of(c)
    assert env["PXBACKUP_PXB_URL"] == "http://px-backup.central.svc:10001"
    assert env["PXBACKUP_PXB_OIDC_URL"] == \
        "http://pxcentral-keycloak-http.central.svc/auth/realms/master"
    assert env["PXBACKUP_PXB_OIDC_CLIENT_ID"] == "pxbackup-sidecar"
    assert env["PXBACKUP_PXB_OIDC_CLIENT_SECRET_FILE"] == f"{PXB_OIDC_DIR}/clientSecret"
    assert "PXBACKUP_PXB_OIDC_USERNAME_FILE" not in env
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert vols["pxbackup-sidecar-pxb-oidc"]["secret"]["items"] == \
        [{"key": "clientSecret", "path": "clientSecret"}]
    assert not [d for d in docs if d["kind"].endswith(("Role", "RoleBinding"))]
    # A URL given is passed as it is.
    _, c = deployment_container(render(chart, {"sources": ["pxb"], "pxb": {"auth": {"oidc": {
        "url": "https://keycloak.example.com/auth/realms/px",
        "credentialsSecret": {"name": "k"}}}}}))
    assert env_of(c)["PXBACKUP_PXB_OIDC_URL"] == "https://keycloak.example.com/auth/realms/px"


def test_schema_rejects_bad_pxb_values(chart):
    bad_values = [
        ({"pxb": {"url": "ftp://px-backup:10001"}}, "/pxb/url"),
        ({"pxb": {"url": "http://user:pw@px-backup:10001"}}, "/pxb/url"),
        ({"pxb": {"pollInterval": "soon"}}, "/pxb/pollInterval"),
        ({"pxb": {"pageSize": 0}}, "/pxb/pageSize"),
        ({"pxb": {"pageSize": "1000"}}, "/pxb/pageSize"),
        ({"pxb": {"orgs": "default"}}, "/pxb/orgs"),
        ({"pxb": {"orgs": ["a,b"]}}, "/pxb/orgs/0"),
        ({"pxb": {"tokenSecret": "px-backup-api-token"}}, "/pxb/tokenSecret"),
        ({"pxb": {"tokenSecrets": {"name": "x"}}}, "tokenSecrets"),
        ({"pxb": {"auth": {"mode": "token"}}}, "/pxb/auth/mode"),
        ({"pxb": {"auth": {"oidc": {"grant": "implicit"}}}}, "/pxb/auth/oidc/grant"),
        ({"pxb": {"auth": {"oidc": {"clientId": ""}}}}, "/pxb/auth/oidc/clientId"),
        ({"pxb": {"auth": {"oidc": {"url": "ftp://kc/auth"}}}}, "/pxb/auth/oidc/url"),
        ({"pxb": {"auth": {"oidc": {"url": "http://admin:pw@kc/auth"}}}}, "/pxb/auth/oidc/url"),
        ({"pxb": {"auth": {"oidc": {"credentialsSecret": "pxb-keycloak"}}}},
         "/pxb/auth/oidc/credentialsSecret"),
        ({"pxb": {"auth": {"oidc": {"password": "x"}}}}, "password"),
    ]
    for values, needle in bad_values:
        with pytest.raises(helm.HelmValuesError) as err:
            chart.render(values, name="pxb", namespace=NS)
        assert needle in str(err.value), f"{values}: {err.value}"


def test_the_readme_sidecar_example_uses_the_pxb_source(tmp_path):
    """The chart README's parent chart, with its parent values, renders a PX-Backup pod whose
    sidecar polls PX-Backup on the pod's loopback, logging in to Keycloak with the credentials
    Secret mounted."""
    readme = (CHART / "README.md").read_text()
    parent_values = readme.split("```yaml parent-values")[1].split("```")[0]
    parent = tmp_path / "px-backup"
    (parent / "templates").mkdir(parents=True)
    (parent / "charts").mkdir()
    shutil.copytree(CHART, parent / "charts" / "pxbackup-sidecar")
    (parent / "Chart.yaml").write_text(
        "apiVersion: v2\nname: px-backup\nversion: 3.0.0\ndependencies:\n"
        "  - name: pxbackup-sidecar\n    version: 0.1.0\n")
    (parent / "values.yaml").write_text(parent_values)
    (parent / "templates" / "deployment.yaml").write_text(
        readme.split("```yaml parent-deployment")[1].split("```")[0])
    with helm.Chart.load(parent) as c:
        out = c.render({}, name="px-backup", namespace=NS, is_install=True)
    dep = yaml.safe_load(out["px-backup/templates/deployment.yaml"])
    kubernetes_validate.validate(dep, K8S_VERSION, strict=True)
    pod = dep["spec"]["template"]["spec"]
    side = pod["containers"][1]
    env = env_of(side)
    assert env["PXBACKUP_SOURCES"] == "pxb"
    assert env["PXBACKUP_PXB_URL"] == "http://127.0.0.1:10001"
    assert env["PXBACKUP_PXB_OIDC_URL"] == "http://pxcentral-keycloak-http/auth/realms/master"
    assert env["PXBACKUP_PXB_OIDC_PASSWORD_FILE"] == f"{PXB_OIDC_DIR}/password"
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["pxbackup-sidecar-pxb-oidc"]["secret"]["secretName"] == "pxbackup-sidecar-keycloak"
    assert {m["name"] for m in side["volumeMounts"]} <= set(vols)
    # Nothing of Stork is granted; the subchart's objects are valid.
    for path, text in out.items():
        if "pxbackup-sidecar/templates/" not in path or path.endswith("NOTES.txt"):
            continue
        for d in (d for d in yaml.safe_load_all(text) if d):
            assert not d["metadata"]["name"].endswith("-stork"), path
            if d["kind"] not in MONITORING_KINDS:
                kubernetes_validate.validate(d, K8S_VERSION, strict=True)
