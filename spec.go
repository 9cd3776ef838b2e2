package main

import (
	"strconv"

	"google.golang.org/protobuf/types/known/structpb"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/hfops/function-hf-download/script"
)

// Defaults of the ModelDownload API. The XRD declares them too, but render and
// older XRDs may not apply them, so the function applies them; the script's
// own (script.go, checked against download.sh) are these very values, and
// TestXRDDefaultsAreTheFunctions checks the XRDs'.
const (
	defaultRevision         = script.DefaultRevision
	defaultRepoType         = script.DefaultRepoType
	defaultRetryCount       = 2
	defaultKeepAliveSeconds = 3600
	defaultTokenKey         = "token"
	defaultVolumeMode       = "Filesystem"

	deletionOrphan = "Orphan"
	deletionDelete = "Delete"
)

// Limits that keep one XR from producing absurd Jobs.
const (
	maxRetryCount    = 100
	maxInt32         = 1<<31 - 1
	maxTimeoutMillis = 30 * 24 * 3600 * 1000 // thirty days
	// The watchdog looks every few seconds; a day without a byte is stuck.
	minStallTimeoutSeconds = 30
	maxStallTimeoutSeconds = 24 * 3600
)

// modelSpec is one entry of spec.models, defaults applied.
type modelSpec struct {
	Name       string
	Revision   string
	SHA        string
	RetryCount int64
	Include    []string
	Exclude    []string
	RepoType   string

	// errs makes this model unusable; the other models go ahead.
	errs field.ErrorList
}

type tokenRef struct {
	Name string
	Key  string
}

type downloadSettings struct {
	TimeoutMillis    int64
	EnableHFTransfer bool
	KeepAliveSeconds int64
	// CPU and Memory are the user's quantities, empty when the platform
	// default applies.
	CPU         string
	Memory      string
	ForceReload bool
	// StallTimeoutSeconds: the watchdog's limit (0: the Input's).
	StallTimeoutSeconds int64
	// MaxParallel bounds this ModelDownload's active Jobs (0: no limit). It
	// decides when Jobs start, not what they are: no hash covers it.
	MaxParallel int64
}

// storageSpec asks the function to compose the PVC named by storagePVC.
type storageSpec struct {
	Size             string
	StorageClassName *string // nil: the cluster's default class
	AccessModes      []string
	VolumeMode       string
	// DeletionPolicy Orphan (the default) keeps the PVC, and the models on
	// it, when the XR is deleted; Delete deletes it with the XR.
	DeletionPolicy string
}

// xrSpec is the ModelDownload spec as the function uses it.
type xrSpec struct {
	Models     []modelSpec
	StoragePVC string
	Storage    *storageSpec // nil: the PVC exists already
	Token      *tokenRef    // nil when the models are public
	NodePool   string
	Settings   downloadSettings
}

var (
	specPath     = field.NewPath("spec")
	modelsPath   = specPath.Child("models")
	settingsPath = specPath.Child("settings")
	storagePath  = specPath.Child("storage")
)

// parseSpec reads the XR's spec. Errors in the returned list make the whole
// spec unusable; errors of a single model are kept on that model.
func parseSpec(xr *structpb.Struct) (xrSpec, field.ErrorList) {
	r := &reader{}
	out := xrSpec{Settings: downloadSettings{KeepAliveSeconds: defaultKeepAliveSeconds}}

	spec, ok := r.object(specPath, xr.GetFields()["spec"])
	if !ok {
		if len(r.errs) == 0 {
			r.errs = append(r.errs, field.Required(specPath, ""))
		}
		return out, r.errs
	}
	f := spec.GetFields()

	if models, ok := r.list(modelsPath, f["models"]); ok {
		out.Models = make([]modelSpec, 0, len(models))
		for i, m := range models {
			if ms, ok := parseModel(r, modelsPath.Index(i), m); ok {
				out.Models = append(out.Models, ms)
			}
		}
	}
	out.StoragePVC, _ = r.string(specPath.Child("storagePVC"), f["storagePVC"])
	out.NodePool, _ = r.string(specPath.Child("nodePool"), f["nodePool"])

	if ref, ok := r.object(specPath.Child("hfTokenRef"), f["hfTokenRef"]); ok {
		p := specPath.Child("hfTokenRef")
		t := &tokenRef{Key: defaultTokenKey}
		t.Name, _ = r.string(p.Child("name"), ref.GetFields()["name"])
		if k, ok := r.string(p.Child("key"), ref.GetFields()["key"]); ok && k != "" {
			t.Key = k
		}
		out.Token = t
	}

	if st, ok := r.object(storagePath, f["storage"]); ok {
		sf := st.GetFields()
		out.Storage = &storageSpec{VolumeMode: defaultVolumeMode, DeletionPolicy: deletionOrphan}
		out.Storage.Size, _ = r.string(storagePath.Child("size"), sf["size"])
		if c, ok := r.string(storagePath.Child("storageClassName"), sf["storageClassName"]); ok {
			out.Storage.StorageClassName = &c
		}
		out.Storage.AccessModes = readStrings(r, storagePath.Child("accessModes"), sf["accessModes"])
		if len(out.Storage.AccessModes) == 0 {
			out.Storage.AccessModes = []string{"ReadWriteOnce"}
		}
		if v, ok := r.string(storagePath.Child("volumeMode"), sf["volumeMode"]); ok && v != "" {
			out.Storage.VolumeMode = v
		}
		if v, ok := r.string(storagePath.Child("deletionPolicy"), sf["deletionPolicy"]); ok && v != "" {
			out.Storage.DeletionPolicy = v
		}
	}

	if s, ok := r.object(settingsPath, f["settings"]); ok {
		sf := s.GetFields()
		st := &out.Settings
		st.TimeoutMillis, _ = r.int(settingsPath.Child("timeoutMillis"), sf["timeoutMillis"], 0, maxTimeoutMillis)
		st.EnableHFTransfer = r.bool(settingsPath.Child("enableHFTransfer"), sf["enableHFTransfer"])
		if v, ok := r.int(settingsPath.Child("keepAliveSeconds"), sf["keepAliveSeconds"], 0, maxInt32); ok {
			st.KeepAliveSeconds = v
		}
		st.CPU, _ = r.string(settingsPath.Child("cpu"), sf["cpu"])
		st.Memory, _ = r.string(settingsPath.Child("memory"), sf["memory"])
		st.ForceReload = r.bool(settingsPath.Child("forceReload"), sf["forceReload"])
		st.MaxParallel, _ = r.int(settingsPath.Child("maxParallel"), sf["maxParallel"], 1, maxInt32)
		st.StallTimeoutSeconds, _ = r.int(settingsPath.Child("stallTimeoutSeconds"), sf["stallTimeoutSeconds"], minStallTimeoutSeconds, maxStallTimeoutSeconds)
	}
	return out, r.errs
}

// parseModel reads one model. A model that is not an object, or has no usable
// name, cannot even be reported in status, so it fails the spec; any other
// problem stays with the model.
func parseModel(spec *reader, p *field.Path, v *structpb.Value) (modelSpec, bool) {
	obj, ok := spec.object(p, v)
	if !ok {
		if !present(v) {
			spec.errs = append(spec.errs, field.Required(p, "must be an object with a name"))
		}
		return modelSpec{}, false
	}
	f := obj.GetFields()
	name, ok := spec.string(p.Child("name"), f["name"])
	if !ok || name == "" {
		if ok || !present(f["name"]) {
			spec.errs = append(spec.errs, field.Required(p.Child("name"), "the Hugging Face repo id, such as org/name"))
		}
		return modelSpec{}, false
	}

	r := &reader{}
	m := modelSpec{Name: name, Revision: defaultRevision, RepoType: defaultRepoType, RetryCount: defaultRetryCount}
	if s, ok := r.string(p.Child("revision"), f["revision"]); ok && s != "" {
		m.Revision = s
	}
	m.SHA, _ = r.string(p.Child("sha"), f["sha"])
	if n, ok := r.int(p.Child("retryCount"), f["retryCount"], 0, maxRetryCount); ok {
		m.RetryCount = n
	}
	m.Include = readStrings(r, p.Child("include"), f["include"])
	m.Exclude = readStrings(r, p.Child("exclude"), f["exclude"])
	if s, ok := r.string(p.Child("repoType"), f["repoType"]); ok && s != "" {
		m.RepoType = s
	}
	m.errs = r.errs
	return m, true
}

func readStrings(r *reader, p *field.Path, v *structpb.Value) []string {
	items, ok := r.list(p, v)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(items))
	for i, it := range items {
		if s, ok := r.string(p.Index(i), it); ok {
			out = append(out, s)
		}
	}
	return out
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
