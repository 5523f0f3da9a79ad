{{/* Names and labels. */}}
{{- define "konsil-control.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "konsil-control.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains "konsil" .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "konsil-control.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "konsil-control.selectorLabels" -}}
app.kubernetes.io/name: {{ include "konsil-control.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "konsil-control.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "konsil-control.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: konsil
{{- end }}

{{- define "konsil-control.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "konsil-control.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "konsil-control.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Host of a URL, without port or brackets. */}}
{{- define "konsil-control.urlHost" -}}
{{- $host := (urlParse .).host -}}
{{- regexReplaceAll ":[0-9]+$" $host "" | trimPrefix "[" | trimSuffix "]" -}}
{{- end }}

{{/* Port of a URL: the explicit one, else the scheme's. */}}
{{- define "konsil-control.urlPort" -}}
{{- $url := urlParse . -}}
{{- $explicit := regexFind ":[0-9]+$" $url.host -}}
{{- if $explicit }}{{ trimPrefix ":" $explicit }}{{ else if eq $url.scheme "https" }}443{{ else }}80{{ end -}}
{{- end }}

{{/* Checks no schema can express. */}}
{{- define "konsil-control.validate" -}}
{{- $seen := dict -}}
{{- range .Values.regions -}}
{{- if hasKey $seen .id -}}
{{- fail (printf "regions: region %s is listed twice" .id) -}}
{{- end -}}
{{- $_ := set $seen .id true -}}
{{- if and $.Values.networkPolicy.enabled (not .networkPolicyTo) -}}
{{- fail (printf "regions[%s].networkPolicyTo: list where the region's internal API is (ipBlock CIDRs or namespace/pod selectors), or set networkPolicy.enabled=false" .id) -}}
{{- end -}}
{{- end -}}
{{- if .Values.networkPolicy.enabled -}}
{{- $needed := list "database" "dns" -}}
{{- if .Values.telemetry.otlpEndpoint }}{{ $needed = append $needed "telemetry" }}{{ end -}}
{{- range $what := $needed -}}
{{- if not (index $.Values.networkPolicy $what) -}}
{{- fail (printf "networkPolicy.%s: list where it is (ipBlock CIDRs or namespace/pod selectors), or set networkPolicy.enabled=false" $what) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/*
The control plane's environment: its own database password and the discovery key, and per
region the secret that signs calls to it, all secretKeyRefs. No region database, Vault or
TURN credential exists here.
*/}}
{{- define "konsil-control.env" -}}
{{- $secret := .Values.existingSecret -}}
- name: KONSIL_CONFIG
  value: /etc/konsil/konsil.toml
- name: DATABASE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.secretKeys.databasePassword }}
- name: KONSIL_CONTROL__DATABASE
  value: {{ printf "postgresql://%s:$(DATABASE_PASSWORD)@%s:%v/%s%s" .Values.database.user .Values.database.host .Values.database.port .Values.database.name (ternary (printf "?%s" .Values.database.options) "" (ne .Values.database.options "")) | quote }}
- name: KONSIL_DISCOVERY_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.secretKeys.discoveryKey }}
{{- range .Values.regions }}
- name: {{ printf "KONSIL_REGIONS__%s__INTERNAL_SECRET" (upper .id) }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ default (printf "internal-secret-%s" .id) .internalSecretKey }}
{{- end }}
{{- end }}

{{/* konsil.toml of the control plane: its own section and each region's endpoint. */}}
{{- define "konsil-control.config" -}}
mode = "services"
data_dir = "/tmp/konsil"

[telemetry]
otlp_endpoint = {{ .Values.telemetry.otlpEndpoint | toJson }}
metrics_listen = {{ printf "0.0.0.0:%v" .Values.telemetry.metricsPort | toJson }}
log_format = "json"
organisation_attributes = {{ .Values.telemetry.organisationAttributes | toJson }}
service_name_prefix = {{ .Values.telemetry.serviceNamePrefix | toJson }}
trace_sample_ratio = {{ .Values.telemetry.traceSampleRatio | float64 }}
export_timeout_seconds = {{ .Values.telemetry.exportTimeoutSeconds | float64 }}
max_queue_spans = {{ .Values.telemetry.maxQueueSpans | int }}

[control]
listen = {{ printf "0.0.0.0:%v" .Values.control.port | toJson }}
public_url = {{ .Values.control.publicUrl | toJson }}
internal_url = {{ .Values.control.internalUrl | toJson }}
{{- range .Values.regions }}

[[regions]]
id = {{ .id | toJson }}
jurisdiction = {{ .jurisdiction | toJson }}
public_url = {{ .publicUrl | toJson }}
internal_url = {{ default "" .internalUrl | toJson }}
{{- end }}
{{- end }}

{{/* The pod-level parts every pod shares. */}}
{{- define "konsil-control.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/* Volumes: the configuration and a writable /tmp (the root filesystem is read-only). */}}
{{- define "konsil-control.volumes" -}}
- name: config
  configMap:
    name: {{ .configMap }}
- name: tmp
  emptyDir:
    sizeLimit: {{ .root.Values.tmpSizeLimit }}
{{- end }}

{{- define "konsil-control.volumeMounts" -}}
- name: config
  mountPath: /etc/konsil
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end }}

{{- define "konsil-control.resources" -}}
{{- if not (and .requests .limits) -}}
{{- fail "every container needs resources.requests and resources.limits" -}}
{{- end -}}
{{ toYaml . }}
{{- end }}

{{/* A hash of the configuration, so pods restart when it changes. */}}
{{- define "konsil-control.configHash" -}}
{{- include (print .Template.BasePath "/configmap.yaml") . | sha256sum | trunc 16 }}
{{- end }}
