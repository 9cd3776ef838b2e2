package respond

import (
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"
)

// TestSharingConverterIsNewValue: whatever a value shares with another, the sharing converter
// makes of it what structpb.NewValue does, and refuses what it refuses.
func TestSharingConverterIsNewValue(t *testing.T) {
	shared := map[string]any{"a": []any{"x", int64(1), 2.5, true, nil}, "empty": map[string]any{}}
	list := []any{shared, "y"}
	for name, v := range map[string]any{
		"Nested":           map[string]any{"one": shared, "two": shared, "list": list, "prefix": list[:1], "none": []any{}, "null": nil},
		"EmptyListsApart":  map[string]any{"a": []any{}, "b": make([]any, 0, 4)},
		"ListOfShared":     []any{shared, shared, list, list},
		"Scalars":          []any{"s", 1, int32(2), int64(3), uint(4), float32(1.5), 2.5, false},
		"NilMapAndList":    map[string]any{"m": map[string]any(nil), "l": []any(nil)},
		"InvalidUTF8Value": map[string]any{"k": "\xff"},
		"InvalidUTF8Key":   map[string]any{"\xff": "v"},
	} {
		t.Run(name, func(t *testing.T) {
			want, wantErr := structpb.NewValue(v)
			got, gotErr := NewSharingConverter(shared, list).Value(v)
			if (wantErr != nil) != (gotErr != nil) {
				t.Fatalf("error %v, want %v", gotErr, wantErr)
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("(-structpb +shared):\n%s", diff)
			}
		})
	}
	// A map the caller dropped is never taken for a new one at its address.
	t.Run("FreshMapsAtOldAddresses", func(t *testing.T) {
		conv := NewSharingConverter(shared)
		for i := range 2000 {
			v, err := conv.Value(map[string]any{"i": int64(i), "l": []any{int64(i)}})
			if err != nil {
				t.Fatal(err)
			}
			if got := v.GetStructValue().GetFields()["i"].GetNumberValue(); got != float64(i) {
				t.Fatalf("map %d converted as map %v", i, got)
			}
			if i%100 == 0 {
				runtime.GC()
			}
		}
	})
}
