package main

import (
	"encoding/json"
	"strconv"
	"strings"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"

	"github.com/hfops/function-hf-download/script"
)

// What landed on disk: on success the download script writes a one-line JSON
// summary to its termination message. A pod's status is written by its
// kubelet, and its log tail may end up there too (FallbackToLogsOnError), so
// the message is parsed strictly and anything odd is ignored.

const maxSummaryBytes = 1024

// jobNameLabels are the labels the Job controller puts on its pods (the
// second is the pre-1.27 one).
var jobNameLabels = []string{"batch.kubernetes.io/job-name", "job-name"}

// podSummaries maps a Job name to the summary of its succeeded pod.
func podSummaries(req *fnv1.RunFunctionRequest) map[string]script.Summary {
	items := req.GetRequiredResources()[requirementPods].GetItems()
	if len(items) == 0 {
		return nil
	}
	out := make(map[string]script.Summary, len(items))
	for _, it := range items {
		pod := it.GetResource()
		var job string
		for _, l := range jobNameLabels {
			if job = getString(pod, "metadata", "labels", l); job != "" {
				break
			}
		}
		if job == "" {
			continue
		}
		for _, cs := range get(pod, "status", "containerStatuses").GetListValue().GetValues() {
			c := cs.GetStructValue()
			if getString(c, "name") != containerName {
				continue
			}
			term := get(c, "state", "terminated").GetStructValue()
			if term == nil || get(term, "exitCode").GetNumberValue() != 0 || !present(get(term, "exitCode")) {
				continue
			}
			if s, ok := parseSummary(getString(term, "message")); ok {
				out[job] = s
			}
		}
	}
	return out
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
