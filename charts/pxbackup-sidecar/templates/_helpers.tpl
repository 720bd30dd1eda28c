{{/*
Names and labels. The helpers use only .Values, .Release and .Chart so that a parent chart can
call "pxbackup-sidecar.container" with a context built from this chart's values.
*/}}
{{- define "pxbackup-sidecar.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pxbackup-sidecar.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "pxbackup-sidecar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pxbackup-sidecar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pxbackup-sidecar.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "pxbackup-sidecar.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: px-backup
{{- end }}

{{/* The ServiceAccount the sidecar runs as: PX-Backup's in sidecar mode. */}}
{{- define "pxbackup-sidecar.serviceAccountName" -}}
{{- if eq .Values.mode "sidecar" }}
{{- .Values.sidecar.serviceAccountName }}
{{- else if .Values.serviceAccount.create }}
{{- default (include "pxbackup-sidecar.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* What the kube source reads: Stork's backup objects. */}}
{{- define "pxbackup-sidecar.storkRule" -}}
apiGroups: ["stork.libopenstorage.org"]
resources: ["applicationbackups", "applicationrestores", "applicationbackupschedules", "namespacedschedulepolicies"]
verbs: ["get", "list", "watch"]
{{- end }}

{{- define "pxbackup-sidecar.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Ingest reachable from other pods: the Service and the NetworkPolicy open its port. */}}
{{- define "pxbackup-sidecar.ingestExposed" -}}
{{- if and (has "ingest" .Values.sources) (not (hasPrefix "127." .Values.ingest.address)) (ne .Values.ingest.address "localhost") (ne .Values.ingest.address "::1") }}true{{ end }}
{{- end }}

{{/*
PX-Backup's REST gateway. In sidecar mode the pod's own loopback: the Service routes only to
Ready pods, and this container is not Ready before its first complete poll, so going through
the Service would wait for itself.
*/}}
{{- define "pxbackup-sidecar.pxbUrl" -}}
{{- if .Values.pxb.url }}
{{- .Values.pxb.url }}
{{- else if eq .Values.mode "sidecar" }}
{{- "http://127.0.0.1:10001" }}
{{- else }}
{{- printf "http://px-backup.%s.svc:10001" (default .Release.Namespace .Values.pxb.namespace) }}
{{- end }}
{{- end }}

{{/*
How the pxb source gets PX-Backup's bearer token: rendering fails when the values leave it
without one. mode oidc: a Secret with the credentials it logs in to Keycloak with, and no token
Secret beside it (the binary refuses both, exit 64); mode tokenSecret: the token Secret.
*/}}
{{- define "pxbackup-sidecar.pxbTokenSecret" -}}
{{- required "pxb.tokenSecret.name: with pxb.auth.mode tokenSecret the pxb source needs a Secret holding PX-Backup's bearer token (or let it log in itself: pxb.auth.mode oidc, see the chart README)" .Values.pxb.tokenSecret.name }}
{{- end }}

{{- define "pxbackup-sidecar.pxbOidcSecret" -}}
{{- if .Values.pxb.tokenSecret.name }}
{{- fail "pxb.tokenSecret.name is set while pxb.auth.mode is oidc (the default): set pxb.auth.mode=tokenSecret to use that token, or remove pxb.tokenSecret.name and let the sidecar log in to Keycloak" }}
{{- end }}
{{- required "pxb.auth.oidc.credentialsSecret.name: with pxb.auth.mode oidc (the default) the pxb source needs a Secret with the username and password of a read-only PX-Backup user (or a clientSecret); see the chart README" .Values.pxb.auth.oidc.credentialsSecret.name }}
{{- end }}

{{/* The Secret volume of the pxb source's credentials or token. */}}
{{- define "pxbackup-sidecar.pxbAuthSecret" -}}
{{- if eq .Values.pxb.auth.mode "oidc" }}
{{- include "pxbackup-sidecar.pxbOidcSecret" . }}
{{- else }}
{{- include "pxbackup-sidecar.pxbTokenSecret" . }}
{{- end }}
{{- end }}

{{/* The keys of the credentials Secret the grant reads. */}}
{{- define "pxbackup-sidecar.pxbOidcKeys" -}}
{{- if eq .Values.pxb.auth.oidc.grant "clientCredentials" }}clientSecret{{ else }}username,password{{ end }}
{{- end }}

{{/*
px-central's Keycloak realm: the URL px-central gives PX-Backup itself (the Service
pxcentral-keycloak-http, port 80, path /auth), resolved in the sidecar's namespace; in another
namespace the Service's name there.
*/}}
{{- define "pxbackup-sidecar.pxbOidcUrl" -}}
{{- if .Values.pxb.auth.oidc.url }}
{{- .Values.pxb.auth.oidc.url }}
{{- else if and .Values.pxb.namespace (ne .Values.pxb.namespace .Release.Namespace) }}
{{- printf "http://pxcentral-keycloak-http.%s.svc/auth/realms/master" .Values.pxb.namespace }}
{{- else }}
{{- "http://pxcentral-keycloak-http/auth/realms/master" }}
{{- end }}
{{- end }}

{{- define "pxbackup-sidecar.tokenSecretName" -}}
{{- if .Values.ingest.token.existingSecret }}
{{- .Values.ingest.token.existingSecret }}
{{- else if .Values.ingest.token.value }}
{{- printf "%s-ingest-token" (include "pxbackup-sidecar.fullname" .) }}
{{- end }}
{{- end }}

{{/*
The container spec, for the chart's own Deployment and for a parent chart that adds the
sidecar to the PX-Backup pod. Configuration goes through environment variables, with
PX-Backup's own names for the backfill window and the federated mode.
*/}}
{{- define "pxbackup-sidecar.container" -}}
{{- $fullname := include "pxbackup-sidecar.fullname" . -}}
name: pxbackup-sidecar
image: {{ include "pxbackup-sidecar.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
args:
  - run
  {{- range .Values.extraArgs }}
  - {{ . | quote }}
  {{- end }}
env:
  - name: PXBACKUP_SOURCES
    value: {{ join "," .Values.sources | quote }}
  - name: PXBACKUP_LISTEN
    value: {{ printf "0.0.0.0:%d" (int .Values.metrics.port) | quote }}
  - name: PXBACKUP_STATE_DIR
    value: {{ .Values.state.mountPath | quote }}
  - name: PXBACKUP_LOG_FORMAT
    value: {{ .Values.logFormat | quote }}
  - name: PX_BACKUP_FEDERATED
    value: {{ .Values.pxbackup.federated | ternary "true" "false" | quote }}
  {{- if ne (toString .Values.pxbackup.backupInfoMetricsBackfillHours) "" }}
  - name: BACKUP_INFO_METRICS_BACKFILL_HOURS
    value: {{ .Values.pxbackup.backupInfoMetricsBackfillHours | toString | quote }}
  {{- end }}
  {{- if has "kube" .Values.sources }}
  {{- with .Values.kube.clusterName }}
  - name: PXBACKUP_CLUSTER_NAME
    value: {{ . | quote }}
  {{- end }}
  {{- with .Values.kube.namespaces }}
  - name: PXBACKUP_NAMESPACES
    value: {{ join "," . | quote }}
  {{- end }}
  {{- end }}
  {{- if has "pxb" .Values.sources }}
  - name: PXBACKUP_PXB_URL
    value: {{ include "pxbackup-sidecar.pxbUrl" . | quote }}
  {{- if eq .Values.pxb.auth.mode "oidc" }}
  - name: PXBACKUP_PXB_OIDC_URL
    value: {{ include "pxbackup-sidecar.pxbOidcUrl" . | quote }}
  - name: PXBACKUP_PXB_OIDC_CLIENT_ID
    value: {{ .Values.pxb.auth.oidc.clientId | quote }}
  {{- if eq .Values.pxb.auth.oidc.grant "clientCredentials" }}
  - name: PXBACKUP_PXB_OIDC_CLIENT_SECRET_FILE
    value: /etc/pxbackup-sidecar/pxb-oidc/clientSecret
  {{- else }}
  - name: PXBACKUP_PXB_OIDC_USERNAME_FILE
    value: /etc/pxbackup-sidecar/pxb-oidc/username
  - name: PXBACKUP_PXB_OIDC_PASSWORD_FILE
    value: /etc/pxbackup-sidecar/pxb-oidc/password
  {{- end }}
  {{- else }}
  - name: PXBACKUP_PXB_TOKEN_FILE
    value: /etc/pxbackup-sidecar/pxb-token/{{ .Values.pxb.tokenSecret.key }}
  {{- end }}
  {{- if .Values.pxb.caSecret.name }}
  - name: PXBACKUP_PXB_CA_FILE
    value: /etc/pxbackup-sidecar/pxb-ca/{{ .Values.pxb.caSecret.key }}
  {{- end }}
  - name: PXBACKUP_PXB_POLL_INTERVAL
    value: {{ .Values.pxb.pollInterval | quote }}
  {{- with .Values.pxb.orgs }}
  - name: PXBACKUP_PXB_ORGS
    value: {{ join "," . | quote }}
  {{- end }}
  - name: PXBACKUP_PXB_PAGE_SIZE
    value: {{ printf "%d" (int .Values.pxb.pageSize) | quote }}
  {{- end }}
  {{- if has "ingest" .Values.sources }}
  - name: PXBACKUP_INGEST_LISTEN
    value: {{ printf "%s:%d" (ternary (printf "[%s]" .Values.ingest.address) .Values.ingest.address (contains ":" .Values.ingest.address)) (int .Values.ingest.port) | quote }}
  {{- if include "pxbackup-sidecar.tokenSecretName" . }}
  - name: PXBACKUP_INGEST_TOKEN_FILE
    value: /etc/pxbackup-sidecar/ingest/{{ .Values.ingest.token.key }}
  {{- end }}
  {{- end }}
  {{- if eq .Values.telemetry.source "api" }}
  - name: PXBACKUP_TELEMETRY_CONFIGMAP
    value: {{ printf "%s/%s" .Release.Namespace .Values.telemetry.configMap.name | quote }}
  - name: PXBACKUP_TELEMETRY_SECRET
    value: {{ .Values.telemetry.certsSecretName | quote }}
  - name: PXBACKUP_TELEMETRY_PAUSE_CONFIGMAP
    value: {{ .Values.telemetry.pauseConfigMap | quote }}
  {{- else if eq .Values.telemetry.source "file" }}
  - name: PXBACKUP_TELEMETRY_CONFIG_FILE
    value: /etc/pxbackup-sidecar/telemetry
  {{- end }}
  {{- if and (ne .Values.telemetry.source "none") .Values.telemetry.logPaths }}
  - name: PXBACKUP_TELEMETRY_LOG_PATHS
    value: {{ join "," .Values.telemetry.logPaths | quote }}
  {{- end }}
  {{- with .Values.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
ports:
  - name: http-metrics
    containerPort: {{ .Values.metrics.port }}
    protocol: TCP
  {{- if include "pxbackup-sidecar.ingestExposed" . }}
  - name: ingest
    containerPort: {{ .Values.ingest.port }}
    protocol: TCP
  {{- end }}
startupProbe:
  httpGet:
    path: /healthz
    port: http-metrics
  periodSeconds: {{ .Values.probes.startup.periodSeconds }}
  timeoutSeconds: {{ .Values.probes.startup.timeoutSeconds }}
  failureThreshold: {{ .Values.probes.startup.failureThreshold }}
livenessProbe:
  httpGet:
    path: /healthz
    port: http-metrics
  initialDelaySeconds: {{ .Values.probes.liveness.initialDelaySeconds }}
  periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
  timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
  failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
readinessProbe:
  httpGet:
    path: /readyz
    port: http-metrics
  initialDelaySeconds: {{ .Values.probes.readiness.initialDelaySeconds }}
  periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
  timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
  failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
resources:
  {{- toYaml .Values.resources | nindent 2 }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
volumeMounts:
  - name: pxbackup-sidecar-state
    mountPath: {{ .Values.state.mountPath }}
  - name: pxbackup-sidecar-tmp
    mountPath: /tmp
  {{- if and (has "ingest" .Values.sources) (include "pxbackup-sidecar.tokenSecretName" .) }}
  - name: pxbackup-sidecar-ingest-token
    mountPath: /etc/pxbackup-sidecar/ingest
    readOnly: true
  {{- end }}
  {{- if eq .Values.telemetry.source "file" }}
  - name: pxbackup-sidecar-telemetry-config
    mountPath: /etc/pxbackup-sidecar/telemetry
    readOnly: true
  {{- end }}
  {{- /* Whole directories, never subPath: kubelet updates a rotated Secret only there. */}}
  {{- if has "pxb" .Values.sources }}
  {{- if eq .Values.pxb.auth.mode "oidc" }}
  - name: pxbackup-sidecar-pxb-oidc
    mountPath: /etc/pxbackup-sidecar/pxb-oidc
    readOnly: true
  {{- else }}
  - name: pxbackup-sidecar-pxb-token
    mountPath: /etc/pxbackup-sidecar/pxb-token
    readOnly: true
  {{- end }}
  {{- if .Values.pxb.caSecret.name }}
  - name: pxbackup-sidecar-pxb-ca
    mountPath: /etc/pxbackup-sidecar/pxb-ca
    readOnly: true
  {{- end }}
  {{- end }}
{{- end }}

{{/* The pod volumes the container mounts; names are prefixed to avoid clashes in the PX-Backup pod. */}}
{{- define "pxbackup-sidecar.volumes" -}}
- name: pxbackup-sidecar-state
  {{- if eq .Values.state.type "pvc" }}
  persistentVolumeClaim:
    claimName: {{ default (printf "%s-state" (include "pxbackup-sidecar.fullname" .)) .Values.state.pvc.existingClaim }}
  {{- else }}
  emptyDir:
    {{- with .Values.state.emptyDir.sizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
  {{- end }}
- name: pxbackup-sidecar-tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if and (has "ingest" .Values.sources) (include "pxbackup-sidecar.tokenSecretName" .) }}
- name: pxbackup-sidecar-ingest-token
  secret:
    secretName: {{ include "pxbackup-sidecar.tokenSecretName" . }}
    defaultMode: 0440
    items:
      - key: {{ .Values.ingest.token.key }}
        path: {{ .Values.ingest.token.key }}
{{- end }}
{{- if eq .Values.telemetry.source "file" }}
- name: pxbackup-sidecar-telemetry-config
  configMap:
    name: {{ .Values.telemetry.configMap.name }}
    optional: true
{{- end }}
{{- if has "pxb" .Values.sources }}
{{- if eq .Values.pxb.auth.mode "oidc" }}
- name: pxbackup-sidecar-pxb-oidc
  secret:
    secretName: {{ include "pxbackup-sidecar.pxbOidcSecret" . }}
    defaultMode: 0440
    items:
      {{- range splitList "," (include "pxbackup-sidecar.pxbOidcKeys" .) }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
{{- else }}
- name: pxbackup-sidecar-pxb-token
  secret:
    secretName: {{ include "pxbackup-sidecar.pxbTokenSecret" . }}
    defaultMode: 0440
    items:
      - key: {{ .Values.pxb.tokenSecret.key }}
        path: {{ .Values.pxb.tokenSecret.key }}
{{- end }}
{{- if .Values.pxb.caSecret.name }}
- name: pxbackup-sidecar-pxb-ca
  secret:
    secretName: {{ .Values.pxb.caSecret.name }}
    defaultMode: 0444
    items:
      - key: {{ .Values.pxb.caSecret.key }}
        path: {{ .Values.pxb.caSecret.key }}
{{- end }}
{{- end }}
{{- end }}
