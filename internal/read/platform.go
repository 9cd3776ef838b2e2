package read

import (
	"bytes"
	"encoding/json"
	"errors"
	"path"
	"reflect"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"

	"github.com/hfops/function-hf-download/input/v1beta1"
	"github.com/hfops/function-hf-download/internal/decode"
	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/script"
)

// Defaults of the Input, in one place; the Input CRD declares the same.
const (
	defaultPullPolicy  = corev1.PullIfNotPresent
	DefaultMountPath   = "/models"
	DefaultNodePoolKey = "karpenter.sh/nodepool"
	DefaultCPU         = "1"
	DefaultMemory      = "4Gi"
	DefaultID          = 1000
	DefaultMaxWorkers  = 8
	maxMaxWorkers      = 64
)

// platform is the Input with defaults applied: what the platform team decided
// for every download Job of the Composition.
type Platform struct {
	Image          string
	PullPolicy     string
	PullSecrets    []string
	ServiceAccount string
	MountPath      string
	NodePoolKey    string
	Tolerations    []corev1.Toleration
	Env            []v1beta1.EnvVar
	CPU            string
	Memory         string
	RunAsUser      int64
	RunAsGroup     int64
	FSGroup        int64
	MaxWorkers     int64
	// StallTimeoutSeconds is the watchdog's limit when the XR sets none.
	StallTimeoutSeconds int64

	// digest covers every field above; it is part of each model's spec
	// hash, so a platform change rolls every Job.
	Digest []byte
	// IntentDigest is digest without the image: the image the function
	// defaults to comes with its version, and a new version must not take a
	// completed model for a changed one (see naming.Hashes.intent).
	IntentDigest []byte

	// MaxActivePerNamespace bounds the namespace's active download Jobs (0:
	// no limit). It decides when Jobs start, not what they are, so it is
	// not in the digest: changing it starts or holds Jobs, never replaces one.
	MaxActivePerNamespace int64
}

var InputPath = field.NewPath("input")

// reservedEnv are set by the function itself; a platform value would be
// ambiguous (Kubernetes keeps the last duplicate) or would leak into the token.
func reservedEnv(name string) bool {
	switch name {
	case "HF_TOKEN", "HOME", "HF_XET_HIGH_PERFORMANCE", "HF_HUB_DISABLE_UPDATE_CHECK", "HF_HUB_DISABLE_TELEMETRY":
		return true
	}
	return strings.HasPrefix(name, "HFDL_")
}

// DecodeInput reads the Input strictly: a field the function does not know
// is a typo or a version mismatch, never something to ignore.
func DecodeInput(s *structpb.Struct) (*v1beta1.Input, error) {
	in := &v1beta1.Input{}
	if s == nil {
		return in, nil
	}
	b, err := protojson.Marshal(s)
	if err != nil {
		return nil, err
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(in); err != nil {
		return nil, inputDecodeError(err)
	}
	// encoding/json matches field names regardless of case, so mountPAth
	// would pass for mountPath; Kubernetes' own decoder, strict, does not.
	if strict, err := sigsjson.UnmarshalStrict(b, &v1beta1.Input{}); err == nil && len(strict) > 0 {
		return nil, field.Invalid(InputPath, strings.Trim(strings.TrimPrefix(strict[0].Error(), "unknown field "), `"`), "unknown field (field names are case-sensitive)")
	}
	return in, nil
}

// inputDecodeError says what encoding/json found in the words of the other
// Input errors: the field, the value, what it must be.
func inputDecodeError(err error) error {
	inputPath := field.NewPath("input")
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		p := inputPath
		for _, f := range strings.Split(te.Field, ".") {
			p = p.Child(f)
		}
		return field.Invalid(p, te.Value, "must be "+jsonKind(te.Type))
	}
	// encoding/json names an unknown field without its path.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return field.Invalid(inputPath, strings.Trim(name, `"`), "unknown field")
	}
	return err
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number that fits in " + t.Kind().String()
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "a list"
	default:
		return "an object"
	}
}

// ResolvePlatform reads the Input; image is the download image of a
// Composition that names none.
func ResolvePlatform(in *v1beta1.Input, image string) (*Platform, field.ErrorList) {
	p := &Platform{
		Image:               OrDefault(in.Image, image),
		PullPolicy:          OrDefault(string(in.ImagePullPolicy), string(defaultPullPolicy)),
		PullSecrets:         in.ImagePullSecrets,
		MountPath:           OrDefault(in.MountPath, DefaultMountPath),
		NodePoolKey:         OrDefault(in.NodePoolLabelKey, DefaultNodePoolKey),
		Tolerations:         in.Tolerations,
		Env:                 in.Env,
		CPU:                 DefaultCPU,
		Memory:              DefaultMemory,
		RunAsUser:           DefaultID,
		RunAsGroup:          DefaultID,
		FSGroup:             DefaultID,
		MaxWorkers:          DefaultMaxWorkers,
		StallTimeoutSeconds: script.DefaultStallTimeoutSeconds,

		ServiceAccount: in.ServiceAccountName,
	}
	if r := in.Resources; r != nil {
		p.CPU = OrDefault(r.CPU, p.CPU)
		p.Memory = OrDefault(r.Memory, p.Memory)
	}
	if sc := in.SecurityContext; sc != nil {
		p.RunAsUser = derefOr(sc.RunAsUser, p.RunAsUser)
		p.RunAsGroup = derefOr(sc.RunAsGroup, p.RunAsGroup)
		p.FSGroup = derefOr(sc.FSGroup, p.FSGroup)
	}
	if in.MaxWorkers != nil {
		p.MaxWorkers = int64(*in.MaxWorkers)
	}
	if in.StallTimeoutSeconds != nil {
		p.StallTimeoutSeconds = int64(*in.StallTimeoutSeconds)
	}

	errs := p.validate()
	if n := in.MaxActiveJobsPerNamespace; n != nil {
		p.MaxActivePerNamespace = int64(*n)
		if *n < 1 {
			errs = append(errs, field.Invalid(InputPath.Child("maxActiveJobsPerNamespace"), *n, decode.RangeDetail(1, MaxInt32)))
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	p.Digest = p.Hash(p.Image)
	p.IntentDigest = p.Hash("")
	return p, nil
}

func (p *Platform) validate() field.ErrorList {
	var errs field.ErrorList
	if strings.TrimSpace(p.Image) != p.Image || strings.ContainsAny(p.Image, " \t\n") {
		errs = append(errs, field.Invalid(InputPath.Child("image"), shown(p.Image), "must be an image reference without spaces"))
	}
	switch corev1.PullPolicy(p.PullPolicy) {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		errs = append(errs, field.NotSupported(InputPath.Child("imagePullPolicy"), p.PullPolicy,
			[]corev1.PullPolicy{corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever}))
	}
	for i, s := range p.PullSecrets {
		errs = append(errs, DNSSubdomain(InputPath.Child("imagePullSecrets").Index(i), s)...)
	}
	if p.ServiceAccount != "" {
		errs = append(errs, DNSSubdomain(InputPath.Child("serviceAccountName"), p.ServiceAccount)...)
	}
	if !path.IsAbs(p.MountPath) || path.Clean(p.MountPath) != p.MountPath || p.MountPath == "/" || strings.IndexFunc(p.MountPath, isControl) >= 0 {
		errs = append(errs, field.Invalid(InputPath.Child("mountPath"), shown(p.MountPath), "must be a clean absolute path other than /"))
	}
	for _, msg := range validation.IsQualifiedName(p.NodePoolKey) {
		errs = append(errs, field.Invalid(InputPath.Child("nodePoolLabelKey"), shown(p.NodePoolKey), msg))
	}
	for i, t := range p.Tolerations {
		errs = append(errs, validateToleration(InputPath.Child("tolerations").Index(i), t)...)
	}
	seen := map[string]bool{}
	for i, e := range p.Env {
		ep := InputPath.Child("env").Index(i).Child("name")
		for _, msg := range validation.IsEnvVarName(e.Name) {
			errs = append(errs, field.Invalid(ep, shown(e.Name), msg))
		}
		if reservedEnv(e.Name) {
			errs = append(errs, field.Forbidden(ep, e.Name+" is set by the function itself"))
		}
		if seen[e.Name] {
			errs = append(errs, field.Duplicate(ep, e.Name))
		}
		seen[e.Name] = true
	}
	errs = append(errs, validateQuantity(InputPath.Child("resources", "cpu"), p.CPU)...)
	errs = append(errs, validateQuantity(InputPath.Child("resources", "memory"), p.Memory)...)
	for _, id := range []struct {
		name  string
		value int64
	}{{"runAsUser", p.RunAsUser}, {"runAsGroup", p.RunAsGroup}, {"fsGroup", p.FSGroup}} {
		if id.value < 1 || id.value > MaxInt32 {
			errs = append(errs, field.Invalid(InputPath.Child("securityContext", id.name), id.value, "must be a non-root id between 1 and 2147483647"))
		}
	}
	if p.MaxWorkers < 1 || p.MaxWorkers > maxMaxWorkers {
		errs = append(errs, field.Invalid(InputPath.Child("maxWorkers"), p.MaxWorkers, decode.RangeDetail(1, maxMaxWorkers)))
	}
	if p.StallTimeoutSeconds < MinStallTimeoutSeconds || p.StallTimeoutSeconds > MaxStallTimeoutSeconds {
		errs = append(errs, field.Invalid(InputPath.Child("stallTimeoutSeconds"), p.StallTimeoutSeconds, decode.RangeDetail(MinStallTimeoutSeconds, MaxStallTimeoutSeconds)))
	}
	return errs
}

func validateToleration(p *field.Path, t corev1.Toleration) field.ErrorList {
	var errs field.ErrorList
	if t.Key != "" {
		for _, msg := range validation.IsQualifiedName(t.Key) {
			errs = append(errs, field.Invalid(p.Child("key"), shown(t.Key), msg))
		}
	}
	switch t.Operator {
	case "", corev1.TolerationOpEqual:
		for _, msg := range validation.IsValidLabelValue(t.Value) {
			errs = append(errs, field.Invalid(p.Child("value"), shown(t.Value), msg))
		}
	case corev1.TolerationOpExists:
		if t.Value != "" {
			errs = append(errs, field.Invalid(p.Child("value"), shown(t.Value), "must be empty when operator is Exists"))
		}
	default:
		errs = append(errs, field.NotSupported(p.Child("operator"), string(t.Operator),
			[]corev1.TolerationOperator{corev1.TolerationOpEqual, corev1.TolerationOpExists}))
	}
	switch t.Effect {
	case "", corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
	default:
		errs = append(errs, field.NotSupported(p.Child("effect"), string(t.Effect),
			[]corev1.TaintEffect{corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute}))
	}
	if t.TolerationSeconds != nil && t.Effect != corev1.TaintEffectNoExecute {
		errs = append(errs, field.Invalid(p.Child("tolerationSeconds"), *t.TolerationSeconds, "only allowed with effect NoExecute"))
	}
	return errs
}

// hash is the digest of the platform's fields, with image in place of the
// image (never empty once defaulted, so "" stands for none).
func (p *Platform) Hash(image string) []byte {
	var scratch [1024]byte
	h := naming.NewCanonical(scratch[:], "platform/v1")
	h.Str("image", image)
	h.Str("pullPolicy", p.PullPolicy)
	h.Strs("pullSecrets", p.PullSecrets)
	h.Str("serviceAccount", p.ServiceAccount)
	h.Str("mountPath", p.MountPath)
	h.Str("nodePoolKey", p.NodePoolKey)
	h.Int("tolerations", int64(len(p.Tolerations)))
	for _, t := range p.Tolerations {
		h.Str("key", t.Key)
		h.Str("operator", string(t.Operator))
		h.Str("value", t.Value)
		h.Str("effect", string(t.Effect))
		if t.TolerationSeconds != nil {
			h.Int("seconds", *t.TolerationSeconds)
		} else {
			h.Str("seconds", "")
		}
	}
	h.Int("env", int64(len(p.Env)))
	for _, e := range p.Env {
		h.Str("name", e.Name)
		h.Str("value", e.Value)
	}
	h.Str("cpu", p.CPU)
	h.Str("memory", p.Memory)
	h.Int("runAsUser", p.RunAsUser)
	h.Int("runAsGroup", p.RunAsGroup)
	h.Int("fsGroup", p.FSGroup)
	h.Int("maxWorkers", p.MaxWorkers)
	h.Int("stallTimeoutSeconds", p.StallTimeoutSeconds)
	d := h.Sum()
	return d[:]
}

func OrDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func derefOr(v *int64, def int64) int64 {
	if v == nil {
		return def
	}
	return *v
}
