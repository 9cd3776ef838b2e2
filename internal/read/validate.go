package read

import (
	"errors"
	"path"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/hfops/function-hf-download/apis/v1alpha1"
)

// Validation runs before anything is built. Problems with the whole spec are
// returned (the caller makes them Fatal); problems with one model are added to
// that model, which is then skipped while the others go ahead.

const (
	MaxRepoPart     = 96 // Hugging Face's own limit per part of a repo id
	MaxRevision     = 255
	MaxSHA          = 128
	MaxGlob         = 256
	MaxGlobs        = 64
	maxShownValue   = 80
	repoIDCharsHint = "only letters, digits, '.', '_' and '-' are allowed"
)

var supportedRepoTypes = []string{"model", "dataset"}

func ValidateSpec(s *XRSpec) field.ErrorList {
	var errs field.ErrorList
	if len(s.Models) == 0 {
		errs = append(errs, field.Required(ModelsPath, "at least one model is required"))
	}
	first := make(map[string]int, len(s.Models))
	for i := range s.Models {
		m := &s.Models[i]
		p := ModelsPath.Index(i)
		if j, dup := first[m.Name]; dup {
			errs = append(errs, &field.Error{Type: field.ErrorTypeDuplicate, Field: p.Child("name").String(), BadValue: shown(m.Name),
				Detail: "already used by " + ModelsPath.Index(j).Child("name").String()})
			continue
		}
		first[m.Name] = i
		m.Errs = append(m.Errs, validateModel(p, m)...)
	}

	if s.StoragePVC == "" {
		errs = append(errs, field.Required(specPath.Child("storagePVC"), "the name of a PersistentVolumeClaim in the XR's namespace"))
	} else {
		errs = append(errs, DNSSubdomain(specPath.Child("storagePVC"), s.StoragePVC)...)
	}
	if t := s.HFTokenRef; t != nil {
		p := specPath.Child("hfTokenRef")
		if t.Name == "" {
			errs = append(errs, field.Required(p.Child("name"), "the name of a Secret in the XR's namespace"))
		} else {
			errs = append(errs, DNSSubdomain(p.Child("name"), t.Name)...)
		}
		for _, msg := range validation.IsConfigMapKey(t.Key) {
			errs = append(errs, field.Invalid(p.Child("key"), shown(t.Key), msg))
		}
	}
	for _, msg := range validation.IsValidLabelValue(s.NodePool) {
		errs = append(errs, field.Invalid(specPath.Child("nodePool"), shown(s.NodePool), msg))
	}
	if st := s.Storage; st != nil {
		errs = append(errs, validateStorage(st)...)
	}
	errs = append(errs, validateQuantity(settingsPath.Child("cpu"), s.Settings.CPU)...)
	errs = append(errs, validateQuantity(settingsPath.Child("memory"), s.Settings.Memory)...)
	if _, err := ResyncInterval(s.Settings.ResyncInterval); err != nil {
		errs = append(errs, field.Invalid(settingsPath.Child("resyncInterval"), shown(s.Settings.ResyncInterval), err.Error()))
	}
	return errs
}

// MinResyncInterval: a check costs the Hub a request per model, and a
// moving branch is rarely worth more.
const MinResyncInterval = time.Hour

// ResyncInterval is settings.resyncInterval as a duration, 0 when unset.
func ResyncInterval(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	switch {
	case err != nil || d <= 0:
		return 0, errors.New("a duration such as 24h or 90m, unset for never")
	case d < MinResyncInterval:
		return 0, errors.New("at least 1h")
	}
	return d, nil
}

// NotCoveredBy drops the "Required" errors about a field that a parse error
// already explains: a models list of the wrong type, or whose only model is
// unusable, was given, so "at least one model is required" would mislead. A
// missing spec still lists what it must hold.
func NotCoveredBy(parseErrs, errs field.ErrorList) field.ErrorList {
	out := errs[:0]
	for _, e := range errs {
		if e.Type != field.ErrorTypeRequired || !slices.ContainsFunc(parseErrs, func(p *field.Error) bool {
			return onPath(e.Field, p.Field) || p.Type != field.ErrorTypeRequired && onPath(p.Field, e.Field)
		}) {
			out = append(out, e)
		}
	}
	return out
}

// onPath reports whether the field path f is path itself or lies under it.
func onPath(path, f string) bool {
	rest, ok := strings.CutPrefix(f, path)
	return ok && (rest == "" || rest[0] == '.' || rest[0] == '[')
}

func validateModel(p *field.Path, m *ModelSpec) field.ErrorList {
	var errs field.ErrorList
	if msg := repoIDProblem(m.Name); msg != "" {
		errs = append(errs, field.Invalid(p.Child("name"), shown(m.Name), "must be a Hugging Face repo id (name or org/name): "+msg))
	}
	if msg := revisionProblem(m.Revision); msg != "" {
		errs = append(errs, field.Invalid(p.Child("revision"), shown(m.Revision), "must be a branch, tag or commit: "+msg))
	}
	if len(m.SHA) > MaxSHA || strings.IndexFunc(m.SHA, notSHAChar) >= 0 {
		errs = append(errs, field.Invalid(p.Child("sha"), shown(m.SHA), "must be at most 128 letters, digits, ':', '.', '_' or '-'"))
	}
	errs = append(errs, validateGlobs(p.Child("include"), m.Include)...)
	errs = append(errs, validateGlobs(p.Child("exclude"), m.Exclude)...)
	// hf applies globs as a set: in one order, two ModelDownloads asking for
	// the same files share a directory, a content hash and a marker.
	m.Include, m.Exclude = globSet(m.Include), globSet(m.Exclude)
	if m.RepoType != "model" && m.RepoType != "dataset" {
		errs = append(errs, field.NotSupported(p.Child("repoType"), shown(m.RepoType), supportedRepoTypes))
	}
	return errs
}

// globSet sorts globs and drops repeats, after validation has named each by
// its index.
func globSet(globs []string) []string {
	if len(globs) < 2 {
		return globs
	}
	out := slices.Clone(globs)
	slices.Sort(out)
	return slices.Compact(out)
}

// repoIDProblem applies Hugging Face's rules for repo ids. Because a model
// lands at <mountPath>/<name>, these rules also keep it inside the mount:
// no "..", no leading "." or "/", no empty part.
func repoIDProblem(name string) string {
	parts := strings.Split(name, "/")
	if len(parts) > 2 {
		return "at most one '/' is allowed"
	}
	for _, part := range parts {
		switch {
		case part == "":
			return "the org and the name must not be empty"
		case len(part) > MaxRepoPart:
			return "each part must be at most 96 characters"
		case strings.IndexFunc(part, notRepoIDChar) >= 0:
			return repoIDCharsHint
		case strings.Contains(part, "..") || strings.Contains(part, "--"):
			return "'..' and '--' are not allowed"
		case strings.IndexByte("-.", part[0]) >= 0 || strings.IndexByte("-.", part[len(part)-1]) >= 0:
			return "a part must not start or end with '-' or '.'"
		}
	}
	return ""
}

// revisionProblem accepts branch and tag names (including refs/pr/N) and
// commit hashes. A leading '-' would read as a flag of `hf download`.
func revisionProblem(rev string) string {
	switch {
	case rev == "":
		return "must not be empty"
	case len(rev) > MaxRevision:
		return "must be at most 255 characters"
	case strings.IndexFunc(rev, notRevisionChar) >= 0:
		return "only letters, digits, '.', '_', '-', '+' and '/' are allowed"
	case strings.Contains(rev, "..") || strings.Contains(rev, "//"):
		return "'..' and '//' are not allowed"
	case rev[0] == '-' || rev[0] == '/' || rev[len(rev)-1] == '/' || rev[len(rev)-1] == '.':
		return "must not start with '-' or '/' nor end with '/' or '.'"
	}
	return ""
}

// validateGlobs checks include and exclude patterns. They reach the script
// newline-separated, so control characters are refused; a leading '-' would
// read as a flag; '..' and absolute paths never match a repo file and hint at
// a mistake.
func validateGlobs(p *field.Path, globs []string) field.ErrorList {
	var errs field.ErrorList
	if len(globs) > MaxGlobs {
		errs = append(errs, field.TooMany(p, len(globs), MaxGlobs))
	}
	for i, g := range globs {
		gp := p.Index(i)
		var msg string
		switch {
		case g == "":
			msg = "must not be empty"
		case len(g) > MaxGlob:
			msg = "must be at most 256 characters"
		case !utf8.ValidString(g) || strings.IndexFunc(g, isControl) >= 0:
			msg = "must not contain control characters"
		case g[0] == '-':
			msg = "must not start with '-'"
		case g[0] == '/' || hasDotDotSegment(g):
			msg = "must be relative to the repo root, without '..'"
		default:
			if _, err := path.Match(g, ""); err != nil {
				msg = "is not a valid glob: " + err.Error()
			}
		}
		if msg != "" {
			errs = append(errs, field.Invalid(gp, shown(g), msg))
		}
	}
	return errs
}

func hasDotDotSegment(g string) bool {
	for _, seg := range strings.Split(g, "/") {
		if seg == ".." {
			return true
		}
	}
	return false
}

var (
	supportedAccessModes      = []string{"ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"}
	supportedDeletionPolicies = []string{DeletionOrphan, deletionDelete}
)

func validateStorage(st *v1alpha1.Storage) field.ErrorList {
	var errs field.ErrorList
	if st.Size == "" {
		errs = append(errs, field.Required(storagePath.Child("size"), "the capacity of the PVC to create, such as 100Gi"))
	} else {
		errs = append(errs, validateQuantity(storagePath.Child("size"), st.Size)...)
	}
	if c := st.StorageClassName; c != nil && *c != "" {
		errs = append(errs, DNSSubdomain(storagePath.Child("storageClassName"), *c)...)
	}
	for i, m := range st.AccessModes {
		if !slices.Contains(supportedAccessModes, m) {
			errs = append(errs, field.NotSupported(storagePath.Child("accessModes").Index(i), shown(m), supportedAccessModes))
		}
		if m == "ReadOnlyMany" {
			errs = append(errs, field.Invalid(storagePath.Child("accessModes").Index(i), m, "the download Jobs write to the PVC"))
		}
	}
	if st.VolumeMode != VolumeModeFilesystem {
		errs = append(errs, field.NotSupported(storagePath.Child("volumeMode"), shown(st.VolumeMode), []string{VolumeModeFilesystem}))
	}
	if !slices.Contains(supportedDeletionPolicies, st.DeletionPolicy) {
		errs = append(errs, field.NotSupported(storagePath.Child("deletionPolicy"), shown(st.DeletionPolicy), supportedDeletionPolicies))
	}
	return errs
}

// validateQuantity accepts an empty value (the platform default applies) or a
// positive Kubernetes quantity.
func validateQuantity(p *field.Path, v string) field.ErrorList {
	if v == "" {
		return nil
	}
	q, err := resource.ParseQuantity(v)
	if err != nil {
		return field.ErrorList{field.Invalid(p, shown(v), "must be a Kubernetes quantity such as 500m, 2 or 8Gi")}
	}
	if q.Sign() <= 0 {
		return field.ErrorList{field.Invalid(p, shown(v), "must be greater than zero")}
	}
	return nil
}

func DNSSubdomain(p *field.Path, v string) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsDNS1123Subdomain(v) {
		errs = append(errs, field.Invalid(p, shown(v), msg))
	}
	return errs
}

func notRepoIDChar(r rune) bool {
	isAlnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
	return !isAlnum && r != '.' && r != '_' && r != '-'
}

func notRevisionChar(r rune) bool { return notRepoIDChar(r) && r != '/' && r != '+' }

func notSHAChar(r rune) bool { return notRepoIDChar(r) && r != ':' }

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

// shown cuts a user value for error messages, so a megabyte of garbage in a
// field does not become a megabyte of events and status.
func shown(v string) string {
	if len(v) <= maxShownValue {
		return v
	}
	cut := maxShownValue
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return v[:cut] + "..."
}
