package job

// Labels every object wharfjobs creates carries, so operators can select
// them (kubectl get pods -l app.kubernetes.io/managed-by=wharfjobs).
const (
	LabelName      = "app.kubernetes.io/name"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelComponent = "app.kubernetes.io/component"
	LabelBuildRef  = "wharfjobs.io/build-ref"
	LabelInstance  = "wharfjobs.io/instance"
	LabelProjectID = "wharfjobs.io/project-id"
	LabelStage     = "wharfjobs.io/stage"
	LabelStep      = "wharfjobs.io/step"
)
