{{/* The chart name, overridable. */}}
{{- define "memelearning.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release-scoped base name of every object. */}}
{{- define "memelearning.fullname" -}}
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

{{- define "memelearning.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "memelearning.labels" -}}
helm.sh/chart: {{ include "memelearning.chart" . }}
{{ include "memelearning.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: memelearning
{{- end }}

{{- define "memelearning.selectorLabels" -}}
app.kubernetes.io/name: {{ include "memelearning.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Per-component names and labels: call with (dict "ctx" $ "component" "worker"). */}}
{{- define "memelearning.componentName" -}}
{{- printf "%s-%s" (include "memelearning.fullname" .ctx) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "memelearning.componentLabels" -}}
{{ include "memelearning.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "memelearning.componentSelectorLabels" -}}
{{ include "memelearning.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "memelearning.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "memelearning.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The worker image: the GPU tag when GPUs are requested and no tag is set. */}}
{{- define "memelearning.workerImage" -}}
{{- $repo := default .Values.image.repository .Values.worker.image.repository }}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.worker.image.tag }}
{{- $tag = .Values.worker.image.tag }}
{{- else if .Values.worker.gpu.enabled }}
{{- $tag = printf "%s-gpu" $tag }}
{{- end }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}

{{- define "memelearning.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Where the worker's model is mounted when it does not come with the image. */}}
{{- define "memelearning.modelMount" -}}/models{{- end }}

{{/* MEMELEARNING_WORKER_MODEL_DIR for a model on a volume or from an init image. */}}
{{- define "memelearning.workerModelDir" -}}
{{- $path := .Values.worker.models.path }}
{{- if $path }}{{ include "memelearning.modelMount" . }}/{{ $path }}{{ else }}{{ include "memelearning.modelMount" . }}{{ end }}
{{- end }}

{{/* The worker's effective prefetch, as worker/settings.py computes it. */}}
{{- define "memelearning.workerPrefetch" -}}
{{- $s := .Values.worker.settings }}
{{- if gt (int $s.prefetch) 0 }}{{ int $s.prefetch }}{{ else }}{{ mul 2 (int $s.maxBatch) }}{{ end }}
{{- end }}

{{/* Fails the render on settings that cannot work together. */}}
{{- define "memelearning.validate" -}}
{{- if not .Values.amqp.existingSecret }}
{{- fail "amqp.existingSecret is required: a Secret holding the broker URLs (see the chart README)" }}
{{- end }}
{{- $w := .Values.worker }}
{{- if le (float64 $w.terminationGracePeriodSeconds) (float64 $w.settings.drainTimeoutSeconds) }}
{{- fail (printf "worker.terminationGracePeriodSeconds (%v) must be longer than worker.settings.drainTimeoutSeconds (%v): Kubernetes would kill workers mid-drain" $w.terminationGracePeriodSeconds $w.settings.drainTimeoutSeconds) }}
{{- end }}
{{- $r := .Values.reactions }}
{{- if and $r.enabled (le (float64 $r.terminationGracePeriodSeconds) (addf $r.settings.drainTimeoutSeconds $r.preStopSleepSeconds)) }}
{{- fail (printf "reactions.terminationGracePeriodSeconds (%v) must be longer than reactions.preStopSleepSeconds + reactions.settings.drainTimeoutSeconds" $r.terminationGracePeriodSeconds) }}
{{- end }}
{{- if and .Values.keda.enabled (le (int .Values.keda.queueLength) (int (include "memelearning.workerPrefetch" .))) }}
{{- fail (printf "keda.queueLength (%v) must exceed the worker prefetch (%s): with the management API every busy worker holds that many unacked frames, which would read as a backlog" .Values.keda.queueLength (include "memelearning.workerPrefetch" .)) }}
{{- end }}
{{- if and .Values.keda.enabled (gt (int .Values.keda.minReplicaCount) (int .Values.keda.maxReplicaCount)) }}
{{- fail "keda.minReplicaCount must not exceed keda.maxReplicaCount" }}
{{- end }}
{{- $m := $w.models }}
{{- if and (eq $m.source "volume") (not $m.volume) }}
{{- fail "worker.models.volume is required with worker.models.source=volume: a volume source holding the model repository, e.g. {persistentVolumeClaim: {claimName: models}}" }}
{{- end }}
{{- if and (eq $m.source "initImage") (not (and $m.initImage.repository $m.initImage.tag)) }}
{{- fail "worker.models.initImage.repository and .tag are required with worker.models.source=initImage: the image holding the model folder" }}
{{- end }}
{{- end }}

{{/* The broker URL and TLS settings of one component (dict: ctx, component), as env
entries: its own URL key when set, else the shared one; TLS files from amqp.tls. */}}
{{- define "memelearning.amqpEnv" -}}
{{- $a := .ctx.Values.amqp }}
{{- $prefix := printf "MEMELEARNING_%s_" (upper .component) }}
{{- $key := ternary $a.workerUrlKey $a.reactionsUrlKey (eq .component "worker") }}
- name: {{ $prefix }}AMQP_URL
  valueFrom:
    secretKeyRef:
      name: {{ $a.existingSecret }}
      key: {{ default $a.urlKey $key }}
{{- with $a.hosts }}
- name: {{ $prefix }}AMQP_HOSTS
  value: {{ join "," . | quote }}
{{- end }}
{{- if $a.tls.existingSecret }}
- name: {{ $prefix }}TLS_CA_FILE
  value: /etc/memelearning/amqp-tls/ca.crt
{{- if $a.tls.clientCertificate }}
- name: {{ $prefix }}TLS_CERT_FILE
  value: /etc/memelearning/amqp-tls/tls.crt
- name: {{ $prefix }}TLS_KEY_FILE
  value: /etc/memelearning/amqp-tls/tls.key
{{- end }}
{{- end }}
{{- with $a.tls.serverName }}
- name: {{ $prefix }}TLS_SERVER_NAME
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{/* The volume with the broker's CA (and client certificate), when amqp.tls has one. */}}
{{- define "memelearning.amqpTlsVolume" -}}
{{- with .Values.amqp.tls.existingSecret }}
- name: amqp-tls
  secret:
    secretName: {{ . }}
    # Readable by the pods' fsGroup only: the client key is a credential.
    defaultMode: 0440
{{- end }}
{{- end }}

{{- define "memelearning.amqpTlsMount" -}}
{{- if .Values.amqp.tls.existingSecret }}
- name: amqp-tls
  mountPath: /etc/memelearning/amqp-tls
  readOnly: true
{{- end }}
{{- end }}
