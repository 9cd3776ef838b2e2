package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

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
	requirementPVC        = "storage-pvc"
	annotationDataWarning = "hfops.kamal.dev/retained"
	labelPVC              = "hfops.kamal.dev/pvc"

	conditionStorageReady = "StorageReady"
	reasonPVCFound        = "PVCFound"
	reasonPVCNotFound     = "PVCNotFound"
	reasonPVCCreating     = "PVCBeingCreated"
	reasonPVCTerminating  = "PVCBeingDeleted"

	accessRWO  = "ReadWriteOnce"
	accessRWOP = "ReadWriteOncePod"
)

// The PVC is part of the truth. Whether the function composes it or the user
// made it, it is a required resource: no Job starts until it exists, and its
// uid enters every model's hash, so a PVC deleted and made again (empty)
// sends its models back to Pending and downloads them again. How it may be
// mounted decides how the Jobs run: a PVC whose only access mode is
// ReadWriteOnce is mounted on one node at a time, so all download pods of it
// are placed together (pod affinity on the node of the ones running); one
// that is ReadWriteOncePod takes one pod at a time, so downloads run one
// after another.

// storageState is what the function knows of the PVC.
type storageState struct {
	uid string
	// colocate: ReadWriteOnce only, so every pod mounting it shares a node.
	colocate bool
	// oneAtATime: ReadWriteOncePod, so one download pod at a time.
	oneAtATime bool
	// reason and problem say why no Job may start; empty when the PVC is
	// there.
	reason, problem string
}

func (s storageState) ready() bool { return s.problem == "" }

// resolveStorage reads the required PVC.
func resolveStorage(req *fnv1.RunFunctionRequest, namespace string, spec *xrSpec) storageState {
	where := fmt.Sprintf("PersistentVolumeClaim %q in namespace %q", spec.StoragePVC, namespace)
	items := req.GetRequiredResources()[requirementPVC].GetItems()
	if len(items) == 0 {
		if spec.Storage != nil {
			return storageState{reason: reasonPVCCreating, problem: "waiting for the " + where + " to be created"}
		}
		return storageState{reason: reasonPVCNotFound, problem: where + " was not found; no download starts until it exists"}
	}
	pvc := items[0].GetResource()
	if present(get(pvc, "metadata", "deletionTimestamp")) {
		return storageState{reason: reasonPVCTerminating, problem: where + " is being deleted; no download starts until a new one exists"}
	}
	uid := getString(pvc, "metadata", "uid")
	if uid == "" {
		// crossplane render's required resources may have no uid; a
		// real PVC always has one.
		uid = "-"
	}
	modes := get(pvc, "spec", "accessModes").GetListValue().GetValues()
	st := storageState{uid: uid, reason: reasonPVCFound}
	if len(modes) == 1 {
		st.colocate = modes[0].GetStringValue() == accessRWO
		st.oneAtATime = modes[0].GetStringValue() == accessRWOP
	}
	return st
}

// message is the StorageReady condition's message.
func (s storageState) message(pvc string) string {
	switch {
	case !s.ready():
		return s.problem
	case s.colocate:
		return fmt.Sprintf("PersistentVolumeClaim %q is ReadWriteOnce: its download pods run on one node", pvc)
	case s.oneAtATime:
		return fmt.Sprintf("PersistentVolumeClaim %q is ReadWriteOncePod: its downloads run one at a time", pvc)
	}
	return fmt.Sprintf("PersistentVolumeClaim %q is there", pvc)
}

// pvcLabelValue names a PVC in a label value: its name (a DNS subdomain is a
// valid label value) when it fits, else a cut name and a hash of the whole,
// so two PVCs never share a value.
func pvcLabelValue(name string) string {
	if len(name) <= maxLabelValue {
		return name
	}
	d := sha256.Sum256([]byte(name))
	return strings.TrimRight(name[:maxLabelValue-11], "-.") + "-" + hex.EncodeToString(d[:5])
}

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
