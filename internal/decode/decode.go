// Package decode reads protobuf Structs, as Crossplane sends objects, into Go
// types: by an OpenAPI schema (its defaults and integer bounds), reporting
// every value of the wrong type, and in strict mode every field the type
// does not have, by its field path.
package decode

import (
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/protobuf/types/known/structpb"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/hfops/function-hf-download/apis/v1alpha1"
)

// The ModelDownload's spec and status are read straight from the protobuf
// Struct into the API's Go types, by the API's own schema (the CRD
// controller-gen makes of apis/v1alpha1, embedded). So the function applies
// the defaults and integer bounds the API server applies, also under
// crossplane render, where none does; and one pass reports every value of
// the wrong type, and every field the API does not have, by the path the
// user wrote.

// Schema is what the decoder applies of an OpenAPI schema.
type Schema struct {
	Properties map[string]*Schema `json:"properties"`
	Items      *Schema            `json:"items"`
	Minimum    *float64           `json:"minimum"`
	Maximum    *float64           `json:"maximum"`
	Default    any                `json:"default"`
}

// ModelDownload is the ModelDownload's schema: its spec and status
// properties.
var ModelDownload = sync.OnceValue(func() *Schema {
	var crd struct {
		Spec struct {
			Versions []struct {
				Schema struct {
					OpenAPIV3Schema Schema `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(v1alpha1.CRD, &crd); err != nil || len(crd.Spec.Versions) != 1 {
		panic(fmt.Sprintf("the embedded ModelDownload CRD: %v", err))
	}
	return &crd.Spec.Versions[0].Schema.OpenAPIV3Schema
})

// Decoder records a field error for each value it cannot take, and goes on.
type Decoder struct {
	Errs field.ErrorList
	// Strict makes a field the type does not have an error; status is read
	// leniently (it holds Crossplane's fields too, and may be edited by hand).
	Strict bool
}

// jsonField is a struct field by its JSON name.
type jsonField struct {
	name  string
	index int
}

var jsonFields sync.Map // reflect.Type → []jsonField

func fieldsOf(t reflect.Type) []jsonField {
	if f, ok := jsonFields.Load(t); ok {
		return f.([]jsonField)
	}
	var out []jsonField
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out = append(out, jsonField{name, i})
		}
	}
	jsonFields.Store(t, out)
	return out
}

// Object decodes v, an object, into out, a struct, by s; the fields named by
// skip are left to the caller.
func (d *Decoder) Object(p *field.Path, v *structpb.Value, s *Schema, out reflect.Value, skip map[string]bool) bool {
	obj, ok := d.AsObject(p, v)
	if !ok {
		return false
	}
	given := obj.GetFields()
	fields := fieldsOf(out.Type())
	if d.Strict {
		// In name order: the same spec gets the same message every time.
		for _, name := range slices.Sorted(maps.Keys(given)) {
			if !skip[name] && !hasField(fields, name) {
				d.Errs = append(d.Errs, field.Forbidden(p.Child(name), "unknown field (field names are case-sensitive)"))
			}
		}
	}
	for _, f := range fields {
		if skip[f.name] {
			continue
		}
		var fs *Schema
		if s != nil {
			fs = s.Properties[f.name]
		}
		d.Value(p.Child(f.name), given[f.name], fs, out.Field(f.index))
	}
	return true
}

func hasField(fields []jsonField, name string) bool {
	for _, f := range fields {
		if f.name == name {
			return true
		}
	}
	return false
}

// Value decodes v into out by s; an absent value (or null, which Kubernetes
// takes for absent) gets the schema's default. So does an empty string or
// list where the schema has one: crossplane render applies no schema, and
// an empty revision means the default one to the function as it always has.
func (d *Decoder) Value(p *field.Path, v *structpb.Value, s *Schema, out reflect.Value) {
	if !Present(v) || s != nil && s.Default != nil && emptyStringOrList(v) {
		switch {
		case out.Kind() == reflect.Struct:
			// An object the API always has (settings) gets its fields'
			// defaults when left out, as the schema's default {} gives it.
			d.Object(p, emptyObject, s, out, nil)
		case s != nil && s.Default != nil:
			setDefault(out, s.Default)
		}
		return
	}
	switch out.Kind() {
	case reflect.Pointer:
		if out.Type().Elem().Kind() == reflect.Struct && v.GetStructValue() == nil {
			d.wrongType(p, v, "an object") // and no object is made of it
			return
		}
		e := reflect.New(out.Type().Elem())
		d.Value(p, v, s, e.Elem())
		out.Set(e)
	case reflect.Struct:
		d.Object(p, v, s, out, nil)
	case reflect.Slice:
		items, ok := d.AsList(p, v)
		if !ok {
			return
		}
		var is *Schema
		if s != nil {
			is = s.Items
		}
		sl := reflect.MakeSlice(out.Type(), len(items), len(items))
		for i, it := range items {
			d.Value(p.Index(i), it, is, sl.Index(i))
		}
		out.Set(sl)
	case reflect.String:
		if sv, ok := v.GetKind().(*structpb.Value_StringValue); ok {
			out.SetString(sv.StringValue)
		} else {
			d.wrongType(p, v, "a string")
		}
	case reflect.Bool:
		if bv, ok := v.GetKind().(*structpb.Value_BoolValue); ok {
			out.SetBool(bv.BoolValue)
		} else {
			d.wrongType(p, v, "a boolean")
		}
	case reflect.Int64:
		if n, ok := d.Integer(p, v, s); ok {
			out.SetInt(n)
		}
	default:
		panic(fmt.Sprintf("%s: the decoder has no case for %s", p, out.Type()))
	}
}

// Integer reads a whole number within the schema's bounds. JSON numbers
// arrive as float64, so 1.5, NaN and 1e300 are rejected here rather than
// silently truncated.
func (d *Decoder) Integer(p *field.Path, v *structpb.Value, s *Schema) (int64, bool) {
	n, ok := v.GetKind().(*structpb.Value_NumberValue)
	if !ok {
		d.wrongType(p, v, "an integer")
		return 0, false
	}
	f := n.NumberValue
	if math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) {
		d.Errs = append(d.Errs, field.Invalid(p, f, "must be a whole number"))
		return 0, false
	}
	lo, hi := float64(math.MinInt64), float64(math.MaxInt64)
	if s != nil && s.Minimum != nil {
		lo = *s.Minimum
	}
	if s != nil && s.Maximum != nil {
		hi = *s.Maximum
	}
	// float64(MaxInt64) is 2^63, which int64 cannot hold.
	if f < lo || f > hi || f >= math.MaxInt64 {
		d.Errs = append(d.Errs, field.Invalid(p, f, RangeDetail(int64(lo), int64(min(hi, math.MaxInt64-1)))))
		return 0, false
	}
	return int64(f), true
}

// OptionalString reads a string that may be absent ("").
func (d *Decoder) OptionalString(p *field.Path, v *structpb.Value) string {
	if !Present(v) {
		return ""
	}
	s, ok := v.GetKind().(*structpb.Value_StringValue)
	if !ok {
		d.wrongType(p, v, "a string")
		return ""
	}
	return s.StringValue
}

func (d *Decoder) AsObject(p *field.Path, v *structpb.Value) (*structpb.Struct, bool) {
	if s := v.GetStructValue(); s != nil {
		return s, true
	}
	d.wrongType(p, v, "an object")
	return nil, false
}

func (d *Decoder) AsList(p *field.Path, v *structpb.Value) ([]*structpb.Value, bool) {
	if l := v.GetListValue(); l != nil {
		return l.GetValues(), true
	}
	d.wrongType(p, v, "an array")
	return nil, false
}

func (d *Decoder) wrongType(p *field.Path, v *structpb.Value, want string) {
	d.Errs = append(d.Errs, field.TypeInvalid(p, KindName(v), "must be "+want))
}

func emptyStringOrList(v *structpb.Value) bool {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		return k.StringValue == ""
	case *structpb.Value_ListValue:
		return len(k.ListValue.GetValues()) == 0
	}
	return false
}

var emptyObject = structpb.NewStructValue(&structpb.Struct{})

// setDefault sets out to a schema default, as YAML decoded it.
func setDefault(out reflect.Value, def any) {
	switch d := def.(type) {
	case string:
		out.SetString(d)
	case float64:
		out.SetInt(int64(d))
	case bool:
		out.SetBool(d)
	case []any:
		sl := reflect.MakeSlice(out.Type(), len(d), len(d))
		for i, e := range d {
			setDefault(sl.Index(i), e)
		}
		out.Set(sl)
	default:
		panic(fmt.Sprintf("the ModelDownload schema has a default of type %T", def))
	}
}

// KindName is the JSON kind of a value, for messages.
func KindName(v *structpb.Value) string {
	switch v.GetKind().(type) {
	case *structpb.Value_StringValue:
		return "string"
	case *structpb.Value_NumberValue:
		return "number"
	case *structpb.Value_BoolValue:
		return "boolean"
	case *structpb.Value_ListValue:
		return "array"
	case *structpb.Value_StructValue:
		return "object"
	default:
		return "null"
	}
}

// RangeDetail says which whole numbers a field takes.
func RangeDetail(lo, hi int64) string {
	return "must be between " + strconv.FormatInt(lo, 10) + " and " + strconv.FormatInt(hi, 10)
}

// Present reports whether a field holds a value; an explicit null counts as
// absent, as it does for Kubernetes.
func Present(v *structpb.Value) bool {
	if v == nil {
		return false
	}
	_, isNull := v.GetKind().(*structpb.Value_NullValue)
	return !isNull
}
