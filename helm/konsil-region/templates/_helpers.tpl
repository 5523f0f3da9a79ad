{{/* Names and labels. */}}
{{- define "konsil-region.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "konsil-region.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains "konsil" .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "konsil-region.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "konsil-region.selectorLabels" -}}
app.kubernetes.io/name: {{ include "konsil-region.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "konsil-region.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "konsil-region.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: konsil
konsil.example/region: {{ .Values.region.id | quote }}
{{- end }}

{{- define "konsil-region.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "konsil-region.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "konsil-region.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "konsil-region.mediaNodeImage" -}}
{{- printf "%s:%s" .Values.mediaNodeImage.repository (default .Chart.AppVersion .Values.mediaNodeImage.tag) }}
{{- end }}

{{/* The region id in environment variable names: KONSIL_REGIONS__EU__... */}}
{{- define "konsil-region.envPrefix" -}}
{{- printf "KONSIL_REGIONS__%s__" (upper .Values.region.id) }}
{{- end }}

{{/* Host of a URL, without port or brackets. */}}
{{- define "konsil-region.urlHost" -}}
{{- $host := (urlParse .).host -}}
{{- regexReplaceAll ":[0-9]+$" $host "" | trimPrefix "[" | trimSuffix "]" -}}
{{- end }}

{{/* Port of a URL: the explicit one, else the scheme's. */}}
{{- define "konsil-region.urlPort" -}}
{{- $url := urlParse . -}}
{{- $explicit := regexFind ":[0-9]+$" $url.host -}}
{{- if $explicit }}{{ trimPrefix ":" $explicit }}{{ else if eq $url.scheme "https" }}443{{ else }}80{{ end -}}
{{- end }}

{{/*
The region rule: every host this release connects to is one of region.ownHosts or below
one of them. Called with (dict "what" "database" "host" HOST "root" $).
*/}}
{{- define "konsil-region.requireOwnHost" -}}
{{- $host := lower (trimSuffix "." .host) -}}
{{- $own := false -}}
{{- range .root.Values.region.ownHosts -}}
{{- $entry := lower (trimSuffix "." (trimPrefix "." .)) -}}
{{- if or (eq $host $entry) (hasSuffix (printf ".%s" $entry) $host) -}}
{{- $own = true -}}
{{- end -}}
{{- end -}}
{{- if not $own -}}
{{- fail (printf "%s host %q is not one of region %s's own hosts (region.ownHosts: %s): a region release connects only to its own region's database, Vault and RabbitMQ" .what $host .root.Values.region.id (join ", " .root.Values.region.ownHosts)) -}}
{{- end -}}
{{- end }}

{{/* Checks no schema can express; included by every template that renders a workload. */}}
{{- define "konsil-region.validate" -}}
{{- include "konsil-region.requireOwnHost" (dict "what" "database" "host" .Values.database.host "root" .) -}}
{{- include "konsil-region.requireOwnHost" (dict "what" "vault.address" "host" (include "konsil-region.urlHost" .Values.vault.address) "root" .) -}}
{{- include "konsil-region.requireOwnHost" (dict "what" "rabbitmq" "host" .Values.rabbitmq.host "root" .) -}}
{{- if and .Values.mediaNodes.enabled (not .Values.mediaNodes.publicDomain) -}}
{{- fail "mediaNodes.publicDomain is required while mediaNodes.enabled: browsers reach each node as <node name>.<publicDomain>" -}}
{{- end -}}
{{- if and .Values.mediaNodes.tls.enabled (not .Values.mediaNodes.tls.secretName) -}}
{{- fail "mediaNodes.tls.secretName is required with mediaNodes.tls.enabled (a kubernetes.io/tls Secret)" -}}
{{- end -}}
{{- if gt (int .Values.mediaNodes.minPort) (int .Values.mediaNodes.maxPort) -}}
{{- fail "mediaNodes.minPort must not be above mediaNodes.maxPort" -}}
{{- end -}}
{{- if .Values.mediaNodes.enabled -}}
{{- $m := .Values.mediaNodes -}}
{{- if not (and $m.rabbitmq $m.rabbitmq.user) -}}
{{- fail "mediaNodes.rabbitmq.user is required while mediaNodes.enabled: the media nodes' own RabbitMQ login (heartbeats only), never the region's user" -}}
{{- end -}}
{{- if eq $m.rabbitmq.user .Values.rabbitmq.user -}}
{{- fail "mediaNodes.rabbitmq.user must not be rabbitmq.user: the region's user may read and write the Celery queues, a media node needs the heartbeat exchange only" -}}
{{- end -}}
{{- $metrics := int $m.metricsPort -}}
{{- if or (eq $metrics (int $m.port)) (and $m.tls.enabled (eq $metrics (int $m.tls.port))) (and (ge $metrics (int $m.minPort)) (le $metrics (int $m.maxPort))) -}}
{{- fail (printf "mediaNodes.metricsPort %d clashes with coturn's ports on the host (port %v, tls.port %v, relay range %v-%v)" $metrics $m.port $m.tls.port $m.minPort $m.maxPort) -}}
{{- end -}}
{{- end -}}
{{- if .Values.networkPolicy.enabled -}}
{{- $needed := list "database" "vault" "rabbitmq" "controlPlane" "dns" -}}
{{- if .Values.telemetry.otlpEndpoint }}{{ $needed = append $needed "telemetry" }}{{ end -}}
{{- if .Values.smtp.host }}{{ $needed = append $needed "smtp" }}{{ end -}}
{{- if .Values.mediaNodes.enabled }}{{ $needed = append $needed "mediaNodes" }}{{ end -}}
{{- range $what := $needed -}}
{{- if not (index $.Values.networkPolicy $what) -}}
{{- fail (printf "networkPolicy.%s: list where it is (ipBlock CIDRs or namespace/pod selectors), or set networkPolicy.enabled=false" $what) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/* The pod-level parts every pod shares. */}}
{{- define "konsil-region.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/* Volumes: the configuration and a writable /tmp (the root filesystem is read-only). */}}
{{- define "konsil-region.volumes" -}}
- name: config
  configMap:
    name: {{ .configMap }}
- name: tmp
  emptyDir:
    sizeLimit: {{ .root.Values.tmpSizeLimit }}
{{- end }}

{{- define "konsil-region.volumeMounts" -}}
- name: config
  mountPath: /etc/konsil
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end }}

{{/*
The environment of the region's own processes (region service, worker, beat, migrations).
Every secret is a secretKeyRef; the DSN and broker URL are assembled by Kubernetes from
their non-secret parts and the password variables defined before them ($(VAR)).
*/}}
{{- define "konsil-region.env" -}}
{{- $p := include "konsil-region.envPrefix" . -}}
{{- $secret := .Values.existingSecret -}}
- name: KONSIL_CONFIG
  value: /etc/konsil/konsil.toml
- name: DATABASE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.secretKeys.databasePassword }}
- name: BROKER_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.secretKeys.brokerPassword }}
- name: {{ $p }}DATABASE
  value: {{ printf "postgresql://%s:$(DATABASE_PASSWORD)@%s:%v/%s%s" .Values.database.user .Values.database.host .Values.database.port .Values.database.name (ternary (printf "?%s" .Values.database.options) "" (ne .Values.database.options "")) | quote }}
- name: {{ $p }}BROKER_URL
  value: {{ printf "%s://%s:$(BROKER_PASSWORD)@%s:%v/%s" .Values.rabbitmq.scheme .Values.rabbitmq.user .Values.rabbitmq.host .Values.rabbitmq.port (urlquery .Values.rabbitmq.vhost) | quote }}
- name: {{ $p }}INTERNAL_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.secretKeys.internalSecret }}
- name: KONSIL_DISCOVERY_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.secretKeys.discoveryKey }}
- name: {{ $p }}MEDIA_NODE_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.secretKeys.mediaNodeKey }}
{{- end }}

{{- define "konsil-region.resources" -}}
{{- if not (and .requests .limits) -}}
{{- fail "every container needs resources.requests and resources.limits" -}}
{{- end -}}
{{ toYaml . }}
{{- end }}

{{/* A hash of the configuration, so pods restart when it changes. */}}
{{- define "konsil-region.configHash" -}}
{{- include (print .Template.BasePath "/configmap.yaml") . | sha256sum | trunc 16 }}
{{- end }}
