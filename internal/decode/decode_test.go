package decode

import (
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/structpb"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

type inner struct {
	N int64 `json:"n"`
}

type sample struct {
	S     string   `json:"s"`
	B     bool     `json:"b"`
	N     int64    `json:"n"`
	L     []string `json:"l"`
	P     *inner   `json:"p"`
	Inner inner    `json:"inner"`
}

// In JSON: YAML 1.1 reads n and y as booleans.
const sampleSchema = `{"properties": {
  "s": {"default": "dflt"},
  "n": {"minimum": 1, "maximum": 10, "default": 5},
  "l": {"default": ["x"]},
  "inner": {"properties": {"n": {"default": 7}}}}}`

// TestDecoder: what a value becomes, and which errors it gives, strict and lenient.
func TestDecoder(t *testing.T) {
	var s Schema
	if err := yaml.Unmarshal([]byte(sampleSchema), &s); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		in     string
		strict bool
		want   sample
		errs   []string
	}{
		{name: "EmptyTakesTheDefaults", in: `{}`,
			want: sample{S: "dflt", N: 5, L: []string{"x"}, Inner: inner{N: 7}}},
		{name: "NullAndEmptyStringsAndListsTakeTheDefaults", in: `{"s": "", "l": [], "n": null}`,
			want: sample{S: "dflt", N: 5, L: []string{"x"}, Inner: inner{N: 7}}},
		{name: "ValuesAsGiven", in: `{"s": "a", "b": true, "n": 10, "l": ["y", "z"], "p": {"n": 3}, "inner": {"n": 0}}`,
			want: sample{S: "a", B: true, N: 10, L: []string{"y", "z"}, P: &inner{N: 3}, Inner: inner{N: 0}}},
		{name: "OutOfBounds", in: `{"n": 11}`,
			want: sample{S: "dflt", L: []string{"x"}, Inner: inner{N: 7}},
			errs: []string{"spec.n: Invalid value: 11: must be between 1 and 10"}},
		{name: "NotWhole", in: `{"n": 1.5}`,
			want: sample{S: "dflt", L: []string{"x"}, Inner: inner{N: 7}},
			errs: []string{"spec.n: Invalid value: 1.5: must be a whole number"}},
		{name: "WrongTypesAllReported", in: `{"s": 1, "b": "yes", "l": [1], "p": []}`,
			want: sample{N: 5, L: []string{""}, Inner: inner{N: 7}},
			errs: []string{
				`spec.s: Invalid value: "number": must be a string`,
				`spec.b: Invalid value: "string": must be a boolean`,
				`spec.l[0]: Invalid value: "number": must be a string`,
				`spec.p: Invalid value: "array": must be an object`,
			}},
		{name: "UnknownFieldsInNameOrderWhenStrict", in: `{"zz": 1, "S": "a", "inner": {"m": 1}}`, strict: true,
			want: sample{S: "dflt", N: 5, L: []string{"x"}, Inner: inner{N: 7}},
			errs: []string{
				"spec.S: Forbidden: unknown field (field names are case-sensitive)",
				"spec.zz: Forbidden: unknown field (field names are case-sensitive)",
				"spec.inner.m: Forbidden: unknown field (field names are case-sensitive)",
			}},
		{name: "UnknownFieldsIgnoredWhenLenient", in: `{"zz": 1}`,
			want: sample{S: "dflt", N: 5, L: []string{"x"}, Inner: inner{N: 7}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var m map[string]any
			if err := yaml.Unmarshal([]byte(c.in), &m); err != nil {
				t.Fatal(err)
			}
			v, err := structpb.NewValue(m)
			if err != nil {
				t.Fatal(err)
			}
			d := &Decoder{Strict: c.strict}
			var got sample
			d.Object(field.NewPath("spec"), v, &s, reflect.ValueOf(&got).Elem(), nil)
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("decoded (-want +got):\n%s", diff)
			}
			var errs []string
			for _, e := range d.Errs {
				errs = append(errs, e.Error())
			}
			if diff := cmp.Diff(c.errs, errs); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}
