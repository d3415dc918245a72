{{- define "postgres.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ameide
{{- end }}

{{- define "postgres.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "postgres.password" -}}
{{- required "credentials.password must be set (see environments/<env>/postgres.yaml)" .Values.credentials.password -}}
{{- end }}
