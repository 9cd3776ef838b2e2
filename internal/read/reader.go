package read

import (
	"google.golang.org/protobuf/types/known/structpb"
)

// Reading observed objects, which the function does not own, straight from
// their protobuf Struct.

// get walks nested objects; it returns nil when any step is missing or not an
// object, which is what every reader of observed state wants.
func Get(s *structpb.Struct, path ...string) *structpb.Value {
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

func GetString(s *structpb.Struct, path ...string) string { return Get(s, path...).GetStringValue() }
