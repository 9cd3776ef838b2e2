package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/structpb"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"

	"github.com/hfops/function-hf-download/apis/v1alpha1"
	"github.com/hfops/function-hf-download/internal/build"
	"github.com/hfops/function-hf-download/internal/decide"
	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/internal/read"
	"github.com/hfops/function-hf-download/script"
)

// TestProgressFolded drives progress as Crossplane would, in both modes: a
// running model shows what its pod last reported (bytes, files, rate, time
// left, when it last moved), the XR the bytes of all models and the
// condition the slowest one; a report from another attempt's pod, or one that
// is not the script's, shows nothing; once the model completes its progress
// goes and its summary stays.
func TestProgressFolded(t *testing.T) {
	modes(t, func(t *testing.T, s *xrSim) {
		job := s.running("org/alpha")
		progress := func() map[string]string {
			t.Helper()
			e := s.entry("org/alpha")
			out := map[string]string{}
			for k, v := range e {
				if strings.HasPrefix(k, "progress.") {
					out[strings.TrimPrefix(k, "progress.")] = v
				}
			}
			return out
		}
		downloaded := func() string {
			return read.GetString(s.last.GetDesired().GetComposite().GetResource(), "status", "downloaded")
		}
		if p := progress(); len(p) != 0 || downloaded() != "0/0 B" {
			t.Fatalf("before any report: progress %v, downloaded %q; want none and 0/0 B", p, downloaded())
		}

		report := func(pod string, bytes, rate, eta int64, updated string) string {
			return fmt.Sprintf(`{"bytes":%d,"totalBytes":140500000000,"files":3,"totalFiles":31,"bytesPerSecond":%d,"etaSeconds":%d,"updated":%q,"attempt":%q}`,
				bytes, rate, eta, updated, pod)
		}
		s.report(report(job+"-x7k2p", 37200000000, 95000000, 1087, "2026-11-26T10:00:15Z"))
		s.reconcile()
		want := map[string]string{"bytes": "37200000000", "totalBytes": "140500000000", "files": "3", "totalFiles": "31",
			"bytesPerSecond": "95000000", "etaSeconds": "1087", "updated": "2026-11-26T10:00:15Z"}
		if diff := cmp.Diff(want, progress()); diff != "" {
			t.Fatalf("progress in status (-want +got):\n%s", diff)
		}
		if downloaded() != "37.2/140.5 GB" {
			t.Fatalf("downloaded = %q, want 37.2/140.5 GB", downloaded())
		}
		if msg := s.condition(conditionDownloaded).GetMessage(); !strings.HasSuffix(msg, "; slowest: org/alpha at 95.0 MB/s, 18m7s left") {
			t.Fatalf("ModelsDownloaded says %q; want the slowest model named", msg)
		}

		// It moves on the next report.
		s.report(report(job+"-x7k2p", 74400000000, 93000000, 711, "2026-11-26T10:06:55Z"))
		s.reconcile()
		if p := progress(); p["bytes"] != "74400000000" || p["updated"] != "2026-11-26T10:06:55Z" {
			t.Fatalf("after a second report: %v", p)
		}

		for what, bad := range map[string]string{
			"another attempt's pod": report("hf-dl-cache-org-alpha-0000000000-abcde", 1, 1, 1, "2026-11-26T10:07:00Z"),
			"not JSON":              "37 GB",
			"an unknown field":      `{"bytes":1,"totalBytes":2,"files":0,"totalFiles":1,"bytesPerSecond":0,"etaSeconds":0,"updated":"2026-11-26T10:07:00Z","attempt":"` + job + `-x","evil":1}`,
			"a negative number":     report(job+"-x7k2p", -1, 1, 1, "2026-11-26T10:07:00Z"),
			"a bad time":            report(job+"-x7k2p", 1, 1, 1, "yesterday"),
		} {
			s.report(bad)
			s.reconcile()
			if p := progress(); len(p) != 0 {
				t.Fatalf("a report of %s shows in status: %v", what, p)
			}
		}

		s.report(report(job+"-x7k2p", 140500000000, 0, 0, "2026-11-26T10:20:00Z"))
		s.finish("org/alpha", true, `{"commit":"abc","files":31,"bytes":140500000000,"seconds":1500,"verified":true}`)
		s.reconcile()
		if e := s.entry("org/alpha"); e["phase"] != read.PhaseCompleted || len(progress()) != 0 || e["bytes"] != "140500000000" {
			t.Fatalf("once completed: %v; want Completed with its summary and no progress", e)
		}
		if downloaded() != "140.5/140.5 GB" {
			t.Fatalf("downloaded once completed = %q", downloaded())
		}
	})
}

// TestFinishedModelShowsNoProgress: once a model completed or failed, the
// last report of its pod (here one that still gave a rate and time left: its
// final report never reached the API server) is no longer its progress:
// status shows none, the XR's bytes do not count it, and ModelsDownloaded
// does not name it the slowest while another model still downloads.
func TestFinishedModelShowsNoProgress(t *testing.T) {
	for _, tc := range []struct {
		name       string
		ok         bool
		message    string
		downloaded string
	}{
		{name: "Completed", ok: true, message: `{"commit":"abc","files":31,"bytes":140500000000,"seconds":1500}`, downloaded: "140.5/140.5 GB"},
		{name: "Failed", message: accessDenied, downloaded: "0/0 B"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			specModes(t, twoModels, func(t *testing.T, s *xrSim) {
				s.reconcile()
				s.start("org/alpha")
				s.start("org/beta")
				s.reconcile()
				s.report(fmt.Sprintf(`{"bytes":37200000000,"totalBytes":140500000000,"files":3,"totalFiles":31,"bytesPerSecond":95000000,"etaSeconds":1087,"updated":"2026-11-26T10:00:15Z","attempt":%q}`,
					s.entry("org/alpha")["jobName"]+"-x7k2p"))
				s.reconcile()
				if msg := s.condition(conditionDownloaded).GetMessage(); !strings.Contains(msg, "slowest: org/alpha") {
					t.Fatalf("while org/alpha downloads, ModelsDownloaded says %q; want it named the slowest", msg)
				}
				s.finish("org/alpha", tc.ok, tc.message)
				s.reconcile()
				e := s.entry("org/alpha")
				for k := range e {
					if strings.HasPrefix(k, "progress.") {
						t.Fatalf("org/alpha %s shows progress: %v", e["phase"], e)
					}
				}
				downloaded := read.GetString(s.last.GetDesired().GetComposite().GetResource(), "status", "downloaded")
				if msg := s.condition(conditionDownloaded).GetMessage(); strings.Contains(msg, "slowest") || downloaded != tc.downloaded {
					t.Fatalf("org/alpha %s, org/beta downloading: ModelsDownloaded says %q, status.downloaded %q; want no slowest model, %s",
						e["phase"], msg, downloaded, tc.downloaded)
				}
			})
		})
	}
}

// TestStatusShowsProgressOnlyWhileDownloading: the status entry carries
// progress for a Pending or Running model alone, whatever the model holds.
func TestStatusShowsProgressOnlyWhileDownloading(t *testing.T) {
	p := &script.Progress{Progress: v1alpha1.Progress{Bytes: 1, TotalBytes: 2, Files: 1, TotalFiles: 2, Updated: "2026-11-26T10:00:15Z"}}
	for phase, want := range map[string]bool{read.PhasePending: true, read.PhaseRunning: true, read.PhaseCompleted: false, read.PhaseFailed: false} {
		st := decide.StatusValue([]decide.ModelStatus{{Name: "org/alpha", State: decide.PhaseState(phase), Progress: p}}, nil, testPVCUID)
		if _, got := st["models"].([]any)[0].(map[string]any)["progress"]; got != want {
			t.Errorf("a %s model: progress in its status entry %v, want %v", phase, got, want)
		}
	}
}

// TestProgressObjects: the least privilege of the write path. Each
// ModelDownload composes its progress ConfigMap without data, a ServiceAccount
// that mounts no token by itself, a Role that allows get and patch of that
// ConfigMap alone, and a RoleBinding of it to the pods' account; the pods run
// as that account with its token projected beside the script, short-lived.
// With the Input's serviceAccountName, that account is bound instead and none
// is composed. No Job starts before the pods' account exists.
func TestProgressObjects(t *testing.T) {
	rsp := run(t, withToken(xrYAML(oneModel)).build())
	desired := rsp.GetDesired().GetResources()
	cm := desired[naming.ProgressKeyConfigMap].GetResource()
	name := read.GetString(cm, "metadata", "name")
	if !strings.HasPrefix(name, "hf-dl-cache-progress-") || read.Get(cm, "data") != nil {
		t.Fatalf("progress ConfigMap %s with data %v; want hf-dl-cache-progress-<hash>, no data", name, read.Get(cm, "data"))
	}
	role := desired[naming.ProgressKeyRole].GetResource()
	wantRules := mustStruct("rules: [{apiGroups: [''], resources: [configmaps], resourceNames: [" + name + "], verbs: [get, patch]}]")
	if diff := cmp.Diff(wantRules.GetFields()["rules"].AsInterface(), role.GetFields()["rules"].AsInterface()); diff != "" {
		t.Fatalf("the Role's rules (-want +got):\n%s", diff)
	}
	binding := desired[naming.ProgressKeyBinding].GetResource()
	wantBinding := mustStruct("roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: " + name + "}\nsubjects: [{kind: ServiceAccount, name: " + name + ", namespace: ml}]")
	for _, f := range []string{"roleRef", "subjects"} {
		if diff := cmp.Diff(wantBinding.GetFields()[f].AsInterface(), binding.GetFields()[f].AsInterface()); diff != "" {
			t.Fatalf("the RoleBinding's %s (-want +got):\n%s", f, diff)
		}
	}
	// Present and false: a missing field lets Kubernetes mount the token
	// (its default is true), though it reads as false here.
	sa := desired[naming.ProgressKeyAccount].GetResource()
	automount, ok := sa.GetFields()["automountServiceAccountToken"]
	if b, isBool := automount.GetKind().(*structpb.Value_BoolValue); read.GetString(sa, "metadata", "name") != name || !isBool || b.BoolValue {
		t.Fatalf("ServiceAccount %s has automountServiceAccountToken %v (set: %v); want %s with automountServiceAccountToken: false",
			read.GetString(sa, "metadata", "name"), automount.AsInterface(), ok, name)
	}
	for _, r := range jobResources(rsp) {
		job := asJob(t, r.GetResource())
		pod := job.Spec.Template.Spec
		if pod.ServiceAccountName != name || pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
			t.Fatalf("pods run as %q (automount %v); want %s, no automounted token", pod.ServiceAccountName, pod.AutomountServiceAccountToken, name)
		}
		var sources []string
		for _, v := range pod.Volumes {
			if v.Name != "script" || v.Projected == nil {
				continue
			}
			for _, src := range v.Projected.Sources {
				switch {
				case src.ServiceAccountToken != nil:
					sources = append(sources, fmt.Sprintf("token %s %ds audience %q", src.ServiceAccountToken.Path, *src.ServiceAccountToken.ExpirationSeconds, src.ServiceAccountToken.Audience))
				case src.ConfigMap != nil:
					sources = append(sources, fmt.Sprintf("configMap %s optional=%v", src.ConfigMap.Name, src.ConfigMap.Optional != nil && *src.ConfigMap.Optional))
				}
			}
		}
		want := []string{"configMap " + scriptMapOf(t, desired) + " optional=false", "token token 600s audience \"\"", "configMap kube-root-ca.crt optional=true"}
		if diff := cmp.Diff(want, sources); diff != "" {
			t.Fatalf("the script volume's sources (-want +got):\n%s", diff)
		}
	}

	// The platform's account: bound, not composed.
	tr := withToken(xrYAML(oneModel))
	tr.input = inputHeader + "serviceAccountName: downloader\n"
	rsp = run(t, tr.build())
	if _, ok := rsp.GetDesired().GetResources()[naming.ProgressKeyAccount]; ok {
		t.Fatal("a ServiceAccount is composed though the Input names one")
	}
	if got := read.GetString(read.Get(rsp.GetDesired().GetResources()[naming.ProgressKeyBinding].GetResource(), "subjects").GetListValue().GetValues()[0].GetStructValue(), "name"); got != "downloader" {
		t.Fatalf("the RoleBinding binds %q, want the Input's downloader", got)
	}

	// No Job before the pods' account exists.
	req := withToken(xrYAML(oneModel)).build()
	delete(req.Observed.Resources, naming.ProgressKeyAccount)
	rsp = run(t, req)
	if jobs := jobResources(rsp); len(jobs) != 0 || !strings.Contains(statusEntry(t, rsp, "org/alpha")["message"], "ServiceAccount") {
		t.Fatalf("without the pods' ServiceAccount: %d Jobs, status %v; want none, waiting for it", len(jobs), statusEntry(t, rsp, "org/alpha"))
	}

	// Namespaced Objects: one name each, in the XR's namespace.
	tr = withToken(xrYAML(oneModel))
	tr.input = inputHeader + "mode: Object\nobject: {apiVersion: " + build.ObjectNamespacedAPI + "}\n"
	rsp = run(t, tr.build())
	names := map[string]string{}
	for _, k := range []string{naming.ProgressKeyConfigMap, naming.ProgressKeyAccount, naming.ProgressKeyRole, naming.ProgressKeyBinding} {
		n := read.GetString(rsp.GetDesired().GetResources()[k].GetResource(), "metadata", "name")
		if other, ok := names[n]; ok || n == "" {
			t.Fatalf("the namespaced Objects of %s and %s are both named %q", other, k, n)
		}
		names[n] = k
	}

	// Object mode: provider-kubernetes makes the ConfigMap and never resets it.
	rsp = run(t, withToken(claimXR(oneModel)).build())
	policies := read.Get(rsp.GetDesired().GetResources()[naming.ProgressKeyConfigMap].GetResource(), "spec", "managementPolicies").AsInterface()
	if diff := cmp.Diff([]any{"Observe", "Create", "Delete"}, policies); diff != "" {
		t.Fatalf("the progress ConfigMap's Object policies (-want +got):\n%s", diff)
	}
}

// scriptMapOf is the name of the script's ConfigMap among desired resources.
func scriptMapOf(t *testing.T, desired map[string]*fnv1.Resource) string {
	t.Helper()
	for k, r := range desired {
		if strings.HasPrefix(k, build.ScriptKeyPrefix) {
			return read.GetString(r.GetResource(), "metadata", "name")
		}
	}
	t.Fatal("no script ConfigMap desired")
	return ""
}
