{{/* Chart name. */}}
{{- define "offers.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Base name of every resource; roles append "-<role>", so it is kept to 40
characters to leave room for the suffix.
*/}}
{{- define "offers.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "offers.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "offers.selectorLabels" -}}
app.kubernetes.io/name: {{ include "offers.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "offers.labels" -}}
helm.sh/chart: {{ include "offers.chart" . }}
{{ include "offers.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "offers.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The Service of a role: (dict "ctx" $ "role" "auth"). */}}
{{- define "offers.serviceName" -}}
{{ include "offers.fullname" .ctx }}-{{ .role }}
{{- end }}

{{/*
Pod-level settings shared by Deployments, the migration Job and the CronJob.
Service links are off: Kubernetes would inject OFFERS_<SERVICE>_* variables
for the chart's own Services, which the binary reads as unknown settings.
*/}}
{{- define "offers.podSpec" -}}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with .Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Secret-backed variables of a role: (dict "ctx" $ "role" "auth"). The role
"jobs" is the one-shot CronJob. Which role needs what mirrors
services/offers/src/roles.rs (needs_database, needs_bus).
*/}}
{{- define "offers.secretEnv" -}}
{{- $secret := .ctx.Values.existingSecret }}
{{- $keys := .ctx.Values.secretKeys -}}
- name: OFFERS_INTERNAL__TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.internalToken }}
- name: OFFERS_CACHE__URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.cacheUrl }}
{{- if has .role (list "auth" "catalog" "account" "partner" "notifier" "scheduler" "jobs") }}
- name: OFFERS_DATABASE__URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.databaseUrl }}
{{- end }}
{{- if has .role (list "account" "worker" "partner" "notifier" "scheduler" "jobs") }}
- name: OFFERS_BUS__URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.busUrl }}
{{- end }}
{{- if eq .role "auth" }}
- name: OFFERS_AUTH__PRIVATE_KEY_FILE
  value: /etc/offers/keys/private.pem
{{- end }}
{{- if eq .role "worker" }}
- name: OFFERS_PROVISIONING__API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.provisioningApiKey }}
      optional: true
{{- end }}
{{- if eq .role "notifier" }}
- name: OFFERS_NOTIFIER__SMTP_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.smtpUrl }}
      optional: true
- name: OFFERS_NOTIFIER__SMS_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.smsApiKey }}
      optional: true
{{- end }}
{{- end }}
