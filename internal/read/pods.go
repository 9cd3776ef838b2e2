package read

import (
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/structpb"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"

	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/script"
)

// What landed on disk, or why not: on success the download script writes a
// one-line JSON summary to its termination message, on failure its reason as
// the last line. A pod's status is written by its kubelet, and its log tail
// may end up there too (FallbackToLogsOnError), so a summary is parsed
// strictly and anything odd is ignored, and a reason is cleaned and bounded
// (the token is taken out of it where the function reports it).

const maxSummaryBytes = 1024

// PodReport is what the pods of one Job said: the summary of the pod that
// succeeded, or the last line of the latest pod that failed.
type PodReport struct {
	Summary *script.Summary
	// Reclaimed is what a reclaim pod that succeeded removed.
	Reclaimed *script.Reclaimed
	// SucceededAt is when the pod that succeeded ended.
	SucceededAt time.Time
	Failure     string
	// failedAt orders failed pods: the latest one speaks for the Job.
	failedAt string
}

// podReports maps a Job's uid to what its pods reported. Only a pod whose
// controller is that Job counts: a pod that merely carries the labels (made by
// hand, or by another Job of the same name that came before) says nothing.
func podReports(pods *fnv1.Resources) map[string]PodReport {
	items := pods.GetItems()
	if len(items) == 0 {
		return nil
	}
	out := make(map[string]PodReport, len(items))
	for _, it := range items {
		// Read from the protobuf as it came: a pod is mostly spec, and
		// only its owner and how its container ended are read.
		p := it.GetResource()
		job := controllingJob(p)
		if job == "" {
			continue
		}
		for _, c := range Get(p, "status", "containerStatuses").GetListValue().GetValues() {
			term := Get(c.GetStructValue(), "state", "terminated").GetStructValue()
			name := GetString(c.GetStructValue(), "name")
			if name != naming.ContainerName && name != naming.ReclaimContainerName || term == nil {
				continue
			}
			r := out[job]
			message := GetString(term, "message")
			if Get(term, "exitCode").GetNumberValue() == 0 {
				if name == naming.ReclaimContainerName {
					if rc, ok := parseReclaimed(message); ok {
						r.Reclaimed = &rc
					}
				} else if s, ok := parseSummary(message); ok {
					r.Summary = &s
				}
				r.SucceededAt = ParseTime(GetString(term, "finishedAt"))
			} else if at := finishedAt(term); r.Failure == "" || at >= r.failedAt {
				if line := lastLine(message); line != "" {
					r.Failure, r.failedAt = line, at
				}
			}
			out[job] = r
		}
	}
	return out
}

// controllingJob is the uid of the Job that controls a pod, as
// metav1.GetControllerOf finds it; "" when a Job does not.
func controllingJob(pod *structpb.Struct) string {
	for _, o := range Get(pod, "metadata", "ownerReferences").GetListValue().GetValues() {
		ref := o.GetStructValue()
		if !Get(ref, "controller").GetBoolValue() {
			continue
		}
		if GetString(ref, "kind") != "Job" || !strings.HasPrefix(GetString(ref, "apiVersion"), "batch/") {
			return ""
		}
		return GetString(ref, "uid")
	}
	return ""
}

// finishedAt orders failures: when a container ended, in UTC, RFC 3339 with
// nanoseconds (the zero time when it does not say).
func finishedAt(term *structpb.Struct) string {
	return ParseTime(GetString(term, "finishedAt")).UTC().Format(time.RFC3339Nano)
}

// MaxFailureBytes bounds the failure reason a pod's last line gives; the
// script's own reasons are far shorter.
const MaxFailureBytes = 512

// lastLine is the last line of a termination message that says something,
// in plain text: terminal colours and other control characters go, and so
// does anything past MaxFailureBytes.
func lastLine(msg string) string {
	lines := strings.Split(msg, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := plainText(lines[i]); l != "" {
			return truncateUTF8(l, MaxFailureBytes)
		}
	}
	return ""
}

// plainText drops ANSI escape sequences and control characters.
func plainText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == 0x1b:
			// CSI: ESC [ parameters, then one final byte in @..~.
			if i+1 < len(s) && s[i+1] == '[' {
				i += 2
				for i < len(s) && (s[i] < '@' || s[i] > '~') {
					i++
				}
			}
		case c < 0x20 || c == 0x7f:
		default:
			b.WriteByte(c)
		}
	}
	return strings.TrimSpace(strings.ToValidUTF8(b.String(), ""))
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// parseSummary accepts exactly one JSON object with the Summary's fields,
// a hex commit and non-negative counts.
func parseSummary(msg string) (script.Summary, bool) {
	s, ok := decodeReport[script.Summary](msg)
	return s, ok && validSummary(s)
}

// decodeReport reads a pod's report: exactly one JSON object of T's fields
// and no other, within maxSummaryBytes.
func decodeReport[T any](msg string) (T, bool) {
	var r T
	msg = strings.TrimSpace(msg)
	if msg == "" || len(msg) > maxSummaryBytes {
		return r, false
	}
	d := json.NewDecoder(strings.NewReader(msg))
	d.DisallowUnknownFields()
	if err := d.Decode(&r); err != nil || d.More() {
		var zero T
		return zero, false
	}
	return r, true
}
