{{/* The chart's name. */}}
{{- define "understudy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's objects' name: the release name, with the chart's unless
it is part of it already. */}}
{{- define "understudy.fullname" -}}
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

{{- define "understudy.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "understudy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "understudy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "understudy.labels" -}}
helm.sh/chart: {{ include "understudy.chart" . }}
{{ include "understudy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: gateway
{{- end }}

{{/* The Secret the gateway reads its keys from. */}}
{{- define "understudy.secretName" -}}
{{- default (include "understudy.fullname" .) .Values.existingSecret }}
{{- end }}

{{- define "understudy.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The name the official NATS chart gives its client Service (its
nats.fullname, or service.name). */}}
{{- define "understudy.natsService" -}}
{{- $nats := .Values.nats }}
{{- if dig "service" "name" "" $nats }}
{{- $nats.service.name }}
{{- else if $nats.fullnameOverride }}
{{- $nats.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default "nats" $nats.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* storage.nats.url: as set, else the bundled cluster's Service. */}}
{{- define "understudy.natsURL" -}}
{{- if .Values.storage.nats.url }}
{{- .Values.storage.nats.url }}
{{- else if .Values.nats.enabled }}
{{- $port := dig "config" "nats" "port" 4222 .Values.nats }}
{{- printf "nats://%s.%s.svc:%v" (include "understudy.natsService" .) .Release.Namespace $port }}
{{- else }}
{{- fail "storage.nats.url is required when nats.enabled is false: the NATS servers, comma-separated (nats://host:4222,...)" }}
{{- end }}
{{- end }}

{{/* Where the NATS credentials file is mounted. */}}
{{- define "understudy.natsCredsDir" -}}
/etc/understudy/nats
{{- end }}

{{/* The gateway's config file: what the chart sets, with .Values.config
merged over it. Secrets are not here: they come from the Secret as
environment variables. */}}
{{- define "understudy.config" -}}
{{- $s := .Values.storage }}
{{- $storage := dict "backend" $s.backend }}
{{- if eq $s.backend "nats" }}
{{- $nats := dict "url" (include "understudy.natsURL" .) "replicas" (int $s.nats.replicas) "prefix" $s.nats.prefix }}
{{- if eq $s.nats.auth.type "creds" }}
{{- $_ := set $nats "creds_file" (printf "%s/nats.creds" (include "understudy.natsCredsDir" .)) }}
{{- else if eq $s.nats.auth.type "password" }}
{{- $_ := set $nats "user" (required "storage.nats.auth.user is required with auth type password" $s.nats.auth.user) }}
{{- end }}
{{- $_ := set $storage "nats" $nats }}
{{- end }}
{{- $gateway := dict }}
{{- if .Values.gateway.shutdownDelay }}
{{- $_ := set $gateway "shutdown_delay" .Values.gateway.shutdownDelay }}
{{- end }}
{{- if .Values.gateway.allowUnauthenticated }}
{{- $_ := set $gateway "allow_unauthenticated" true }}
{{- end }}
{{- $cfg := dict "teacher" (dict "url" .Values.teacher.url) "storage" $storage "gateway" $gateway }}
{{- toYaml (mustMergeOverwrite $cfg (deepCopy .Values.config)) }}
{{- end }}

{{/* Checks of values that would otherwise fail only when the pods start. */}}
{{- define "understudy.validate" -}}
{{- $s := .Values.storage }}
{{- if not (has $s.backend (list "nats" "badger")) }}
{{- fail (printf "storage.backend must be nats or badger, got %q" $s.backend) }}
{{- end }}
{{- if and (eq $s.backend "badger") (gt (int .Values.replicaCount) 1) }}
{{- fail (printf "storage.backend badger keeps the pair log inside one pod: set replicaCount 1 (and persistence.enabled), or use storage.backend nats for %d replicas" (int .Values.replicaCount)) }}
{{- end }}
{{- if and (eq $s.backend "badger") .Values.nats.enabled }}
{{- fail "storage.backend badger does not use the bundled NATS cluster: set nats.enabled=false (it would run 3 NATS servers with their volumes for nothing)" }}
{{- end }}
{{- if not (has $s.nats.auth.type (list "none" "creds" "token" "password")) }}
{{- fail (printf "storage.nats.auth.type must be none, creds, token or password, got %q" $s.nats.auth.type) }}
{{- end }}
{{- if and (eq $s.backend "nats") (or (lt (int $s.nats.replicas) 1) (gt (int $s.nats.replicas) 5)) }}
{{- fail (printf "storage.nats.replicas must be in 1..5, got %v" $s.nats.replicas) }}
{{- end }}
{{- if and (eq $s.backend "nats") .Values.nats.enabled }}
{{- $servers := 1 }}
{{- if dig "config" "cluster" "enabled" false .Values.nats }}
{{- $servers = int (dig "config" "cluster" "replicas" 1 .Values.nats) }}
{{- end }}
{{- if gt (int $s.nats.replicas) $servers }}
{{- fail (printf "storage.nats.replicas (%v) is more than the bundled NATS cluster's %d servers (nats.config.cluster)" $s.nats.replicas $servers) }}
{{- end }}
{{- end }}
{{- if not (or .Values.gateway.apiKeys .Values.gateway.allowUnauthenticated .Values.existingSecret) }}
{{- fail "gateway.apiKeys is required (or existingSecret with UNDERSTUDY_GATEWAY_API_KEYS, or gateway.allowUnauthenticated behind a proxy that authenticates clients): the gateway listens on the pod's address and spends the teacher's key for whoever reaches it" }}
{{- end }}
{{- end }}
