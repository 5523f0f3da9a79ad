{{/*
[telemetry]: the same table for every process of the release, each with its metrics port.
Called with (dict "root" $ "port" PORT).
*/}}
{{- define "konsil-region.telemetry" -}}
{{- $t := .root.Values.telemetry -}}
[telemetry]
otlp_endpoint = {{ $t.otlpEndpoint | toJson }}
metrics_listen = {{ printf "0.0.0.0:%v" .port | toJson }}
log_format = "json"
organisation_attributes = {{ $t.organisationAttributes | toJson }}
service_name_prefix = {{ $t.serviceNamePrefix | toJson }}
trace_sample_ratio = {{ $t.traceSampleRatio | float64 }}
export_timeout_seconds = {{ $t.exportTimeoutSeconds | float64 }}
max_queue_spans = {{ $t.maxQueueSpans | int }}
{{- end }}

{{/*
konsil.toml of the region's own processes: services mode, this region only. Secrets are
not here: they arrive as KONSIL_REGIONS__<ID>__... variables (konsil-region.env).
*/}}
{{- define "konsil-region.config" -}}
mode = "services"
# The only writable place (an emptyDir): Celery beat's schedule file.
data_dir = "/tmp/konsil"
control_url = {{ .Values.controlPlane.url | toJson }}

{{ include "konsil-region.telemetry" (dict "root" . "port" .Values.telemetry.metricsPort) }}

[[regions]]
id = {{ .Values.region.id | toJson }}
jurisdiction = {{ .Values.region.jurisdiction | toJson }}
public_url = {{ .Values.region.publicUrl | toJson }}
internal_url = {{ .Values.region.internalUrl | toJson }}
listen = {{ printf "0.0.0.0:%v" .Values.regionService.port | toJson }}
ice_servers = {{ .Values.region.iceServers | toJson }}
ops_token_hashes = {{ .Values.region.opsTokenHashes | toJson }}
turn_credential_seconds = {{ .Values.region.turnCredentialSeconds | int }}

[regions.vault]
backend = "vault"
url = {{ .Values.vault.address | toJson }}
auth = {{ .Values.vault.auth | toJson }}
kubernetes_role = {{ .Values.vault.kubernetesRole | toJson }}
mount = {{ .Values.vault.transitMount | toJson }}
signing_key = {{ .Values.vault.signingKey | toJson }}
kv_mount = {{ .Values.vault.kvMount | toJson }}
turn_secret_path = {{ .Values.vault.turnSecretPath | toJson }}
timeout_seconds = {{ .Values.vault.timeoutSeconds | float64 }}

[regions.lifecycle]
runner = "celery"
purge_every_seconds = {{ .Values.lifecycle.purgeEverySeconds | int }}
purge_batch_size = {{ .Values.lifecycle.purgeBatchSize | int }}
{{- if .Values.smtp.host }}

[regions.smtp]
host = {{ .Values.smtp.host | toJson }}
port = {{ .Values.smtp.port | int }}
security = {{ .Values.smtp.security | toJson }}
username = {{ .Values.smtp.username | toJson }}
from_address = {{ .Values.smtp.fromAddress | toJson }}
password_path = {{ .Values.smtp.passwordPath | toJson }}
{{- end }}
{{- end }}

{{/*
konsil.toml of a media node: what its agent reads and nothing else (no database, no
Transit, no internal secret). Its broker URL (the nodes' own RabbitMQ login) and heartbeat
key arrive by environment; its [telemetry] serves /metrics on mediaNodes.metricsPort.
*/}}
{{- define "konsil-region.mediaNodeConfig" -}}
{{ include "konsil-region.telemetry" (dict "root" . "port" .Values.mediaNodes.metricsPort) }}

[[regions]]
id = {{ .Values.region.id | toJson }}

[regions.vault]
backend = "vault"
url = {{ .Values.vault.address | toJson }}
auth = "kubernetes"
kubernetes_role = {{ .Values.mediaNodes.vaultKubernetesRole | toJson }}
kv_mount = {{ .Values.vault.kvMount | toJson }}
turn_secret_path = {{ .Values.vault.turnSecretPath | toJson }}
timeout_seconds = {{ .Values.vault.timeoutSeconds | float64 }}
{{- end }}
