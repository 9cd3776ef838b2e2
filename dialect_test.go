package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"
	"k8s.io/utils/ptr"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"

	"github.com/hfops/function-hf-download/internal/read"
)

// inNamespace is r moved to namespace ns, as another namespace's object of the
// same name.
func inNamespace(r *fnv1.Resource, ns string) *fnv1.Resource {
	c := proto.Clone(r.GetResource()).(*structpb.Struct)
	c.Fields["metadata"].GetStructValue().Fields["namespace"] = str(ns)
	return &fnv1.Resource{Resource: c}
}

// labelledSelector is how a claim's XR asks Crossplane before v2.2 for a
// namespaced object that 1.x cannot get by name.
func labelledSelector(kind string) *fnv1.ResourceSelector {
	return &fnv1.ResourceSelector{ApiVersion: "v1", Kind: kind, Namespace: ptr.To("ml"), Match: &fnv1.ResourceSelector_MatchLabels{
		MatchLabels: &fnv1.MatchLabels{Labels: map[string]string{read.LabelReadable: "true"}}}}
}

// TestCrossplane1xAsksInExtraResources: a Crossplane that does not say it
// takes requirements.resources (1.x ignores that field) is asked in
// extra_resources; for a claim's XR, which 1.x may be composing, the Secret
// and the PVC by label (1.x fails on a namespaced object by name); a
// namespaced XR is v2's, which gets them by name.
func TestCrossplane1xAsksInExtraResources(t *testing.T) {
	cases := map[string]struct {
		reason   string
		xr       string
		labelled bool
	}{
		"Claim":        {reason: "Perhaps Crossplane 1.x: the Secret and the PVC by label.", xr: claimXR(twoModels), labelled: true},
		"NamespacedXR": {reason: "Crossplane v2.0 or v2.1: the same selectors as v2.2, in extra_resources.", xr: xrYAML(twoModels)},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			observed := &fnv1.State{Composite: &fnv1.Resource{Resource: mustStruct(tc.xr)}}
			want := run(t, &fnv1.RunFunctionRequest{Meta: crossplaneV22("tag"), Observed: observed}).GetRequirements().GetResources()
			if tc.labelled {
				want[read.RequirementToken] = labelledSelector("Secret")
				want[read.RequirementPVC] = labelledSelector("PersistentVolumeClaim")
			}
			got := run(t, &fnv1.RunFunctionRequest{Meta: &fnv1.RequestMeta{Tag: "tag"}, Observed: observed}).GetRequirements()
			if diff := cmp.Diff(&fnv1.Requirements{ExtraResources: want}, got, protocmp.Transform()); diff != "" { //nolint:staticcheck // the field 1.x reads
				t.Errorf("%s\n-want, +got:\n%s", tc.reason, diff)
			}
		})
	}
}

// TestCrossplane1xAnswers: whatever Crossplane 1.x (or v2.0, v2.1) puts in
// extra_resources, the function decides exactly as it does on the answer
// Crossplane v2.2 gives in required_resources for the same cluster: what 1.x
// lists of other namespaces is not the claim's; a Secret or PVC without the
// label is missing, and the message says which label finds it.
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
		// hint: "not found" names the label.
		hint bool
	}{
		"LabelledOn1x": {
			reason: "1.x lists the labelled Secrets and PVCs of every namespace: the claim's namespace's ones count.",
			v22:    testRequest{xr: claimXR(twoModels), secret: secret, pvc: pvc},
			extra: map[string]*fnv1.Resources{
				read.RequirementToken: {Items: []*fnv1.Resource{otherSecret, secret}},
				read.RequirementPVC:   {Items: []*fnv1.Resource{otherPVC, pvc}},
			},
		},
		"UnlabelledOn1x": {
			reason: "Without the label 1.x lists neither: the Secret and the PVC are missing, as on v2.2 when they do not exist, and the label is named.",
			v22:    testRequest{xr: claimXR(twoModels), noPVC: true},
			extra: map[string]*fnv1.Resources{
				read.RequirementToken: {Items: []*fnv1.Resource{otherSecret}},
				read.RequirementPVC:   {Items: []*fnv1.Resource{otherPVC}},
			},
			hint: true,
		},
		"ByNameOnV20": {
			reason: "v2.0 and v2.1 get a namespaced XR's Secret and PVC by name in its namespace.",
			v22:    testRequest{xr: xrYAML(twoModels), secret: secret, pvc: pvc},
			extra: map[string]*fnv1.Resources{
				read.RequirementToken: {Items: []*fnv1.Resource{secret}},
				read.RequirementPVC:   {Items: []*fnv1.Resource{pvc}},
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			v22 := tc.v22.build()
			want := run(t, v22)

			got := run(t, onCrossplane1x(v22, tc.extra))

			// The same decision; only where the requirements are written
			// differs, and the hint.
			want.Requirements, got.Requirements = nil, nil
			if tc.hint {
				want = withHint(t, want, `Secret \"hf\" in namespace \"ml\" was not found`, `PersistentVolumeClaim \"models\" in namespace \"ml\" was not found; no download starts until it exists`)
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("%s\n-v2.2, +1.x:\n%s", tc.reason, diff)
			}
		})
	}
}

// withHint is rsp with the label's hint after each of the given "not found"
// problems (as they appear in protojson), wherever they are said.
func withHint(t *testing.T, rsp *fnv1.RunFunctionResponse, problems ...string) *fnv1.RunFunctionResponse {
	t.Helper()
	b, err := protojson.Marshal(rsp)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, p := range problems {
		if !strings.Contains(s, p) {
			t.Fatalf("the v2.2 response never says %s", p)
		}
		s = strings.ReplaceAll(s, p, p+read.ReadableHint)
	}
	out := &fnv1.RunFunctionResponse{}
	if err := protojson.Unmarshal([]byte(s), out); err != nil {
		t.Fatal(err)
	}
	return out
}

// onCrossplane1x is the request Crossplane 1.x sends where Crossplane v2.2 sends
// v22: no capabilities, and every answer in extra_resources, those of extra in
// place of v22's.
func onCrossplane1x(v22 *fnv1.RunFunctionRequest, extra map[string]*fnv1.Resources) *fnv1.RunFunctionRequest {
	v1 := proto.Clone(v22).(*fnv1.RunFunctionRequest)
	v1.Meta = &fnv1.RequestMeta{Tag: v22.GetMeta().GetTag()}
	v1.ExtraResources = v1.RequiredResources //nolint:staticcheck // what 1.x sends
	v1.RequiredResources = nil
	for name, rs := range extra {
		v1.ExtraResources[name] = rs //nolint:staticcheck // what 1.x sends
	}
	return v1
}

// checkSameOnCrossplane1x: for a claim's XR, which Crossplane 1.x may be
// composing, the call v22 stands for decides the same on 1.x, where the Secret
// and the PVC are listed by label across every namespace (here another
// namespace's ones of the same names too): only where the requirements are
// written differs, and a "not found" names the label.
func checkSameOnCrossplane1x(t *testing.T, v22 *fnv1.RunFunctionRequest) {
	t.Helper()
	listed := func(name string, other *fnv1.Resource) *fnv1.Resources {
		return &fnv1.Resources{Items: append([]*fnv1.Resource{inNamespace(other, "other")}, v22.GetRequiredResources()[name].GetItems()...)}
	}
	got := run(t, onCrossplane1x(v22, map[string]*fnv1.Resources{
		read.RequirementToken: listed(read.RequirementToken, secretResource("token", "another namespace's token")),
		read.RequirementPVC:   listed(read.RequirementPVC, pvcResource("uid-of-another-namespace")),
	}))
	want := run(t, v22)
	want.Requirements, got.Requirements = nil, nil
	b, err := protojson.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	got = &fnv1.RunFunctionResponse{}
	if err := protojson.Unmarshal([]byte(strings.ReplaceAll(string(b), read.ReadableHint, "")), got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Fatalf("Crossplane 1.x's answer for the same cluster decides otherwise (-v2.2, +1.x):\n%s", diff)
	}
}
