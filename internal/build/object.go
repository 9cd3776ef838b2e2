package build

import (
	"google.golang.org/protobuf/types/known/structpb"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/hfops/function-hf-download/input/v1beta1"
	"github.com/hfops/function-hf-download/internal/read"
)

// Two ways to compose. Job mode composes batch/v1 Jobs (and the PVC)
// directly: Crossplane v2 with namespaced XRs. Object mode wraps each of them
// in a provider-kubernetes Object, for claims on cluster-scoped XRs or
// clusters that route every object through provider-kubernetes. Everything
// else, the Jobs themselves and the folding of their status, is shared: the
// only difference is the envelope, added in wrap and taken off when
// read.ReadComposed (internal/read) reads an Object's manifest and the Job it applied.

const (
	modeJob    = "Job"
	modeObject = "Object"

	ObjectClusterAPI    = "kubernetes.crossplane.io/v1alpha2"
	ObjectNamespacedAPI = "kubernetes.m.crossplane.io/v1alpha1"

	defaultProviderConfig     = "default"
	defaultProviderConfigKind = "ClusterProviderConfig"
)

// JobReadyQuery lets a provider-kubernetes Object report a Job ready when it
// completed. Its built-in policies are wrong for Jobs: DeriveFromObject
// never fires (Jobs have no Ready condition) and AllTrue calls a failed Job
// ready. The function sets readiness itself too; this is for people reading
// the Object.
const JobReadyQuery = "object.status.conditions.exists(c, c.type == '" + string(batchv1.JobComplete) +
	"' && c.status == '" + string(corev1.ConditionTrue) + "')"

// envelope is how desired objects are composed.
type Envelope struct {
	Object bool
	// APIVersion of the Objects; empty in Job mode.
	APIVersion     string
	namespaced     bool
	providerConfig map[string]any
}

var modePath = read.InputPath.Child("mode")

// ResolveEnvelope picks the mode from the Input, else from the XR's scope.
func ResolveEnvelope(in *v1beta1.Input, xrNamespaced bool) (Envelope, field.ErrorList) {
	mode := in.Mode
	if mode == "" {
		mode = modeObject
		if xrNamespaced {
			mode = modeJob
		}
	}
	switch mode {
	case modeJob:
		return Envelope{}, nil
	case modeObject:
	default:
		return Envelope{}, field.ErrorList{field.NotSupported(modePath, mode, []string{modeJob, modeObject})}
	}

	e := Envelope{Object: true, APIVersion: ObjectClusterAPI}
	ref := &v1beta1.ProviderConfigRef{}
	if o := in.Object; o != nil {
		e.APIVersion = read.OrDefault(o.APIVersion, e.APIVersion)
		if o.ProviderConfigRef != nil {
			ref = o.ProviderConfigRef
		}
	}
	var errs field.ErrorList
	p := read.InputPath.Child("object")
	switch e.APIVersion {
	case ObjectClusterAPI:
	case ObjectNamespacedAPI:
		e.namespaced = true
	default:
		errs = append(errs, field.NotSupported(p.Child("apiVersion"), e.APIVersion, []string{ObjectClusterAPI, ObjectNamespacedAPI}))
	}
	name := read.OrDefault(ref.Name, defaultProviderConfig)
	errs = append(errs, read.DNSSubdomain(p.Child("providerConfigRef", "name"), name)...)
	e.providerConfig = map[string]any{"name": name}
	if e.namespaced {
		kind := read.OrDefault(ref.Kind, defaultProviderConfigKind)
		if kind != "ProviderConfig" && kind != defaultProviderConfigKind {
			errs = append(errs, field.NotSupported(p.Child("providerConfigRef", "kind"), kind, []string{"ProviderConfig", defaultProviderConfigKind}))
		}
		e.providerConfig["kind"] = kind
	}
	return e, errs
}

// What an Object does with its object. KeepOnDelete leaves the object when
// the Object is deleted (a PVC that outlives its ModelDownload). ObserveOnly
// is for a finished Job: provider-kubernetes neither makes it again once its
// TTL removed it (it would, for a managed Object, and the download would run
// again) nor deletes it with the Object, which the function drops once the
// outcome is recorded.
// createOnly is for an object that others write after it is made (the
// progress ConfigMap): provider-kubernetes makes and deletes it, and never
// resets it to the manifest.
type objectPolicy int

const (
	Manage objectPolicy = iota
	KeepOnDelete
	ObserveOnly
	createOnly
)

// objectNameSuffix tells apart the namespaced Objects of the progress objects
// (progress.go), whose ConfigMap, ServiceAccount, Role and RoleBinding share a
// name: two Objects of one name in one namespace would be one.
var objectNameSuffix = map[string]string{"ServiceAccount": "-serviceaccount", "Role": "-role", "RoleBinding": "-rolebinding"}

// wrap returns what is composed for a manifest: the manifest itself, or an
// Object carrying it. The Object repeats the manifest's labels and
// annotations, so a later call can read them without unwrapping.
func (e Envelope) Wrap(manifest *unstructured.Unstructured, readyQuery string, policy objectPolicy) *unstructured.Unstructured {
	if !e.Object {
		return manifest
	}
	md := map[string]any{}
	if l := manifest.GetLabels(); len(l) > 0 {
		md["labels"] = stringsToAny(l)
	}
	if a := manifest.GetAnnotations(); len(a) > 0 {
		md["annotations"] = stringsToAny(a)
	}
	if e.namespaced {
		// A namespaced Object lives beside its object, under the same name
		// (with its kind's suffix for the progress objects, which share one
		// name across kinds); a cluster-scoped one gets a generated name, as
		// two claims in two namespaces may compose Jobs of the same name.
		md["name"] = manifest.GetName() + objectNameSuffix[manifest.GetKind()]
		md["namespace"] = manifest.GetNamespace()
	}
	readiness := map[string]any{"policy": "SuccessfulCreate"}
	if readyQuery != "" {
		readiness = map[string]any{"policy": "DeriveFromCelQuery", "celQuery": readyQuery}
	}
	spec := map[string]any{
		"forProvider":       map[string]any{"manifest": manifest.Object},
		"readiness":         readiness,
		"providerConfigRef": e.providerConfig,
	}
	switch policy {
	case ObserveOnly:
		spec["managementPolicies"] = []any{"Observe"}
		if !e.namespaced {
			spec["deletionPolicy"] = read.DeletionOrphan
		}
	case createOnly:
		spec["managementPolicies"] = []any{"Observe", "Create", "Delete"}
	case KeepOnDelete:
		if e.namespaced {
			// Namespaced managed resources have no deletionPolicy: leaving
			// Delete out of the management policies orphans the object.
			spec["managementPolicies"] = []any{"Observe", "Create", "Update", "LateInitialize"}
		} else {
			spec["deletionPolicy"] = read.DeletionOrphan
		}
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": e.APIVersion,
		"kind":       "Object",
		"metadata":   md,
		"spec":       spec,
	}}
}

func stringsToAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// KeepAsObserved re-applies exactly what exists, so server-side apply
// changes nothing on an immutable Job (or on the Object that carries it).
func KeepAsObserved(observed *structpb.Struct) *unstructured.Unstructured {
	f := observed.GetFields()
	md := map[string]any{}
	for k, v := range read.Get(observed, "metadata").GetStructValue().GetFields() {
		if k == "name" || k == "namespace" || k == "labels" || k == "annotations" {
			md[k] = v.AsInterface()
		}
	}
	out := map[string]any{"apiVersion": f["apiVersion"].AsInterface(), "kind": f["kind"].AsInterface(), "metadata": md}
	if spec, ok := f["spec"]; ok {
		out["spec"] = spec.AsInterface()
	}
	return &unstructured.Unstructured{Object: out}
}

// AsUnstructured is a typed object as the map Crossplane applies: the
// fields it sets, as encoding/json writes them, without the zero-valued
// creation timestamps and the empty status a Go value always holds.
func AsUnstructured(o runtime.Object) *unstructured.Unstructured {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		// Only a value the converter cannot represent fails here: a bug.
		panic(err)
	}
	delete(m, "status")
	return &unstructured.Unstructured{Object: pruneNil(m)}
}

// pruneNil drops the map entries whose value is null, at every depth.
func pruneNil(m map[string]any) map[string]any {
	for k, v := range m {
		switch x := v.(type) {
		case nil:
			delete(m, k)
		case map[string]any:
			pruneNil(x)
		case []any:
			for _, e := range x {
				if em, ok := e.(map[string]any); ok {
					pruneNil(em)
				}
			}
		}
	}
	return m
}
