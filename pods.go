package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/hfops/function-hf-download/script"
)

// What landed on disk, or why not: on success the download script writes a
// one-line JSON summary to its termination message, on failure its reason as
// the last line. A pod's status is written by its kubelet, and its log tail
// may end up there too (FallbackToLogsOnError), so a summary is parsed
// strictly and anything odd is ignored, and a reason is cleaned and bounded
// (the token is taken out of it where the function reports it).

const maxSummaryBytes = 1024

// podReport is what the pods of one Job said: the summary of the pod that
// succeeded, or the last line of the latest pod that failed.
type podReport struct {
	summary *script.Summary
	failure string
	// failedAt orders failed pods: the latest one speaks for the Job.
	failedAt string
}

// podReports maps a Job's uid to what its pods reported. Only a pod whose
// controller is that Job counts: a pod that merely carries the labels (made by
// hand, or by another Job of the same name that came before) says nothing.
func podReports(req *fnv1.RunFunctionRequest) map[string]podReport {
	items := req.GetRequiredResources()[requirementPods].GetItems()
	if len(items) == 0 {
		return nil
	}
	out := make(map[string]podReport, len(items))
	for _, it := range items {
		pod := it.GetResource()
		job := controllingJob(pod)
		if job == "" {
			continue
		}
		for _, cs := range get(pod, "status", "containerStatuses").GetListValue().GetValues() {
			c := cs.GetStructValue()
			if getString(c, "name") != containerName {
				continue
			}
			term := get(c, "state", "terminated").GetStructValue()
			code := get(term, "exitCode")
			if term == nil || !present(code) {
				continue
			}
			r := out[job]
			if code.GetNumberValue() == 0 {
				if s, ok := parseSummary(getString(term, "message")); ok {
					r.summary = &s
				}
			} else if at := getString(term, "finishedAt"); r.failure == "" || at >= r.failedAt {
				if line := lastLine(getString(term, "message")); line != "" {
					r.failure, r.failedAt = line, at
				}
			}
			out[job] = r
		}
	}
	return out
}

// controllingJob returns the uid of the Job that controls a pod, if any.
func controllingJob(pod *structpb.Struct) string {
	for _, ref := range get(pod, "metadata", "ownerReferences").GetListValue().GetValues() {
		r := ref.GetStructValue()
		if get(r, "controller").GetBoolValue() && getString(r, "kind") == "Job" &&
			strings.HasPrefix(getString(r, "apiVersion"), "batch/") {
			return getString(r, "uid")
		}
	}
	return ""
}

// maxFailureBytes bounds the failure reason a pod's last line gives; the
// script's own reasons are far shorter.
const maxFailureBytes = 512

// lastLine is the last line of a termination message that says something,
// in plain text: terminal colours and other control characters go, and so
// does anything past maxFailureBytes.
func lastLine(msg string) string {
	lines := strings.Split(msg, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := plainText(lines[i]); l != "" {
			return truncateUTF8(l, maxFailureBytes)
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
	msg = strings.TrimSpace(msg)
	if msg == "" || len(msg) > maxSummaryBytes {
		return script.Summary{}, false
	}
	if s, ok := parseScriptSummary(msg); ok {
		return s, true
	}
	var s script.Summary
	d := json.NewDecoder(strings.NewReader(msg))
	d.DisallowUnknownFields()
	if err := d.Decode(&s); err != nil || d.More() {
		return script.Summary{}, false
	}
	return s, validSummary(s)
}

// parseScriptSummary reads the exact line the script prints,
// {"commit":"<hex>","files":N,"bytes":N,"seconds":N}, without encoding/json.
// It accepts only what the decoder above would accept with the same result;
// anything else (other spacing or order, escapes, big numbers) goes to the
// decoder, so the outcome never depends on which path read the message.
func parseScriptSummary(msg string) (script.Summary, bool) {
	var s script.Summary
	rest, ok := strings.CutPrefix(msg, `{"commit":"`)
	if !ok {
		return s, false
	}
	end := strings.IndexByte(rest, '"')
	if end < 0 || end > 64 || strings.IndexFunc(rest[:end], notHex) >= 0 {
		return s, false
	}
	s.Commit, rest = rest[:end], rest[end+1:]
	for _, f := range []struct {
		prefix string
		to     *int64
	}{{`,"files":`, &s.Files}, {`,"bytes":`, &s.Bytes}, {`,"seconds":`, &s.Seconds}} {
		if rest, ok = strings.CutPrefix(rest, f.prefix); !ok {
			return s, false
		}
		n := 0
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		// JSON has no leading zeros; 18 digits always fit an int64.
		if n == 0 || n > 18 || n > 1 && rest[0] == '0' {
			return s, false
		}
		v, err := strconv.ParseInt(rest[:n], 10, 64)
		if err != nil {
			return s, false
		}
		*f.to, rest = v, rest[n:]
	}
	return s, rest == "}"
}

func notHex(r rune) bool { return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') }
