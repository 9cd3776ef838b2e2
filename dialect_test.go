package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"
	"k8s.io/utils/ptr"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"
)

// inNamespace is r moved to namespace ns, as another namespace's object of the
// same name.
func inNamespace(r *fnv1.Resource, ns string) *fnv1.Resource {
	c := proto.Clone(r.GetResource()).(*structpb.Struct)
	c.Fields["metadata"].GetStructValue().Fields["namespace"] = str(ns)
	return &fnv1.Resource{Resource: c}
}

// labelledSelector is the companion requirement Crossplane 1.x can answer for
// a namespaced object it cannot get by name.
func labelledSelector(kind string) *fnv1.ResourceSelector {
	return &fnv1.ResourceSelector{ApiVersion: "v1", Kind: kind, Namespace: ptr.To("ml"), Match: &fnv1.ResourceSelector_MatchLabels{
		MatchLabels: &fnv1.MatchLabels{Labels: map[string]string{labelReadable: "true"}}}}
}

// TestCrossplane1xAsksInExtraResources: a Crossplane that does not say it
// takes requirements.resources (1.x, which ignores that field) is asked in
// extra_resources, with a labelled companion for each namespaced object
// asked for by name (1.x finds no namespaced object by name).
func TestCrossplane1xAsksInExtraResources(t *testing.T) {
	rsp := run(t, &fnv1.RunFunctionRequest{
		Meta:     &fnv1.RequestMeta{Tag: "tag"},
		Observed: &fnv1.State{Composite: &fnv1.Resource{Resource: mustStruct(claimXR(twoModels))}},
	})
	want := run(t, &fnv1.RunFunctionRequest{
		Meta:     crossplaneV22("tag"),
		Observed: &fnv1.State{Composite: &fnv1.Resource{Resource: mustStruct(claimXR(twoModels))}},
	}).GetRequirements().GetResources()
	want[requirementToken+labelledSuffix] = labelledSelector("Secret")
	want[requirementPVC+labelledSuffix] = labelledSelector("PersistentVolumeClaim")
	if diff := cmp.Diff(&fnv1.Requirements{ExtraResources: want}, rsp.GetRequirements(), protocmp.Transform()); diff != "" { //nolint:staticcheck // the field 1.x reads
		t.Errorf("requirements for Crossplane 1.x; -want, +got:\n%s", diff)
	}
}

// TestCrossplane1xAnswers: whatever Crossplane 1.x (or v2.0, v2.1) puts in
// extra_resources, the function decides exactly as it does on the answer
// Crossplane v2.2 gives in required_resources for the same cluster: objects of
// other namespaces that 1.x lists are not the claim's, and an object 1.x
// cannot get by name is found by its label or is missing.
func TestCrossplane1xAnswers(t *testing.T) {
	secret := secretResource("token", testToken)
	pvc := pvcResource(testPVCUID)
	otherSecret := inNamespace(secretResource("token", "another namespace's token"), "other")
	otherPVC := inNamespace(pvcResource("uid-of-another-namespace"), "other")
	cases := map[string]struct {
		reason string
		// v22 is the cluster as Crossplane v2.2 answers for it.
		v22   testRequest
		extra map[string]*fnv1.Resources
	}{
		"LabelledOn1x": {
			reason: "1.x gets nothing by name and lists labelled Secrets and PVCs of every namespace: the claim's namespace's ones count.",
			v22:    testRequest{xr: claimXR(twoModels), secret: secret, pvc: pvc},
			extra: map[string]*fnv1.Resources{
				requirementToken:                  nil,
				requirementToken + labelledSuffix: {Items: []*fnv1.Resource{otherSecret, secret}},
				requirementPVC:                    nil,
				requirementPVC + labelledSuffix:   {Items: []*fnv1.Resource{otherPVC, pvc}},
			},
		},
		"ByNameOnV20": {
			reason: "v2.0 and v2.1 honour the namespace and the name, and answer the labelled companions too: one object each.",
			v22:    testRequest{xr: claimXR(twoModels), secret: secret, pvc: pvc},
			extra: map[string]*fnv1.Resources{
				requirementToken:                  {Items: []*fnv1.Resource{secret}},
				requirementToken + labelledSuffix: {Items: []*fnv1.Resource{secret}},
				requirementPVC:                    {Items: []*fnv1.Resource{pvc}},
				requirementPVC + labelledSuffix:   {Items: []*fnv1.Resource{pvc}},
			},
		},
		"UnlabelledOn1x": {
			reason: "Without the label 1.x finds neither: the Secret and the PVC are missing, as on v2.2 when they do not exist.",
			v22:    testRequest{xr: claimXR(twoModels), noPVC: true},
			extra: map[string]*fnv1.Resources{
				requirementToken:                  nil,
				requirementToken + labelledSuffix: {Items: []*fnv1.Resource{otherSecret}},
				requirementPVC:                    nil,
				requirementPVC + labelledSuffix:   {Items: []*fnv1.Resource{otherPVC}},
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			v22 := tc.v22.build()
			want := run(t, v22)

			v1 := proto.Clone(v22).(*fnv1.RunFunctionRequest)
			v1.Meta = &fnv1.RequestMeta{Tag: "tag"}
			v1.RequiredResources = nil
			v1.ExtraResources = tc.extra //nolint:staticcheck // what 1.x sends
			for _, listed := range []string{requirementPods, requirementPeers} {
				v1.ExtraResources[listed] = v22.GetRequiredResources()[listed] //nolint:staticcheck // what 1.x sends
			}
			got := run(t, v1)

			// The same decision; only where the requirements are written differs.
			want.Requirements, got.Requirements = nil, nil
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("%s\n-v2.2, +1.x:\n%s", tc.reason, diff)
			}
		})
	}
}
