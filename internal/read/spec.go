package read

import (
	"reflect"
	"strconv"

	"google.golang.org/protobuf/types/known/structpb"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/hfops/function-hf-download/apis/v1alpha1"
	"github.com/hfops/function-hf-download/internal/decode"
)

// The script's defaults (script/script.go, checked against download.sh) are the
// API's: TestAPIDefaults checks the schema's against them.

const (
	VolumeModeFilesystem = "Filesystem"
	DeletionOrphan       = "Orphan"
	deletionDelete       = "Delete"
)

// Limits that keep one XR from producing absurd Jobs; the API's schema says
// the same of the XR's fields (TestAPIBoundsAreTheFunctions).
const (
	MaxInt32 = 1<<31 - 1
	// The watchdog looks every few seconds; a day without a byte is stuck.
	MinStallTimeoutSeconds = 30
	MaxStallTimeoutSeconds = 24 * 3600
)

// ModelSpec is one entry of spec.models, decoded, defaults applied.
type ModelSpec struct {
	v1alpha1.Model

	// errs makes this model unusable; the other models go ahead.
	Errs field.ErrorList
}

// XRSpec is the ModelDownload spec as the function uses it. Its models are
// decoded one by one, so that each keeps its own problems: Models here
// stands for the API's, which stays empty.
type XRSpec struct {
	v1alpha1.ModelDownloadSpec
	Models []ModelSpec
}

var (
	specPath     = field.NewPath("spec")
	ModelsPath   = specPath.Child("models")
	settingsPath = specPath.Child("settings")
	storagePath  = specPath.Child("storage")
)

// crossplaneSpecFields are the fields Crossplane adds to an XR's spec, on
// v2 (crossplane) and on 1.x and legacy XRs: not the API's, not unknown.
var crossplaneSpecFields = map[string]bool{
	"crossplane": true, "claimRef": true, "compositionRef": true, "compositionRevisionRef": true,
	"compositionRevisionSelector": true, "compositionSelector": true, "compositionUpdatePolicy": true,
	"environmentConfigRefs": true, "publishConnectionDetailsTo": true, "resourceRefs": true,
	"writeConnectionSecretToRef": true,
}

// specSkips: what ParseSpec leaves to others, besides Crossplane's own fields.
var specSkips = func() map[string]bool {
	m := map[string]bool{"models": true}
	for k := range crossplaneSpecFields {
		m[k] = true
	}
	return m
}()

// modelSkips: a model's name is read first, since a model without one
// cannot even be reported in status.
var modelSkips = map[string]bool{"name": true}

// ParseSpec decodes the XR's spec. Errors in the returned list make the whole
// spec unusable; errors of a single model are kept on that model.
func ParseSpec(xr *structpb.Struct) (XRSpec, field.ErrorList) {
	d := &decode.Decoder{Strict: true}
	var out XRSpec
	specSchema := decode.ModelDownload().Properties["spec"]
	v := xr.GetFields()["spec"]
	if !decode.Present(v) {
		return out, field.ErrorList{field.Required(specPath, "")}
	}
	if !d.Object(specPath, v, specSchema, reflect.ValueOf(&out.ModelDownloadSpec).Elem(), specSkips) {
		return out, d.Errs
	}
	if models := v.GetStructValue().GetFields()["models"]; decode.Present(models) {
		if items, ok := d.AsList(ModelsPath, models); ok {
			out.Models = make([]ModelSpec, 0, len(items))
			for i, m := range items {
				if ms, ok := parseModel(d, ModelsPath.Index(i), m, specSchema.Properties["models"].Items); ok {
					out.Models = append(out.Models, ms)
				}
			}
		}
	}
	return out, d.Errs
}

// parseModel decodes one model. A model that is not an object, or has no
// usable name, cannot even be reported in status, so it fails the spec; any
// other problem stays with the model.
func parseModel(spec *decode.Decoder, p *field.Path, v *structpb.Value, s *decode.Schema) (ModelSpec, bool) {
	if !decode.Present(v) {
		spec.Errs = append(spec.Errs, field.Required(p, "must be an object with a name"))
		return ModelSpec{}, false
	}
	obj, ok := spec.AsObject(p, v)
	if !ok {
		return ModelSpec{}, false
	}
	var m ModelSpec
	name := obj.GetFields()["name"]
	spec.Value(p.Child("name"), name, s.Properties["name"], reflect.ValueOf(&m.Name).Elem())
	if m.Name == "" {
		if !decode.Present(name) || name.GetStringValue() == "" && decode.KindName(name) == "string" {
			spec.Errs = append(spec.Errs, field.Required(p.Child("name"), "the Hugging Face repo id, such as org/name"))
		}
		return ModelSpec{}, false
	}
	d := &decode.Decoder{Strict: true}
	d.Object(p, v, s, reflect.ValueOf(&m.Model).Elem(), modelSkips)
	m.Errs = d.Errs
	return m, true
}

func Itoa(n int64) string { return strconv.FormatInt(n, 10) }
