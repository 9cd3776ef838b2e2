package main

import (
	"fmt"
	"reflect"
	"unicode/utf8"
	"unsafe"

	"google.golang.org/protobuf/types/known/structpb"
)

// sharingConverter turns the maps of a response into protobuf as
// structpb.NewValue does, once per map and list: the Jobs of a call share
// most of their maps (jobBuilder.manifest), and so their protobuf shares the
// messages made of them. A response is marshaled as a tree, so a shared
// message is written out wherever it appears; nothing changes a response's
// messages once made. BenchmarkRunFunction shows what it buys;
// TestSharingConverterIsNewValue holds it to structpb.NewValue.
type sharingConverter struct {
	seen map[sharedKey]*structpb.Value
}

// sharedKey is a map's or list's identity: where its data lives (and, for a
// list, its length: a list and its prefix share an array).
type sharedKey struct {
	at unsafe.Pointer
	n  int
}

func newSharingConverter() *sharingConverter {
	return &sharingConverter{seen: map[sharedKey]*structpb.Value{}}
}

// structOf converts an object.
func (c *sharingConverter) structOf(m map[string]any) (*structpb.Struct, error) {
	v, err := c.value(m)
	if err != nil {
		return nil, err
	}
	return v.GetStructValue(), nil
}

func (c *sharingConverter) value(v any) (*structpb.Value, error) {
	switch v := v.(type) {
	case map[string]any:
		key := sharedKey{at: reflect.ValueOf(v).UnsafePointer()}
		if pv, ok := c.seen[key]; ok {
			return pv, nil
		}
		fields := make(map[string]*structpb.Value, len(v))
		for k, e := range v {
			if !utf8.ValidString(k) {
				return nil, fmt.Errorf("invalid UTF-8 in string: %q", k)
			}
			pe, err := c.value(e)
			if err != nil {
				return nil, err
			}
			fields[k] = pe
		}
		pv := structpb.NewStructValue(&structpb.Struct{Fields: fields})
		c.seen[key] = pv
		return pv, nil
	case []any:
		key := sharedKey{at: unsafe.Pointer(unsafe.SliceData(v)), n: len(v)}
		if pv, ok := c.seen[key]; ok && len(v) > 0 {
			return pv, nil
		}
		values := make([]*structpb.Value, len(v))
		for i, e := range v {
			pe, err := c.value(e)
			if err != nil {
				return nil, err
			}
			values[i] = pe
		}
		pv := structpb.NewListValue(&structpb.ListValue{Values: values})
		if len(v) > 0 {
			c.seen[key] = pv
		}
		return pv, nil
	default:
		return structpb.NewValue(v)
	}
}
