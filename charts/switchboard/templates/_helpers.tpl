{{/* Names, labels and shared values of the chart. */}}

{{- define "switchboard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "switchboard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "switchboard.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "switchboard.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* "switchboard.component" (dict "root" $ "component" "gateway") -> <fullname>-gateway */}}
{{- define "switchboard.component" -}}
{{- printf "%s-%s" (include "switchboard.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "switchboard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{ include "switchboard.selectorLabels" . }}
{{- end }}

{{- define "switchboard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchboard.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "switchboard.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "switchboard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "switchboard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "switchboard.secretName" -}}
{{- default (include "switchboard.component" (dict "root" . "component" "auth")) .Values.auth.existingSecret }}
{{- end }}

{{/* The Secret whose key `apps` is the JSON array of the Pusher apps
(SWITCHBOARD_PUSHER_APPS): pusher.existingSecret, or the chart's own with
pusher.apps (pusher-apps-secret.yaml); empty with neither (the Pusher edge is off). */}}
{{- define "switchboard.pusherAppsSecret" -}}
{{- if .Values.pusher.existingSecret }}
{{- .Values.pusher.existingSecret }}
{{- else if .Values.pusher.apps }}
{{- include "switchboard.component" (dict "root" . "component" "pusher-apps") }}
{{- end }}
{{- end }}

{{/* The kubernetes.io/tls Secret HAProxy serves wss:// with: haproxy.tls.secretName,
or the one cert-manager or the chart fills (haproxy-tls.yaml). */}}
{{- define "switchboard.haproxyTlsSecret" -}}
{{- default (include "switchboard.component" (dict "root" . "component" "haproxy-tls")) .Values.haproxy.tls.secretName }}
{{- end }}

{{/* The NATS URL(s) the gateways and services use: with the chart's NATS, every
server by its name in the headless Service, so that clients fail over (tls://
with nats.tls: the full name, which the servers' certificate is for). */}}
{{- define "switchboard.natsUrl" -}}
{{- if .Values.nats.enabled }}
{{- $sts := include "switchboard.component" (dict "root" . "component" "nats") }}
{{- $urls := list }}
{{- range $i := until (int .Values.nats.replicas) }}
{{- if $.Values.nats.tls.enabled }}
{{- $urls = append $urls (printf "tls://%s-%d.%s-headless.%s.svc.%s:4222" $sts $i $sts $.Release.Namespace $.Values.clusterDomain) }}
{{- else }}
{{- $urls = append $urls (printf "nats://%s-%d.%s-headless:4222" $sts $i $sts) }}
{{- end }}
{{- end }}
{{- join "," $urls }}
{{- else }}
{{- required "nats.url is required when nats.enabled is false (an existing NATS with JetStream)" .Values.nats.url }}
{{- end }}
{{- end }}

{{/* Seconds Kubernetes waits between preStop and SIGKILL: preStop + drain + closing. */}}
{{- define "switchboard.gateway.gracePeriod" -}}
{{- add .Values.gateway.preStopSleepSeconds .Values.gateway.shutdownTimeoutSeconds .Values.gateway.terminationExtraSeconds }}
{{- end }}

{{/* The image's non-root user; the chart's own pods never run as root. */}}
{{- define "switchboard.podSecurityContext" -}}
runAsNonRoot: true
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "switchboard.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end }}

{{/* Environment of every process that talks to NATS. */}}
{{- define "switchboard.natsEnv" -}}
- name: SWITCHBOARD_NATS_URL
  value: {{ include "switchboard.natsUrl" . | quote }}
{{- with .Values.gateway.config.nats_prefix }}
- name: SWITCHBOARD_NATS_PREFIX
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{/* The NATS users (nats.auth), as JSON: the gateways', the API caller's, one per service namespace (nats-config's default users). */}}
{{- define "switchboard.natsUsers" -}}
{{- $users := list "gateway" "api" }}
{{- range .Values.nats.auth.services }}
{{- $users = append $users (printf "service-%s" .) }}
{{- end }}
{{- toJson $users }}
{{- end }}

{{- define "switchboard.natsUsersSecret" -}}
{{- default (include "switchboard.component" (dict "root" . "component" "nats-users")) .Values.nats.auth.existingSecret }}
{{- end }}

{{/* The environment variable nats-server reads a user's password from (nats-config's passwordVariable). */}}
{{- define "switchboard.natsPasswordVariable" -}}
{{- printf "NATS_PASSWORD_%s" (upper . | replace "-" "_") }}
{{- end }}

{{/* The NATS user of a client and its password: (dict "root" $ "user" "gateway"). */}}
{{- define "switchboard.natsUserEnv" -}}
{{- if .root.Values.nats.auth.enabled }}
- name: SWITCHBOARD_NATS_USER
  value: {{ .user | quote }}
- name: SWITCHBOARD_NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "switchboard.natsUsersSecret" .root }}
      key: {{ .user }}
{{- end }}
{{- end }}


{{/* The Secret with the NATS servers' certificate (tls.crt, tls.key) and its CA
(ca.crt): nats.tls.secretName, or the one cert-manager or the chart fills (nats-tls.yaml). */}}
{{- define "switchboard.natsTlsSecret" -}}
{{- default (include "switchboard.component" (dict "root" . "component" "nats-tls")) .Values.nats.tls.secretName }}
{{- end }}

{{/* The names the NATS servers' certificate is for, as JSON: every pod in the
headless Service (the routes' and clients' names), and the client Service. */}}
{{- define "switchboard.natsTlsNames" -}}
{{- $sts := include "switchboard.component" (dict "root" . "component" "nats") }}
{{- $names := list }}
{{- range $service := list (printf "%s-headless" $sts) $sts }}
{{- $names = append $names $service }}
{{- range $suffix := list "" ".svc" (printf ".svc.%s" $.Values.clusterDomain) }}
{{- $names = append $names (printf "%s.%s%s" $service $.Release.Namespace $suffix) }}
{{- end }}
{{- end }}
{{- range $suffix := list "" ".svc" (printf ".svc.%s" .Values.clusterDomain) }}
{{- $names = append $names (printf "*.%s-headless.%s%s" $sts $.Release.Namespace $suffix) }}
{{- end }}
{{- toJson $names }}
{{- end }}

{{/* Whether the gateways and services verify NATS with a CA from a Secret: the
chart's NATS with nats.tls, or NATS of your own with nats.tls.secretName. */}}
{{- define "switchboard.natsClientTls" -}}
{{- if and .Values.nats.tls.enabled (or .Values.nats.enabled .Values.nats.tls.secretName) }}true{{ end }}
{{- end }}

{{/* A NATS client's CA: its environment, volume mount and volume (the CA only, never the servers' key). */}}
{{- define "switchboard.natsTlsEnv" -}}
{{- if include "switchboard.natsClientTls" . }}
- name: SWITCHBOARD_NATS_TLS_CA
  value: /etc/switchboard/nats-ca/ca.crt
{{- end }}
{{- end }}

{{- define "switchboard.natsTlsMount" -}}
{{- if include "switchboard.natsClientTls" . }}
- name: nats-ca
  mountPath: /etc/switchboard/nats-ca
  readOnly: true
{{- end }}
{{- end }}

{{- define "switchboard.natsTlsVolume" -}}
{{- if include "switchboard.natsClientTls" . }}
- name: nats-ca
  secret:
    secretName: {{ include "switchboard.natsTlsSecret" . }}
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- end }}

{{/* "true" when gateway.config.uni_transports (a list, or a comma-separated string) names grpc: the uni_grpc port is served. */}}
{{- define "switchboard.uniGrpc" -}}
{{- $uni := .Values.gateway.config.uni_transports | default list }}
{{- if kindIs "string" $uni }}{{- $uni = splitList "," $uni }}{{- end }}
{{- range $uni }}{{- if eq (trim .) "grpc" }}true{{- end }}{{- end }}
{{- end }}
