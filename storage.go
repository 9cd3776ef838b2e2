package main

import (
	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"
	"google.golang.org/protobuf/types/known/structpb"
)

// Optional PVC provisioning: with spec.storage the function composes the PVC
// named by storagePVC, and starts the Jobs that mount it once it exists.
//
// Data is never lost by surprise. Deleting the XR deletes what it composed,
// so with deletionPolicy Orphan (the default) the PVC is kept:
//   - in Object mode the Object says so (deletionPolicy Orphan, or no Delete
//     in the management policies of a namespaced Object);
//   - in Job mode Crossplane v2 has no per-resource deletion policy: it owns
//     the PVC through a controller reference, and Kubernetes' garbage
//     collector deletes a dependent only when all of its owners are gone. So
//     the PVC also names its Namespace as an owner: deleting the XR leaves the
//     PVC and its models in place (a new XR adopts it again); deleting the
//     namespace still removes it.

const (
	pvcKey                = "pvc"
	requirementNamespace  = "namespace"
	annotationDataWarning = "hfops.kamal.dev/retained"
)

// needsNamespaceOwner reports whether the PVC must name its Namespace as an
// owner, which needs the Namespace's uid (a required resource).
func needsNamespaceOwner(s *xrSpec, e envelope) bool {
	return s.Storage != nil && s.Storage.DeletionPolicy == deletionOrphan && !e.object
}

// namespaceUID reads the uid of the required Namespace; empty until known.
func namespaceUID(req *fnv1.RunFunctionRequest) string {
	items := req.GetRequiredResources()[requirementNamespace].GetItems()
	if len(items) == 0 {
		return ""
	}
	return getString(items[0].GetResource(), "metadata", "uid")
}

// buildPVC returns the PVC of spec.storage. nsUID is set when the Namespace
// must own it (see above).
func (b *jobBuilder) buildPVC(nsUID string) *structpb.Struct {
	st := b.spec.Storage
	spec := fields{
		"accessModes": strList(st.AccessModes),
		"volumeMode":  str(st.VolumeMode),
		"resources":   object(fields{"requests": object(fields{"storage": str(st.Size)})}),
	}
	if st.StorageClassName != nil {
		spec["storageClassName"] = str(*st.StorageClassName)
	}
	md := fields{
		"name":      str(b.spec.StoragePVC),
		"namespace": str(b.namespace),
		"labels":    strMap(map[string]string{labelApp: appName, labelParent: b.parentLabel}),
	}
	if st.DeletionPolicy == deletionOrphan {
		md["annotations"] = strMap(map[string]string{annotationDataWarning: "kept when the ModelDownload is deleted"})
	}
	if nsUID != "" {
		md["ownerReferences"] = list(object(fields{
			"apiVersion": str("v1"),
			"kind":       str("Namespace"),
			"name":       str(b.namespace),
			"uid":        str(nsUID),
		}))
	}
	return &structpb.Struct{Fields: fields{
		"apiVersion": str("v1"),
		"kind":       str("PersistentVolumeClaim"),
		"metadata":   object(md),
		"spec":       object(spec),
	}}
}
