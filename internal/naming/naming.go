// Package naming makes the names and hashes of what the function composes.
// It is beneath every other package: it knows the API's types and nothing of
// the function's.
package naming

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"reflect"
	"strings"
	"sync"

	"github.com/hfops/function-hf-download/apis/v1alpha1"
)

// Names and hashes. Every name here reaches Kubernetes, so each is built to
// pass apimachinery's validators (tested with them), and every hash is over a
// canonical encoding: the same spec gives the same hash on every machine.

const (
	jobPrefix = "hf-dl-"
	// SpecHashLen hex characters (40 bits) end every Job name and key.
	SpecHashLen = 10
	// maxJobName: a Job's name becomes its pods' job-name label, so it must
	// be a DNS-1123 label, not merely a subdomain.
	maxJobName = 63
	// MaxLabelValue is Kubernetes' limit for label values.
	MaxLabelValue = 63
)

// The composition resource names of the progress objects (internal/build/progress.go).
const (
	ProgressKeyPrefix    = "progress-"
	ProgressKeyConfigMap = ProgressKeyPrefix + "configmap"
	ProgressKeyAccount   = ProgressKeyPrefix + "serviceaccount"
	ProgressKeyRole      = ProgressKeyPrefix + "role"
	ProgressKeyBinding   = ProgressKeyPrefix + "rolebinding"
)

// Labels and annotations on every Job and its pods: what the function
// writes and reads back.
const (
	LabelApp      = "app"
	LabelParent   = "parent"
	LabelModel    = "model"
	LabelSpecHash = "hfops.kamal.dev/spec-hash"
	AppName       = "hf-downloader"
	// ContainerName is the download container of every Job's pod: its
	// termination message is the pod's report.
	ContainerName = "download"
	// ReclaimContainerName is the container of a reclaim Job's pod, which
	// removes a model's directory.
	ReclaimContainerName = "reclaim"

	// AnnotationModel keeps the exact repo id, which the model label can
	// only keep in a sanitized form.
	AnnotationModel = "hfops.kamal.dev/model"
	// AnnotationConfigHash lets a later call recognise a Job it can keep
	// while the token Secret is missing.
	AnnotationConfigHash = "hfops.kamal.dev/config-hash"
	// AnnotationAttempt numbers the attempts at a model.
	AnnotationAttempt = "hfops.kamal.dev/attempt"
	// AnnotationReclaim marks a reclaim Job, with the exact repo id whose
	// directory it removes.
	AnnotationReclaim = "hfops.kamal.dev/reclaim"
	// AnnotationResync marks a check Job of a model's revision
	// (settings.resyncInterval), with the number of its check.
	AnnotationResync = "hfops.kamal.dev/resync"
)

// Canonical writes length-prefixed key/value pairs, so no two different field
// lists can encode to the same bytes. It collects the encoding in one buffer
// and hashes it once with SHA-256: the same digest as writing each piece into
// a hash.Hash, without an allocation per field.
type Canonical struct {
	buf []byte
}

// NewCanonical starts an encoding in buf, usually a caller's array on the
// stack; append moves it to the heap only if it outgrows that.
func NewCanonical(buf []byte, domain string) Canonical {
	c := Canonical{buf: buf[:0]}
	c.Str("domain", domain)
	return c
}

// Bytes writes b.
func (c *Canonical) Bytes(b []byte) {
	c.buf = binary.AppendUvarint(c.buf, uint64(len(b)))
	c.buf = append(c.buf, b...)
}

// Str writes a key and its value.
func (c *Canonical) Str(k, v string) {
	c.string(k)
	c.string(v)
}

// string is bytes([]byte(s)) without the copy.
func (c *Canonical) string(s string) {
	c.buf = binary.AppendUvarint(c.buf, uint64(len(s)))
	c.buf = append(c.buf, s...)
}

// Strs writes a key and its values.
func (c *Canonical) Strs(k string, vs []string) {
	c.Int(k, int64(len(vs)))
	for _, v := range vs {
		c.Str(k, v)
	}
}

// Int writes a key and its value.
func (c *Canonical) Int(k string, v int64) {
	c.string(k)
	var b [binary.MaxVarintLen64]byte
	n := binary.PutVarint(b[:], v)
	c.Bytes(b[:n])
}

// Bool writes a key and its value.
func (c *Canonical) Bool(k string, v bool) {
	if v {
		c.Str(k, "true")
	} else {
		c.Str(k, "false")
	}
}

// Sum is the SHA-256 of what was written.
func (c *Canonical) Sum() [sha256.Size]byte { return sha256.Sum256(c.buf) }

// shortHash is the first SpecHashLen hex digits of Sum: what ends a Job's
// name and key.
func (c *Canonical) shortHash() string {
	d := c.Sum()
	return hex.EncodeToString(d[:SpecHashLen/2])
}

// Hashes are the hashes of one model.
type Hashes struct {
	// Content covers what lands on disk (repo, type, revision, globs). The
	// download script compares it with its completion marker, so a Job that
	// re-runs for any other reason (a rotated token, more memory) exits at
	// once for a complete model.
	Content string
	// Config covers everything that shapes the Job except the token.
	Config string
	// Spec is Config plus the SHA-256 of the token: any relevant change, a
	// rotated token included, is a new spec. JobHash salts it with the
	// attempt to name the Job.
	Spec string
	// Intent is Spec without what the function itself brings (the script,
	// the Job's template, the default image): what the user and the
	// platform asked for. A model completed under the same intent on the
	// same volume stays completed when only the function changed, so an
	// upgrade re-runs nothing that is done.
	Intent string
}

// Digests are what a model's hashes cover besides the model, each computed
// once per call.
type Digests struct {
	// XR covers the XR-wide fields (HashXR).
	XR []byte
	// Platform covers the Input; PlatformIntent the Input but the image.
	Platform, PlatformIntent []byte
	// Script and Template are the function's own: the download script and
	// the Job's template.
	Script, Template []byte
	// Token is the SHA-256 of the token (TokenDigest), nil without one.
	Token []byte
}

// HashModel computes a model's hashes.
func HashModel(m *v1alpha1.Model, d Digests) Hashes {
	var scratch [512]byte
	c := NewCanonical(scratch[:], "content/v1")
	content := contentDigest(&c, m)

	c.asked("config/v1", content[:], m, d.XR, d.Platform)
	c.Bytes(d.Script)
	c.Bytes(d.Template)
	config := c.Sum()

	c.buf = c.buf[:0]
	c.Str("domain", "spec/v1")
	c.Bytes(config[:])
	c.Bytes(d.Token)
	spec := c.Sum()

	c.asked("intent/v1", content[:], m, d.XR, d.PlatformIntent)
	c.Bytes(d.Token)
	intent := c.Sum()

	// One string holds the four hex hashes; each field is a slice of it.
	var hx [4 * 16]byte
	hex.Encode(hx[:16], content[:8])
	hex.Encode(hx[16:32], config[:8])
	hex.Encode(hx[32:48], spec[:8])
	hex.Encode(hx[48:], intent[:8])
	all := string(hx[:])
	return Hashes{
		Content: all[:16],
		Config:  all[16:32],
		Spec:    all[32:48],
		Intent:  all[48:],
	}
}

// asked starts c over, in domain, with what the user and the platform asked
// of a model beyond its content: the config and the intent begin alike.
func (c *Canonical) asked(domain string, content []byte, m *v1alpha1.Model, xrDigest, platformDigest []byte) {
	c.buf = c.buf[:0]
	c.Str("domain", domain)
	c.Bytes(content)
	c.fields(reflect.ValueOf(m).Elem(), false)
	c.Bytes(xrDigest)
	c.Bytes(platformDigest)
}

// contentDigest covers what lands on disk: the repo, its type, the revision
// and the globs. c holds the domain already.
func contentDigest(c *Canonical, m *v1alpha1.Model) [sha256.Size]byte {
	c.fields(reflect.ValueOf(m).Elem(), true)
	return c.Sum()
}

// ContentHash is the content hash of HashModel alone.
func ContentHash(m *v1alpha1.Model) string {
	var scratch [512]byte
	c := NewCanonical(scratch[:], "content/v1")
	d := contentDigest(&c, m)
	return hex.EncodeToString(d[:8])
}

// JobHash names one attempt at a spec: the hash at the end of the Job's name
// and key. Every attempt gets a name of its own, so an old Job (orphaned by
// its Object, or lingering while it is deleted) can never be taken for the
// current one, even when a spec comes back to an earlier value.
func JobHash(spec string, attempt int64) string {
	var scratch [64]byte
	c := NewCanonical(scratch[:], "job/v1")
	c.Str("spec", spec)
	c.Int("attempt", attempt)
	return c.shortHash()
}

// ReclaimHash names one attempt at removing a model's directory from the
// volume o.PVCUID: the hash at the end of the reclaim Job's name and key.
func ReclaimHash(o Owner, model string, attempt int64) string {
	var scratch [256]byte
	c := NewCanonical(scratch[:], "reclaim/v1")
	o.Identify(&c)
	c.Str("pvcUID", o.PVCUID)
	c.Str("model", model)
	c.Int("attempt", attempt)
	return c.shortHash()
}

// ReclaimKey is the composition resource name of a reclaim Job; like a
// download Job's, it carries the hash.
func ReclaimKey(model, hash string) string {
	return "reclaim-" + DNSLabel(model) + "-" + hash
}

// CheckHash names check n of the attempt whose Job hash is attempt: the
// hash at the end of the check Job's name and key.
func CheckHash(attempt string, n int64) string {
	var scratch [64]byte
	c := NewCanonical(scratch[:], "resync/v1")
	c.Str("attempt", attempt)
	c.Int("check", n)
	return c.shortHash()
}

// CheckKey is the composition resource name of a check Job.
func CheckKey(model, hash string) string {
	return "resync-" + DNSLabel(model) + "-" + hash
}

// Owner identifies the ModelDownload and the volume its Jobs write to.
type Owner struct {
	// Namespace and Name are where the Jobs go and what they are named
	// after: the XR's, or its claim's.
	Namespace, Name string
	// XRName and XRUID are the XR's own: a claim's XR has a generated name,
	// and an XR deleted and made again is a new owner.
	XRName, XRUID string
	// PVCUID is the volume's: a PVC deleted and made again, empty, is a new
	// volume whose models must be downloaded again.
	PVCUID string
}

// Identify writes which ModelDownload o is into a hash: every name the
// function derives from it (Jobs, the script's ConfigMap, the progress
// objects) is its own.
func (o Owner) Identify(c *Canonical) {
	c.Str("namespace", o.Namespace)
	c.Str("name", o.Name)
	c.Str("xrName", o.XRName)
	c.Str("xrUID", o.XRUID)
}

// HashXR covers the fields of the XR that every Job shares, which XR and
// volume they belong to (two ModelDownloads whose names read alike once
// shortened still get Jobs of their own), and how the Jobs are composed: a
// Job and the Object carrying it must never share a key. cpu and memory are
// the resources the Jobs get, the platform's when the spec leaves them out.
func HashXR(s *v1alpha1.ModelDownloadSpec, o Owner, cpu, memory, envelope string) []byte {
	var scratch [512]byte
	c := NewCanonical(scratch[:], "xr/v2")
	o.Identify(&c)
	c.Str("pvcUID", o.PVCUID)
	c.Str("envelope", envelope)
	spec := *s
	spec.Settings.CPU, spec.Settings.Memory = cpu, memory
	c.fields(reflect.ValueOf(&spec).Elem(), false)
	d := c.Sum()
	return d[:]
}

// hashField is a field of the API that rolls Jobs, by its hash tag (see
// apis/v1alpha1).
type hashField struct {
	index   int
	key     string
	inline  bool // its fields are hashed in place
	content bool // it says what lands on disk
}

var hashFields sync.Map // reflect.Type → []hashField

// hashFieldsOf reads a type's hash tags once. A field without one is a
// choice not made: TestEveryFieldChoosesWhetherItRollsJobs fails for it, and
// it would roll nothing.
func hashFieldsOf(t reflect.Type) []hashField {
	if f, ok := hashFields.Load(t); ok {
		return f.([]hashField)
	}
	var out []hashField
	for i := range t.NumField() {
		tag, ok := t.Field(i).Tag.Lookup("hash")
		key, opt, _ := strings.Cut(tag, ",")
		if !ok || key == "-" || key == "per-model" {
			continue
		}
		out = append(out, hashField{index: i, key: key, inline: opt == "inline", content: opt == "content"})
	}
	hashFields.Store(t, out)
	return out
}

// fields writes the fields of v, a struct of the API, that roll Jobs, in
// their order: those of a model's content, or all the others.
func (c *Canonical) fields(v reflect.Value, content bool) {
	for _, f := range hashFieldsOf(v.Type()) {
		fv := v.Field(f.index)
		if f.inline {
			if fv.Kind() == reflect.Pointer {
				if fv.IsNil() {
					continue
				}
				fv = fv.Elem()
			}
			c.fields(fv, content)
			continue
		}
		if f.content != content {
			continue
		}
		switch fv.Kind() {
		case reflect.String:
			c.Str(f.key, fv.String())
		case reflect.Int64:
			c.Int(f.key, fv.Int())
		case reflect.Bool:
			c.Bool(f.key, fv.Bool())
		case reflect.Slice: // of strings
			c.Int(f.key, int64(fv.Len()))
			for i := range fv.Len() {
				c.Str(f.key, fv.Index(i).String())
			}
		default:
			panic("hash: no encoding for " + fv.Type().String())
		}
	}
}

// TokenDigest is the SHA-256 of the token value. Only this digest, never the
// value, enters a hash; and the hash that leaves the function is cut to 40
// bits of a hash over it, which says nothing about the token.
func TokenDigest(token []byte) []byte {
	d := sha256.Sum256(token)
	return d[:]
}

// DNSLabel turns any string into lowercase letters, digits and single
// dashes, trimmed of dashes: the alphabet of a DNS-1123 label. Lowercasing
// comes first, as it may change a letter's length or even make it ASCII
// (the Kelvin sign lowercases to 'k').
func DNSLabel(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	dash := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
			continue
		}
		dash = true
	}
	return b.String()
}

// Cut shortens a DNSLabel to at most n bytes without leaving a trailing dash.
func Cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.TrimRight(s[:n], "-")
}

// JobName is hf-dl-<xr>-<model>-<hash>, at most 63 characters. When it is
// too long, the XR and model parts share the room, each keeping at least half
// of it when it needs it; the hash is always whole, so two models never share
// a name however alike their cut parts are.
func JobName(xr, model, specHash string) string {
	x, m := DNSLabel(xr), DNSLabel(model)
	room := maxJobName - len(jobPrefix) - len(specHash) - 2 // two joining dashes
	if len(x)+len(m) > room {
		half := room / 2
		switch {
		case len(x) <= half:
			m = Cut(m, room-len(x))
		case len(m) <= half:
			x = Cut(x, room-len(m))
		default:
			x, m = Cut(x, half), Cut(m, room-half)
		}
	}
	var b strings.Builder
	b.Grow(maxJobName)
	b.WriteString(jobPrefix)
	for _, part := range []string{x, m} {
		if part != "" {
			b.WriteString(part)
			b.WriteByte('-')
		}
	}
	b.WriteString(specHash)
	return b.String()
}

// ResourceKey is the composition resource name of a model's Job. It carries
// the spec hash because Crossplane keeps the name it observed for a key: only
// a new key makes Crossplane delete the old Job and create the new one.
func ResourceKey(model, specHash string) string {
	return "job-" + DNSLabel(model) + "-" + specHash
}

// LabelValue makes a label value of a name (for parent and model labels).
func LabelValue(s string) string { return Cut(DNSLabel(s), MaxLabelValue) }

// IsSpecHash reports whether s is a Job hash as JobName needs it.
func IsSpecHash(s string) bool {
	return len(s) == SpecHashLen && strings.IndexFunc(s, NotLowerHex) < 0
}

// NotLowerHex is true for a rune that is no lowercase hex digit.
func NotLowerHex(r rune) bool { return (r < '0' || r > '9') && (r < 'a' || r > 'f') }

// Attempt is one try at a model's spec: its number and the hash that names
// its Job (JobHash).
type Attempt struct {
	Number int64
	Hash   string
}
