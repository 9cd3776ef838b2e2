package e2e

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/google/go-cmp/cmp"
	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/hfops/function-hf-download/hubtest"
)

// The scenarios below run on the real node: the download Jobs' pods are scheduled, the
// kubelet starts them from the imported downloader image under the restricted profile, they
// mount a real volume, read the token through their secretKeyRef, run the script with the
// real hf CLI against the fake Hub, and the kubelet reports how they ended.

// realDownload is a ModelDownload on the real node and the directory, on this machine, of
// the volume its PVC is bound to.
type realDownload struct {
	*modelDownload
	volume string
}

// applyRealDownload applies example/xr.yaml through the real-node Composition under name,
// its models replaced by models, in a restricted namespace with the example's token Secret
// and a PVC bound to a static volume, after edit (if any) changed its spec.
func applyRealDownload(t testing.TB, n *node, name string, models []any, edit func(spec map[string]any)) *realDownload {
	t.Helper()
	return applyRealDownloadOn(t, n, name, nil, models, edit)
}

// applyRealDownloadOn is applyRealDownload, with prepare (if any) called on the
// volume's directory before anything can mount it.
func applyRealDownloadOn(t testing.TB, n *node, name string, prepare func(volume string), models []any, edit func(spec map[string]any)) *realDownload {
	t.Helper()
	ns := tokenNamespace(t, name)
	xr := exampleXR(t)
	pvc, _, _ := unstructured.NestedString(xr.Object, "spec", "storagePVC")
	volume := realVolume(t, n, ns, pvc)
	if prepare != nil {
		prepare(volume)
	}
	// What the Hub saw of the test's repos says, when it fails, how far its pods got.
	t.Cleanup(func() {
		if t.Failed() {
			for _, m := range models {
				repo, _ := m.(map[string]any)["name"].(string)
				t.Logf("the Hub's requests for %s: %q", repo, n.hub.SeenFor("model", repo))
			}
		}
	})
	md := applyIn(t, ns, xr, name, func(spec map[string]any) {
		spec["crossplane"] = map[string]any{"compositionRef": map[string]any{"name": realNodeComposition}}
		spec["models"] = models
		// The example asks for 2 CPUs and 8 GiB per Job; the Composition's smaller
		// defaults fit this machine.
		if settings, ok := spec["settings"].(map[string]any); ok {
			delete(settings, "cpu")
			delete(settings, "memory")
		}
		if edit != nil {
			edit(spec)
		}
	})
	return &realDownload{modelDownload: md, volume: volume}
}

// exampleToken is the token example/required/secret.yaml holds, as stored in namespace ns.
func exampleToken(t testing.TB, ns string) string {
	t.Helper()
	s, err := cluster.kube.CoreV1().Secrets(ns).Get(context.Background(), "hf-token", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return string(s.Data["token"])
}

// newCommit is a commit id no other test's repo has.
func newCommit(t testing.TB) string {
	t.Helper()
	return randomHex(t, 20)
}

// newRepo is a model repo id of the form org/<name>-<random>: one that no other test, nor
// an earlier run of this one (-count), serves on the shared Hub, so that what the Hub saw of
// it (SeenFor) is this test's alone.
func newRepo(t testing.TB, id string) string {
	t.Helper()
	return id + "-" + randomHex(t, 3)
}

// randomHex is n random bytes in hex.
func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// waitModel waits, for up to timeout, until the named model's status entry satisfies cond,
// and returns the XR.
func (md *modelDownload) waitModel(t testing.TB, model string, timeout time.Duration, what string, cond func(m map[string]any) bool) *unstructured.Unstructured {
	t.Helper()
	var xr *unstructured.Unstructured
	waitFor(t, timeout, fmt.Sprintf("ModelDownload %s/%s: %s %s", md.ns, md.name, model, what), func() (bool, string) {
		var err error
		if xr, err = md.get(); err != nil {
			return false, err.Error()
		}
		m := statusModel(xr, model)
		return m != nil && cond(m), fmt.Sprintf("status of %s: %v; pods: %s", model, m, describePods(md.ns))
	})
	return xr
}

// describePods is the phase and container state of every pod in ns, for failure messages.
func describePods(ns string) string {
	l, err := cluster.kube.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, p := range l.Items {
		s := fmt.Sprintf("%s %s node=%q", p.Name, p.Status.Phase, p.Spec.NodeName)
		for _, c := range p.Status.ContainerStatuses {
			s += fmt.Sprintf(" %s=%+v", c.Name, c.State)
		}
		for _, c := range p.Status.Conditions {
			if c.Status != corev1.ConditionTrue {
				s += fmt.Sprintf(" %s=%s(%s)", c.Type, c.Status, c.Message)
			}
		}
		out = append(out, s)
	}
	return strings.Join(out, "; ")
}

// settingsOf is spec.settings of a spec being edited, made if it is not there.
func settingsOf(spec map[string]any) map[string]any {
	settings, _ := spec["settings"].(map[string]any)
	if settings == nil {
		settings = map[string]any{}
		spec["settings"] = settings
	}
	return settings
}

// phaseIs is a waitModel condition: the model's phase is phase.
func phaseIs(phase string) func(map[string]any) bool {
	return func(m map[string]any) bool { return m["phase"] == phase }
}

// filesUnder lists the files below dir (relative paths, sorted), leaving out what hf and
// the script keep for themselves.
func filesUnder(t testing.TB, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() && rel == ".cache" {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	return files
}

// terminationMessages are the termination messages the kubelet reported for the pods in
// ns, by Job name.
func terminationMessages(t testing.TB, ns string) map[string]string {
	t.Helper()
	l, err := cluster.kube.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range l.Items {
		for _, c := range p.Status.ContainerStatuses {
			if c.State.Terminated != nil {
				out[p.Labels["batch.kubernetes.io/job-name"]] = c.State.Terminated.Message
			}
		}
	}
	return out
}

// TestRealXetDownload: a model whose weights the Hub stores with Xet, downloaded by the
// image's hf_xet in a pod limited to 1Gi with settings.enableHFTransfer (hf_xet's high
// performance mode): Completed and verified, the files exact on the volume, fetched from the
// CAS (a read token, a reconstruction, each xorb) and never from resolve; the pod's log says
// what the script bounded hf_xet's download buffer by: the container's own memory limit.
func TestRealXetDownload(t *testing.T) {
	t.Parallel()
	n := useNode(t)
	repo := newRepo(t, "acme/xet-chat")
	weights := strings.Repeat("xet weights that are not all one byte\n", 24<<20/38)
	files := map[string]string{"config.json": `{"model_type":"llama"}`, "model.safetensors": weights}
	commit := newCommit(t)
	models := []any{map[string]any{"name": repo}}
	md := applyRealDownload(t, n, "real-xet", models, func(spec map[string]any) {
		settings := settingsOf(spec)
		settings["memory"] = "1Gi"
		settings["enableHFTransfer"] = true
	})
	n.hub.Set("model", repo, hubtest.Repo{Commit: commit, Files: files, Xet: []string{"model.safetensors"}, Token: exampleToken(t, md.ns)})

	// The kubelet keeps a pod's log while the pod exists: read it then.
	const bounded = "hf_xet's download buffer: 335544320 bytes at most (167772160, and 41943040 a file), under the container's memory limit of 1073741824 bytes"
	waitFor(t, 3*time.Minute, "the download's log saying how hf_xet's buffer is bounded", func() (bool, string) {
		log := downloadLogs(t, md.ns)
		return strings.Contains(log, bounded), log
	})
	xr := md.waitModel(t, repo, 3*time.Minute, "Completed", phaseIs("Completed"))
	m := statusModel(xr, repo)
	if m["commit"] != commit || m["files"] != int64(2) || m["verified"] != true {
		t.Errorf("status says commit %v, files %v, verified %v; want %s, 2, true", m["commit"], m["files"], m["verified"], commit)
	}
	dir := filepath.Join(md.volume, repo)
	for name, content := range files {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != content {
			t.Errorf("%s on the volume: %d bytes (%v), want the Hub's %d", name, len(b), err, len(content))
		}
	}
	if got := hubtest.CountXet(n.hub.SeenFor("model", repo), "model.safetensors"); got.Tokens == 0 || got.Reconstructions == 0 || got.Xorbs != 3 || got.Resolves != 0 {
		t.Errorf("the Hub saw %+v; want token calls, reconstructions, 3 xorb GETs and no resolve of the weights:\n%s",
			got, strings.Join(n.hub.SeenFor("model", repo), "\n"))
	}
}

// downloadLogs is what the download containers of the namespace ns wrote so far, as the
// kubelet keeps it (under its pod log directory, /var/log/pods) while their pods exist.
func downloadLogs(t testing.TB, ns string) string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("/var/log/pods", ns+"_*", "download", "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	for _, p := range paths {
		// A pod deleted meanwhile takes its log with it.
		if b, err := os.ReadFile(p); err == nil {
			all.Write(b)
		}
	}
	return all.String()
}

// TestRealDownload: a ModelDownload applied as a user would ends with the files of its
// globs on the volume and the model Completed with the commit, files and bytes the pod
// reported through the real kubelet; the repo is private, so the token reached hf through
// the Job's secretKeyRef. A second ModelDownload of the same model on the same volume
// completes at the marker, asking the Hub nothing.
func TestRealDownload(t *testing.T) {
	t.Parallel()
	n := useNode(t)
	repo := newRepo(t, "acme/tiny-chat")
	files := map[string]string{
		"config.json":       `{"architectures":["LlamaForCausalLM"],"model_type":"llama","torch_dtype":"bfloat16","max_position_embeddings":4096,"hidden_size":64}`,
		"model.safetensors": safetensors(t, 64, 64),
		"README.md":         "---\nlicense: apache-2.0\n---\n# tiny-chat\n",
	}
	commit := newCommit(t)
	models := []any{map[string]any{"name": repo, "include": []any{"*.json", "*.safetensors", "README.md"}}}
	md := applyRealDownload(t, n, "real-download", models, nil)
	n.hub.Set("model", repo, hubtest.Repo{Commit: commit, Files: files, LFS: []string{"model.safetensors"}, Token: exampleToken(t, md.ns)})

	xr := md.waitModel(t, repo, 3*time.Minute, "Completed", phaseIs("Completed"))
	md.waitXR(t, "Ready", func(xr *unstructured.Unstructured) bool { return conditionStatus(xr, "Ready") == "True" })
	status, _ := yaml.Marshal(xr.Object["status"])
	t.Logf("status of %s/%s after a real download:\n%s", md.ns, md.name, status)

	m := statusModel(xr, repo)
	wantBytes := int64(len(files["config.json"]) + len(files["model.safetensors"]) + len(files["README.md"]))
	if m["commit"] != commit || m["files"] != int64(3) || m["bytes"] != wantBytes || m["verified"] != true {
		t.Errorf("status says commit %v, files %v, bytes %v, verified %v; want %s, 3, %d, true", m["commit"], m["files"], m["bytes"], m["verified"], commit, wantBytes)
	}
	wantCard := map[string]any{"architecture": "LlamaForCausalLM", "modelType": "llama", "dtype": "bfloat16",
		"contextLength": int64(4096), "parameters": int64(64 * 64), "license": "apache-2.0"}
	if diff := cmp.Diff(wantCard, m["card"]); diff != "" {
		t.Errorf("the model card in status (-want +got):\n%s", diff)
	}
	dir := filepath.Join(md.volume, repo)
	got := filesUnder(t, dir)
	want := []string{".hf-download-complete.json", ".hf-download.lock", "README.md", "config.json", "model.safetensors"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("files on the volume (-want +got):\n%s", diff)
	}
	marker, _ := os.ReadFile(filepath.Join(dir, ".hf-download-complete.json"))
	t.Logf("the marker of the real download:\n%s", marker)
	for _, name := range []string{"config.json", "model.safetensors"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(b) != files[name] {
			t.Errorf("%s on the volume: %d bytes (%v), want the Hub's %d", name, len(b), err, len(files[name]))
		}
	}
	// What the status says is what the pod said, through the kubelet.
	msgs := terminationMessages(t, md.ns)
	var summary struct {
		Commit string `json:"commit"`
		Files  int64  `json:"files"`
		Bytes  int64  `json:"bytes"`
	}
	if err := json.Unmarshal([]byte(msgs[m["jobName"].(string)]), &summary); err != nil || summary.Commit != commit {
		t.Errorf("termination message of Job %s: %q (%v), want the summary of commit %s", m["jobName"], msgs[m["jobName"].(string)], err, commit)
	}
	t.Logf("the summary of the real download (its pod's termination message): %s", msgs[m["jobName"].(string)])

	// The same model again, by another ModelDownload on the same volume.
	before := len(n.hub.SeenFor("model", repo))
	second := applyIn(t, md.ns, exampleXR(t), "real-download-again", func(spec map[string]any) {
		spec["crossplane"] = map[string]any{"compositionRef": map[string]any{"name": realNodeComposition}}
		spec["models"] = models
		delete(spec["settings"].(map[string]any), "cpu")
		delete(spec["settings"].(map[string]any), "memory")
	})
	again := statusModel(second.waitModel(t, repo, 3*time.Minute, "Completed", phaseIs("Completed")), repo)
	if again["commit"] != commit || again["files"] != int64(3) || again["bytes"] != wantBytes || again["durationSeconds"] != int64(0) ||
		again["verified"] != true || !cmp.Equal(again["card"], wantCard) {
		t.Errorf("second ModelDownload's status: %v; want commit %s, 3 files, %d bytes, 0 seconds (the marker), verified, the card", again, commit, wantBytes)
	}
	if after := n.hub.SeenFor("model", repo); len(after) != before {
		t.Errorf("the second download asked the Hub %v; a complete download must stop at its marker", after[before:])
	}
	second.delete(t)

	// A new revision: downloaded again, and what the old one had and the new one
	// has not is gone from the directory.
	newCommit := newCommit(t)
	newFiles := map[string]string{
		"config.json":                      `{"architectures":["LlamaForCausalLM"],"model_type":"llama","torch_dtype":"float16"}`,
		"model-00001-of-00001.safetensors": safetensors(t, 8, 8),
	}
	n.hub.Set("model", repo, hubtest.Repo{Commit: newCommit, Files: newFiles, LFS: []string{"model-00001-of-00001.safetensors"}, Token: exampleToken(t, md.ns)})
	md.update(t, func(spec map[string]any) { setModelField(spec, 0, "revision", "v2") })
	xr = md.waitModel(t, repo, 3*time.Minute, "Completed at the new commit", func(m map[string]any) bool {
		return m["phase"] == "Completed" && m["commit"] == newCommit
	})
	if m := statusModel(xr, repo); m["files"] != int64(2) || m["verified"] != true {
		t.Errorf("after the new revision: %v; want 2 files, verified", m)
	}
	want = []string{".hf-download-complete.json", ".hf-download.lock", "config.json", "model-00001-of-00001.safetensors"}
	if diff := cmp.Diff(want, filesUnder(t, dir)); diff != "" {
		t.Errorf("files on the volume after the new revision (-want +got):\n%s", diff)
	}
}

// safetensors is a safetensors file of one float32 tensor of rows x cols: the
// 8-byte little-endian length of its JSON header, the header, the data.
func safetensors(t testing.TB, rows, cols int) string {
	t.Helper()
	header, err := json.Marshal(map[string]any{"weight": map[string]any{
		"dtype": "F32", "shape": []int{rows, cols}, "data_offsets": []int{0, 4 * rows * cols},
	}})
	if err != nil {
		t.Fatal(err)
	}
	size := make([]byte, 8)
	binary.LittleEndian.PutUint64(size, uint64(len(header)))
	return string(size) + string(header) + strings.Repeat("\x00", 4*rows*cols)
}

// TestRealDownloadPrivateRepoWithoutToken: without hfTokenRef, hf is refused by the Hub, the
// pod fails, and the model is Failed with the script's reason as the kubelet reported it.
func TestRealDownloadPrivateRepoWithoutToken(t *testing.T) {
	t.Parallel()
	n := useNode(t)
	repo := newRepo(t, "acme/private-weights")
	models := []any{map[string]any{"name": repo, "retryCount": int64(0)}}
	md := applyRealDownload(t, n, "real-no-token", models, func(spec map[string]any) { delete(spec, "hfTokenRef") })
	n.hub.Set("model", repo, hubtest.Repo{Commit: newCommit(t), Files: map[string]string{"config.json": "{}"}, Token: exampleToken(t, md.ns)})

	xr := md.waitModel(t, repo, 3*time.Minute, "Failed", phaseIs("Failed"))
	m := statusModel(xr, repo)
	msg, _ := m["message"].(string)
	prefix := "download of " + repo + "@main failed: repository not found"
	if !strings.HasPrefix(msg, prefix) {
		t.Errorf("status message %q, want it to start with %q", msg, prefix)
	}
	// The status gives the pod's reason first, then the Job's.
	if got := strings.TrimSpace(terminationMessages(t, md.ns)[m["jobName"].(string)]); got == "" || !strings.HasPrefix(msg, got) {
		t.Errorf("pod's termination message %q, status message %q: want the status to start with the pod's reason", got, msg)
	}
	if _, err := os.Stat(filepath.Join(md.volume, repo, ".hf-download-complete.json")); !os.IsNotExist(err) {
		t.Errorf("a failed download left a marker (stat: %v)", err)
	}
}

// TestRealDownloadStopsWhenDeleted: deleting a ModelDownload whose download is running
// stops its pod on TERM (the script, PID 1 of its container, ends hf and exits with its
// reason) rather than by KILL at the end of its grace period, and leaves no marker.
func TestRealDownloadStopsWhenDeleted(t *testing.T) {
	t.Parallel()
	n := useNode(t)
	repo := newRepo(t, "acme/huge-weights")
	big := "model.safetensors"
	models := []any{map[string]any{"name": repo}}
	md := applyRealDownload(t, n, "real-deleted", models, nil)
	// 32 MiB at 32 KiB/s: some 17 minutes, so the download runs until the test stops it.
	n.hub.Set("model", repo, hubtest.Repo{Commit: newCommit(t), Files: map[string]string{big: strings.Repeat("x", 32<<20)}, Token: exampleToken(t, md.ns), Rate: 32 << 10})

	ctx := context.Background()
	waitFor(t, 3*time.Minute, "the download of "+big+" under way", func() (bool, string) {
		for _, r := range n.hub.SeenFor("model", repo) {
			if strings.HasPrefix(r, "GET /"+repo+"/resolve/") && strings.HasSuffix(r, "/"+big) {
				return true, ""
			}
		}
		return false, describePods(md.ns)
	})
	var pod corev1.Pod
	waitFor(t, time.Minute, "its pod Running on the node", func() (bool, string) {
		pods, err := nodePods(ctx, md.ns)
		if err != nil || len(pods) != 1 || pods[0].Status.Phase != corev1.PodRunning {
			return false, fmt.Sprintf("%s (%v)", describePods(md.ns), err)
		}
		pod = pods[0]
		return true, ""
	})
	// Watched from here on, the pod's last state, in the event of its deletion, says how
	// its container ended.
	w, err := cluster.kube.CoreV1().Pods(md.ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + pod.Name, ResourceVersion: pod.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	if err := md.x.apply.delete(ctx, md.obj); err != nil {
		t.Fatal(err)
	}
	var last *corev1.Pod
	for hung := time.After(2 * time.Minute); last == nil; {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("the watch of pod %s ended before the pod went", pod.Name)
			}
			if p, isPod := ev.Object.(*corev1.Pod); isPod && ev.Type == watch.Deleted {
				last = p
			}
		case <-hung:
			t.Fatalf("pod %s still there 2 minutes after its ModelDownload was deleted: %s", pod.Name, describePods(md.ns))
		}
	}
	var ended *corev1.ContainerStateTerminated
	if cs := last.Status.ContainerStatuses; len(cs) == 1 {
		ended = cs[0].State.Terminated
	}
	// KILL, at the end of the grace period, would end the container with 128+9 and
	// without the script's reason.
	if ended == nil || ended.ExitCode == 128+int32(syscall.SIGKILL) || !strings.Contains(ended.Message, "stopped by SIGTERM") {
		t.Errorf("pod %s's container ended %+v; want it stopped by TERM with the script's reason, not killed", pod.Name, ended)
	}
	waitGone(t, 2*time.Minute, "the ModelDownload", func(context.Context) error {
		_, err := md.get()
		return err
	})
	if _, err := os.Stat(filepath.Join(md.volume, repo, ".hf-download-complete.json")); !os.IsNotExist(err) {
		t.Errorf("a stopped download left a marker (stat: %v)", err)
	}
}

// TestRealRetryByRevision is the lifecycle on the real node: two models, one downloaded and
// one whose revision the Hub does not know, Failed with the script's reason; a new revision
// of the failed model replaces its Job only, and both end Completed with the XR Ready.
func TestRealRetryByRevision(t *testing.T) {
	t.Parallel()
	n := useNode(t)
	good, bad := newRepo(t, "acme/good-model"), newRepo(t, "acme/late-model")
	models := []any{
		map[string]any{"name": good},
		map[string]any{"name": bad, "revision": "v1", "retryCount": int64(0)},
	}
	md := applyRealDownload(t, n, "real-retry", models, nil)
	tok := exampleToken(t, md.ns)
	goodCommit := newCommit(t)
	n.hub.Set("model", good, hubtest.Repo{Commit: goodCommit, Files: map[string]string{"config.json": `{"model_type":"bert"}`}, Token: tok})
	n.hub.Set("model", bad, hubtest.Repo{Fail: &hubtest.Error{Status: 404, Code: "RevisionNotFound", Message: "Invalid rev id: v1"}, Token: tok})

	md.waitModel(t, bad, 3*time.Minute, "Failed", phaseIs("Failed"))
	xr := md.waitModel(t, good, 3*time.Minute, "Completed", phaseIs("Completed"))
	if msg, _ := statusModel(xr, bad)["message"].(string); !strings.HasPrefix(msg, "download of "+bad+"@v1 failed: revision v1 not found") {
		t.Errorf("status message of %s: %q, want the script's reason", bad, msg)
	}
	jobs := md.waitJobs(t, 2, "one Job per model", nil)

	lateCommit := newCommit(t)
	n.hub.Set("model", bad, hubtest.Repo{Commit: lateCommit, Files: map[string]string{"config.json": `{"model_type":"t5"}`}, Token: tok})
	md.update(t, func(spec map[string]any) { setModelField(spec, 1, "revision", "v2") })
	replaced := md.waitJobs(t, 2, "a new Job for "+bad+" only", func(j map[string]batchv1.Job) bool {
		return j[bad].Name != jobs[bad].Name
	})
	if got := replaced[good]; got.Name != jobs[good].Name || got.UID != jobs[good].UID {
		t.Errorf("Job of unchanged model %s was replaced: %s (%s), was %s (%s)", good, got.Name, got.UID, jobs[good].Name, jobs[good].UID)
	}
	xr = md.waitModel(t, bad, 3*time.Minute, "Completed", phaseIs("Completed"))
	md.waitXR(t, "Ready", func(xr *unstructured.Unstructured) bool { return conditionStatus(xr, "Ready") == "True" })
	for model, commit := range map[string]string{good: goodCommit, bad: lateCommit} {
		if m := statusModel(xr, model); m["commit"] != commit {
			t.Errorf("status of %s: commit %v, want %s", model, m["commit"], commit)
		}
	}
}

// TestRealDownloadTooBigForTheVolume: a volume of 1 MiB (a tmpfs the test mounts where
// the static volume is) and a model of 4 MiB: the pod fails before downloading anything,
// and status says how much it needs, how much is free and on which PVC.
func TestRealDownloadTooBigForTheVolume(t *testing.T) {
	t.Parallel()
	n := useNode(t)
	repo := newRepo(t, "acme/too-big")
	models := []any{map[string]any{"name": repo, "retryCount": int64(0)}}
	small := func(dir string) {
		if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=1m,mode=0755,uid=%d,gid=%d", volumeOwner, volumeOwner)); err != nil {
			t.Fatalf("mount a 1 MiB tmpfs on %s: %v", dir, err)
		}
		t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	}
	md := applyRealDownloadOn(t, n, "real-too-big", small, models, nil)
	n.hub.Set("model", repo, hubtest.Repo{Commit: newCommit(t), Files: map[string]string{"model.safetensors": strings.Repeat("w", 4<<20)},
		LFS: []string{"model.safetensors"}, Token: exampleToken(t, md.ns)})

	xr := md.waitModel(t, repo, 3*time.Minute, "Failed", phaseIs("Failed"))
	msg, _ := statusModel(xr, repo)["message"].(string)
	t.Logf("status message of a model too big for its volume: %s", msg)
	if !regexp.MustCompile(`^download of ` + regexp.QuoteMeta(repo) + `@main failed: needs 4\.2 MB, [0-9.]+ (MB|kB) free on PVC models-pvc`).MatchString(msg) {
		t.Errorf("status message %q, want the bytes needed and free and the PVC named", msg)
	}
	for _, r := range n.hub.SeenFor("model", repo) {
		if strings.HasPrefix(r, "GET /"+repo+"/resolve/") {
			t.Errorf("the Job downloaded (%s) though the volume was too small", r)
		}
	}
}

// TestRealDownloadStallResumes: the first attempt's file body comes so slowly that nothing
// lands on disk; the watchdog stops hf after settings.stallTimeoutSeconds and the pod fails
// as stalled; the Job's retry, which the Hub serves at full speed, completes the download.
func TestRealDownloadStallResumes(t *testing.T) {
	t.Parallel()
	n := useNode(t)
	repo := newRepo(t, "acme/stalling")
	models := []any{map[string]any{"name": repo, "retryCount": int64(1)}}
	// The watchdog's clock runs from hf's start, so an hf that takes longer than this to ask
	// for the body (the first attempt) or write its first byte (the retry) fails the test.
	// On a quarter of a CPU, beside the progress reporter, hf takes some 18 s to get there
	// on a quiet machine; a busy one makes that several times longer, and 30 s was not enough.
	const stallTimeout = 120
	md := applyRealDownload(t, n, "real-stall", models, func(spec map[string]any) {
		spec["settings"].(map[string]any)["stallTimeoutSeconds"] = int64(stallTimeout)
	})
	commit, tok := newCommit(t), exampleToken(t, md.ns)
	files := map[string]string{"model.safetensors": safetensors(t, 32, 32)}
	// A byte a second: hf writes in 10 MiB steps, so nothing lands on disk and the watchdog
	// must call it stalled, while hf's own read timeout (10 s), after which it would ask
	// again, is never reached. A request keeps the repo it was routed with: once the first
	// attempt has asked for the body, the Hub can serve it at full speed to whatever asks
	// next, which can only be the retry, long before the first attempt can fail.
	n.hub.Set("model", repo, hubtest.Repo{Commit: commit, Files: files, LFS: []string{"model.safetensors"}, Token: tok, Rate: 1})
	waitFor(t, 3*time.Minute, "the first attempt asking for the body", func() (bool, string) {
		for _, r := range n.hub.SeenFor("model", repo) {
			if strings.HasPrefix(r, "GET /"+repo+"/resolve/") {
				return true, ""
			}
		}
		return false, describePods(md.ns)
	})
	n.hub.Set("model", repo, hubtest.Repo{Commit: commit, Files: files, LFS: []string{"model.safetensors"}, Token: tok})

	xr := md.waitModel(t, repo, stallTimeout*time.Second+5*time.Minute, "Completed by the Job's retry", phaseIs("Completed"))
	m := statusModel(xr, repo)
	if m["commit"] != commit || m["verified"] != true {
		t.Errorf("status after the retry: %v; want commit %s, verified", m, commit)
	}
	// The Job keeps its pods (for keepAliveSeconds): the first failed as stalled.
	pods, err := jobPods(context.Background(), md.ns, m["jobName"].(string))
	if err != nil || len(pods) != 2 {
		t.Fatalf("want the Job's two pods, the stalled one and its retry: %s (%v)", describePods(md.ns), err)
	}
	var stalled string
	if cs := pods[0].Status.ContainerStatuses; len(cs) == 1 && cs[0].State.Terminated != nil {
		stalled = cs[0].State.Terminated.Message
	}
	if !strings.Contains(stalled, fmt.Sprintf("stalled: no progress for %d s", stallTimeout)) {
		t.Errorf("the first pod's termination message %q, want it stalled", stalled)
	}
	t.Logf("the stalled pod's reason: %s", strings.TrimSpace(stalled))
}

// TestRealDownloadProgress: a large file served slowly. While it downloads, the XR shows
// its progress growing from one read to the next (what the pod patched into the progress
// ConfigMap with its own token), and the bytes of the whole ModelDownload; once complete,
// the progress goes and the summary stays. The pods' token is refused by the real
// authorizer for everything but their own ModelDownload's ConfigMap.
func TestRealDownloadProgress(t *testing.T) {
	t.Parallel()
	n := useNode(t)
	repo := newRepo(t, "acme/big-model")
	models := []any{map[string]any{"name": repo}}
	md := applyRealDownload(t, n, "real-progress", models, nil)
	// 60 MiB at 1 MiB/s: hf writes in 10 MiB steps, the pod reports every 15 s.
	n.hub.Set("model", repo, hubtest.Repo{Commit: newCommit(t), Files: map[string]string{"model.safetensors": strings.Repeat("p", 60<<20)},
		LFS: []string{"model.safetensors"}, Token: exampleToken(t, md.ns), Rate: 1 << 20})

	progressBytes := func(m map[string]any) int64 {
		p, _ := m["progress"].(map[string]any)
		b, _ := p["bytes"].(int64)
		return b
	}
	xr := md.waitModel(t, repo, 3*time.Minute, "reporting progress", func(m map[string]any) bool { return progressBytes(m) > 0 })
	first := statusModel(xr, repo)
	t.Logf("while downloading: status.downloaded %v, status.models[0].progress %v", xr.Object["status"].(map[string]any)["downloaded"], first["progress"])
	xr = md.waitModel(t, repo, 2*time.Minute, "progress growing", func(m map[string]any) bool { return progressBytes(m) > progressBytes(first) })
	t.Logf("later: status.downloaded %v, status.models[0].progress %v; ModelsDownloaded: %v",
		xr.Object["status"].(map[string]any)["downloaded"], statusModel(xr, repo)["progress"], condition(xr, "ModelsDownloaded")["message"])
	t.Logf("kubectl get modeldownloads -n %s (the apiserver's Table, as kubectl prints it):\n%s", md.ns, getTable(t, md.ns))
	if p := statusModel(xr, repo)["progress"].(map[string]any); p["totalBytes"] != int64(60<<20) {
		t.Errorf("progress %v: want totalBytes %d", p, 60<<20)
	}

	// The pods' identity, with a real token of its own.
	ctx := context.Background()
	pods, err := nodePods(ctx, md.ns)
	if err != nil || len(pods) == 0 {
		t.Fatalf("no pod on the node (%v)", err)
	}
	sa := pods[0].Spec.ServiceAccountName
	tr, err := cluster.kube.CoreV1().ServiceAccounts(md.ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("a token for %s: %v", sa, err)
	}
	as, err := kubernetes.NewForConfig(cluster.restConfig(tr.Status.Token))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := as.CoreV1().ConfigMaps(md.ns).Patch(ctx, sa, types.MergePatchType, []byte(`{"data":{"e2e":"x"}}`), metav1.PatchOptions{}); err != nil {
		t.Errorf("the pods' account cannot patch its progress ConfigMap %s: %v", sa, err)
	}
	for what, call := range map[string]func() error{
		"read the token Secret": func() error {
			_, err := as.CoreV1().Secrets(md.ns).Get(ctx, "hf-token", metav1.GetOptions{})
			return err
		},
		"patch another ModelDownload's ConfigMap": func() error {
			_, err := as.CoreV1().ConfigMaps(md.ns).Patch(ctx, "hf-dl-other-progress-0123456789", types.MergePatchType, []byte(`{"data":{"x":"y"}}`), metav1.PatchOptions{})
			return err
		},
		"list pods": func() error {
			_, err := as.CoreV1().Pods(md.ns).List(ctx, metav1.ListOptions{})
			return err
		},
		"delete its own ConfigMap": func() error {
			return as.CoreV1().ConfigMaps(md.ns).Delete(ctx, sa, metav1.DeleteOptions{})
		},
	} {
		if err := call(); !apierrors.IsForbidden(err) {
			t.Errorf("the pods' account may %s: %v (want Forbidden)", what, err)
		}
	}

	xr = md.waitModel(t, repo, 3*time.Minute, "Completed", phaseIs("Completed"))
	if m := statusModel(xr, repo); m["progress"] != nil || m["bytes"] != int64(60<<20) {
		t.Errorf("once completed: %v; want no progress, the summary's bytes", m)
	}
}

// getTable is what `kubectl get modeldownloads -n ns` prints: the apiserver's Table of
// them (the XRD's printer columns), laid out in columns.
func getTable(t testing.TB, ns string) string {
	t.Helper()
	raw, err := cluster.kube.Discovery().RESTClient().Get().
		AbsPath("/apis/hfops.kamal.dev/v1alpha1/namespaces", ns, "modeldownloads").
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").
		Do(context.Background()).Raw()
	if err != nil {
		t.Fatalf("get the ModelDownloads of %s as a Table: %v", ns, err)
	}
	var table metav1.Table
	if err := json.Unmarshal(raw, &table); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 8, 3, ' ', 0)
	var head []string
	for _, c := range table.ColumnDefinitions {
		if c.Priority == 0 {
			head = append(head, strings.ToUpper(c.Name))
		}
	}
	_, _ = fmt.Fprintln(w, strings.Join(head, "\t"))
	for _, r := range table.Rows {
		var cells []string
		for i, c := range table.ColumnDefinitions {
			if c.Priority == 0 {
				cells = append(cells, fmt.Sprint(r.Cells[i]))
			}
		}
		_, _ = fmt.Fprintln(w, strings.Join(cells, "\t"))
	}
	_ = w.Flush()
	return b.String()
}
