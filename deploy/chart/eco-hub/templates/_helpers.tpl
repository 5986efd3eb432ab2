{{/* The chart name. */}}
{{- define "eco-hub.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every object's name. */}}
{{- define "eco-hub.fullname" -}}
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

{{/* Labels on every object. */}}
{{- define "eco-hub.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "eco-hub.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The labels the Service and Deployment select by. */}}
{{- define "eco-hub.selectorLabels" -}}
app.kubernetes.io/name: {{ include "eco-hub.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The image reference, by digest when one is given. */}}
{{- define "eco-hub.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The admin token Secret's name. */}}
{{- define "eco-hub.adminTokenSecret" -}}
{{- .Values.adminToken.existingSecret | default (printf "%s-admin-token" (include "eco-hub.fullname" .)) }}
{{- end }}

{{/* The external URL, checked. */}}
{{- define "eco-hub.externalURL" -}}
{{- $u := required "externalURL is required: the https URL agents and users reach the hub at" .Values.externalURL }}
{{- if not (hasPrefix "https://" $u) }}
{{- fail (printf "externalURL %q must start with https://" $u) }}
{{- end }}
{{- trimSuffix "/" $u }}
{{- end }}

{{/* The host of the external URL. */}}
{{- define "eco-hub.externalHost" -}}
{{- (urlParse (include "eco-hub.externalURL" .)).hostname }}
{{- end }}
