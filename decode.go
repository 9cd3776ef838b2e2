package main

import (
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/types/known/structpb"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/hfops/function-hf-download/apis/v1alpha1"
)

// Decoding a ModelDownload: its spec and status are read straight from the
// protobuf Struct into the API's Go types, by the API's own schema (the CRD
// controller-gen makes of apis/v1alpha1, embedded). So the function applies
// the defaults and integer bounds the API server applies, also under
// crossplane render, where none does; and one pass reports every value of
// the wrong type, and every field the API does not have, by the path the
// user wrote.

// schema is what the decoder applies of an OpenAPI schema.
type schema struct {
	Properties map[string]*schema `json:"properties"`
	Items      *schema            `json:"items"`
	Minimum    *float64           `json:"minimum"`
	Maximum    *float64           `json:"maximum"`
	Default    any                `json:"default"`
}

// apiSchema is the ModelDownload's schema: its spec and status properties.
var apiSchema = sync.OnceValue(func() *schema {
	var crd struct {
		Spec struct {
			Versions []struct {
				Schema struct {
					OpenAPIV3Schema schema `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(v1alpha1.CRD, &crd); err != nil || len(crd.Spec.Versions) != 1 {
		panic(fmt.Sprintf("the embedded ModelDownload CRD: %v", err))
	}
	return &crd.Spec.Versions[0].Schema.OpenAPIV3Schema
})

// crossplaneSpecFields are the fields Crossplane adds to an XR's spec, on
// v2 (crossplane) and on 1.x and legacy XRs: not the API's, not unknown.
var crossplaneSpecFields = map[string]bool{
	"crossplane": true, "claimRef": true, "compositionRef": true, "compositionRevisionRef": true,
	"compositionRevisionSelector": true, "compositionSelector": true, "compositionUpdatePolicy": true,
	"environmentConfigRefs": true, "publishConnectionDetailsTo": true, "resourceRefs": true,
	"writeConnectionSecretToRef": true,
}

// decoder records a field error for each value it cannot take, and goes on.
type decoder struct {
	errs field.ErrorList
	// strict makes a field the type does not have an error; status is read
	// leniently (it holds Crossplane's fields too, and may be edited by hand).
	strict bool
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

// object decodes v, an object, into out, a struct, by s; the fields named by
// skip are left to the caller.
func (d *decoder) object(p *field.Path, v *structpb.Value, s *schema, out reflect.Value, skip map[string]bool) bool {
	obj, ok := d.asObject(p, v)
	if !ok {
		return false
	}
	given := obj.GetFields()
	fields := fieldsOf(out.Type())
	if d.strict {
		// In name order: the same spec gets the same message every time.
		for _, name := range slices.Sorted(maps.Keys(given)) {
			if !skip[name] && !hasField(fields, name) {
				d.errs = append(d.errs, field.Forbidden(p.Child(name), "unknown field (field names are case-sensitive)"))
			}
		}
	}
	for _, f := range fields {
		if skip[f.name] {
			continue
		}
		var fs *schema
		if s != nil {
			fs = s.Properties[f.name]
		}
		d.value(p.Child(f.name), given[f.name], fs, out.Field(f.index))
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

// value decodes v into out by s; an absent value (or null, which Kubernetes
// takes for absent) gets the schema's default. So does an empty string or
// list where the schema has one: crossplane render applies no schema, and
// an empty revision means the default one to the function as it always has.
func (d *decoder) value(p *field.Path, v *structpb.Value, s *schema, out reflect.Value) {
	if !present(v) || s != nil && s.Default != nil && emptyStringOrList(v) {
		switch {
		case out.Kind() == reflect.Struct:
			// An object the API always has (settings) gets its fields'
			// defaults when left out, as the schema's default {} gives it.
			d.object(p, emptyObject, s, out, nil)
		case s != nil && s.Default != nil:
			setDefault(out, s.Default)
		}
		return
	}
	switch out.Kind() {
	case reflect.Pointer:
		e := reflect.New(out.Type().Elem())
		d.value(p, v, s, e.Elem())
		out.Set(e)
	case reflect.Struct:
		d.object(p, v, s, out, nil)
	case reflect.Slice:
		items, ok := d.asList(p, v)
		if !ok {
			return
		}
		var is *schema
		if s != nil {
			is = s.Items
		}
		sl := reflect.MakeSlice(out.Type(), len(items), len(items))
		for i, it := range items {
			d.value(p.Index(i), it, is, sl.Index(i))
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
		if n, ok := d.integer(p, v, s); ok {
			out.SetInt(n)
		}
	default:
		panic(fmt.Sprintf("%s: the decoder has no case for %s", p, out.Type()))
	}
}

// integer reads a whole number within the schema's bounds. JSON numbers
// arrive as float64, so 1.5, NaN and 1e300 are rejected here rather than
// silently truncated.
func (d *decoder) integer(p *field.Path, v *structpb.Value, s *schema) (int64, bool) {
	n, ok := v.GetKind().(*structpb.Value_NumberValue)
	if !ok {
		d.wrongType(p, v, "an integer")
		return 0, false
	}
	f := n.NumberValue
	if math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) {
		d.errs = append(d.errs, field.Invalid(p, f, "must be a whole number"))
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
		d.errs = append(d.errs, field.Invalid(p, f, rangeDetail(int64(lo), int64(min(hi, math.MaxInt64-1)))))
		return 0, false
	}
	return int64(f), true
}

// optionalString reads a string that may be absent ("").
func (d *decoder) optionalString(p *field.Path, v *structpb.Value) string {
	if !present(v) {
		return ""
	}
	s, ok := v.GetKind().(*structpb.Value_StringValue)
	if !ok {
		d.wrongType(p, v, "a string")
		return ""
	}
	return s.StringValue
}

func (d *decoder) asObject(p *field.Path, v *structpb.Value) (*structpb.Struct, bool) {
	if s := v.GetStructValue(); s != nil {
		return s, true
	}
	d.wrongType(p, v, "an object")
	return nil, false
}

func (d *decoder) asList(p *field.Path, v *structpb.Value) ([]*structpb.Value, bool) {
	if l := v.GetListValue(); l != nil {
		return l.GetValues(), true
	}
	d.wrongType(p, v, "an array")
	return nil, false
}

func (d *decoder) wrongType(p *field.Path, v *structpb.Value, want string) {
	d.errs = append(d.errs, field.TypeInvalid(p, kindName(v), "must be "+want))
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

func kindName(v *structpb.Value) string {
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

func rangeDetail(lo, hi int64) string {
	return "must be between " + itoa(lo) + " and " + itoa(hi)
}
