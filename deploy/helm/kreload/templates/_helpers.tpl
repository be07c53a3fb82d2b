{{/* Labels on every object. Tool-neutral (no managed-by), so the rendered manifest fits kubectl too. */}}
{{- define "kreload.labels" -}}
app.kubernetes.io/name: kreload
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{- define "kreload.selectorLabels" -}}
app.kubernetes.io/name: kreload
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The serving certificate's Secret. */}}
{{- define "kreload.tlsSecret" -}}
{{- if eq .Values.certificates.mode "cert-manager" -}}
kreload-serving-tls
{{- else -}}
{{- required "certificates.mode=files needs certificates.files.secretName: a kubernetes.io/tls Secret in the release namespace" .Values.certificates.files.secretName -}}
{{- end -}}
{{- end }}

{{/* annotationNames value → kreload flag (Reloader's), as YAML. */}}
{{- define "kreload.annotationNameFlags" -}}
auto: --auto-annotation
configmapAuto: --configmap-auto-annotation
secretAuto: --secret-auto-annotation
search: --auto-search-annotation
match: --search-match-annotation
configmapReload: --configmap-annotation
secretReload: --secret-annotation
ignore: --ignore-annotation
pausePeriod: --pause-deployment-annotation
pausedAt: --pause-deployment-time-annotation
{{- end }}

{{/* Values that do not fit together fail the render with a reason. */}}
{{- define "kreload.validate" -}}
{{- if and .Values.rbac.namespaced (empty .Values.watchNamespaces) -}}
{{- fail "rbac.namespaced=true needs watchNamespaces: the namespaces kreload gets Roles in and acts in" -}}
{{- end -}}
{{- if and .Values.rbac.namespaced .Values.namespaceSelector -}}
{{- fail "namespaceSelector needs cluster-wide read of namespaces; with rbac.namespaced=true list the namespaces in watchNamespaces instead" -}}
{{- end -}}
{{- if and .Values.rbac.namespaced (eq .Values.certificates.mode "self-managed") -}}
{{- fail "certificates.mode=self-managed writes the webhook configurations' caBundle, which needs a ClusterRole; with rbac.namespaced=true use cert-manager or files" -}}
{{- end -}}
{{- if and (eq .Values.certificates.mode "files") (empty .Values.certificates.files.caBundle) -}}
{{- fail "certificates.mode=files needs certificates.files.caBundle: the base64 CA certificate for the webhook configurations (certs/make-certs prints it)" -}}
{{- end -}}
{{- end }}
