{{/* Names, labels and the sidecar's settings, shared by every template. */}}

{{/* The chart name, or nameOverride. */}}
{{- define "vllm-sidecar.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-<chart>" (the release name alone when it already holds the chart name). */}}
{{- define "vllm-sidecar.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "vllm-sidecar.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "vllm-sidecar.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vllm-sidecar
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that select the chart's own pods (never chart version: selectors are immutable). */}}
{{- define "vllm-sidecar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vllm-sidecar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of the vLLM pods: the chart's own, or existingVllm.podSelector in monitoring-only mode. */}}
{{- define "vllm-sidecar.podSelector" -}}
{{- if .Values.vllm.enabled }}
{{- include "vllm-sidecar.selectorLabels" . }}
{{- else }}
{{- toYaml .Values.existingVllm.podSelector }}
{{- end }}
{{- end }}

{{- define "vllm-sidecar.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vllm-sidecar.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "vllm-sidecar.configName" -}}
{{- printf "%s-config" (include "vllm-sidecar.fullname" .) }}
{{- end }}

{{- define "vllm-sidecar.image" -}}
{{- printf "%s:%s" .image.repository (default .appVersion .image.tag) }}
{{- end }}

{{/* vLLM's port in the pod, in either mode. */}}
{{- define "vllm-sidecar.vllmPort" -}}
{{- if .Values.vllm.enabled }}{{ .Values.vllm.port }}{{ else }}{{ .Values.existingVllm.port }}{{ end }}
{{- end }}

{{/* Name of vLLM's containerPort, in either mode. */}}
{{- define "vllm-sidecar.vllmPortName" -}}
{{- if .Values.vllm.enabled }}vllm{{ else }}{{ .Values.existingVllm.portName }}{{ end }}
{{- end }}

{{/* Where the chart mounts the sidecar's settings file and secrets. */}}
{{- define "vllm-sidecar.paths" -}}
config: /etc/vllm-sidecar/config.yaml
apiKeys: /etc/vllm-sidecar/secrets/api-keys.yaml
upstreamKey: /etc/vllm-sidecar/secrets/upstream-api-key
spool: /var/spool/vllm-sidecar
{{- end }}

{{/* A Kubernetes quantity (512Mi, 1Gi, 2G, 100) in bytes, for the spool size check. */}}
{{- define "vllm-sidecar.quantityBytes" -}}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" . }}
{{- $suffix := trimPrefix $number . }}
{{- $scale := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "P" 1000000000000000 "E" 1000000000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "Pi" 1125899906842624 "Ei" 1152921504606846976 }}
{{- mulf (float64 $number) (get $scale $suffix) }}
{{- end }}

{{/* A Prometheus duration (1h30m, 90s, 500ms) in seconds, for the sidecar's alert_for. */}}
{{- define "vllm-sidecar.durationSeconds" -}}
{{- $total := 0.0 }}
{{- $sizes := dict "ms" 0.001 "s" 1 "m" 60 "h" 3600 "d" 86400 "w" 604800 "y" 31536000 }}
{{- range regexFindAll "[0-9]+(ms|s|m|h|d|w|y)" . -1 }}
{{- $count := regexFind "^[0-9]+" . }}
{{- $total = addf $total (mulf (float64 $count) (get $sizes (trimPrefix $count .))) }}
{{- end }}
{{- $total }}
{{- end }}

{{/* Seconds as a Prometheus duration (600 -> 10m, 0.05 -> 50ms), like the alert catalogue. */}}
{{- define "vllm-sidecar.promDuration" -}}
{{- $ms := int64 (round (mulf . 1000) 0) }}
{{- $out := "" }}
{{- range list (list "d" 86400000) (list "h" 3600000) (list "m" 60000) (list "s" 1000) }}
{{- $count := div $ms (index . 1) }}
{{- if $count }}{{ $out = printf "%s%d%s" $out $count (index . 0) }}{{ end }}
{{- $ms = mod $ms (index . 1) }}
{{- end }}
{{- if $ms }}{{ $out = printf "%s%dms" $out $ms }}{{ end }}
{{- default "0s" $out }}
{{- end }}

{{/* A threshold as alert descriptions write it, per unit (Prometheus' humanizers). */}}
{{- define "vllm-sidecar.thresholdText" -}}
{{- $value := float64 (index . 0) }}
{{- $unit := index . 1 }}
{{- if eq $unit "ratio" }}
{{- printf "%.4g%%" (mulf $value 100) }}
{{- else if eq $unit "seconds" }}
{{- include "vllm-sidecar.promDuration" $value }}
{{- else if eq $unit "per_second" }}
{{- printf "%.6g/s" $value }}
{{- else }}
{{- fail (printf "thresholdText: unit %q is not supported" $unit) }}
{{- end }}
{{- end }}

{{/* The sidecar's settings file (flat YAML keys, as `vllm-sidecar --config` reads them). */}}
{{- define "vllm-sidecar.settings" -}}
{{- $paths := include "vllm-sidecar.paths" . | fromYaml }}
{{- $sidecar := .Values.sidecar }}
{{- $settings := dict
  "upstream" (printf "http://127.0.0.1:%s" (include "vllm-sidecar.vllmPort" .))
  "listen" (printf "0.0.0.0:%d" (int $sidecar.ports.proxy))
  "admin_listen" (printf "0.0.0.0:%d" (int $sidecar.ports.admin))
  "log_level" $sidecar.logLevel
  "log_format" "json"
  "deployment" $sidecar.deployment
  "shutdown_grace_seconds" $sidecar.shutdownGraceSeconds
  "sample_rate" $sidecar.sampling.rate
  "spool_dir" (printf "%s/spool" $paths.spool)
  "samples_dir" (printf "%s/samples" $paths.spool)
  "spool_max_bytes" (int64 $sidecar.spool.maxBytes)
}}
{{- with $sidecar.sampling.rateOverrides }}{{ $_ := set $settings "sample_rate_overrides" . }}{{ end }}
{{- with $sidecar.s3.bucket }}{{ $_ := set $settings "s3_bucket" . }}{{ end }}
{{- $_ := set $settings "s3_prefix" $sidecar.s3.prefix }}
{{- with $sidecar.s3.region }}{{ $_ := set $settings "s3_region" . }}{{ end }}
{{- with $sidecar.s3.endpointUrl }}{{ $_ := set $settings "s3_endpoint_url" . }}{{ end }}
{{- with $sidecar.s3.sse }}{{ $_ := set $settings "s3_sse" . }}{{ end }}
{{- with $sidecar.s3.kmsKeyId }}{{ $_ := set $settings "s3_kms_key_id" . }}{{ end }}
{{- if $sidecar.apiKeys.existingSecret }}{{ $_ := set $settings "api_keys_file" $paths.apiKeys }}{{ end }}
{{- if .Values.vllm.apiKey.existingSecret }}{{ $_ := set $settings "upstream_api_key_file" $paths.upstreamKey }}{{ end }}
{{- with .Values.alerts.alertmanagerUrl }}{{ $_ := set $settings "alertmanager_url" . }}{{ end }}
{{- with .Values.alerts.runbookUrl }}{{ $_ := set $settings "alert_runbook_url" (trimSuffix "/" .) }}{{ end }}
{{- $thresholds := dict }}
{{- $holds := dict }}
{{- range $name, $override := .Values.alerts.overrides }}
{{- if hasKey $override "threshold" }}{{ $_ := set $thresholds $name (float64 $override.threshold) }}{{ end }}
{{- if hasKey $override "for" }}{{ $_ := set $holds $name (float64 (include "vllm-sidecar.durationSeconds" (index $override "for"))) }}{{ end }}
{{- end }}
{{- with $thresholds }}{{ $_ := set $settings "alert_thresholds" . }}{{ end }}
{{- with $holds }}{{ $_ := set $settings "alert_for" . }}{{ end }}
{{- toYaml (mergeOverwrite $settings $sidecar.settings) }}
{{- end }}

{{/* Fail early, with the value to change, on combinations the schema cannot express. */}}
{{- define "vllm-sidecar.validate" -}}
{{- if and .Values.serviceMonitor.enabled .Values.podMonitor.enabled }}
{{- fail "serviceMonitor.enabled and podMonitor.enabled are both true: Prometheus would scrape every target twice; enable one of them" }}
{{- end }}
{{- if contains "sidecar" .Values.metrics.vllmJob }}
{{- fail (printf "metrics.vllmJob %q contains \"sidecar\": the alert rules would take vLLM's up series for the sidecar's" .Values.metrics.vllmJob) }}
{{- end }}
{{- if and (not .Values.vllm.enabled) (not .Values.existingVllm.podSelector) }}
{{- fail "vllm.enabled=false needs existingVllm.podSelector: the labels of the existing vLLM pods to monitor" }}
{{- end }}
{{- if le (float64 .Values.terminationGracePeriodSeconds) (float64 .Values.sidecar.shutdownGraceSeconds) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed sidecar.shutdownGraceSeconds (%v), or the sidecar is killed before it has drained" .Values.terminationGracePeriodSeconds .Values.sidecar.shutdownGraceSeconds) }}
{{- end }}
{{- $limit := include "vllm-sidecar.quantityBytes" .Values.sidecar.spool.sizeLimit | float64 }}
{{- if and (not .Values.sidecar.spool.existingClaim) (ge (float64 .Values.sidecar.spool.maxBytes) $limit) }}
{{- fail (printf "sidecar.spool.maxBytes (%d) must be below sidecar.spool.sizeLimit (%s), or the kubelet evicts the pod before the sidecar drops records" (int64 .Values.sidecar.spool.maxBytes) .Values.sidecar.spool.sizeLimit) }}
{{- end }}
{{- if and .Values.sidecar.spool.existingClaim (gt (int .Values.replicaCount) 1) }}
{{- fail "sidecar.spool.existingClaim needs replicaCount 1: replicas cannot share one spool" }}
{{- end }}
{{- if and (eq .Values.sidecar.s3.sse "aws:kms") (not .Values.sidecar.s3.kmsKeyId) }}
{{- fail "sidecar.s3.sse \"aws:kms\" needs sidecar.s3.kmsKeyId" }}
{{- end }}
{{- end }}
