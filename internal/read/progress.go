package read

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/hfops/function-hf-download/script"
)

// maxProgressBytes bounds a progress report read back: the script's are
// about 200 bytes.
const maxProgressBytes = 1024

// ReadProgress is the progress the pods of a model's current Job (jobName)
// reported into the progress ConfigMap (reports, by content hash),
// nil when there is none to show: a report of another attempt's pod (its
// name does not start with the Job's), or one that is not the script's.
func ReadProgress(reports map[string]string, contentHash, jobName string) *script.Progress {
	raw, ok := reports[contentHash]
	if !ok || jobName == "" || len(raw) > maxProgressBytes {
		return nil
	}
	var p script.Progress
	d := json.NewDecoder(strings.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(&p); err != nil || d.More() || !strings.HasPrefix(p.Attempt, jobName+"-") {
		return nil
	}
	if _, err := time.Parse(time.RFC3339, p.Updated); err != nil ||
		p.Bytes < 0 || p.TotalBytes < 0 || p.Files < 0 || p.TotalFiles < 0 || p.BytesPerSecond < 0 || p.ETASeconds < 0 {
		return nil
	}
	return &p
}
