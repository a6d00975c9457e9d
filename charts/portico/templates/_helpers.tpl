{{/* Name prefix of every object: "<release>-portico", or the release name when it already says portico. */}}
{{- define "portico.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains "portico" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-portico" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "portico.labels" -}}
app.kubernetes.io/name: portico
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "l2") */}}
{{- define "portico.selector" -}}
app.kubernetes.io/name: portico
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Image of a Portico binary: (dict "root" $ "binary" "l2-controller" "digest" "") */}}
{{- define "portico.image" -}}
{{- $v := .root.Values.image -}}
{{- if .digest -}}
{{ printf "%s/%s@%s" $v.registry .binary .digest }}
{{- else -}}
{{ printf "%s/%s:%s" $v.registry .binary (default .root.Chart.AppVersion $v.tag) }}
{{- end -}}
{{- end -}}

{{/* ServiceAccount username of a component, as admission sees it. */}}
{{- define "portico.saUser" -}}
{{- printf "system:serviceaccount:%s:%s-%s" .root.Release.Namespace (include "portico.fullname" .root) .component -}}
{{- end -}}

{{/*
The generated roles of a component (files/rbac/<component>.yaml, copied from
config/rbac/<component>/role.yaml by `make chart`), as YAML {cluster: [rules], namespaced:
[rules]}: the ClusterRole's rules and those of the Role controller-gen wrote for the
install namespace. Fails when the chart carries no role for the component: its binary is
not part of this chart version.
(dict "root" $ "component" "l2" "key" "controllers.l2")
*/}}
{{- define "portico.generatedRules" -}}
{{- $file := printf "files/rbac/%s.yaml" .component -}}
{{- $text := .root.Files.Get $file -}}
{{- if not $text -}}
{{- fail (printf "%s.enabled: this chart has no %s binary (no generated RBAC in %s; its controller package does not exist in this version). Leave it disabled, or use a chart version that ships it." .key .component $file) -}}
{{- end -}}
{{- $cluster := list -}}
{{- $namespaced := list -}}
{{- range $doc := regexSplit "(?m)^---\\s*$" $text -1 -}}
{{- $o := fromYaml $doc -}}
{{- if eq (get $o "kind") "ClusterRole" -}}
{{- $cluster = concat $cluster (get $o "rules") -}}
{{- else if eq (get $o "kind") "Role" -}}
{{- $namespaced = concat $namespaced (get $o "rules") -}}
{{- end -}}
{{- end -}}
{{- dict "cluster" $cluster "namespaced" $namespaced | toYaml -}}
{{- end -}}

{{/*
Rules whose write verbs are narrowed to the named objects: reads (list, watch) stay as
generated, since RBAC cannot narrow them by name, and update/patch/delete/get get
resourceNames. (dict "rules" $rules "names" (list "a"))
*/}}
{{- define "portico.namedWrites" -}}
{{- $out := list -}}
{{- range $r := .rules -}}
{{- $reads := list -}}
{{- $named := list -}}
{{- range $v := $r.verbs -}}
{{- if has $v (list "get" "update" "patch" "delete") -}}
{{- $named = append $named $v -}}
{{- else -}}
{{- $reads = append $reads $v -}}
{{- end -}}
{{- end -}}
{{- if $reads -}}
{{- $out = append $out (dict "apiGroups" $r.apiGroups "resources" $r.resources "verbs" $reads) -}}
{{- end -}}
{{- if $named -}}
{{- $out = append $out (dict "apiGroups" $r.apiGroups "resources" $r.resources "verbs" $named "resourceNames" $.names) -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* The controllers that are enabled, as a list of (dict "key" "l2" "c" <values>), in a fixed order. */}}
{{- define "portico.enabledControllers" -}}
{{- $out := list -}}
{{- range $key := keys .Values.controllers | sortAlpha -}}
{{- $c := get $.Values.controllers $key -}}
{{- if $c.enabled -}}
{{- $out = append $out (dict "key" $key "c" $c) -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{- define "portico.podSecurity" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "portico.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}
