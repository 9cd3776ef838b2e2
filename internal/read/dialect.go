package read

import (
	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"
	"github.com/crossplane/function-sdk-go/request"
)

// Crossplane 1.x speaks an older dialect of the function protocol. It reads
// requirements only from requirements.extra_resources (field 1; Crossplane v2
// added requirements.resources, field 2) and answers them in the request's
// extra_resources (field 6, not required_resources, field 8). Its
// ResourceSelector has no namespace (v2 added field 5): it lists by labels
// across all namespaces, and it gets by name with no namespace, which finds no
// namespaced object: a cached kind (a PVC) is not found, an uncached one (a
// Secret) fails the whole pipeline ("an empty namespace may not be set when a
// resource name is provided"; internal/controller/apiextensions/composite/
// extra_resources.go of v1.20.1). So on 1.x the token Secret and the PVC are
// listed by a label, and what comes back is narrowed to the claim's namespace
// here.
//
// Only Crossplane v2.2 and later say which protocol they speak (RequestMeta
// capabilities). Without that, the function asks in extra_resources, which
// every Crossplane since v1.15 answers (v2.0 and v2.1 honouring namespaces).
// A namespaced XR exists only on v2, so only a cluster-scoped one (a claim's)
// may be on 1.x and needs the label.

// LabelReadable on the token Secret and the PVC of a claim lets Crossplane
// before v2.2 hand them to the function.
const LabelReadable = "hfops.kamal.dev/readable"

// dialect is how the Crossplane that called takes requirements and answers
// them.
type dialect struct {
	// legacy: requirements go in extra_resources and come back there
	// (Crossplane 1.x, v2.0, v2.1).
	legacy bool
	// labelled: legacy, and the XR cluster-scoped, so perhaps 1.x: a
	// namespaced object is listed by LabelReadable rather than got by name.
	labelled bool
}

func DialectOf(req *fnv1.RunFunctionRequest) dialect {
	legacy := !request.HasCapability(req, fnv1.Capability_CAPABILITY_REQUIRED_RESOURCES)
	clusterScoped := GetString(req.GetObserved().GetComposite().GetResource(), "metadata", "namespace") == ""
	return dialect{legacy: legacy, labelled: legacy && clusterScoped}
}

// answered is what Crossplane fetched for each of want's requirements, as
// Crossplane v2.2 answers them: a requirement not in the map is not resolved
// yet; a namespaced one holds only objects of its namespace, a by-name one at
// most its object.
func (d dialect) Answered(req *fnv1.RunFunctionRequest, want *fnv1.Requirements) map[string]*fnv1.Resources {
	if !d.legacy {
		return req.GetRequiredResources()
	}
	got := req.GetExtraResources() //nolint:staticcheck // Crossplane 1.x answers nowhere else.
	out := make(map[string]*fnv1.Resources, len(got))
	for name, sel := range want.GetResources() {
		if rs, ok := got[name]; ok {
			out[name] = &fnv1.Resources{Items: selected(rs.GetItems(), sel)}
		}
	}
	return out
}

// ask puts the requirements where this Crossplane reads them.
func (d dialect) Ask(r *fnv1.Requirements) {
	if !d.legacy {
		return
	}
	extra := make(map[string]*fnv1.ResourceSelector, len(r.GetResources()))
	for name, sel := range r.GetResources() {
		if d.labelled && sel.Namespace != nil && sel.GetMatchName() != "" {
			sel = &fnv1.ResourceSelector{
				ApiVersion: sel.GetApiVersion(),
				Kind:       sel.GetKind(),
				Namespace:  sel.Namespace,
				Match: &fnv1.ResourceSelector_MatchLabels{MatchLabels: &fnv1.MatchLabels{
					Labels: map[string]string{LabelReadable: "true"},
				}},
			}
		}
		extra[name] = sel
	}
	r.ExtraResources = extra //nolint:staticcheck // Crossplane 1.x reads nowhere else.
	r.Resources = nil
}

// ReadableHint follows "not found" where only the label finds the object.
const ReadableHint = " (Crossplane before v2.2 finds it only by the label " + LabelReadable + "=true)"

// explain adds to "not found" that, here, the label finds it.
func (d dialect) Explain(t *TokenState, s *StorageState) {
	if !d.labelled {
		return
	}
	if t.Reason == ReasonSecretNotFound {
		t.Problem += ReadableHint
	}
	if s.Reason == ReasonPVCNotFound {
		s.Problem += ReadableHint
	}
}

// selected keeps the items sel would have selected had its namespace been
// honoured: those in its namespace and, for a by-name selector, the one of
// that name.
func selected(items []*fnv1.Resource, sel *fnv1.ResourceSelector) []*fnv1.Resource {
	var out []*fnv1.Resource
	for _, it := range items {
		r := it.GetResource()
		if sel.Namespace != nil && GetString(r, "metadata", "namespace") != sel.GetNamespace() {
			continue
		}
		if n := sel.GetMatchName(); n != "" {
			if GetString(r, "metadata", "name") != n {
				continue
			}
			return []*fnv1.Resource{it}
		}
		out = append(out, it)
	}
	return out
}
