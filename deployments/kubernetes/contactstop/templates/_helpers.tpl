{{/* Names, labels and computed settings shared by the templates. */}}

{{- define "contactstop.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "contactstop.fullname" -}}
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

{{- define "contactstop.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "contactstop.selectorLabels" -}}
app.kubernetes.io/name: {{ include "contactstop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end }}

{{- define "contactstop.labels" -}}
helm.sh/chart: {{ include "contactstop.chart" . }}
{{ include "contactstop.selectorLabels" . }}
app.kubernetes.io/version: {{ (default .Chart.AppVersion .Values.image.tag) | quote }}
app.kubernetes.io/part-of: contactstop
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "contactstop.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "contactstop.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "contactstop.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The largest number of worker pods the Deployment can have. */}}
{{- define "contactstop.maxPods" -}}
{{- if .Values.autoscaling.enabled }}
{{- max (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas) }}
{{- else }}
{{- int .Values.replicaCount }}
{{- end }}
{{- end }}

{{/* serve's default for --workers when config.workers is empty. */}}
{{- define "contactstop.workers" -}}
{{- $w := index .Values.config "workers" }}
{{- if or (kindIs "invalid" $w) (eq (toString $w) "") }}64{{ else }}{{ int $w }}{{ end }}
{{- end }}

{{/*
The consumer-wide MaxAckPending: config.max-ack-pending if set (it must be at
least 2 x workers x the largest pod count), else that bound, at least 1024.
*/}}
{{- define "contactstop.maxAckPending" -}}
{{- $need := mul 2 (int (include "contactstop.workers" .)) (int (include "contactstop.maxPods" .)) }}
{{- $set := index .Values.config "max-ack-pending" }}
{{- if or (kindIs "invalid" $set) (eq (toString $set) "") }}
{{- max $need 1024 }}
{{- else if lt (int $set) (int $need) }}
{{- fail (printf "config.max-ack-pending (%v) must be at least 2 x workers x pods = %d: every pod can hold 2 x workers requests unacknowledged, and the limit is shared by all pods (up to %s of them)" $set $need (include "contactstop.maxPods" .)) }}
{{- else }}
{{- int $set }}
{{- end }}
{{- end }}

{{/* A Go duration of one unit ("30s", "2m", "1h") in seconds; empty if it has another form. */}}
{{- define "contactstop.seconds" -}}
{{- $d := toString . }}
{{- if regexMatch "^[0-9]+s$" $d }}{{ trimSuffix "s" $d }}
{{- else if regexMatch "^[0-9]+m$" $d }}{{ mul (int (trimSuffix "m" $d)) 60 }}
{{- else if regexMatch "^[0-9]+h$" $d }}{{ mul (int (trimSuffix "h" $d)) 3600 }}
{{- end }}
{{- end }}
