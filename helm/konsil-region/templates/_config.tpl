{{/*
konsil.toml of the region's own processes: services mode, this region only. Secrets are
not here: they arrive as KONSIL_REGIONS__<ID>__... variables (konsil-region.env).
*/}}
{{- define "konsil-region.config" -}}
mode = "services"
# The only writable place (an emptyDir): Celery beat's schedule file.
data_dir = "/tmp/konsil"
control_url = {{ .Values.controlPlane.url | toJson }}

[telemetry]
otlp_endpoint = {{ .Values.telemetry.otlpEndpoint | toJson }}
metrics_listen = {{ printf "0.0.0.0:%v" .Values.telemetry.metricsPort | toJson }}
log_format = "json"
organisation_attributes = {{ .Values.telemetry.organisationAttributes | toJson }}
service_name_prefix = {{ .Values.telemetry.serviceNamePrefix | toJson }}

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
Transit, no internal secret). Its broker URL and heartbeat key arrive by environment.
*/}}
{{- define "konsil-region.mediaNodeConfig" -}}
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
