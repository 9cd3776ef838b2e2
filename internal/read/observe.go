package read

import (
	"math"
	"sort"
	"strconv"

	"google.golang.org/protobuf/types/known/structpb"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"

	"github.com/hfops/function-hf-download/apis/v1alpha1"
	"github.com/hfops/function-hf-download/internal/decode"
	"github.com/hfops/function-hf-download/internal/naming"
)

// What Crossplane observed: the XR's identity and recorded status, the
// observed Jobs (bare or in their Objects, whose manifests ReadComposed
// reads) and script ConfigMaps; and, once the function asked for them, what
// it fetched (ReadRequired): the download pods, the token Secret, the PVC,
// the Namespace and the other ModelDownloads.

// Identity is the observed XR's metadata the function uses.
type Identity struct {
	Kind, APIVersion string
	Name, Namespace  string
	UID, Created     string
	Labels           map[string]string
	Annotations      map[string]string
}

// Observation is the request, read.
type Observation struct {
	XR       Identity
	Recorded map[string]RecordedModel
	// RecordedPVC is the uid of the volume the recorded status speaks of.
	RecordedPVC string

	// jobs are the observed download Jobs by model; ByKey by resource key.
	Jobs  map[string][]*SeenJob
	ByKey map[string]*SeenJob
	// Reclaims are the observed reclaim Jobs by model; Reclaiming is
	// status.reclaims[] as the last call wrote it.
	Reclaims   map[string][]*SeenJob
	Reclaiming []v1alpha1.ReclaimStatus
	// Checks are the observed check Jobs of the models' revisions
	// (settings.resyncInterval), by model.
	Checks map[string][]*SeenJob
	// scripts are the observed script ConfigMaps (their names) by key, and
	// whether each exists (an Object's once the provider made it).
	Scripts map[string]SeenScript
	// PVCObserved: the composed PVC exists (spec.storage); AccountObserved:
	// the download pods' ServiceAccount does (pods cannot be made before it).
	PVCObserved, AccountObserved bool
	// progress is what the download pods reported, by content hash (the
	// progress ConfigMap's data as observed).
	Progress map[string]string
	// deleting are the keys whose object (or Object) is being deleted.
	Deleting map[string]bool

	Reports map[string]PodReport
	// Secret is the token Secret as it came: its value is read in token.go
	// alone.
	Secret    *structpb.Struct
	PVC       *corev1.PersistentVolumeClaim
	Namespace *corev1.Namespace
	Peers     []Peer
}

// SeenJob is one download Job of this function, bare or in an Object, as
// Crossplane observed it.
type SeenJob struct {
	Key string
	// manifest is what was applied: the Job, or the Object's
	// spec.forProvider.manifest, as Crossplane observed it; nil when an
	// Object holds none. It is applied again unchanged (keepAsObserved).
	Manifest *structpb.Struct
	// job is the Job as the apiserver has it: nil until provider-kubernetes
	// made an Object's Job, or when its status cannot be read.
	Job          *batchv1.Job
	Object       bool
	Model        string
	Config, Hash string
	Attempt      int64
	Phase        string
	Message      string
	Deleting     bool
}

// SeenScript is an observed script ConfigMap: as applied (manifest), and
// whether it exists (an Object's once the provider made it).
type SeenScript struct {
	Manifest *structpb.Struct
	Name     string
	Exists   bool
	Deleting bool
}

// observe reads the request but for its required resources, which are read
// once the function knows what it asked for (ReadRequired).
func Observe(req *fnv1.RunFunctionRequest) Observation {
	xr := req.GetObserved().GetComposite().GetResource()
	md := Get(xr, "metadata").GetStructValue()
	o := Observation{
		XR: Identity{
			Kind:        GetString(xr, "kind"),
			APIVersion:  GetString(xr, "apiVersion"),
			Name:        GetString(md, "name"),
			Namespace:   GetString(md, "namespace"),
			UID:         GetString(md, "uid"),
			Created:     GetString(md, "creationTimestamp"),
			Labels:      stringMap(Get(md, "labels")),
			Annotations: stringMap(Get(md, "annotations")),
		},
		Recorded:    RecordedStatus(xr),
		RecordedPVC: RecordedPVC(xr),
		Reclaiming:  RecordedReclaims(xr),
		Jobs:        map[string][]*SeenJob{},
		ByKey:       map[string]*SeenJob{},
		Reclaims:    map[string][]*SeenJob{},
		Checks:      map[string][]*SeenJob{},
		Scripts:     map[string]SeenScript{},
		Deleting:    map[string]bool{},
	}
	o.ReadComposed(req.GetObserved().GetResources())
	return o
}

// ReadRequired reads the required resources Crossplane fetched, as
// the dialect's Answered gives them.
func (o *Observation) ReadRequired(required map[string]*fnv1.Resources) {
	o.Reports = podReports(required[RequirementPods])
	if items := required[RequirementToken].GetItems(); len(items) > 0 {
		o.Secret = items[0].GetResource()
	}
	o.PVC = requiredAs[corev1.PersistentVolumeClaim](required[RequirementPVC])
	o.Namespace = requiredAs[corev1.Namespace](required[RequirementNamespace])
	o.Peers = readPeers(required[RequirementPeers], o.XR)
}

// requiredAs is the first item of a required resource as its type; nil when
// none was found or it does not decode.
func requiredAs[T any, P interface {
	*T
	runtime.Object
}](r *fnv1.Resources) P {
	items := r.GetItems()
	if len(items) == 0 {
		return nil
	}
	out := P(new(T))
	if err := RuntimeFromUnstructured(items[0].GetResource().AsMap(), out); err != nil {
		return nil
	}
	return out
}

// RuntimeFromUnstructured decodes an object read from protobuf (numbers are
// float64 there; whole ones convert) into its type.
func RuntimeFromUnstructured(m map[string]any, into runtime.Object) error {
	return runtime.DefaultUnstructuredConverter.FromUnstructured(m, into)
}

// ReadComposed sorts what Crossplane observed: download Jobs (bare or in an
// Object), script ConfigMaps, the composed PVC. What another step composed is
// not touched, whatever its labels. It reads the protobuf as it came: only
// what decides something is converted (a Job's status), and a manifest is
// converted only when it is composed again as it is (keepAsObserved).
func (o *Observation) ReadComposed(observed map[string]*fnv1.Resource) {
	keys := make([]string, 0, len(observed))
	for k := range observed {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		composed := observed[key].GetResource()
		if composed == nil {
			continue
		}
		kind := GetString(composed, "kind")
		if kind != "Job" && kind != "Object" && kind != "ConfigMap" && kind != "PersistentVolumeClaim" && kind != "ServiceAccount" ||
			nestedStrings(composed, "metadata", "labels")[naming.LabelApp] != naming.AppName {
			continue
		}
		manifest, applied := composed, composed
		isObject := kind == "Object"
		if isObject {
			manifest = Get(composed, "spec", "forProvider", "manifest").GetStructValue()
			applied = Get(composed, "status", "atProvider", "manifest").GetStructValue()
		}
		deleting := beingDeleted(composed) || applied != nil && beingDeleted(applied)
		o.Deleting[key] = deleting
		what := GetString(manifest, "kind")
		if what == "" && applied != nil {
			what = GetString(applied, "kind")
		}
		switch {
		case key == PVCKey:
			o.PVCObserved = applied != nil
		case key == naming.ProgressKeyAccount:
			o.AccountObserved = applied != nil && !deleting
		case key == naming.ProgressKeyConfigMap:
			if applied != nil {
				o.Progress = nestedStrings(applied, "data")
			}
		case what == "ConfigMap":
			o.Scripts[key] = SeenScript{Manifest: manifest, Name: GetString(manifest, "metadata", "name"), Exists: applied != nil, Deleting: deleting}
		case what == "Job":
			o.readJob(key, composed, manifest, applied, isObject, deleting)
		}
	}
}

func (o *Observation) readJob(key string, composed, manifest, applied *structpb.Struct, isObject, deleting bool) {
	ann := nestedStrings(composed, "metadata", "annotations")
	model, reclaim := ann[naming.AnnotationModel], false
	if model == "" {
		model, reclaim = ann[naming.AnnotationReclaim], true
	}
	if model == "" {
		return
	}
	j := &SeenJob{
		Key:      key,
		Manifest: manifest,
		Object:   isObject,
		Model:    model,
		Config:   ann[naming.AnnotationConfigHash],
		Hash:     nestedStrings(composed, "metadata", "labels")[naming.LabelSpecHash],
		Deleting: deleting,
		Phase:    PhasePending,
	}
	if n, err := strconv.ParseInt(ann[naming.AnnotationAttempt], 10, 64); err == nil && n > 0 && n <= MaxAttempt {
		j.Attempt = n
	}
	if applied != nil {
		if job, err := ReadJobStatus(applied); err != nil {
			j.Message = shown("cannot read the Job's status: " + err.Error())
		} else {
			j.Job = job
			j.Phase, j.Message = JobPhase(job)
		}
	}
	switch {
	case reclaim:
		o.Reclaims[model] = append(o.Reclaims[model], j)
		return
	case ann[naming.AnnotationResync] != "":
		o.Checks[model] = append(o.Checks[model], j)
		return
	}
	o.Jobs[model] = append(o.Jobs[model], j)
	o.ByKey[key] = j
}

// ReadJobStatus is a Job as the function reads it: its uid, its active
// pods and its conditions, read from the protobuf as it came (the pod
// template, most of a Job, is not read). JobPhase decides from it. A field
// of the wrong type, which no apiserver serves, makes the status unreadable
// rather than guessed at.
func ReadJobStatus(applied *structpb.Struct) (*batchv1.Job, error) {
	r := &decode.Decoder{}
	job := &batchv1.Job{}
	job.UID = types.UID(r.OptionalString(field.NewPath("metadata", "uid"), Get(applied, "metadata", "uid")))
	status := field.NewPath("status")
	if v := Get(applied, "status", "active"); decode.Present(v) {
		n, _ := r.Integer(status.Child("active"), v, activePods)
		job.Status.Active = int32(n) //nolint:gosec // bounded just above
	}
	if v := Get(applied, "status", "conditions"); decode.Present(v) {
		conditions, _ := r.AsList(status.Child("conditions"), v)
		for i, c := range conditions {
			p := status.Child("conditions").Index(i)
			cs, ok := r.AsObject(p, c)
			if !ok {
				continue
			}
			f := cs.GetFields()
			job.Status.Conditions = append(job.Status.Conditions, batchv1.JobCondition{
				Type:    batchv1.JobConditionType(r.OptionalString(p.Child("type"), f["type"])),
				Status:  corev1.ConditionStatus(r.OptionalString(p.Child("status"), f["status"])),
				Reason:  r.OptionalString(p.Child("reason"), f["reason"]),
				Message: r.OptionalString(p.Child("message"), f["message"]),
			})
		}
	}
	return job, r.Errs.ToAggregate()
}

// activePods bounds a Job's status.active as its type does.
var activePods = &decode.Schema{Minimum: new(0.0), Maximum: new(float64(math.MaxInt32))}

// beingDeleted: the object's metadata.deletionTimestamp is set, as
// apimachinery reads it (a value that is no time is none).
func beingDeleted(obj *structpb.Struct) bool {
	return !ParseTime(GetString(obj, "metadata", "deletionTimestamp")).IsZero()
}

// nestedStrings reads a map of strings (labels, annotations, a ConfigMap's
// data) as apimachinery's NestedStringMap does: nil unless every value is a
// string.
func nestedStrings(obj *structpb.Struct, path ...string) map[string]string {
	f := Get(obj, path...).GetStructValue().GetFields()
	if len(f) == 0 {
		return nil
	}
	out := make(map[string]string, len(f))
	for k, v := range f {
		s, ok := v.GetKind().(*structpb.Value_StringValue)
		if !ok {
			return nil
		}
		out[k] = s.StringValue
	}
	return out
}

// stringMap reads labels or annotations; values that are not strings are
// left out.
func stringMap(v *structpb.Value) map[string]string {
	f := v.GetStructValue().GetFields()
	if len(f) == 0 {
		return nil
	}
	out := make(map[string]string, len(f))
	for k, s := range f {
		if x, ok := s.GetKind().(*structpb.Value_StringValue); ok {
			out[k] = x.StringValue
		}
	}
	return out
}

// ScriptMap is the name of the script ConfigMap the Job mounts, if any.
func (j *SeenJob) ScriptMap() string {
	for _, v := range Get(j.Manifest, "spec", "template", "spec", "volumes").GetListValue().GetValues() {
		vol := v.GetStructValue()
		if GetString(vol, "name") != "script" {
			continue
		}
		// A ConfigMap volume (Jobs of earlier versions), or the first
		// ConfigMap of the projected one (internal/build/progress.go).
		if name := Get(vol, "configMap", "name"); name != nil {
			return name.GetStringValue()
		}
		for _, src := range Get(vol, "projected", "sources").GetListValue().GetValues() {
			if name := Get(src.GetStructValue(), "configMap", "name"); name != nil {
				return name.GetStringValue()
			}
		}
	}
	return ""
}

// name is the Job's name, as applied.
func (j *SeenJob) Name() string { return GetString(j.Manifest, "metadata", "name") }
