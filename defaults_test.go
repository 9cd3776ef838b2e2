package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hfops/function-hf-download/apis/v1alpha1"
	"github.com/hfops/function-hf-download/internal/read"
	"github.com/hfops/function-hf-download/script"
)

// TestAPIDefaults: the defaults of the API are its schema's (the markers of
// apis/v1alpha1), the ones both XRDs declare, the ones the function applies
// when decoding a spec that leaves everything out, and, where the script has
// a default of its own, the script's (script/script.go, which TestConstantsMatchScript
// checks against download.sh).
func TestAPIDefaults(t *testing.T) {
	want := map[string]any{
		"spec.models[].revision":         script.DefaultRevision,
		"spec.models[].retryCount":       float64(2),
		"spec.models[].repoType":         script.DefaultRepoType,
		"spec.storage.accessModes":       []any{"ReadWriteOnce"},
		"spec.storage.volumeMode":        read.VolumeModeFilesystem,
		"spec.storage.deletionPolicy":    read.DeletionOrphan,
		"spec.hfTokenRef.key":            "token",
		"spec.settings":                  map[string]any{},
		"spec.settings.keepAliveSeconds": float64(3600),
		"spec.settings.reclaim":          read.ReclaimRetain,
	}
	for _, path := range []string{modelDownloadCRD, "example/definition.yaml", "example/legacy/definition.yaml"} {
		t.Run(path, func(t *testing.T) {
			xrd := readYAML(t, path)
			versions, _ := xrd["spec"].(map[string]any)["versions"].([]any)
			if len(versions) == 0 {
				t.Fatalf("%s: no versions", path)
			}
			for _, v := range versions {
				schema, _ := v.(map[string]any)["schema"].(map[string]any)["openAPIV3Schema"].(map[string]any)
				got := map[string]any{}
				schemaDefaults(schema, "", got)
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("%s: defaults (-want +the schema's):\n%s", path, diff)
				}
			}
		})
	}

	t.Run("applied", func(t *testing.T) {
		spec, errs := read.ParseSpec(mustStruct("spec:\n  storagePVC: p\n  models: [{name: m}]\n  storage: {size: 1Gi}\n  hfTokenRef: {name: s}\n"))
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		got := spec.ModelDownloadSpec
		got.Models = []v1alpha1.Model{spec.Models[0].Model}
		wantSpec := v1alpha1.ModelDownloadSpec{
			StoragePVC: "p",
			Models:     []v1alpha1.Model{{Name: "m", Revision: script.DefaultRevision, RepoType: script.DefaultRepoType, RetryCount: 2}},
			HFTokenRef: &v1alpha1.TokenRef{Name: "s", Key: "token"},
			Storage:    &v1alpha1.Storage{Size: "1Gi", AccessModes: []string{"ReadWriteOnce"}, VolumeMode: read.VolumeModeFilesystem, DeletionPolicy: read.DeletionOrphan},
			Settings:   v1alpha1.Settings{KeepAliveSeconds: 3600, Reclaim: read.ReclaimRetain},
		}
		if diff := cmp.Diff(wantSpec, got); diff != "" {
			t.Errorf("the spec as decoded (-want +got):\n%s", diff)
		}
	})
}

// schemaDefaults collects the default of every property under an OpenAPI schema, by its
// path (a list's items as name[]).
func schemaDefaults(schema map[string]any, path string, into map[string]any) {
	if d, ok := schema["default"]; ok {
		into[path] = d
	}
	if items, ok := schema["items"].(map[string]any); ok {
		schemaDefaults(items, path+"[]", into)
	}
	props, _ := schema["properties"].(map[string]any)
	for name, p := range props {
		if ps, ok := p.(map[string]any); ok {
			if path != "" {
				name = path + "." + name
			}
			schemaDefaults(ps, name, into)
		}
	}
}

// TestAPIBoundsAreTheFunctions: where internal/read/validate.go checks a bound of its own
// (with a message that says more than the schema's), or the Input shares one
// with the spec, the schema says the same.
func TestAPIBoundsAreTheFunctions(t *testing.T) {
	crd := readYAML(t, modelDownloadCRD)
	spec := crd["spec"].(map[string]any)["versions"].([]any)[0].(map[string]any)["schema"].(map[string]any)["openAPIV3Schema"].(map[string]any)["properties"].(map[string]any)["spec"].(map[string]any)
	at := func(path ...string) map[string]any {
		s := spec
		for _, p := range path {
			if p == "[]" {
				s = s["items"].(map[string]any)
				continue
			}
			s = s["properties"].(map[string]any)[p].(map[string]any)
		}
		return s
	}
	for _, c := range []struct {
		path    []string
		keyword string
		want    float64
	}{
		{[]string{"models", "[]", "revision"}, "maxLength", read.MaxRevision},
		{[]string{"models", "[]", "sha"}, "maxLength", read.MaxSHA},
		{[]string{"models", "[]", "include"}, "maxItems", read.MaxGlobs},
		{[]string{"models", "[]", "include", "[]"}, "maxLength", read.MaxGlob},
		{[]string{"models", "[]", "exclude"}, "maxItems", read.MaxGlobs},
		{[]string{"models", "[]", "exclude", "[]"}, "maxLength", read.MaxGlob},
		{[]string{"models", "[]", "name"}, "maxLength", 2*read.MaxRepoPart + 1},
		{[]string{"settings", "stallTimeoutSeconds"}, "minimum", read.MinStallTimeoutSeconds},
		{[]string{"settings", "stallTimeoutSeconds"}, "maximum", read.MaxStallTimeoutSeconds},
		{[]string{"settings", "maxParallel"}, "maximum", read.MaxInt32},
		{[]string{"settings", "keepAliveSeconds"}, "maximum", read.MaxInt32},
	} {
		if got := at(c.path...)[c.keyword]; got != c.want {
			t.Errorf("spec.%s: %s is %v in the schema, %v in the function", strings.Join(c.path, "."), c.keyword, got, c.want)
		}
	}
}
