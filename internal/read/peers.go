package read

import (
	"google.golang.org/protobuf/types/known/structpb"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"

	"github.com/hfops/function-hf-download/internal/decode"
	"github.com/hfops/function-hf-download/internal/naming"
)

// The rest of the namespace: the other ModelDownloads, which may want the
// same directories and share the namespace's download slots, and the
// namespace's download Jobs of every ModelDownload, which hold those slots.

// RequirementNamespaceJobs: the namespace's download Jobs, asked for only
// when the Input sets a namespace limit.
const RequirementNamespaceJobs = "namespace-download-jobs"

// Labels Crossplane sets on a cluster-scoped XR bound to a claim.
const (
	ClaimNamespaceLabel = "crossplane.io/claim-namespace"
	ClaimNameLabel      = "crossplane.io/claim-name"
)

// Peer is another ModelDownload of the namespace, as read from what
// Crossplane fetched.
type Peer struct {
	// Name is the ModelDownload as its users know it (a claim's name for a
	// claim's XR); Created and XRName order who came first.
	Name, Created, XRName string
	// Spec is its spec; nil when it is unusable, and then it claims no
	// directory.
	Spec *XRSpec
	// Recorded is its status.models[], by model name.
	Recorded map[string]RecordedModel
	// PVC and Models are its spec.storagePVC and the names of its
	// spec.models[] as written, whether or not the spec is usable: what a
	// reclaim must leave alone.
	PVC    string
	Models []string
}

// PeerRequirement asks for the ModelDownloads that may share the PVC: those
// of the namespace (for a claim's cluster-scoped XR, those of the claim's
// namespace).
func PeerRequirement(xr Identity, namespace string) *fnv1.ResourceSelector {
	sel := &fnv1.ResourceSelector{ApiVersion: xr.APIVersion, Kind: xr.Kind}
	labels := map[string]string{}
	if xr.Namespace != "" {
		ns := namespace
		sel.Namespace = &ns
	} else {
		labels[ClaimNamespaceLabel] = namespace
	}
	sel.Match = &fnv1.ResourceSelector_MatchLabels{MatchLabels: &fnv1.MatchLabels{Labels: labels}}
	return sel
}

// readPeers reads the ModelDownloads Crossplane fetched but this one
// (self) and those being deleted, which claim nothing.
func readPeers(r *fnv1.Resources, self Identity) []Peer {
	var out []Peer
	for _, it := range r.GetItems() {
		xr := it.GetResource()
		name := GetString(xr, "metadata", "name")
		if uid := GetString(xr, "metadata", "uid"); name == self.Name || uid != "" && uid == self.UID ||
			decode.Present(Get(xr, "metadata", "deletionTimestamp")) {
			continue
		}
		p := Peer{
			Name:     OrDefault(GetString(xr, "metadata", "labels", ClaimNameLabel), name),
			Created:  GetString(xr, "metadata", "creationTimestamp"),
			XRName:   name,
			Recorded: RecordedStatus(xr),
			PVC:      GetString(xr, "spec", "storagePVC"),
		}
		for _, m := range Get(xr, "spec", "models").GetListValue().GetValues() {
			if n := GetString(m.GetStructValue(), "name"); n != "" {
				p.Models = append(p.Models, n)
			}
		}
		if spec, errs := ParseSpec(xr); len(errs) == 0 && len(ValidateSpec(&spec)) == 0 {
			p.Spec = &spec
		}
		out = append(out, p)
	}
	return out
}

// NamespaceJobsRequirement asks for the namespace's download Jobs, of every
// ModelDownload.
func NamespaceJobsRequirement(namespace string) *fnv1.ResourceSelector {
	return &fnv1.ResourceSelector{
		ApiVersion: "batch/v1",
		Kind:       "Job",
		Namespace:  &namespace,
		Match:      &fnv1.ResourceSelector_MatchLabels{MatchLabels: &fnv1.MatchLabels{Labels: map[string]string{naming.LabelApp: naming.AppName}}},
	}
}

// NamespaceJob is what the queue needs of one download Job in the namespace.
type NamespaceJob struct {
	// Parent is the Job's parent label: the ModelDownload it downloads for.
	Parent  string
	Created string
	// Active: not ended and not being deleted, so it holds a slot.
	Active bool
}

// ReadNamespaceJobs reads the namespace's download Jobs that Crossplane
// fetched for RequirementNamespaceJobs.
func ReadNamespaceJobs(r *fnv1.Resources) []NamespaceJob {
	items := r.GetItems()
	out := make([]NamespaceJob, 0, len(items))
	for _, it := range items {
		j := it.GetResource()
		out = append(out, NamespaceJob{
			Parent:  GetString(j, "metadata", "labels", naming.LabelParent),
			Created: GetString(j, "metadata", "creationTimestamp"),
			Active:  !decode.Present(Get(j, "metadata", "deletionTimestamp")) && !finishedJob(j),
		})
	}
	return out
}

// finishedJob: a Job that ended, as JobPhase reads it (an unreadable
// status: not ended, so its slot stays taken).
func finishedJob(j *structpb.Struct) bool {
	job, err := ReadJobStatus(j)
	if err != nil {
		return false
	}
	phase, _ := JobPhase(job)
	return Terminal(phase)
}
