{{/* Names ------------------------------------------------------------------------------- */}}

{{- define "marconi.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name; every object's name starts with it. */}}
{{- define "marconi.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A component's object name: "<fullname>-<suffix>", refused (not cut) past 63 characters, so
two partitions can never end up with one truncated name. Call with (list $ "suffix"). */}}
{{- define "marconi.componentName" -}}
{{- $root := index . 0 -}}
{{- $name := printf "%s-%s" (include "marconi.fullname" $root) (index . 1) -}}
{{- if gt (len $name) 63 -}}
{{- fail (printf "%q is longer than 63 characters: shorten the release name, fullnameOverride or the partition name" $name) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{- define "marconi.nodeName" -}}
{{- include "marconi.componentName" (list (index . 0) (printf "node-%s" (index . 1).name)) -}}
{{- end -}}

{{- define "marconi.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "marconi.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels ------------------------------------------------------------------------------ */}}

{{/* Selector labels of one component. Call with (list $ "proxy"). */}}
{{- define "marconi.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "marconi.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "marconi.labels" -}}
{{- $root := index . 0 -}}
{{ include "marconi.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: marconi
{{- end -}}

{{/* A node's selector labels: its component and its partition. Call with (list $ partition). */}}
{{- define "marconi.nodeSelectorLabels" -}}
{{ include "marconi.selectorLabels" (list (index . 0) "node") }}
marconi.dev/partition: {{ (index . 1).name }}
{{- end -}}

{{/* Refuse partitions that cannot be deployed side by side. */}}
{{- define "marconi.checkPartitions" -}}
{{- $names := list -}}
{{- range .Values.partitions -}}
{{- if has .name $names -}}
{{- fail (printf "partitions: %s is listed twice" .name) -}}
{{- end -}}
{{- $names = append $names .name -}}
{{- end -}}
{{- end -}}

{{/* Endpoints ---------------------------------------------------------------------------- */}}

{{/* MARCONI_CATALOG_URL: the bundled etcd's Service, or catalog.endpoints joined by commas. */}}
{{- define "marconi.catalogURL" -}}
{{- if .Values.etcd.enabled -}}
{{- printf "http://%s:2379" (include "marconi.componentName" (list . "etcd")) -}}
{{- else -}}
{{- if not .Values.catalog.endpoints -}}
{{- fail "catalog.endpoints: give the etcd cluster's client URLs (or set etcd.enabled for a trial)" -}}
{{- end -}}
{{- join "," .Values.catalog.endpoints -}}
{{- end -}}
{{- end -}}

{{/* The URL the proxy reaches a partition's nodes at: its Service. Call with (list $ partition). */}}
{{- define "marconi.nodeURL" -}}
{{- $root := index . 0 -}}
{{- printf "http://%s.%s.svc:%v" (include "marconi.nodeName" .) $root.Release.Namespace $root.Values.node.port -}}
{{- end -}}

{{- define "marconi.proxyURL" -}}
{{- printf "http://%s.%s.svc:%v" (include "marconi.componentName" (list . "proxy")) .Release.Namespace .Values.proxy.service.port -}}
{{- end -}}

{{/* A partition's storage settings: its `mongodb` or its `postgresql` (exactly one). */}}
{{- define "marconi.storage" -}}
{{- if and .mongodb .postgresql -}}
{{- fail (printf "partition %s: set mongodb or postgresql, not both" .name) -}}
{{- end -}}
{{- .mongodb | default .postgresql | default dict | toYaml -}}
{{- end -}}

{{/* Where a partition's storage URI (mongodb:// or postgresql://) is: {name, key} of a
Secret. Call with (list $ partition). */}}
{{- define "marconi.storageSecret" -}}
{{- $root := index . 0 -}}
{{- $p := index . 1 -}}
{{- $store := include "marconi.storage" $p | fromYaml -}}
{{- if $store.existingSecret -}}
name: {{ $store.existingSecret }}
key: {{ $store.existingSecretKey | default "uri" }}
{{- else if $store.uri -}}
name: {{ include "marconi.componentName" (list $root "storage") }}
key: {{ $p.name }}
{{- else -}}
{{- fail (printf "partition %s: set mongodb.uri or postgresql.uri, or mongodb.existingSecret or postgresql.existingSecret (and existingSecretKey)" $p.name) -}}
{{- end -}}
{{- end -}}

{{/* Pods --------------------------------------------------------------------------------- */}}

{{- define "marconi.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* A pod's annotations: Prometheus' scrape annotations (metrics.podAnnotations) and the
component's own. Call with (list $ port extra); renders nothing when there are none. */}}
{{- define "marconi.podAnnotations" -}}
{{- $root := index . 0 -}}
{{- $annotations := dict -}}
{{- if $root.Values.metrics.podAnnotations -}}
{{- $_ := set $annotations "prometheus.io/scrape" "true" -}}
{{- $_ := set $annotations "prometheus.io/port" (toString (index . 1)) -}}
{{- $_ := set $annotations "prometheus.io/path" "/metrics" -}}
{{- end -}}
{{- $annotations = merge $annotations (index . 2 | default dict) -}}
{{- with $annotations -}}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{/* The pod-level settings every pod shares. */}}
{{- define "marconi.podCommon" -}}
serviceAccountName: {{ include "marconi.serviceAccountName" . }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Scheduling settings of one component's values. */}}
{{- define "marconi.scheduling" -}}
{{- $found := dict -}}
{{- range $key := list "nodeSelector" "tolerations" "affinity" "topologySpreadConstraints" -}}
{{- with index $ $key -}}
{{- $_ := set $found $key . -}}
{{- end -}}
{{- end -}}
{{- with $found -}}
{{- toYaml . -}}
{{- end -}}
{{- end -}}

{{/* A writable /tmp for a container whose root filesystem is read-only. */}}
{{- define "marconi.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}

{{- define "marconi.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* The catalog's environment, shared by the proxy and the worker. */}}
{{- define "marconi.catalogEnv" -}}
- name: MARCONI_CATALOG_URL
  value: {{ include "marconi.catalogURL" . | quote }}
- name: MARCONI_CATALOG_PREFIX
  value: {{ .Values.catalog.prefix | quote }}
{{- end -}}

{{/* Wait this long before the process is told to stop (it leaves the Service first). */}}
{{- define "marconi.preStop" -}}
{{- if . -}}
lifecycle:
  preStop:
    exec:
      command: ["sleep", {{ . | quote }}]
{{- end -}}
{{- end -}}
