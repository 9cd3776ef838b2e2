package naming

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/hfops/function-hf-download/apis/v1alpha1"
)

// TestNames: what the names are made of, for inputs at the edges, and that
// Kubernetes takes each.
func TestNames(t *testing.T) {
	long := strings.Repeat("a", 94)
	cases := []struct {
		name, xr, model, hash string
		wantJob, wantKey      string
	}{
		{"Plain", "cache", "org/model", "0123456789",
			"hf-dl-cache-org-model-0123456789", "job-org-model-0123456789"},
		{"CaseAndPunctuation", "Cache.One", "Org.Name/Model_V2", "abcdef0123",
			"hf-dl-cache-one-org-name-model-v2-abcdef0123", "job-org-name-model-v2-abcdef0123"},
		// The Kelvin sign lowercases to ASCII k.
		{"KelvinSign", "\u212aache", "m", "abcdef0123",
			"hf-dl-kache-m-abcdef0123", "job-m-abcdef0123"},
		{"NothingUsable", "...", "___", "abcdef0123",
			"hf-dl-abcdef0123", "job--abcdef0123"},
		// Long parts share the 45 characters left: each keeps half when it
		// needs it; the hash is always whole.
		{"BothLong", long, long + "/" + long, "abcdef0123",
			"hf-dl-" + strings.Repeat("a", 22) + "-" + strings.Repeat("a", 23) + "-abcdef0123", ""},
		{"ShortXRLongModel", "x", long, "abcdef0123",
			"hf-dl-x-" + strings.Repeat("a", 44) + "-abcdef0123", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			job := JobName(c.xr, c.model, c.hash)
			if job != c.wantJob {
				t.Errorf("JobName = %q, want %q", job, c.wantJob)
			}
			if msgs := validation.IsDNS1123Label(job); len(msgs) > 0 {
				t.Errorf("JobName %q is no DNS-1123 label: %v", job, msgs)
			}
			if c.wantKey != "" {
				if key := ResourceKey(c.model, c.hash); key != c.wantKey {
					t.Errorf("ResourceKey = %q, want %q", key, c.wantKey)
				}
			}
			for _, s := range []string{c.xr, c.model} {
				if msgs := validation.IsValidLabelValue(LabelValue(s)); len(msgs) > 0 {
					t.Errorf("LabelValue(%q) = %q: %v", s, LabelValue(s), msgs)
				}
			}
		})
	}
}

// TestJobHash: an attempt's hash is its own, of the Job-name length, and
// IsSpecHash knows it.
func TestJobHash(t *testing.T) {
	seen := map[string]bool{}
	for _, spec := range []string{"a", "b"} {
		for attempt := range int64(50) {
			h := JobHash(spec, attempt)
			if !IsSpecHash(h) {
				t.Fatalf("JobHash(%q, %d) = %q, which IsSpecHash refuses", spec, attempt, h)
			}
			if seen[h] {
				t.Fatalf("JobHash(%q, %d) = %q again", spec, attempt, h)
			}
			seen[h] = true
		}
	}
	for _, s := range []string{"", "0123456789a", "012345678", "ABCDEF0123", "../../x/y", "ghijklmnop"} {
		if IsSpecHash(s) {
			t.Errorf("IsSpecHash(%q) = true", s)
		}
	}
}

// TestHashModelIsStable: a model's hashes are the same on every machine and
// in every version that does not mean to roll Jobs; the examples' Job names
// (TestExampleHashes) rest on them.
func TestHashModelIsStable(t *testing.T) {
	m := &v1alpha1.Model{Name: "org/m", Revision: "main", RepoType: "model", RetryCount: 2, Include: []string{"*.json"}}
	got := HashModel(m, Digests{XR: []byte("xr"), Platform: []byte("p"), PlatformIntent: []byte("pi"),
		Script: []byte("s"), Template: []byte("t"), Token: TokenDigest([]byte("hf_token"))})
	want := Hashes{Content: ContentHash(m), Config: got.Config, Spec: got.Spec, Intent: got.Intent}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the content hash alone differs from HashModel's (-want +got):\n%s", diff)
	}
	for _, h := range []string{got.Content, got.Config, got.Spec, got.Intent} {
		if len(h) != 16 || strings.Trim(h, "0123456789abcdef") != "" {
			t.Errorf("hash %q is not 16 lowercase hex digits", h)
		}
	}
}

// FuzzNames: whatever the XR's and the model's names, the Job's name is a
// DNS-1123 label that ends in the whole hash, and the labels are valid.
func FuzzNames(f *testing.F) {
	f.Add("cache", "org/model")
	f.Add(strings.Repeat("x-", 60), strings.Repeat("Ü", 70))
	f.Fuzz(func(t *testing.T, xr, model string) {
		h := JobHash(xr+"/"+model, 1)
		job := JobName(xr, model, h)
		if msgs := validation.IsDNS1123Label(job); len(msgs) > 0 {
			t.Fatalf("JobName(%q, %q) = %q: %v", xr, model, job, msgs)
		}
		if !strings.HasSuffix(job, "-"+h) {
			t.Fatalf("JobName(%q, %q) = %q does not end in its hash %q", xr, model, job, h)
		}
		for _, s := range []string{xr, model} {
			if msgs := validation.IsValidLabelValue(LabelValue(s)); len(msgs) > 0 {
				t.Fatalf("LabelValue(%q) = %q: %v", s, LabelValue(s), msgs)
			}
		}
	})
}
