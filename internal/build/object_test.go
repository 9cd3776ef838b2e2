package build

import (
	"testing"

	"github.com/google/cel-go/cel"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/hfops/function-hf-download/internal/read"
)

// TestJobReadyQueryIsJobEnd: the CEL query that lets provider-kubernetes call
// an Object's Job ready says what read.JobEnd says, for every set of conditions a
// Job controller writes (Complete and Failed never both true).
func TestJobReadyQueryIsJobEnd(t *testing.T) {
	env, err := cel.NewEnv(cel.Variable("object", cel.DynType))
	if err != nil {
		t.Fatal(err)
	}
	ast, iss := env.Compile(JobReadyQuery)
	if iss.Err() != nil {
		t.Fatal(iss.Err())
	}
	prg, err := env.Program(ast)
	if err != nil {
		t.Fatal(err)
	}
	types := []batchv1.JobConditionType{batchv1.JobComplete, batchv1.JobFailed, batchv1.JobSuspended,
		batchv1.JobSuccessCriteriaMet, batchv1.JobFailureTarget}
	statuses := []corev1.ConditionStatus{corev1.ConditionTrue, corev1.ConditionFalse, corev1.ConditionUnknown}
	// Every list of up to two conditions.
	var sets [][]batchv1.JobCondition
	sets = append(sets, nil)
	for _, t1 := range types {
		for _, s1 := range statuses {
			c1 := batchv1.JobCondition{Type: t1, Status: s1}
			sets = append(sets, []batchv1.JobCondition{c1})
			for _, t2 := range types {
				for _, s2 := range statuses {
					sets = append(sets, []batchv1.JobCondition{c1, {Type: t2, Status: s2}})
				}
			}
		}
	}
	checked := 0
	for _, conditions := range sets {
		trueOf := map[batchv1.JobConditionType]bool{}
		list := make([]any, 0, len(conditions))
		for _, c := range conditions {
			trueOf[c.Type] = trueOf[c.Type] || c.Status == corev1.ConditionTrue
			list = append(list, map[string]any{"type": string(c.Type), "status": string(c.Status)})
		}
		if trueOf[batchv1.JobComplete] && trueOf[batchv1.JobFailed] {
			continue // no Job controller writes both
		}
		out, _, err := prg.Eval(map[string]any{"object": map[string]any{"status": map[string]any{"conditions": list}}})
		if err != nil {
			t.Fatalf("%v: %v", conditions, err)
		}
		phase, _ := read.JobEnd(conditions)
		if ready := out.Value() == true; ready != (phase == read.PhaseCompleted) {
			t.Errorf("conditions %v: the query says ready=%v, jobEnd says %s", conditions, ready, phase)
		}
		checked++
	}
	if checked < 200 {
		t.Errorf("checked %d sets of conditions", checked)
	}
}
