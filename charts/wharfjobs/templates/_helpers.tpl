{{/*
Object names are fixed, as in manifests/ (the code's defaults name them:
WHARFJOBS_WORKER_SERVICE_ACCOUNT, WHARFJOBS_WORKER_ENV_CONFIGMAP,
WHARFJOBS_WORKER_ENV_SECRET): one release per namespace.
*/}}

{{- define "wharfjobs.chart" -}}
{{ .Chart.Name }}-{{ .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* Labels of every object; pods get only the selector labels (build
pods carry app.kubernetes.io/managed-by=wharfjobs, which the
NetworkPolicy and KEDA select on: ours must not). */}}
{{- define "wharfjobs.labels" -}}
app.kubernetes.io/name: wharfjobs
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ include "wharfjobs.chart" .root }}
{{- end }}

{{- define "wharfjobs.selectorLabels" -}}
app.kubernetes.io/name: wharfjobs
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "wharfjobs.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "wharfjobs.tokenSecret" -}}
{{ .Values.existingSecret | default "wharfjobs-token" }}
{{- end }}

{{- define "wharfjobs.storeSecret" -}}
{{ .Values.store.existingSecret | default "wharfjobs-store" }}
{{- end }}

{{- define "wharfjobs.storeEndpoint" -}}
{{- if .Values.store.endpoint -}}
{{ .Values.store.endpoint }}
{{- else if .Values.minio.enabled -}}
wharfjobs-minio.{{ .Release.Namespace }}.svc:9000
{{- end -}}
{{- end }}

{{/* Checks every template runs first: a missing API fails rendering. */}}
{{- define "wharfjobs.checks" -}}
{{- if and .Values.knative.enabled (not (.Capabilities.APIVersions.Has "serving.knative.dev/v1")) -}}
{{- fail "knative.enabled is true but the cluster does not serve serving.knative.dev/v1: install Knative Serving first, or set knative.enabled=false for a Deployment and a Service (helm template: pass --api-versions serving.knative.dev/v1)" -}}
{{- end -}}
{{- if and .Values.keda.enabled (not (.Capabilities.APIVersions.Has "keda.sh/v1alpha1")) -}}
{{- fail "keda.enabled is true but the cluster does not serve keda.sh/v1alpha1: install KEDA first, or set keda.enabled=false for an always-running aggregator Deployment (helm template: pass --api-versions keda.sh/v1alpha1)" -}}
{{- end -}}
{{- if and .Values.keda.enabled (eq .Values.aggregator.mode "cronjob") -}}
{{- fail "keda.enabled scales the aggregator Deployment: it cannot be combined with aggregator.mode=cronjob" -}}
{{- end -}}
{{- if and (not .Values.minio.enabled) (eq .Values.store.type "minio") (not .Values.store.endpoint) -}}
{{- fail "minio.enabled is false: set store.endpoint (and store.type=s3 for AWS S3 or another S3 service)" -}}
{{- end -}}
{{- end }}

{{/* The pod security context of every pod of ours (Pod Security restricted). */}}
{{- define "wharfjobs.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
seccompProfile: {type: RuntimeDefault}
{{- end }}

{{- define "wharfjobs.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end }}

{{/* Scheduling and pull secrets of a component's pods: .values is its values. */}}
{{- define "wharfjobs.podScheduling" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* envFrom of the provisioner and the aggregator: the worker settings and the store credentials. */}}
{{- define "wharfjobs.envFrom" -}}
- configMapRef: {name: wharfjobs-worker}
- secretRef: {name: {{ include "wharfjobs.storeSecret" . }}}
{{- end }}

{{/* The aggregator's environment (.extra: mode-specific variables). */}}
{{- define "wharfjobs.aggregatorEnv" -}}
{{- if .Values.wharfApi.url }}
- {name: WHARFJOBS_WHARF_API_URL, value: {{ .Values.wharfApi.url | quote }}}
{{- end }}
{{- if .Values.wharfApi.auth }}
- name: WHARFJOBS_WHARF_API_AUTH
  valueFrom: {secretKeyRef: {name: wharfjobs-wharf-api, key: WHARFJOBS_WHARF_API_AUTH}}
{{- end }}
{{- if .Values.instanceId }}
- {name: WHARFJOBS_WHARF_INSTANCE, value: {{ .Values.instanceId | quote }}}
{{- end }}
{{- with .Values.aggregator.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* A Secret's value kept across upgrades: the given one, else the one in
the cluster, else a random one. .name, .key, .value */}}
{{- define "wharfjobs.keptSecret" -}}
{{- if .value -}}
{{ .value }}
{{- else -}}
{{- $old := lookup "v1" "Secret" .root.Release.Namespace .name -}}
{{- if and $old $old.data (index $old.data .key) -}}
{{ index $old.data .key | b64dec }}
{{- else -}}
{{ randAlphaNum 40 }}
{{- end -}}
{{- end -}}
{{- end }}
