package main

import (
	"reflect"
	"testing"
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
	jobOf := func(s xrSpec) string {
		xr := hashXR(&s, owner{namespace: "ns", name: "md", xrName: "md", xrUID: "uid", pvcUID: "pvc"}, s.Settings.CPU, s.Settings.Memory, "")
		return hashModel(&s.Models[0], xr, nil, nil).spec
	}
	want := jobOf(base())

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
			if got := jobOf(changed) != want; got != rolls {
				t.Errorf("changing %s changes the Job hash: %v, want %v (rollsJobs)", name, got, rolls)
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
