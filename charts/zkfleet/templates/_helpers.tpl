{{/*
Names and labels shared by every template of the chart.
*/}}

{{/*
The app.kubernetes.io/name of the operator pods. Fixed: the NetworkPolicy the
operator gives each pool admits only pods with this label.
*/}}
{{- define "zkfleet.name" -}}
zkfleet-operator
{{- end }}

{{/*
The name of every object: fullnameOverride, else <release>-operator when the
release name already says zkfleet, else <release>-zkfleet-operator.
*/}}
{{- define "zkfleet.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains "zkfleet" .Release.Name }}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-zkfleet-operator" .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "zkfleet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator pods; never change them on upgrade. */}}
{{- define "zkfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "zkfleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Labels of every object the chart creates. */}}
{{- define "zkfleet.labels" -}}
{{ include "zkfleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: zkfleet
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "zkfleet.chart" . }}
{{- end }}

{{- define "zkfleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "zkfleet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "zkfleet.operatorImage" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "zkfleet.proverImage" -}}
{{- printf "%s:%s" .Values.prover.image.repository (default .Chart.AppVersion .Values.prover.image.tag) }}
{{- end }}

{{/*
The artifact store the operator is given: the configured URL, except a file://
store on an emptyDir (no existingClaim) unless artifacts.allowEphemeral is set.
That one would die with the leader pod, so the operator gets no store and fails
jobs whose proofs are too large for their status, instead of losing the proofs.
*/}}
{{- define "zkfleet.artifactsUrl" -}}
{{- $url := .Values.artifacts.url | default "" -}}
{{- $ephemeral := and (hasPrefix "file://" $url) (not .Values.artifacts.existingClaim) -}}
{{- if not (and $ephemeral (not .Values.artifacts.allowEphemeral)) -}}
{{- $url -}}
{{- end -}}
{{- end }}
