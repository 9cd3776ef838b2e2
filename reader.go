package main

import (
	"math"

	"google.golang.org/protobuf/types/known/structpb"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// The ModelDownload spec is read straight from its protobuf Struct, so a
// value of the wrong type is reported with the field path the user wrote.

// get walks nested objects; it returns nil when any step is missing or not an
// object, which is what every reader of observed state wants.
func get(s *structpb.Struct, path ...string) *structpb.Value {
	var v *structpb.Value
	for i, p := range path {
		if s == nil {
			return nil
		}
		v = s.GetFields()[p]
		if i < len(path)-1 {
			s = v.GetStructValue()
		}
	}
	return v
}

func getString(s *structpb.Struct, path ...string) string { return get(s, path...).GetStringValue() }

// present reports whether a field holds a value; an explicit null counts as
// absent, as it does for Kubernetes.
func present(v *structpb.Value) bool {
	if v == nil {
		return false
	}
	_, isNull := v.GetKind().(*structpb.Value_NullValue)
	return !isNull
}

// reader reads user-written fields and records a field error for each value of
// the wrong type, so one pass reports every problem.
type reader struct {
	errs field.ErrorList
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

func (r *reader) wrongType(p *field.Path, v *structpb.Value, want string) {
	r.errs = append(r.errs, field.TypeInvalid(p, kindName(v), "must be "+want))
}

func (r *reader) object(p *field.Path, v *structpb.Value) (*structpb.Struct, bool) {
	if !present(v) {
		return nil, false
	}
	s := v.GetStructValue()
	if s == nil {
		r.wrongType(p, v, "an object")
		return nil, false
	}
	return s, true
}

func (r *reader) list(p *field.Path, v *structpb.Value) ([]*structpb.Value, bool) {
	if !present(v) {
		return nil, false
	}
	l := v.GetListValue()
	if l == nil {
		r.wrongType(p, v, "an array")
		return nil, false
	}
	return l.GetValues(), true
}

func (r *reader) string(p *field.Path, v *structpb.Value) (string, bool) {
	if !present(v) {
		return "", false
	}
	s, ok := v.GetKind().(*structpb.Value_StringValue)
	if !ok {
		r.wrongType(p, v, "a string")
		return "", false
	}
	return s.StringValue, true
}

func (r *reader) bool(p *field.Path, v *structpb.Value) bool {
	if !present(v) {
		return false
	}
	b, ok := v.GetKind().(*structpb.Value_BoolValue)
	if !ok {
		r.wrongType(p, v, "a boolean")
		return false
	}
	return b.BoolValue
}

// int reads a whole number within [lo, hi]. JSON numbers arrive as float64,
// so 1.5, NaN and 1e300 are rejected here rather than silently truncated.
func (r *reader) int(p *field.Path, v *structpb.Value, lo, hi int64) (int64, bool) {
	if !present(v) {
		return 0, false
	}
	n, ok := v.GetKind().(*structpb.Value_NumberValue)
	if !ok {
		r.wrongType(p, v, "an integer")
		return 0, false
	}
	f := n.NumberValue
	if math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) {
		r.errs = append(r.errs, field.Invalid(p, f, "must be a whole number"))
		return 0, false
	}
	if f < float64(lo) || f > float64(hi) {
		r.errs = append(r.errs, field.Invalid(p, f, rangeDetail(lo, hi)))
		return 0, false
	}
	return int64(f), true
}

func rangeDetail(lo, hi int64) string {
	return "must be between " + itoa(lo) + " and " + itoa(hi)
}
