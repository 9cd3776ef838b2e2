package main

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
// namespaced object at all (internal/controller/apiextensions/composite/
// extra_resources.go in v1.20.1). So on 1.x the token Secret and the PVC can
// only be found by a label, and everything listed must be narrowed to the
// claim's namespace here.
//
// Only Crossplane v2.2 and later say which protocol they speak (RequestMeta
// capabilities). Without that, the function asks in extra_resources, which
// every Crossplane since v1.15 answers, v2 with namespaces honoured.

// labelReadable on a namespaced Secret or PVC lets Crossplane 1.x hand it to
// the function: 1.x cannot get a namespaced object by name, only list by
// labels. On v2 it changes nothing.
const labelReadable = "hfops.kamal.dev/readable"

// labelledSuffix names the companion requirement that finds a by-name
// requirement's object by labelReadable.
const labelledSuffix = "-labelled"

// dialect is how the Crossplane that called takes requirements and answers
// them.
type dialect struct {
	// legacy: requirements go in extra_resources and come back there, with
	// namespaces possibly ignored (Crossplane 1.x, v2.0, v2.1).
	legacy bool
}

func dialectOf(req *fnv1.RunFunctionRequest) dialect {
	return dialect{legacy: !request.HasCapability(req, fnv1.Capability_CAPABILITY_REQUIRED_RESOURCES)}
}

// answered is what Crossplane fetched for each of want's requirements, as
// Crossplane v2.2 answers them: a requirement not in the map is not resolved
// yet; a namespaced one holds only objects of its namespace, a by-name one at
// most its object.
func (d dialect) answered(req *fnv1.RunFunctionRequest, want *fnv1.Requirements) map[string]*fnv1.Resources {
	if !d.legacy {
		return req.GetRequiredResources()
	}
	got := req.GetExtraResources() //nolint:staticcheck // Crossplane 1.x answers nowhere else.
	out := make(map[string]*fnv1.Resources, len(got))
	for name, sel := range want.GetResources() {
		rs, ok := got[name]
		if !ok {
			continue
		}
		items := rs.GetItems()
		if byNameInNamespace(sel) {
			items = append(items[:len(items):len(items)], got[name+labelledSuffix].GetItems()...)
		}
		out[name] = &fnv1.Resources{Items: selected(items, sel)}
	}
	return out
}

// ask puts the requirements where this Crossplane reads them: for the legacy
// dialect in extra_resources, each by-name namespaced one with its labelled
// companion.
func (d dialect) ask(r *fnv1.Requirements) {
	if !d.legacy {
		return
	}
	extra := make(map[string]*fnv1.ResourceSelector, len(r.GetResources()))
	for name, sel := range r.GetResources() {
		extra[name] = sel
		if byNameInNamespace(sel) {
			extra[name+labelledSuffix] = &fnv1.ResourceSelector{
				ApiVersion: sel.GetApiVersion(),
				Kind:       sel.GetKind(),
				Namespace:  sel.Namespace,
				Match: &fnv1.ResourceSelector_MatchLabels{MatchLabels: &fnv1.MatchLabels{
					Labels: map[string]string{labelReadable: "true"},
				}},
			}
		}
	}
	r.ExtraResources = extra //nolint:staticcheck // Crossplane 1.x reads nowhere else.
	r.Resources = nil
}

func byNameInNamespace(sel *fnv1.ResourceSelector) bool {
	return sel.Namespace != nil && sel.GetMatchName() != ""
}

// selected keeps the items sel would have selected had its namespace been
// honoured: those in its namespace and, for a by-name selector, the first of
// that name (v2.0 and v2.1 answer both the name and its labelled companion).
func selected(items []*fnv1.Resource, sel *fnv1.ResourceSelector) []*fnv1.Resource {
	var out []*fnv1.Resource
	for _, it := range items {
		r := it.GetResource()
		if sel.Namespace != nil && getString(r, "metadata", "namespace") != sel.GetNamespace() {
			continue
		}
		if n := sel.GetMatchName(); n != "" {
			if getString(r, "metadata", "name") != n {
				continue
			}
			return []*fnv1.Resource{it}
		}
		out = append(out, it)
	}
	return out
}
