package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestXRDDefaultsAreTheFunctions: every default the XRDs declare is the function's own
// (spec.go, whose script defaults are script.go's, which TestConstantsMatchScript checks
// against download.sh), and the XRDs declare no default the function does not apply.
func TestXRDDefaultsAreTheFunctions(t *testing.T) {
	want := map[string]any{
		"spec.models[].revision":         defaultRevision,
		"spec.models[].retryCount":       float64(defaultRetryCount),
		"spec.models[].repoType":         defaultRepoType,
		"spec.storage.volumeMode":        defaultVolumeMode,
		"spec.storage.deletionPolicy":    deletionOrphan,
		"spec.hfTokenRef.key":            defaultTokenKey,
		"spec.settings.keepAliveSeconds": float64(defaultKeepAliveSeconds),
	}
	for _, path := range []string{"example/definition.yaml", "example/legacy/definition.yaml"} {
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
					t.Errorf("%s: defaults (-the function's +the XRD's):\n%s", path, diff)
				}
			}
		})
	}
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
