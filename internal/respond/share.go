package respond

import (
	"fmt"
	"reflect"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"
)

// SharingConverter turns the maps of a response into protobuf as
// structpb.NewValue does, and the maps and lists that the Jobs of a call
// share (jobBuilder.manifest's template) once: their protobuf then shares the
// messages made of them. A response is marshaled as a tree, so a shared
// message is written out wherever it appears; nothing changes a response's
// messages once made. BenchmarkRunFunction shows what it buys;
// TestSharingConverterIsNewValue holds it to structpb.NewValue.
type SharingConverter struct {
	// shared are the maps and lists registered as shared, by identity;
	// roots holds them, so that no address is reused while the converter
	// looks them up.
	shared map[sharedKey]*structpb.Value
	roots  []any
}

// sharedKey is a map's or list's identity: where its data lives (and, for a
// list, its length: a list and its prefix share an array).
type sharedKey struct {
	at uintptr
	n  int
}

// NewSharingConverter converts once each map and list under the roots given.
func NewSharingConverter(roots ...any) *SharingConverter {
	c := &SharingConverter{shared: map[sharedKey]*structpb.Value{}, roots: roots}
	for _, r := range roots {
		c.register(r)
	}
	return c
}

func (c *SharingConverter) register(v any) {
	switch v := v.(type) {
	case map[string]any:
		c.shared[sharedKey{at: reflect.ValueOf(v).Pointer()}] = nil
		for _, e := range v {
			c.register(e)
		}
	case []any:
		if len(v) > 0 {
			c.shared[sharedKey{at: reflect.ValueOf(v).Pointer(), n: len(v)}] = nil
		}
		for _, e := range v {
			c.register(e)
		}
	}
}

// StructOf converts an object.
func (c *SharingConverter) StructOf(m map[string]any) (*structpb.Struct, error) {
	v, err := c.Value(m)
	if err != nil {
		return nil, err
	}
	return v.GetStructValue(), nil
}

// Value converts any value structpb.NewValue takes.
func (c *SharingConverter) Value(v any) (*structpb.Value, error) {
	var key sharedKey
	switch v := v.(type) {
	case map[string]any:
		key = sharedKey{at: reflect.ValueOf(v).Pointer()}
	case []any:
		key = sharedKey{at: reflect.ValueOf(v).Pointer(), n: len(v)}
	default:
		return structpb.NewValue(v)
	}
	done, shared := c.shared[key]
	if done != nil {
		return done, nil
	}
	pv, err := c.convert(v)
	if err == nil && shared {
		c.shared[key] = pv
	}
	return pv, err
}

// convert converts a map or a list, its elements by value.
func (c *SharingConverter) convert(v any) (*structpb.Value, error) {
	if m, ok := v.(map[string]any); ok {
		fields := make(map[string]*structpb.Value, len(m))
		for k, e := range m {
			if !utf8.ValidString(k) {
				return nil, fmt.Errorf("invalid UTF-8 in string: %q", k)
			}
			pe, err := c.Value(e)
			if err != nil {
				return nil, err
			}
			fields[k] = pe
		}
		return structpb.NewStructValue(&structpb.Struct{Fields: fields}), nil
	}
	l := v.([]any)
	values := make([]*structpb.Value, len(l))
	for i, e := range l {
		pe, err := c.Value(e)
		if err != nil {
			return nil, err
		}
		values[i] = pe
	}
	return structpb.NewListValue(&structpb.ListValue{Values: values}), nil
}

// Size is proto.Size(rsp), each message the desired resources share
// sized once: protobuf sizes a message anew wherever it appears, which made
// the size check a fifth of a call. TestResponseSizeIsProtos holds it to
// proto.Size on every response the tests make.
func Size(rsp *fnv1.RunFunctionResponse) int {
	desired := rsp.GetDesired()
	resources := desired.GetResources()
	if len(resources) == 0 {
		return proto.Size(rsp)
	}
	// The response and its desired state without their resources, sized by
	// protobuf; then each resource's entry added to the state.
	rsp.Desired = nil
	n := proto.Size(rsp)
	rsp.Desired = desired
	desired.Resources = nil
	state := proto.Size(desired)
	desired.Resources = resources

	s := &sizer{structs: map[*structpb.Struct]int{}, lists: map[*structpb.ListValue]int{}}
	for k, r := range resources {
		res := proto.Size(&fnv1.Resource{ConnectionDetails: r.GetConnectionDetails(), Ready: r.GetReady()})
		if r.GetResource() != nil {
			res += protowire.SizeTag(resourceField) + protowire.SizeBytes(s.structSize(r.GetResource()))
		}
		entry := protowire.SizeTag(1) + protowire.SizeBytes(len(k)) + protowire.SizeTag(2) + protowire.SizeBytes(res)
		state += protowire.SizeTag(stateResourcesField) + protowire.SizeBytes(entry)
	}
	return n + protowire.SizeTag(responseDesiredField) + protowire.SizeBytes(state)
}

// The field numbers Size writes, from the messages' descriptors.
var (
	responseDesiredField = fieldNumber(&fnv1.RunFunctionResponse{}, "desired")
	stateResourcesField  = fieldNumber(&fnv1.State{}, "resources")
	resourceField        = fieldNumber(&fnv1.Resource{}, "resource")
)

func fieldNumber(m proto.Message, name protoreflect.Name) protowire.Number {
	return m.ProtoReflect().Descriptor().Fields().ByName(name).Number()
}

// sizer sizes structpb messages as protobuf encodes them, each once.
type sizer struct {
	structs map[*structpb.Struct]int
	lists   map[*structpb.ListValue]int
}

// structSize: a Struct is a map<string, Value> (field 1), each entry a
// message of key (1) and value (2).
func (s *sizer) structSize(st *structpb.Struct) int {
	if n, ok := s.structs[st]; ok {
		return n
	}
	n := 0
	for k, v := range st.GetFields() {
		entry := protowire.SizeTag(1) + protowire.SizeBytes(len(k)) + protowire.SizeTag(2) + protowire.SizeBytes(s.valueSize(v))
		n += protowire.SizeTag(1) + protowire.SizeBytes(entry)
	}
	s.structs[st] = n
	return n
}

// listSize: a ListValue is a repeated Value (field 1).
func (s *sizer) listSize(l *structpb.ListValue) int {
	if n, ok := s.lists[l]; ok {
		return n
	}
	n := 0
	for _, v := range l.GetValues() {
		n += protowire.SizeTag(1) + protowire.SizeBytes(s.valueSize(v))
	}
	s.lists[l] = n
	return n
}

// valueSize: a Value is a oneof of null (1), number (2), string (3), bool
// (4), struct (5) and list (6).
func (s *sizer) valueSize(v *structpb.Value) int {
	switch k := v.GetKind().(type) {
	case *structpb.Value_NullValue:
		return proto.Size(v) // only NULL_VALUE, and rare
	case *structpb.Value_NumberValue:
		return protowire.SizeTag(2) + protowire.SizeFixed64()
	case *structpb.Value_StringValue:
		return protowire.SizeTag(3) + protowire.SizeBytes(len(k.StringValue))
	case *structpb.Value_BoolValue:
		return protowire.SizeTag(4) + protowire.SizeVarint(protowire.EncodeBool(k.BoolValue))
	case *structpb.Value_StructValue:
		return protowire.SizeTag(5) + protowire.SizeBytes(s.structSize(k.StructValue))
	case *structpb.Value_ListValue:
		return protowire.SizeTag(6) + protowire.SizeBytes(s.listSize(k.ListValue))
	}
	return 0
}
