package main

import (
	"bytes"
	"encoding/json"
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
	var s script.Summary
	d := json.NewDecoder(bytes.NewReader([]byte(msg)))
	d.DisallowUnknownFields()
	if err := d.Decode(&s); err != nil || d.More() {
		return script.Summary{}, false
	}
	return s, validSummary(s)
}

func notHex(r rune) bool { return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') }
