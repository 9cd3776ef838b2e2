package main

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/hfops/function-hf-download/input/v1beta1"
)

// rollsJobs is, for every field of the spec as the function reads it, the choice a field's
// author made: true when a change of it must make new Jobs (it is hashed into their names),
// false when it must not (it decides when Jobs start, or what is composed beside them, not
// what a Job does). A field added to one of these types without a choice here fails
// TestEveryFieldRollsJobsAsChosen, and so does a choice that the hashes do not keep.
var rollsJobs = map[string]bool{
	"xrSpec.StoragePVC": true,
	"xrSpec.NodePool":   true,
	// The PVC's own fields: a new volume is a new pvcUID, which the hash covers.
	"storageSpec.Size":             false,
	"storageSpec.StorageClassName": false,
	"storageSpec.AccessModes":      false,
	"storageSpec.VolumeMode":       false,
	"storageSpec.DeletionPolicy":   false,
	"tokenRef.Name":                true,
	"tokenRef.Key":                 true,

	"downloadSettings.TimeoutMillis":       true,
	"downloadSettings.EnableHFTransfer":    true,
	"downloadSettings.KeepAliveSeconds":    true,
	"downloadSettings.CPU":                 true,
	"downloadSettings.Memory":              true,
	"downloadSettings.ForceReload":         true,
	"downloadSettings.StallTimeoutSeconds": true,
	// When Jobs start, not what they are.
	"downloadSettings.MaxParallel": false,

	"modelSpec.Name":       true,
	"modelSpec.Revision":   true,
	"modelSpec.SHA":        true,
	"modelSpec.RetryCount": true,
	"modelSpec.Include":    true,
	"modelSpec.Exclude":    true,
	"modelSpec.RepoType":   true,
}

// TestEveryFieldRollsJobsAsChosen changes each field of a spec, one at a time, and checks
// that the model's Job hash changes exactly when rollsJobs says the field rolls Jobs. The
// struct fields that hold other fields (Models, Storage, Token, Settings) are walked into.
func TestEveryFieldRollsJobsAsChosen(t *testing.T) {
	base := func() xrSpec {
		return xrSpec{
			Models: []modelSpec{{Name: "org/m", Revision: "main", RepoType: "model", RetryCount: 2,
				Include: []string{"*.json"}, Exclude: []string{"*.bin"}}},
			StoragePVC: "models",
			Storage:    &storageSpec{Size: "10Gi", StorageClassName: new("fast"), AccessModes: []string{"ReadWriteOnce"}, VolumeMode: "Filesystem", DeletionPolicy: deletionOrphan},
			Token:      &tokenRef{Name: "hf", Key: "token"},
			NodePool:   "gpu",
			Settings:   downloadSettings{TimeoutMillis: 1000, KeepAliveSeconds: 3600, CPU: "1", Memory: "1Gi", StallTimeoutSeconds: 600, MaxParallel: 2},
		}
	}
	hashesOf := func(s xrSpec) modelHashes {
		xr := hashXR(&s, owner{namespace: "ns", name: "md", xrName: "md", xrUID: "uid", pvcUID: "pvc"}, s.Settings.CPU, s.Settings.Memory, "")
		return hashModel(&s.Models[0], xr, &platform{}, nil)
	}
	want := hashesOf(base())

	seen := map[string]bool{}
	// visit changes every field under v (addressable, in a fresh base spec each time).
	var visit func(path func(*xrSpec) reflect.Value)
	visit = func(path func(*xrSpec) reflect.Value) {
		s := base()
		v := path(&s)
		typ := v.Type()
		for i := range typ.NumField() {
			f := typ.Field(i)
			if !f.IsExported() {
				continue
			}
			name := typ.Name() + "." + f.Name
			field := func(s *xrSpec) reflect.Value { return path(s).Field(i) }
			switch {
			case f.Type.Kind() == reflect.Struct:
				visit(field)
				continue
			case f.Type.Kind() == reflect.Pointer && f.Type.Elem().Kind() == reflect.Struct:
				visit(func(s *xrSpec) reflect.Value { return field(s).Elem() })
				continue
			case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
				visit(func(s *xrSpec) reflect.Value { return field(s).Index(0) })
				continue
			}
			seen[name] = true
			rolls, chosen := rollsJobs[name]
			if !chosen {
				t.Errorf("%s has no choice in rollsJobs: say whether a change of it makes new Jobs (and hash it in naming.go if it does)", name)
				continue
			}
			changed := base()
			change(t, name, field(&changed))
			got := hashesOf(changed)
			if rolled := got.spec != want.spec; rolled != rolls {
				t.Errorf("changing %s changes the Job hash: %v, want %v (rollsJobs)", name, rolled, rolls)
			}
			// What the user asks for is intent: a completion under another
			// intent must never be kept across an upgrade.
			if moved := got.intent != want.intent; moved != rolls {
				t.Errorf("changing %s changes the intent hash: %v, want %v, as the Job hash", name, moved, rolls)
			}
		}
	}
	visit(func(s *xrSpec) reflect.Value { return reflect.ValueOf(s).Elem() })
	for name := range rollsJobs {
		if !seen[name] {
			t.Errorf("rollsJobs names %s, which is no field of the spec", name)
		}
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
	base := func() platform {
		return platform{Image: "img", PullPolicy: "IfNotPresent", PullSecrets: []string{"p"}, ServiceAccount: "sa",
			MountPath: "/models", NodePoolKey: "pool", Tolerations: []corev1.Toleration{{Key: "k"}},
			Env: []v1beta1.EnvVar{{Name: "A", Value: "b"}}, CPU: "1", Memory: "1Gi", RunAsUser: 1, RunAsGroup: 1,
			FSGroup: 1, MaxWorkers: 8, StallTimeoutSeconds: 600}
	}
	m := modelSpec{Name: "org/m", Revision: "main", RepoType: "model"}
	hashesOf := func(p platform) modelHashes {
		p.digest, p.intentDigest = p.hash(p.Image), p.hash("")
		return hashModel(&m, nil, &p, nil)
	}
	want := hashesOf(base())
	typ := reflect.TypeFor[platform]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !f.IsExported() || f.Name == "MaxActivePerNamespace" {
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
		if got.spec == want.spec {
			t.Errorf("changing platform.%s leaves the Job hash as it was", f.Name)
		}
		if moved, want := got.intent != want.intent, f.Name != "Image"; moved != want {
			t.Errorf("changing platform.%s changes the intent hash: %v, want %v", f.Name, moved, want)
		}
	}
}
