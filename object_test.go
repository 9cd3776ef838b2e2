package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"

	"github.com/hfops/function-hf-download/apis/v1alpha1"
	"github.com/hfops/function-hf-download/internal/build"
	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/internal/read"
)

// A cluster-scoped XR bound to a claim, as Crossplane passes it.
func claimXR(spec string) string {
	return `apiVersion: hfops.kamal.dev/v1alpha1
kind: XModelDownload
metadata:
  name: cache-x7k2p
  labels:
    crossplane.io/claim-name: cache
    crossplane.io/claim-namespace: ml
spec:
` + indent(spec)
}

const namespacedObjectInput = `apiVersion: hfdownload.fn.hfops.kamal.dev/v1beta1
kind: Input
mode: Object
object:
  apiVersion: kubernetes.m.crossplane.io/v1alpha1
  providerConfigRef: {name: in-cluster, kind: ProviderConfig}
`

// observedObject is an Object as provider-kubernetes reports it: the Job it
// applied, with the status the Job controller gave it, in atProvider.
func observedObject(desired *fnv1.Resource, jobStatus string) *fnv1.Resource {
	o := observedJob(desired, "")
	manifest := observedJob(&fnv1.Resource{Resource: read.Get(desired.GetResource(), "spec", "forProvider", "manifest").GetStructValue()}, jobStatus)
	o.Resource.Fields["status"] = object(fields{"atProvider": object(fields{"manifest": structpb.NewStructValue(manifest.GetResource())})})
	return o
}

// TestObjectMode: a claim's XR gets Objects wrapping the same Jobs, aimed at
// the claim's namespace and named after the claim; their status is folded
// from status.atProvider.manifest exactly as in Job mode.
func TestObjectMode(t *testing.T) {
	first := run(t, withToken(claimXR(twoModels)).build())
	want := read.Requirements("ml", "cache", &read.XRSpec{ModelDownloadSpec: v1alpha1.ModelDownloadSpec{StoragePVC: "models", HFTokenRef: &v1alpha1.TokenRef{Name: "hf", Key: "token"}}}, false)
	want.Resources[read.RequirementPeers] = &fnv1.ResourceSelector{ApiVersion: "hfops.kamal.dev/v1alpha1", Kind: "XModelDownload",
		Match: &fnv1.ResourceSelector_MatchLabels{MatchLabels: &fnv1.MatchLabels{Labels: map[string]string{read.ClaimNamespaceLabel: "ml"}}}}
	if diff := cmp.Diff(want, first.GetRequirements(), protocmp.Transform()); diff != "" {
		t.Errorf("the token and pods are looked up in the claim's namespace; -want, +got:\n%s", diff)
	}
	jobMode := run(t, withToken(xrYAML(twoModels)).build())
	for key, r := range jobResources(first) {
		o := r.GetResource()
		if read.GetString(o, "apiVersion") != build.ObjectClusterAPI || read.GetString(o, "kind") != "Object" {
			t.Fatalf("%s: want a %s Object, got %s %s", key, build.ObjectClusterAPI, read.GetString(o, "apiVersion"), read.GetString(o, "kind"))
		}
		if read.Get(o, "metadata", "name") != nil {
			t.Errorf("%s: a cluster-scoped Object must get a generated name", key)
		}
		// The envelope is part of the hash (a Job and its Object never share
		// a key), so compare with the hashes of the Job-mode twin put in.
		manifest := read.Get(o, "spec", "forProvider", "manifest").GetStructValue()
		model := read.GetString(manifest, "metadata", "annotations", naming.AnnotationModel)
		twin := jobResources(jobMode)[keyOf(t, jobMode, model)].GetResource()
		if diff := cmp.Diff(sameHashes(t, twin, manifest), manifest, protocmp.Transform()); diff != "" {
			t.Errorf("%s: the Object must carry the very Job of Job mode (claim cache in namespace ml is XR cache in ml); -want, +got:\n%s", key, diff)
		}
		wantSpec := mustStruct(`readiness:
  policy: DeriveFromCelQuery
  celQuery: "object.status.conditions.exists(c, c.type == 'Complete' && c.status == 'True')"
providerConfigRef: {name: default}
`)
		gotSpec := &structpb.Struct{Fields: fields{"readiness": read.Get(o, "spec", "readiness"), "providerConfigRef": read.Get(o, "spec", "providerConfigRef")}}
		if diff := cmp.Diff(wantSpec, gotSpec, protocmp.Transform()); diff != "" {
			t.Errorf("%s: -want, +got:\n%s", key, diff)
		}
	}

	ka, kb := keyOf(t, first, "org/alpha"), keyOf(t, first, "org/beta")
	r := withToken(claimXR(twoModels))
	r.observed = map[string]*fnv1.Resource{
		ka: observedObject(jobResources(first)[ka], jobComplete),
		kb: observedObject(jobResources(first)[kb], jobFailed),
	}
	got := outcomeOf(t, run(t, r.build()))
	if got.Jobs[ka].Ready != fnv1.Ready_READY_TRUE || got.Jobs[kb].Ready != fnv1.Ready_READY_FALSE {
		t.Errorf("readiness from the Job's Complete condition: got %v", got.Jobs)
	}
	if c, f := got.Status.GetFields()["completed"], got.Status.GetFields()["failed"]; len(c.GetListValue().GetValues()) != 1 || len(f.GetListValue().GetValues()) != 1 {
		t.Errorf("want alpha completed and beta failed, got %v", got.Status)
	}

	// The Job inside an Object being deleted by its TTL: the Object is not
	// desired again (provider-kubernetes would re-create the Job), and the
	// model is Completed from what the manifest last showed.
	deleting := observedObject(jobResources(first)[ka], jobComplete)
	read.Get(deleting.GetResource(), "status", "atProvider", "manifest", "metadata").GetStructValue().Fields["deletionTimestamp"] = structpb.NewStringValue("2026-11-26T00:00:00Z")
	r.observed = map[string]*fnv1.Resource{ka: deleting, kb: observedObject(jobResources(first)[kb], jobComplete)}
	got = outcomeOf(t, run(t, r.build()))
	if _, ok := got.Jobs[ka]; ok {
		t.Errorf("the Object of a Job being deleted must not be desired: got %v", got.Jobs)
	}
	if c := got.Status.GetFields()["completed"].GetListValue().GetValues(); len(c) != 2 {
		t.Errorf("want both models completed, got %v", got.Status)
	}
}

// sameHashes returns job with the spec and config hashes, and the script
// ConfigMap's name, of like: the hashes cover which XR a Job belongs to.
func sameHashes(t *testing.T, job, like *structpb.Struct) *structpb.Struct {
	t.Helper()
	b, err := protojson.Marshal(job)
	if err != nil {
		t.Fatal(err)
	}
	js := string(b)
	for _, h := range []func(*structpb.Struct) string{
		func(s *structpb.Struct) string { return read.GetString(s, "metadata", "labels", naming.LabelSpecHash) },
		func(s *structpb.Struct) string {
			return read.GetString(s, "metadata", "annotations", naming.AnnotationConfigHash)
		},
		// The script's ConfigMap and the pods' ServiceAccount are named after
		// the XR, whose uid differs.
		func(s *structpb.Struct) string {
			return (&read.SeenJob{Manifest: s}).ScriptMap()
		},
		func(s *structpb.Struct) string {
			return read.GetString(s, "spec", "template", "spec", "serviceAccountName")
		},
	} {
		js = strings.ReplaceAll(js, h(job), h(like))
	}
	out := &structpb.Struct{}
	if err := protojson.Unmarshal([]byte(js), out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestNamespacedObject: the namespaced Object of provider-kubernetes 1.x
// lives beside its Job, under its name, with the ProviderConfig kind.
func TestNamespacedObject(t *testing.T) {
	r := withToken(xrYAML(twoModels))
	r.input = namespacedObjectInput
	rsp := run(t, r.build())
	for key, res := range jobResources(rsp) {
		o := res.GetResource()
		job := read.Get(o, "spec", "forProvider", "manifest").GetStructValue()
		got := []string{read.GetString(o, "apiVersion"), read.GetString(o, "metadata", "name"), read.GetString(o, "metadata", "namespace"),
			read.GetString(o, "spec", "providerConfigRef", "name"), read.GetString(o, "spec", "providerConfigRef", "kind")}
		want := []string{build.ObjectNamespacedAPI, read.GetString(job, "metadata", "name"), "ml", "in-cluster", "ProviderConfig"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: -want, +got:\n%s", key, diff)
		}
	}
}

// TestModeFromInput: the Input's mode wins over the XR's scope.
func TestModeFromInput(t *testing.T) {
	r := withToken(claimXR(twoModels))
	r.input = "apiVersion: hfdownload.fn.hfops.kamal.dev/v1beta1\nkind: Input\nmode: Job\n"
	rsp := run(t, r.build())
	for key, res := range jobResources(rsp) {
		if got := read.GetString(res.GetResource(), "kind"); got != "Job" {
			t.Errorf("%s: want a Job, got %s", key, got)
		}
		if got := read.GetString(res.GetResource(), "metadata", "namespace"); got != "ml" {
			t.Errorf("%s: want the claim's namespace ml, got %q", key, got)
		}
	}

	bad := withToken(xrYAML(twoModels))
	bad.input = "apiVersion: hfdownload.fn.hfops.kamal.dev/v1beta1\nkind: Input\nmode: Helm\nobject: {apiVersion: v9}\n"
	got, err := newTestFunction().RunFunction(t.Context(), bad.build())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fatalResponse(`invalid function input: input.mode: Unsupported value: "Helm": supported values: "Job", "Object"`), got, protocmp.Transform()); diff != "" {
		t.Errorf("-want, +got:\n%s", diff)
	}
}

const withStorage = twoModels + `storage:
  size: 200Gi
  storageClassName: fast
`

func namespaceResource(uid string) *fnv1.Resource {
	return &fnv1.Resource{Resource: mustStruct("apiVersion: v1\nkind: Namespace\nmetadata: {name: ml, uid: " + uid + "}\n")}
}

// TestPVCJobMode: the PVC comes first, owned also by its Namespace so that
// deleting the XR leaves it (and the models) in place; the Jobs start once
// it exists.
func TestPVCJobMode(t *testing.T) {
	tr := withToken(xrYAML(withStorage))
	tr.noPVC = true
	req := tr.build()
	rsp := run(t, req)
	if _, ok := rsp.GetRequirements().GetResources()[read.RequirementNamespace]; !ok {
		t.Fatal("an orphaned PVC needs the Namespace's uid: want a Namespace requirement")
	}
	if read.Resolved(req.GetRequiredResources(), rsp.GetRequirements()) {
		t.Fatal("the Namespace requirement is not resolved yet")
	}

	req.RequiredResources[read.RequirementNamespace] = &fnv1.Resources{Items: []*fnv1.Resource{namespaceResource("ns-uid-1")}}
	rsp = run(t, req)
	if n := len(jobResources(rsp)); n != 1 {
		t.Fatalf("before the PVC exists only the PVC is desired, got %d resources", n)
	}
	want := mustStruct(`apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: models
  namespace: ml
  labels: {app: hf-downloader, parent: cache}
  annotations: {hfops.kamal.dev/retained: kept when the ModelDownload is deleted}
  ownerReferences:
  - {apiVersion: v1, kind: Namespace, name: ml, uid: ns-uid-1}
spec:
  accessModes: [ReadWriteOnce]
  volumeMode: Filesystem
  storageClassName: fast
  resources: {requests: {storage: 200Gi}}
`)
	pvc := jobResources(rsp)[read.PVCKey]
	if diff := cmp.Diff(want, pvc.GetResource(), protocmp.Transform()); diff != "" {
		t.Errorf("-want, +got:\n%s", diff)
	}
	models := read.Get(rsp.GetDesired().GetComposite().GetResource(), "status", "models").GetListValue().GetValues()
	if got := read.GetString(models[0].GetStructValue(), "message"); got != `waiting for the PersistentVolumeClaim "models" in namespace "ml" to be created` {
		t.Errorf("message: %q", got)
	}

	req.Observed.Resources[read.PVCKey] = &fnv1.Resource{Resource: pvc.GetResource()}
	req.RequiredResources[read.RequirementPVC].Items = []*fnv1.Resource{pvcResource(testPVCUID, "ReadWriteOnce")}
	rsp = run(t, req)
	if n := len(jobResources(rsp)); n != 3 {
		t.Errorf("once the PVC exists the Jobs start: want PVC and 2 Jobs, got %d", n)
	}
	if jobResources(rsp)[read.PVCKey].GetReady() != fnv1.Ready_READY_TRUE {
		t.Error("an existing PVC is ready")
	}
}

// TestPVCDeletionPolicy: Delete asks for no Namespace owner; Object mode
// says Orphan in the Object itself.
func TestPVCDeletionPolicy(t *testing.T) {
	del := run(t, withToken(xrYAML(withStorage+"  deletionPolicy: Delete\n")).build())
	if _, ok := del.GetRequirements().GetResources()[read.RequirementNamespace]; ok {
		t.Error("deletionPolicy Delete needs no Namespace owner")
	}
	if refs := read.Get(jobResources(del)[read.PVCKey].GetResource(), "metadata", "ownerReferences"); refs != nil {
		t.Errorf("deletionPolicy Delete: want no owner but the XR, got %v", refs)
	}

	cluster := run(t, withToken(claimXR(withStorage)).build())
	if got := read.GetString(cluster.GetDesired().GetResources()[read.PVCKey].GetResource(), "spec", "deletionPolicy"); got != read.DeletionOrphan {
		t.Errorf("cluster-scoped Object of the PVC: deletionPolicy %q, want Orphan", got)
	}
	r := withToken(xrYAML(withStorage))
	r.input = namespacedObjectInput
	ns := run(t, r.build())
	o := ns.GetDesired().GetResources()[read.PVCKey].GetResource()
	if diff := cmp.Diff(strList([]string{"Observe", "Create", "Update", "LateInitialize"}), read.Get(o, "spec", "managementPolicies"), protocmp.Transform()); diff != "" {
		t.Errorf("namespaced Object of the PVC orphans through its management policies; -want, +got:\n%s", diff)
	}
}

// TestStorageValidation: every storage field refuses bad values.
func TestStorageValidation(t *testing.T) {
	rsp, err := newTestFunction().RunFunction(t.Context(), withToken(xrYAML(twoModels+`storage:
  storageClassName: Fast_SSD
  accessModes: [ReadOnlyMany, Sometimes]
  volumeMode: Block
  deletionPolicy: Never
`)).build())
	if err != nil {
		t.Fatal(err)
	}
	want := fatalResponse(`invalid ModelDownload spec: [` +
		`spec.storage.size: Required value: the capacity of the PVC to create, such as 100Gi, ` +
		`spec.storage.storageClassName: Invalid value: "Fast_SSD": ` + dnsSubdomainMessage + `, ` +
		`spec.storage.accessModes[0]: Invalid value: "ReadOnlyMany": the download Jobs write to the PVC, ` +
		`spec.storage.accessModes[1]: Unsupported value: "Sometimes": supported values: "ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod", ` +
		`spec.storage.volumeMode: Unsupported value: "Block": supported values: "Filesystem", ` +
		`spec.storage.deletionPolicy: Unsupported value: "Never": supported values: "Orphan", "Delete"]`)
	if diff := cmp.Diff(want, rsp, protocmp.Transform()); diff != "" {
		t.Errorf("-want, +got:\n%s", diff)
	}
}
