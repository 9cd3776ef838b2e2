package read

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/hfops/function-hf-download/apis/v1alpha1"
	"github.com/hfops/function-hf-download/input/v1beta1"
	"github.com/hfops/function-hf-download/internal/naming"
)

// TestEveryFieldChoosesWhetherItRollsJobs walks every field of the API's spec
// (apis/v1alpha1). Each must carry the choice its author made, as a hash tag:
// whether a change of it makes new Jobs. Then it changes each field, one at a
// time, and checks that the model's Job hash and intent change exactly when
// the field rolls Jobs, and its content hash exactly when the field says what
// lands on disk. Objects and models are walked into.
func TestEveryFieldChoosesWhetherItRollsJobs(t *testing.T) {
	base := func() XRSpec {
		return XRSpec{
			ModelDownloadSpec: v1alpha1.ModelDownloadSpec{
				StoragePVC: "models",
				Storage: &v1alpha1.Storage{Size: "10Gi", StorageClassName: new("fast"), AccessModes: []string{"ReadWriteOnce"},
					VolumeMode: "Filesystem", DeletionPolicy: DeletionOrphan},
				HFTokenRef: &v1alpha1.TokenRef{Name: "hf", Key: "token"},
				NodePool:   "gpu",
				Settings: v1alpha1.Settings{TimeoutMillis: 1000, KeepAliveSeconds: 3600, CPU: "1", Memory: "1Gi",
					StallTimeoutSeconds: 600, MaxParallel: 2},
			},
			Models: []ModelSpec{{Model: v1alpha1.Model{Name: "org/m", Revision: "main", RepoType: "model", RetryCount: 2,
				Include: []string{"*.json"}, Exclude: []string{"*.bin"}}}},
		}
	}
	hashesOf := func(s XRSpec) naming.Hashes {
		xr := naming.HashXR(&s.ModelDownloadSpec, naming.Owner{Namespace: "ns", Name: "md", XRName: "md", XRUID: "uid", PVCUID: "pvc"}, s.Settings.CPU, s.Settings.Memory, "")
		return naming.HashModel(&s.Models[0].Model, naming.Digests{XR: xr})
	}
	want := hashesOf(base())

	var leaves int
	var visit func(typ reflect.Type, path func(*XRSpec) reflect.Value)
	visit = func(typ reflect.Type, path func(*XRSpec) reflect.Value) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			name := typ.Name() + "." + f.Name
			tag, chosen := f.Tag.Lookup("hash")
			if !chosen {
				t.Errorf("%s has no hash tag: say whether a change of it makes new Jobs (apis/v1alpha1)", name)
				continue
			}
			key, opt, _ := strings.Cut(tag, ",")
			field := func(s *XRSpec) reflect.Value { return path(s).Field(i) }
			switch {
			case key == "per-model":
				visit(f.Type.Elem(), func(s *XRSpec) reflect.Value { return reflect.ValueOf(&s.Models[0].Model).Elem() })
				continue
			case f.Type.Kind() == reflect.Struct:
				visit(f.Type, field)
				continue
			case f.Type.Kind() == reflect.Pointer && f.Type.Elem().Kind() == reflect.Struct:
				visit(f.Type.Elem(), func(s *XRSpec) reflect.Value { return field(s).Elem() })
				continue
			}
			leaves++
			rolls := key != "-"
			changed := base()
			change(t, name, field(&changed))
			got := hashesOf(changed)
			if rolled := got.Spec != want.Spec; rolled != rolls {
				t.Errorf("changing %s changes the Job hash: %v, want %v (its tag is %q)", name, rolled, rolls, tag)
			}
			// What the user asks for is intent: a completion under another
			// intent must never be kept across an upgrade.
			if moved := got.Intent != want.Intent; moved != rolls {
				t.Errorf("changing %s changes the intent hash: %v, want %v, as the Job hash", name, moved, rolls)
			}
			if moved := got.Content != want.Content; moved != (opt == "content") {
				t.Errorf("changing %s changes the content hash: %v, want %v (its tag is %q)", name, moved, !moved, tag)
			}
		}
	}
	visit(reflect.TypeFor[v1alpha1.ModelDownloadSpec](), func(s *XRSpec) reflect.Value { return reflect.ValueOf(&s.ModelDownloadSpec).Elem() })
	// Every field of the spec as it is today: a walk that stops early passes nothing.
	if leaves != 26 {
		t.Errorf("walked %d fields of the spec, want 26", leaves)
	}
}

// change sets v, a field of the spec, to another value of its type.
func change(t *testing.T, name string, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Slice:
		v.Set(reflect.Append(v, reflect.ValueOf("x")))
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		change(t, name, p.Elem())
		v.Set(p)
	default:
		t.Fatalf("%s: no way to change a %s", name, v.Kind())
	}
}

// TestOnlyTheImageLeavesIntent changes each field of the platform, one at a time: each
// changes the Job hash, and each but the image (which the function's version defaults) the
// intent hash that keeps a completion across upgrades.
func TestOnlyTheImageLeavesIntent(t *testing.T) {
	base := func() Platform {
		return Platform{Image: "img", PullPolicy: "IfNotPresent", PullSecrets: []string{"p"}, ServiceAccount: "sa",
			MountPath: "/models", NodePoolKey: "pool", Tolerations: []corev1.Toleration{{Key: "k"}},
			Env: []v1beta1.EnvVar{{Name: "A", Value: "b"}}, CPU: "1", Memory: "1Gi", RunAsUser: 1, RunAsGroup: 1,
			FSGroup: 1, MaxWorkers: 8, StallTimeoutSeconds: 600}
	}
	m := ModelSpec{Model: v1alpha1.Model{Name: "org/m", Revision: "main", RepoType: "model"}}
	hashesOf := func(p Platform) naming.Hashes {
		p.Digest, p.IntentDigest = p.Hash(p.Image), p.Hash("")
		return naming.HashModel(&m.Model, naming.Digests{Platform: p.Digest, PlatformIntent: p.IntentDigest})
	}
	want := hashesOf(base())
	typ := reflect.TypeFor[Platform]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.Name == "MaxActivePerNamespace" || f.Name == "Digest" || f.Name == "IntentDigest" {
			continue
		}
		p := base()
		v := reflect.ValueOf(&p).Elem().Field(i)
		switch f.Type {
		case reflect.TypeFor[[]corev1.Toleration]():
			v.Set(reflect.ValueOf([]corev1.Toleration{{Key: "other"}}))
		case reflect.TypeFor[[]v1beta1.EnvVar]():
			v.Set(reflect.ValueOf([]v1beta1.EnvVar{{Name: "A", Value: "c"}}))
		default:
			change(t, f.Name, v)
		}
		got := hashesOf(p)
		if got.Spec == want.Spec {
			t.Errorf("changing platform.%s leaves the Job hash as it was", f.Name)
		}
		if moved, want := got.Intent != want.Intent, f.Name != "Image"; moved != want {
			t.Errorf("changing platform.%s changes the intent hash: %v, want %v", f.Name, moved, want)
		}
	}
}
