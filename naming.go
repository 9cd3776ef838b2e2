package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"reflect"
	"strings"
	"sync"
)

// Names and hashes. Every name here reaches Kubernetes, so each is built to
// pass apimachinery's validators (tested with them), and every hash is over a
// canonical encoding: the same spec gives the same hash on every machine.

const (
	jobPrefix = "hf-dl-"
	// specHashLen hex characters (40 bits) end every Job name and key.
	specHashLen = 10
	// maxJobName: a Job's name becomes its pods' job-name label, so it must
	// be a DNS-1123 label, not merely a subdomain.
	maxJobName = 63
	// maxLabelValue is Kubernetes' limit for label values.
	maxLabelValue = 63
)

// canonical writes length-prefixed key/value pairs, so no two different field
// lists can encode to the same bytes. It collects the encoding in one buffer
// and hashes it once with SHA-256: the same digest as writing each piece into
// a hash.Hash, without an allocation per field.
type canonical struct {
	buf []byte
}

// newCanonical starts an encoding in buf, usually a caller's array on the
// stack; append moves it to the heap only if it outgrows that.
func newCanonical(buf []byte, domain string) canonical {
	c := canonical{buf: buf[:0]}
	c.str("domain", domain)
	return c
}

func (c *canonical) bytes(b []byte) {
	c.buf = binary.AppendUvarint(c.buf, uint64(len(b)))
	c.buf = append(c.buf, b...)
}

func (c *canonical) str(k, v string) {
	c.string(k)
	c.string(v)
}

// string is bytes([]byte(s)) without the copy.
func (c *canonical) string(s string) {
	c.buf = binary.AppendUvarint(c.buf, uint64(len(s)))
	c.buf = append(c.buf, s...)
}

func (c *canonical) strs(k string, vs []string) {
	c.int(k, int64(len(vs)))
	for _, v := range vs {
		c.str(k, v)
	}
}

func (c *canonical) int(k string, v int64) {
	c.string(k)
	var b [binary.MaxVarintLen64]byte
	n := binary.PutVarint(b[:], v)
	c.bytes(b[:n])
}

func (c *canonical) bool(k string, v bool) {
	if v {
		c.str(k, "true")
	} else {
		c.str(k, "false")
	}
}

func (c *canonical) sum() [sha256.Size]byte { return sha256.Sum256(c.buf) }

// modelHashes are the hashes of one model.
type modelHashes struct {
	// content covers what lands on disk (repo, type, revision, globs). The
	// download script compares it with its completion marker, so a Job that
	// re-runs for any other reason (a rotated token, more memory) exits at
	// once for a complete model.
	content string
	// config covers everything that shapes the Job except the token.
	config string
	// spec is config plus the SHA-256 of the token: any relevant change, a
	// rotated token included, is a new spec. jobHash salts it with the
	// attempt to name the Job.
	spec string
	// intent is spec without what the function itself brings (the script,
	// the Job's template, the default image): what the user and the
	// platform asked for. A model completed under the same intent on the
	// same volume stays completed when only the function changed, so an
	// upgrade re-runs nothing that is done.
	intent string
}

// hashModel computes a model's hashes. xrDigest covers the XR-wide fields and
// platform the Input; both are computed once per request.
func hashModel(m *modelSpec, xrDigest []byte, plat *platform, tokenDigest []byte) modelHashes {
	var scratch [512]byte
	c := newCanonical(scratch[:], "content/v1")
	content := m.contentDigest(&c)

	c.asked("config/v1", content[:], m, xrDigest, plat.digest)
	c.bytes(scriptDigest)
	c.bytes(templateDigest())
	config := c.sum()

	c.buf = c.buf[:0]
	c.str("domain", "spec/v1")
	c.bytes(config[:])
	c.bytes(tokenDigest)
	spec := c.sum()

	c.asked("intent/v1", content[:], m, xrDigest, plat.intentDigest)
	c.bytes(tokenDigest)
	intent := c.sum()

	// One string holds the four hex hashes; each field is a slice of it.
	var hx [4 * 16]byte
	hex.Encode(hx[:16], content[:8])
	hex.Encode(hx[16:32], config[:8])
	hex.Encode(hx[32:48], spec[:8])
	hex.Encode(hx[48:], intent[:8])
	all := string(hx[:])
	return modelHashes{
		content: all[:16],
		config:  all[16:32],
		spec:    all[32:48],
		intent:  all[48:],
	}
}

// asked starts c over, in domain, with what the user and the platform asked
// of a model beyond its content: the config and the intent begin alike.
func (c *canonical) asked(domain string, content []byte, m *modelSpec, xrDigest, platformDigest []byte) {
	c.buf = c.buf[:0]
	c.str("domain", domain)
	c.bytes(content)
	c.fields(reflect.ValueOf(&m.Model).Elem(), false)
	c.bytes(xrDigest)
	c.bytes(platformDigest)
}

// contentDigest covers what lands on disk: the repo, its type, the revision
// and the globs. c holds the domain already.
func (m *modelSpec) contentDigest(c *canonical) [sha256.Size]byte {
	c.fields(reflect.ValueOf(&m.Model).Elem(), true)
	return c.sum()
}

// contentHash is the content hash of hashModel alone.
func (m *modelSpec) contentHash() string {
	var scratch [512]byte
	c := newCanonical(scratch[:], "content/v1")
	d := m.contentDigest(&c)
	return hex.EncodeToString(d[:8])
}

// jobHash names one attempt at a spec: the hash at the end of the Job's name
// and key. Every attempt gets a name of its own, so an old Job (orphaned by
// its Object, or lingering while it is deleted) can never be taken for the
// current one, even when a spec comes back to an earlier value.
func jobHash(spec string, attempt int64) string {
	var scratch [64]byte
	c := newCanonical(scratch[:], "job/v1")
	c.str("spec", spec)
	c.int("attempt", attempt)
	d := c.sum()
	return hex.EncodeToString(d[:specHashLen/2])
}

// owner identifies the ModelDownload and the volume its Jobs write to.
type owner struct {
	// namespace and name are where the Jobs go and what they are named
	// after: the XR's, or its claim's.
	namespace, name string
	// xrName and xrUID are the XR's own: a claim's XR has a generated name,
	// and an XR deleted and made again is a new owner.
	xrName, xrUID string
	// pvcUID is the volume's: a PVC deleted and made again, empty, is a new
	// volume whose models must be downloaded again.
	pvcUID string
}

// identify writes which ModelDownload o is into a hash: every name the
// function derives from it (Jobs, the script's ConfigMap, the progress
// objects) is its own.
func (o owner) identify(c *canonical) {
	c.str("namespace", o.namespace)
	c.str("name", o.name)
	c.str("xrName", o.xrName)
	c.str("xrUID", o.xrUID)
}

// hashXR covers the fields of the XR that every Job shares, which XR and
// volume they belong to (two ModelDownloads whose names read alike once
// shortened still get Jobs of their own), and how the Jobs are composed: a
// Job and the Object carrying it must never share a key. cpu and memory are
// the resources the Jobs get, the platform's when the spec leaves them out.
func hashXR(s *xrSpec, o owner, cpu, memory, envelope string) []byte {
	var scratch [512]byte
	c := newCanonical(scratch[:], "xr/v2")
	o.identify(&c)
	c.str("pvcUID", o.pvcUID)
	c.str("envelope", envelope)
	spec := s.ModelDownloadSpec
	spec.Settings.CPU, spec.Settings.Memory = cpu, memory
	c.fields(reflect.ValueOf(&spec).Elem(), false)
	d := c.sum()
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
func (c *canonical) fields(v reflect.Value, content bool) {
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
			c.str(f.key, fv.String())
		case reflect.Int64:
			c.int(f.key, fv.Int())
		case reflect.Bool:
			c.bool(f.key, fv.Bool())
		case reflect.Slice: // of strings
			c.int(f.key, int64(fv.Len()))
			for i := range fv.Len() {
				c.str(f.key, fv.Index(i).String())
			}
		default:
			panic("hash: no encoding for " + fv.Type().String())
		}
	}
}

// tokenDigest is the SHA-256 of the token value. Only this digest, never the
// value, enters a hash; and the hash that leaves the function is cut to 40
// bits of a hash over it, which says nothing about the token.
func tokenDigest(token []byte) []byte {
	d := sha256.Sum256(token)
	return d[:]
}

// dnsLabel turns any string into lowercase letters, digits and single
// dashes, trimmed of dashes: the alphabet of a DNS-1123 label. Lowercasing
// comes first, as it may change a letter's length or even make it ASCII
// (the Kelvin sign lowercases to 'k').
func dnsLabel(s string) string {
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

// cut shortens a dnsLabel to at most n bytes without leaving a trailing dash.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.TrimRight(s[:n], "-")
}

// jobName is hf-dl-<xr>-<model>-<hash>, at most 63 characters. When it is
// too long, the XR and model parts share the room, each keeping at least half
// of it when it needs it; the hash is always whole, so two models never share
// a name however alike their cut parts are.
func jobName(xr, model, specHash string) string {
	x, m := dnsLabel(xr), dnsLabel(model)
	room := maxJobName - len(jobPrefix) - len(specHash) - 2 // two joining dashes
	if len(x)+len(m) > room {
		half := room / 2
		switch {
		case len(x) <= half:
			m = cut(m, room-len(x))
		case len(m) <= half:
			x = cut(x, room-len(m))
		default:
			x, m = cut(x, half), cut(m, room-half)
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

// resourceKey is the composition resource name of a model's Job. It carries
// the spec hash because Crossplane keeps the name it observed for a key: only
// a new key makes Crossplane delete the old Job and create the new one.
func resourceKey(model, specHash string) string {
	return "job-" + dnsLabel(model) + "-" + specHash
}

// labelValue makes a label value of a name (for parent and model labels).
func labelValue(s string) string { return cut(dnsLabel(s), maxLabelValue) }
