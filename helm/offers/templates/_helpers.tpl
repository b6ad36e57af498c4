{{/* Chart name. */}}
{{- define "offers.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Base name of every resource; roles append "-<role>" (and headless Services
"-<role>-headless"), so it is kept to 40 characters to leave room for the suffix.
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

{{/* Selector of one component's pods: (dict "ctx" $ "component" "auth"). */}}
{{- define "offers.componentSelector" -}}
{{ include "offers.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "offers.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The Service of a role: (dict "ctx" $ "role" "auth"). */}}
{{- define "offers.serviceName" -}}
{{ include "offers.fullname" .ctx }}-{{ .role }}
{{- end }}

{{/* The headless Service of a gRPC role: (dict "ctx" $ "role" "auth"). */}}
{{- define "offers.headlessName" -}}
{{ include "offers.fullname" .ctx }}-{{ .role }}-headless
{{- end }}

{{/* The ServiceAccount of the chart's pods; empty for the namespace default. */}}
{{- define "offers.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "offers.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
What each component of the release needs, as YAML (read with fromYaml).
Components are the roles of `offers serve`, "reminders" (the CronJob running
`offers jobs expiring-subscriptions`), "migrate" (the hook running `offers
migrate`) and "admin" (the toolbox for `offers admin`).
  uses:     egress groups under networkPolicy.egress (and the Secret
            variables: database, cache, bus), mirroring the binary's
            Role::needs_database / Role::needs_bus and the settings each role
            reads.
  public:   gRPC roles whose public port it calls: the gateway's upstreams,
            and auth's for every role that checks access tokens (each gRPC
            role loads the key set, GetJwks, from the auth Service; the auth
            role reads its own listener).
  internal: gRPC roles whose internal port it calls (the internal clients
            the binary wires into that role; the console and the toolbox
            use them all: users, offers, ledger and jobs, partners, and the
            audit trails of the four).
deploy/checks/render.py checks the rendered NetworkPolicies against the same
graph, written out independently.
Both the Secret-backed variables and the NetworkPolicies are derived from it.
*/}}
{{- define "offers.components" -}}
auth:       {uses: [database, cache]}
catalog:    {uses: [database, cache], public: [auth]}
account:    {uses: [database, cache, bus], public: [auth]}
activation: {uses: [cache], public: [auth], internal: [catalog, account]}
worker:     {uses: [cache, bus, provisioning], internal: [account]}
partner:    {uses: [database, cache, bus, partnerCallbacks], public: [auth], internal: [auth, catalog, account]}
notifier:   {uses: [database, cache, bus, smtp, sms], internal: [auth]}
scheduler:  {uses: [database, cache, bus], internal: [account]}
gateway:    {uses: [cache], public: [auth, catalog, account, activation, partner]}
console:    {uses: [cache], internal: [auth, catalog, account, partner]}
reminders:  {uses: [database, cache, bus], internal: [account]}
migrate:    {uses: [database]}
admin:      {uses: [database, cache, bus], internal: [auth, catalog, account, partner]}
{{- end }}

{{/*
Pod-level settings shared by every pod: (dict "ctx" $ "serviceAccount" name).
Service links are off: Kubernetes would inject OFFERS_<SERVICE>_* variables
for the chart's own Services, which the binary reads as unknown settings. The
token is not mounted: Offers never calls the Kubernetes API.
*/}}
{{- define "offers.podSpec" -}}
{{- $v := .ctx.Values -}}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with .serviceAccount }}
serviceAccountName: {{ . }}
{{- end }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Spread constraints of a role's pods: (dict "ctx" $ "role" "auth"). */}}
{{- define "offers.topologySpread" -}}
{{- $t := .ctx.Values.topologySpread }}
{{- if and $t.enabled $t.topologyKeys }}
topologySpreadConstraints:
  {{- range $t.topologyKeys }}
  - maxSkew: {{ $t.maxSkew }}
    topologyKey: {{ . }}
    whenUnsatisfiable: {{ $t.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "offers.componentSelector" (dict "ctx" $.ctx "component" $.role) | nindent 8 }}
    matchLabelKeys: [pod-template-hash]
  {{- end }}
{{- end }}
{{- end }}

{{/*
Secret-backed variables of a component: (dict "ctx" $ "role" "auth"). Which
component gets the database and bus URLs comes from "offers.components".
*/}}
{{- define "offers.secretEnv" -}}
{{- $secret := .ctx.Values.existingSecret }}
{{- $keys := .ctx.Values.secretKeys }}
{{- $uses := (get (include "offers.components" .ctx | fromYaml) .role).uses -}}
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
{{- if has "database" $uses }}
- name: OFFERS_DATABASE__URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.databaseUrl }}
{{- end }}
{{- if has "bus" $uses }}
- name: OFFERS_BUS__URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.busUrl }}
{{- end }}
{{- if eq .role "auth" }}
- name: OFFERS_AUTH__KEY_ENCRYPTION_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.authKeyEncryptionKey }}
{{- if .ctx.Values.auth.importInitialKey }}
- name: OFFERS_AUTH__PRIVATE_KEY_FILE
  value: /etc/offers/keys/private.pem
{{- end }}
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
      optional: {{ not .ctx.Values.config.notifier.smtpConfigured }}
- name: OFFERS_NOTIFIER__SMS_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.smsApiKey }}
      optional: true
{{- end }}
{{- end }}

{{/*
The files a component reads: (dict "ctx" $ "role" "auth"). "keys": the first
signing key, for auth with auth.importInitialKey only. "tls": the gRPC
certificate, key and CA, for every pod that reads the ConfigMap (which then
names them) when tls.enabled. Both render nothing when there is nothing to
mount; "offers.volumeMounts" and "offers.volumes" agree on the names.
*/}}
{{- define "offers.volumeMounts" -}}
{{- if and (eq .role "auth") .ctx.Values.auth.importInitialKey }}
- name: keys
  mountPath: /etc/offers/keys
  readOnly: true
{{- end }}
{{- if and .ctx.Values.tls.enabled (ne .role "migrate") }}
- name: tls
  mountPath: /etc/offers/tls
  readOnly: true
{{- end }}
{{- end }}

{{- define "offers.volumes" -}}
{{- if and (eq .role "auth") .ctx.Values.auth.importInitialKey }}
- name: keys
  secret:
    secretName: {{ .ctx.Values.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .ctx.Values.secretKeys.authPrivateKey }}
        path: private.pem
{{- end }}
{{- if and .ctx.Values.tls.enabled (ne .role "migrate") }}
- name: tls
  secret:
    secretName: {{ .ctx.Values.tls.secretName }}
    defaultMode: 0440
    items:
      - {key: tls.crt, path: tls.crt}
      - {key: tls.key, path: tls.key}
      - {key: ca.crt, path: ca.crt}
{{- end }}
{{- end }}

{{/*
Settings a role cannot run without: the render fails with a message instead
of producing a pod that crash-loops.
*/}}
{{- define "offers.validate" -}}
{{- $v := .Values }}
{{- if and $v.roles.worker.enabled (not $v.config.provisioningUrl) }}
{{- fail "roles.worker.enabled is true but config.provisioningUrl is empty: the worker cannot run without the provisioning system's URL (set it, or leave the worker disabled)" }}
{{- end }}
{{- if and $v.roles.notifier.enabled (not $v.config.notifier.smsUrl) (not $v.config.notifier.smtpConfigured) }}
{{- fail "roles.notifier.enabled is true but it has no channel: set config.notifier.smsUrl, or put the SMTP URL in the Secret and set config.notifier.smtpConfigured=true" }}
{{- end }}
{{- if and $v.tls.enabled (not $v.tls.secretName) }}
{{- fail "tls.enabled is true but tls.secretName is empty: name the kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt) that holds the gRPC certificate" }}
{{- end }}
{{- if and $v.ingress.enabled (not $v.roles.gateway.enabled) }}
{{- fail "ingress.enabled needs roles.gateway.enabled: the Ingress routes to the gateway" }}
{{- end }}
{{- if and $v.console.ingress.enabled (not $v.roles.console.enabled) }}
{{- fail "console.ingress.enabled needs roles.console.enabled: the Ingress routes to the console" }}
{{- end }}
{{- range $role, $r := $v.roles }}
{{- if and $r.enabled $r.autoscaling.enabled }}
{{- $a := include "offers.autoscaling" (dict "ctx" $ "role" $role) | fromYaml }}
{{- if lt (int $a.maxReplicas) (int $a.minReplicas) }}
{{- fail (printf "roles.%s.autoscaling: maxReplicas (%v) is below minReplicas (%v)" $role $a.maxReplicas $a.minReplicas) }}
{{- end }}
{{- if and (kindIs "invalid" $a.targetCPUUtilizationPercentage) (not $a.metrics) }}
{{- fail (printf "roles.%s.autoscaling: nothing to scale on (targetCPUUtilizationPercentage is null and metrics is empty)" $role) }}
{{- end }}
{{- if and (not (kindIs "invalid" $a.targetCPUUtilizationPercentage)) (not (dig "requests" "cpu" "" $r.resources)) }}
{{- fail (printf "roles.%s.autoscaling scales on CPU, which needs roles.%s.resources.requests.cpu" $role $role) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The autoscaler settings of a role, as YAML: the top-level `autoscaling`
with each key given in roles.<role>.autoscaling replacing it (a plain
per-key override, so that 0, false and null override too).
*/}}
{{- define "offers.autoscaling" -}}
{{- $a := deepCopy .ctx.Values.autoscaling }}
{{- range $k, $val := (get .ctx.Values.roles .role).autoscaling }}
{{- $_ := set $a $k $val }}
{{- end }}
{{- toYaml $a }}
{{- end }}

{{/* The components this release runs, as a YAML list (read with fromYamlArray). */}}
{{- define "offers.presentComponents" -}}
{{- $present := list }}
{{- range $role, $r := .Values.roles }}
{{- if $r.enabled }}{{ $present = append $present $role }}{{ end }}
{{- end }}
{{- if .Values.cronJob.enabled }}{{ $present = append $present "reminders" }}{{ end }}
{{- if .Values.migrations.enabled }}{{ $present = append $present "migrate" }}{{ end }}
{{- if .Values.adminToolbox.enabled }}{{ $present = append $present "admin" }}{{ end }}
{{- toYaml $present }}
{{- end }}
