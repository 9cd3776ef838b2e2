package main

import "google.golang.org/protobuf/types/known/structpb"

// Builders of structpb values for the tests' requests, so they read like
// YAML.

// fields is the body of a structpb object, so built objects read like YAML.
type fields = map[string]*structpb.Value

// The builders below put a Value and its kind (and the Struct or ListValue
// behind it) in one allocation instead of two or three: a response holds
// tens of thousands of them, so this halves the allocations of RunFunction.
// The result is the same Value structpb.NewStringValue and friends return.

type strBox struct {
	v structpb.Value
	k structpb.Value_StringValue
}

type objectBox struct {
	v structpb.Value
	k structpb.Value_StructValue
	s structpb.Struct
}

type listBox struct {
	v structpb.Value
	k structpb.Value_ListValue
	l structpb.ListValue
}

func object(f fields) *structpb.Value {
	b := &objectBox{}
	b.s.Fields = f
	b.k.StructValue = &b.s
	b.v.Kind = &b.k
	return &b.v
}

func list(vs ...*structpb.Value) *structpb.Value {
	b := &listBox{}
	b.l.Values = vs
	b.k.ListValue = &b.l
	b.v.Kind = &b.k
	return &b.v
}

func str(s string) *structpb.Value {
	b := &strBox{}
	b.k.StringValue = s
	b.v.Kind = &b.k
	return &b.v
}

// strList is a list of strings: the Values, their kinds and the list in
// three allocations whatever its length.
func strList(ss []string) *structpb.Value {
	boxes := make([]strBox, len(ss))
	vs := make([]*structpb.Value, len(ss))
	for i, s := range ss {
		b := &boxes[i]
		b.k.StringValue = s
		b.v.Kind = &b.k
		vs[i] = &b.v
	}
	return list(vs...)
}
