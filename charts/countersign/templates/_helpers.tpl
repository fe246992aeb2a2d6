{{/*
Names, labels and the values every template derives from the same inputs (the Secret names, the mount
paths the configuration refers to, the Provider URLs). Checks that values.schema.json cannot express
(they depend on more than one value) fail here with a message that says what to set.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "countersign.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The base name of every object: fullnameOverride, else the release name when it already contains the chart
name (release "countersign" -> "countersign"), else "<release>-<chart>". The Service has this name, so it is
also the first label of the host name Gatekeeper calls.
*/}}
{{- define "countersign.fullname" -}}
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

{{- define "countersign.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "countersign.selectorLabels" -}}
app.kubernetes.io/name: {{ include "countersign.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "countersign.labels" -}}
helm.sh/chart: {{ include "countersign.chart" . }}
{{ include "countersign.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: countersign
{{- end }}

{{- define "countersign.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "countersign.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository@digest when a digest is set (the tag is then ignored), else repository:tag (default appVersion). */}}
{{- define "countersign.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The host name Gatekeeper calls; the serving certificate must carry it as a SAN. */}}
{{- define "countersign.serviceHost" -}}
{{- printf "%s.%s.svc" (include "countersign.fullname" .) .Release.Namespace }}
{{- end }}

{{- define "countersign.providerURL" -}}
{{- printf "https://%s:%d%s" (include "countersign.serviceHost" .root) (int .root.Values.service.port) .path }}
{{- end }}

{{/* The Secret with the serving certificate (tls.crt, tls.key; ca.crt read for the Providers' caBundle). */}}
{{- define "countersign.tlsSecretName" -}}
{{- if .Values.tls.certManager.enabled }}
{{- default (printf "%s-tls" (include "countersign.fullname" .)) .Values.tls.certManager.secretName }}
{{- else if .Values.tls.existingSecret }}
{{- .Values.tls.existingSecret }}
{{- else }}
{{- fail "tls.existingSecret is empty: name a Secret in the release namespace with the serving certificate (keys tls.crt, tls.key and ca.crt), or set tls.certManager.enabled=true to have cert-manager issue it" }}
{{- end }}
{{- end }}

{{/*
Where Gatekeeper's CA comes from when mutual TLS is on, as a dict {kind: Secret|ConfigMap, name, key}.
A Pod cannot mount a Secret of another namespace, so the CA (ca.crt of gatekeeper-webhook-server-cert in
Gatekeeper's namespace) must be in the release namespace: inline (mtls.clientCA, the chart makes a
ConfigMap), in a ConfigMap (mtls.clientCAConfigMap) or in a Secret (mtls.clientCASecret), in that order of
precedence.
*/}}
{{- define "countersign.clientCASource" -}}
{{- $m := .Values.mtls }}
{{- if $m.clientCA }}
{{- dict "kind" "ConfigMap" "name" (printf "%s-client-ca" (include "countersign.fullname" .)) "key" "ca.crt" | toJson }}
{{- else if $m.clientCAConfigMap }}
{{- dict "kind" "ConfigMap" "name" $m.clientCAConfigMap "key" $m.clientCAKey | toJson }}
{{- else if $m.clientCASecret }}
{{- dict "kind" "Secret" "name" $m.clientCASecret "key" $m.clientCAKey | toJson }}
{{- else }}
{{- fail (printf "mtls.enabled is true but no client CA source is set: Countersign must know Gatekeeper's CA (ca.crt of the Secret gatekeeper-webhook-server-cert in %s) to require Gatekeeper's client certificate. A Pod cannot mount a Secret from another namespace, so copy ca.crt into the release namespace and set mtls.clientCASecret (a Secret) or mtls.clientCAConfigMap (a ConfigMap), or give the PEM inline with --set-file mtls.clientCA=ca.crt; or set mtls.enabled=false to accept any client (not recommended)" .Values.gatekeeper.namespace) }}
{{- end }}
{{- end }}

{{/* Mount points inside the container; the rendered configuration refers to these paths. */}}
{{- define "countersign.paths" -}}
{{- dict
  "configDir" "/etc/countersign/config"
  "config" "/etc/countersign/config/config.yaml"
  "tlsDir" "/etc/countersign/tls"
  "clientCADir" "/etc/countersign/gatekeeper"
  "dockerDir" "/etc/countersign/docker"
  "trustDir" "/etc/countersign/trust"
  | toJson }}
{{- end }}

{{/*
The Countersign configuration: .Values.config (or the placeholder policy) with the server section's
listener fields set by the chart (address, port, healthPort, TLS file paths) and the mounted docker config
Secrets appended to auth.dockerConfigs. The chart owns those fields: setting them under config fails the render instead of
being silently overridden.
*/}}
{{- define "countersign.config" -}}
{{- $paths := include "countersign.paths" . | fromJson }}
{{- $config := deepCopy (.Values.config | default dict) }}
{{- if include "countersign.defaultPolicy" . }}
{{- $_ := set $config "verifiers" (dict "pinned" (dict "type" "digest-pin")) }}
{{- $_ := set $config "policies" (list (dict "name" "default" "scopes" (list "*") "allOf" (list "pinned"))) }}
{{- end }}
{{- $server := deepCopy (get $config "server" | default dict) }}
{{- range $field := list "address" "port" "healthPort" }}
{{- if hasKey $server $field }}
{{- fail (printf "config.server.%s is set by the chart; use server.port / server.healthPort (the address is always 0.0.0.0)" $field) }}
{{- end }}
{{- end }}
{{- $tls := deepCopy (get $server "tls" | default dict) }}
{{- range $field := list "certFile" "keyFile" "clientCAFile" }}
{{- if hasKey $tls $field }}
{{- fail (printf "config.server.tls.%s is set by the chart from tls.* and mtls.* (the files are mounted from Secrets); leave it out of config" $field) }}
{{- end }}
{{- end }}
{{- $_ := set $tls "certFile" (printf "%s/tls.crt" $paths.tlsDir) }}
{{- $_ := set $tls "keyFile" (printf "%s/tls.key" $paths.tlsDir) }}
{{- if .Values.mtls.enabled }}
{{- $_ := set $tls "clientCAFile" (printf "%s/ca.crt" $paths.clientCADir) }}
{{- end }}
{{- $_ := set $server "tls" $tls }}
{{- $_ := set $server "address" "0.0.0.0" }}
{{- $_ := set $server "port" (int .Values.server.port) }}
{{- $_ := set $server "healthPort" (int .Values.server.healthPort) }}
{{- $_ := set $config "server" $server }}
{{- include "countersign.memoryBudget" (dict "config" $config "Values" .Values) }}
{{- with .Values.registryCredentials.dockerConfigSecrets }}
{{- $auth := deepCopy (get $config "auth" | default dict) }}
{{- $files := list }}
{{- range (get $auth "dockerConfigs" | default list) }}
{{- $files = append $files . }}
{{- end }}
{{- range . }}
{{- $files = append $files (printf "%s/%s/config.json" $paths.dockerDir .name) }}
{{- end }}
{{- $_ := set $auth "dockerConfigs" $files }}
{{- $_ := set $config "auth" $auth }}
{{- end }}
{{- if .Values.kubernetes.enabled }}
{{- $kube := deepCopy (get $config "kubernetes" | default dict) }}
{{- if hasKey $kube "enabled" }}
{{- fail "config.kubernetes.enabled is set by the chart from kubernetes.enabled; leave it out of config" }}
{{- end }}
{{- $_ := set $kube "enabled" true }}
{{- with .Values.kubernetes.pullSecrets }}
{{- $_ := set $kube "pullSecrets" (concat (get $kube "pullSecrets" | default list) .) }}
{{- end }}
{{- if hasKey $kube "workloadPullSecrets" }}
{{- fail "config.kubernetes.workloadPullSecrets is set by the chart from kubernetes.workloadPullSecrets.enabled (which also grants the RBAC it needs); leave it out of config" }}
{{- end }}
{{- if .Values.kubernetes.workloadPullSecrets.enabled }}
{{- $_ := set $kube "workloadPullSecrets" true }}
{{- end }}
{{- $_ := set $config "kubernetes" $kube }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/*
"true" when config has neither verifiers nor policies and kubernetes.enabled is off (resources then supply
them; no policy at all denies every image): the chart then uses a placeholder policy (every image
referenced by digest). It is not in values.yaml because helm merges maps: a default verifier there would
stay in every configuration that names its own verifiers.
*/}}
{{- define "countersign.defaultPolicy" -}}
{{- $config := .Values.config | default dict }}
{{- if and (not .Values.kubernetes.enabled) (not (get $config "verifiers")) (not (get $config "policies")) }}true{{ end }}
{{- end }}

{{/* Checks across several values, included by the Deployment so that every render runs them. */}}
{{- define "countersign.validate" -}}
{{- if and (not .Values.kubernetes.enabled) .Values.kubernetes.workloadPullSecrets.enabled }}
{{- fail "kubernetes.workloadPullSecrets.enabled needs kubernetes.enabled: Countersign reads the workloads' pull secrets through the Kubernetes API" }}
{{- end }}
{{- if eq (int .Values.server.port) (int .Values.server.healthPort) }}
{{- fail "server.port and server.healthPort must differ: the health port is plain HTTP, the server port HTTPS" }}
{{- end }}
{{- $secrets := dict }}
{{- range .Values.registryCredentials.dockerConfigSecrets }}
{{- if hasKey $secrets .name }}
{{- fail (printf "registryCredentials.dockerConfigSecrets: the Secret %q is listed twice" .name) }}
{{- end }}
{{- $_ := set $secrets .name true }}
{{- end }}
{{- $names := dict }}
{{- range .Values.trustMaterial }}
{{- if hasKey $names .name }}
{{- fail (printf "trustMaterial: the name %q is used twice" .name) }}
{{- end }}
{{- $_ := set $names .name true }}
{{- end }}
{{- end }}

{{/*
A Kubernetes quantity (512Mi, 1Gi, 1.5G, 536870912) in bytes, as an integer.
*/}}
{{- define "countersign.quantityBytes" -}}
{{- $q := toString . | trim -}}
{{- $units := list (list "Ki" 1024.0) (list "Mi" 1048576.0) (list "Gi" 1073741824.0) (list "Ti" 1099511627776.0) (list "k" 1000.0) (list "M" 1000000.0) (list "G" 1000000000.0) (list "T" 1000000000000.0) -}}
{{- $factor := 1.0 -}}
{{- $number := $q -}}
{{- range $units -}}
{{- if hasSuffix (index . 0) $q -}}
{{- $factor = index . 1 -}}
{{- $number = trimSuffix (index . 0) $q -}}
{{- end -}}
{{- end -}}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?$" $number) -}}
{{- fail (printf "resources.limits.memory: %q is not a memory quantity this chart reads (like 512Mi, 1Gi or 536870912)" $q) -}}
{{- end -}}
{{- mulf (float64 $number) $factor | floor | int64 -}}
{{- end }}

{{/*
Cache sizes and the in-flight budget derived from resources.limits.memory (memory.derive): what is left
after memory.reservedBytes (the process itself, buffers and heap slack) is split by memory.shares. A field
set under config keeps its value. See docs/operators.md "Memory sizing".
*/}}
{{- define "countersign.memoryBudget" -}}
{{- $config := .config -}}
{{- $memory := .Values.memory -}}
{{- $limit := dig "limits" "memory" "" (.Values.resources | default dict) -}}
{{- if and $memory.derive $limit -}}
{{- $total := include "countersign.quantityBytes" $limit | int64 -}}
{{- $reserved := include "countersign.quantityBytes" $memory.reserved | int64 -}}
{{- $free := sub $total $reserved -}}
{{- if lt $free (mul 64 1048576) -}}
{{- fail (printf "resources.limits.memory (%s) leaves less than 64Mi after memory.reserved (%s): raise the limit or set memory.derive=false and size config.cache and config.server.limits yourself" $limit $memory.reserved) -}}
{{- end -}}
{{- $shares := $memory.shares -}}
{{- if gt (addf $shares.inFlight $shares.content $shares.verdicts $shares.tags) 100.0 -}}
{{- fail "memory.shares: inFlight, content, verdicts and tags add up to more than 100 (percent)" -}}
{{- end -}}
{{- $inFlight := divf (mulf $free $shares.inFlight) 100 | floor | int64 -}}
{{- $verification := min $inFlight (include "countersign.quantityBytes" $memory.verificationMax | int64) -}}
{{- $content := divf (mulf $free $shares.content) 100 | floor | int64 -}}
{{- $verdicts := divf (mulf $free $shares.verdicts) 100 | floor | int64 -}}
{{- $tags := divf (mulf $free $shares.tags) 100 | floor | int64 -}}
{{- $server := get $config "server" -}}
{{- $limits := deepCopy (get $server "limits" | default dict) -}}
{{- if not (hasKey $limits "inFlightBytes") }}{{ $_ := set $limits "inFlightBytes" $inFlight }}{{ end -}}
{{- if not (hasKey $limits "verificationBytes") }}{{ $_ := set $limits "verificationBytes" (min $verification (get $limits "inFlightBytes" | int64)) }}{{ end -}}
{{- $_ := set $server "limits" $limits -}}
{{- $cache := deepCopy (get $config "cache" | default dict) -}}
{{- if not (hasKey $cache "contentBytes") }}{{ $_ := set $cache "contentBytes" $content }}{{ end -}}
{{- if not (hasKey $cache "verdictBytes") }}{{ $_ := set $cache "verdictBytes" $verdicts }}{{ end -}}
{{- if not (hasKey $cache "tagBytes") }}{{ $_ := set $cache "tagBytes" $tags }}{{ end -}}
{{- if not (hasKey $cache "maxVerdicts") }}{{ $_ := set $cache "maxVerdicts" (div (get $cache "verdictBytes" | int64) $memory.bytesPerVerdict) }}{{ end -}}
{{- $_ := set $config "cache" $cache -}}
{{- end -}}
{{- end }}
