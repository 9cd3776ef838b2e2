package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// kube-state-metrics, run as a platform team would beside the package: with
// monitoring/kube-state-metrics.yaml, under monitoring/kube-state-metrics-rbac.yaml's
// ClusterRole alone, exporting only custom resource state.

// apiGroup is the ModelDownloads' group in the shipped configuration and role; the claim
// flavour's runs with its own group here (legacyGroup), as both XRDs share one cluster.
const apiGroup = "hfops.kamal.dev"

var (
	ksmMu   sync.Mutex
	ksmURLs = map[string]string{}
)

// useKubeStateMetrics starts kube-state-metrics for the ModelDownloads of group the first
// time a test needs it and returns the URL of its metrics.
func useKubeStateMetrics(t testing.TB, group string) string {
	t.Helper()
	useFunction(t)
	ksmMu.Lock()
	defer ksmMu.Unlock()
	if url, ok := ksmURLs[group]; ok {
		return url
	}
	url, err := startKubeStateMetrics(cluster, group)
	if err != nil {
		t.Fatalf("start kube-state-metrics for %s: %v", group, err)
	}
	ksmURLs[group] = url
	return url
}

// ksmName names kube-state-metrics' process, account and binding for group.
func ksmName(group string) string {
	if group == apiGroup {
		return "kube-state-metrics"
	}
	return "kube-state-metrics-" + strings.ReplaceAll(group, ".", "-")
}

// shipped reads a file of monitoring/ with the API group replaced by group.
func shipped(cp *controlPlane, name, group string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(cp.repoRoot, "monitoring", name))
	if err != nil || group == apiGroup {
		return b, err
	}
	out := regexp.MustCompile(`(group: |apiGroups: \[)`+regexp.QuoteMeta(apiGroup)+`\b`).ReplaceAll(b, []byte("${1}"+group))
	if bytes.Equal(out, b) {
		return nil, fmt.Errorf("monitoring/%s names no API group %s", name, apiGroup)
	}
	return out, nil
}

func startKubeStateMetrics(cp *controlPlane, group string) (string, error) {
	ctx := context.Background()
	name := ksmName(group)
	rbac, err := shipped(cp, "kube-state-metrics-rbac.yaml", group)
	if err != nil {
		return "", err
	}
	role := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(rbac, &role.Object); err != nil {
		return "", fmt.Errorf("monitoring/kube-state-metrics-rbac.yaml: %w", err)
	}
	if role.GetKind() != "ClusterRole" {
		return "", fmt.Errorf("monitoring/kube-state-metrics-rbac.yaml: want one ClusterRole, got a %s", role.GetKind())
	}
	role.SetName(name)
	if _, err := cp.dynamic.Resource(rbacv1.SchemeGroupVersion.WithResource("clusterroles")).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	if _, err := cp.kube.CoreV1().ServiceAccounts(crossplaneNamespace).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	if _, err := cp.kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: crossplaneNamespace, Name: name}},
	}, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	tr, err := cp.kube.CoreV1().ServiceAccounts(crossplaneNamespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](6 * 3600)}},
		metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	if err := cp.writeKubeconfig(name, tr.Status.Token); err != nil {
		return "", err
	}
	config, err := shipped(cp, "kube-state-metrics.yaml", group)
	if err != nil {
		return "", err
	}
	configFile := filepath.Join(cp.dir, name+".yaml")
	if err := os.WriteFile(configFile, config, 0o600); err != nil {
		return "", err
	}
	var url string
	err = startWithRetry(2, 2*time.Minute, func(ports []int) (*process, func() error, error) {
		url = fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[0])
		p, err := startProcess(cp.logDir, name, nil, cp.bin("kube-state-metrics"),
			"--kubeconfig="+cp.kubeconfigPath(name),
			"--custom-resource-state-only",
			"--custom-resource-state-config-file="+configFile,
			"--host=127.0.0.1", "--port="+strconv.Itoa(ports[0]), "--telemetry-host=127.0.0.1", "--telemetry-port="+strconv.Itoa(ports[1]),
		)
		if err != nil {
			return nil, nil, err
		}
		cp.track(p)
		// It serves at once; what it exports follows its discovery of the CRD, which the
		// tests wait for through the series they expect.
		return p, func() error {
			_, err := scrape(url)
			return err
		}, nil
	})
	return url, err
}

func scrape(url string) (string, error) {
	resp, err := http.Get(url) //nolint:noctx // a loopback scrape in a test
	if err != nil {
		return "", err
	}
	defer resp.Body.Close() //nolint:errcheck // read to the end below
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), err
}

// sample is one exported series and its value.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

var labelPair = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

// parseSamples reads the text exposition kube-state-metrics writes (its TYPE lines say
// stateset and info, which Prometheus' classic text parser does not take).
func parseSamples(text string) ([]sample, error) {
	var out []sample
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cut := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[cut+1:], 64)
		if cut < 0 || err != nil {
			return nil, fmt.Errorf("not a sample: %q", line)
		}
		s := sample{name: line[:cut], labels: map[string]string{}, value: v}
		if i := strings.IndexByte(line, '{'); i >= 0 && i < cut {
			s.name = line[:i]
			for _, m := range labelPair.FindAllStringSubmatch(line[i:cut], -1) {
				s.labels[m[1]] = strings.NewReplacer(`\"`, `"`, `\\`, `\`, `\n`, "\n").Replace(m[2])
			}
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

// seriesOf are the samples of one ModelDownload.
func seriesOf(samples []sample, ns, name string) []sample {
	var out []sample
	for _, s := range samples {
		if s.labels["namespace"] == ns && s.labels["modeldownload"] == name {
			out = append(out, s)
		}
	}
	return out
}

// sampleValue is the value of the one series of name whose labels include want; ok is false when
// there is none.
func sampleValue(samples []sample, name string, want map[string]string) (float64, bool) {
	for _, s := range samples {
		if s.name != name {
			continue
		}
		match := true
		for k, v := range want {
			match = match && s.labels[k] == v
		}
		if match {
			return s.value, true
		}
	}
	return 0, false
}

// expectation is a series that must be exported with a value.
type expectation struct {
	name   string
	labels map[string]string
	value  float64
}

// unmet lists the expectations the samples do not meet.
func unmet(samples []sample, want []expectation) []string {
	var out []string
	for _, w := range want {
		got, ok := sampleValue(samples, w.name, w.labels)
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s %v missing", w.name, w.labels))
		case got != w.value:
			out = append(out, fmt.Sprintf("%s %v = %v, want %v", w.name, w.labels, got, w.value))
		}
	}
	return out
}

// waitMetrics scrapes kube-state-metrics until the ModelDownload's series meet want.
func waitMetrics(t testing.TB, url string, md *modelDownload, what string, want []expectation) []sample {
	t.Helper()
	var samples []sample
	waitFor(t, 2*time.Minute, what, func() (bool, string) {
		text, err := scrape(url)
		if err != nil {
			return false, err.Error()
		}
		all, err := parseSamples(text)
		if err != nil {
			return false, err.Error()
		}
		samples = seriesOf(all, md.ns, md.name)
		missing := unmet(samples, want)
		return len(missing) == 0, strings.Join(missing, "; ")
	})
	return samples
}

func labelSet(kv ...string) map[string]string {
	out := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// startPrometheus runs Prometheus as a platform team would beside kube-state-metrics: it
// scrapes it (every second here) and evaluates monitoring/alerts.yaml. It returns the URL of
// its HTTP API.
func startPrometheus(t testing.TB, ksm string) string {
	t.Helper()
	dir := t.TempDir()
	target := strings.TrimSuffix(strings.TrimPrefix(ksm, "http://"), "/metrics")
	config := fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"+
		"rule_files: [%q]\nscrape_configs:\n- job_name: kube-state-metrics\n  static_configs:\n  - targets: [%q]\n",
		filepath.Join(cluster.repoRoot, "monitoring", "alerts.yaml"), target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	var api string
	err := startWithRetry(1, 2*time.Minute, func(ports []int) (*process, func() error, error) {
		api = fmt.Sprintf("http://127.0.0.1:%d/api/v1", ports[0])
		p, err := startProcess(cluster.logDir, "prometheus", nil, cluster.bin("prometheus"),
			"--config.file="+filepath.Join(dir, "prometheus.yml"),
			"--storage.tsdb.path="+filepath.Join(dir, "data"),
			"--web.listen-address=127.0.0.1:"+strconv.Itoa(ports[0]),
		)
		if err != nil {
			return nil, nil, err
		}
		cluster.track(p)
		return p, func() error {
			_, err := promQuery(api, "vector(1)", time.Time{})
			return err
		}, nil
	})
	if err != nil {
		t.Fatalf("start Prometheus: %v", err)
	}
	return api
}

// promQuery evaluates an instant query at a time (zero: now) and returns the series of
// its vector result.
func promQuery(api, query string, at time.Time) ([]map[string]string, error) {
	u := api + "/query?query=" + url.QueryEscape(query)
	if !at.IsZero() {
		u += "&time=" + strconv.FormatInt(at.Unix(), 10)
	}
	text, err := scrape(u)
	if err != nil {
		return nil, err
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(text), &r); err != nil {
		return nil, err
	}
	if r.Status != "success" || r.Data.ResultType != "vector" {
		return nil, fmt.Errorf("%s: status %s, result %s: %s", query, r.Status, r.Data.ResultType, r.Error)
	}
	out := make([]map[string]string, len(r.Data.Result))
	for i, s := range r.Data.Result {
		out[i] = s.Metric
	}
	return out, nil
}

// waitQuery waits until Prometheus answers query with at least one series, and returns
// the time it did.
func waitQuery(t testing.TB, api, query, what string) time.Time {
	t.Helper()
	var at time.Time
	waitFor(t, 2*time.Minute, what+" in Prometheus ("+query+")", func() (bool, string) {
		at = time.Now()
		got, err := promQuery(api, query, at)
		return err == nil && len(got) > 0, fmt.Sprintf("%d series, err %v", len(got), err)
	})
	return at
}

// dashboardQueries are the queries of monitoring/dashboard.json's panels by title, for one
// namespace and every ModelDownload in it.
func dashboardQueries(t testing.TB, namespace string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(cluster.repoRoot, "monitoring", "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	all := strings.NewReplacer("$namespace", regexp.QuoteMeta(namespace), "$modeldownload", ".*")
	out := map[string]string{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out[p.Title] = all.Replace(tg.Expr)
		}
	}
	if len(out) == 0 {
		t.Fatal("monitoring/dashboard.json has no queries")
	}
	return out
}

// reportProgress writes a running download's report into the ModelDownload's progress
// ConfigMap as its pod would: under the model's content hash, naming the pod.
func reportProgress(t testing.TB, md *modelDownload, contentHash string, p map[string]any) {
	t.Helper()
	ctx := context.Background()
	cms, err := cluster.kube.CoreV1().ConfigMaps(md.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=hf-downloader"})
	if err != nil {
		t.Fatal(err)
	}
	var name string
	for _, cm := range cms.Items {
		if strings.Contains(cm.Name, "-progress-") {
			name = cm.Name
		}
	}
	if name == "" {
		t.Fatalf("no progress ConfigMap in %s", md.ns)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	patch, err := json.Marshal(map[string]any{"data": map[string]string{contentHash: string(b)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.kube.CoreV1().ConfigMaps(md.ns).Patch(ctx, name, "application/merge-patch+json", patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestKubeStateMetricsExportsModelDownloads: kube-state-metrics, with the shipped
// configuration and under the shipped ClusterRole alone, exports what status says of a
// ModelDownload of four models as the dashboard and the alerts read it: one queued by
// settings.maxParallel, one running with its pod's progress, then one completed (bytes,
// files, duration, verified, commit), one failed, with their attempts and the XR's conditions;
// later a reclaim, and a check (settings.resyncInterval) that finds a revision moved.
// The series the promtool tests of monitoring/ are made of have these names and labels.
// A real Prometheus scrapes it: every panel of the dashboard shows this namespace's
// ModelDownloads at one moment of the test (after a retry and a conflict too), and the
// alerts of the failed model and of the conflict go pending.
func TestKubeStateMetricsExportsModelDownloads(t *testing.T) {
	t.Parallel()
	url := useKubeStateMetrics(t, apiGroup)
	prom := startPrometheus(t, url)
	md := newModelDownload(t, "metrics", func(spec map[string]any) {
		spec["models"] = []any{
			map[string]any{"name": "acme/done", "retryCount": int64(0)},
			map[string]any{"name": "acme/broken", "retryCount": int64(0)},
			map[string]any{"name": "acme/running"},
			map[string]any{"name": "acme/queued"},
		}
		spec["settings"].(map[string]any)["maxParallel"] = int64(3)
	})
	jobs := md.waitJobs(t, 3, "three Jobs, the fourth model queued", nil)
	xr := md.waitXR(t, "the running model's content hash and the queued model in status", func(xr *unstructured.Unstructured) bool {
		return statusModel(xr, "acme/running")["contentHash"] != nil && statusModel(xr, "acme/queued")["queue"] == "ModelDownload"
	})
	pods, err := jobPods(context.Background(), md.ns, jobs["acme/running"].Name)
	if err != nil || len(pods) == 0 {
		t.Fatalf("the running model's pod: %v (%d pods)", err, len(pods))
	}
	updated := time.Now().UTC().Truncate(time.Second)
	reportProgress(t, md, statusModel(xr, "acme/running")["contentHash"].(string), map[string]any{
		"bytes": 512, "totalBytes": 2048, "files": 1, "totalFiles": 3, "bytesPerSecond": 256, "etaSeconds": 6,
		"updated": updated.Format(time.RFC3339), "attempt": pods[0].Name,
	})
	const phase, model = "hfops_modeldownload_model_phase", "acme/running"
	samples := waitMetrics(t, url, md, "the running model's progress and the queued model's limit", []expectation{
		{phase, labelSet("model", model, "phase", "Running"), 1},
		{phase, labelSet("model", model, "phase", "Pending"), 0},
		{phase, labelSet("model", "acme/queued", "phase", "Pending"), 1},
		{"hfops_modeldownload_model_info", labelSet("model", "acme/queued", "queue", "ModelDownload"), 1},
		{"hfops_modeldownload_model_info", labelSet("model", model, "job", jobs[model].Name), 1},
		{"hfops_modeldownload_model_attempt", labelSet("model", model), 1},
		{"hfops_modeldownload_model_progress_bytes", labelSet("model", model), 512},
		{"hfops_modeldownload_model_progress_total_bytes", labelSet("model", model), 2048},
		{"hfops_modeldownload_model_progress_files", labelSet("model", model), 1},
		{"hfops_modeldownload_model_progress_total_files", labelSet("model", model), 3},
		{"hfops_modeldownload_model_progress_bytes_per_second", labelSet("model", model), 256},
		{"hfops_modeldownload_model_progress_eta_seconds", labelSet("model", model), 6},
		{"hfops_modeldownload_model_progress_updated_seconds", labelSet("model", model), float64(updated.Unix())},
		{"hfops_modeldownload_condition", labelSet("type", "ModelsDownloaded", "status", "False", "reason", "Downloading"), 1},
	})
	seen := append([]sample(nil), samples...)
	ns := md.ns
	waitQuery(t, prom, fmt.Sprintf(`hfops_modeldownload_model_info{namespace=%q, queue!=""}`, ns), "the queued model")
	queuedAndRunning := waitQuery(t, prom, fmt.Sprintf(`hfops_modeldownload_model_progress_bytes{namespace=%q}`, ns), "the running model's progress")

	finishJobPod(t, md.ns, jobs["acme/done"].Name, podOutcome{
		message: `{"commit":"` + summaryCommit + `","files":3,"bytes":2048,"seconds":7,"verified":true}`,
	})
	finishJobPod(t, md.ns, jobs["acme/broken"].Name, podOutcome{exitCode: 1, message: "download of acme/broken@main failed: not found\n"})
	samples = waitMetrics(t, url, md, "the completed and the failed model", []expectation{
		{phase, labelSet("model", "acme/done", "phase", "Completed"), 1},
		{phase, labelSet("model", "acme/done", "phase", "Running"), 0},
		{phase, labelSet("model", "acme/broken", "phase", "Failed"), 1},
		{"hfops_modeldownload_model_bytes", labelSet("model", "acme/done"), 2048},
		{"hfops_modeldownload_model_files", labelSet("model", "acme/done"), 3},
		{"hfops_modeldownload_model_duration_seconds", labelSet("model", "acme/done"), 7},
		{"hfops_modeldownload_model_verified", labelSet("model", "acme/done"), 1},
		{"hfops_modeldownload_model_info", labelSet("model", "acme/done", "commit", summaryCommit), 1},
		{"hfops_modeldownload_model_attempt", labelSet("model", "acme/broken"), 1},
		{"hfops_modeldownload_condition", labelSet("type", "ModelsDownloaded", "status", "False", "reason", "DownloadFailed"), 1},
		{"hfops_modeldownload_condition", labelSet("type", "Ready", "status", "True"), 0},
	})
	seen = append(seen, samples...)
	finished := waitQuery(t, prom, fmt.Sprintf(`hfops_modeldownload_model_phase{namespace=%q, phase="Failed"} == 1`, ns), "the failed model")

	// The failed model's alert is pending (its for has not passed), on the series
	// kube-state-metrics exported.
	waitQuery(t, prom, fmt.Sprintf(`ALERTS{alertname="ModelDownloadFailed", namespace=%q, model="acme/broken"}`, ns), "the failed model's alert")

	// Then what the rest of the dashboard shows: the queued model, started once slots
	// freed, completes unverified; the failed model is retried, so its next attempt
	// starts; and a newer ModelDownload wants other content in the completed model's
	// directory.
	started := md.waitJobs(t, 4, "the queued model's Job, once slots freed", nil)
	finishJobPod(t, ns, started["acme/queued"].Name, podOutcome{message: successMessage})
	md.obj.SetAnnotations(map[string]string{"hfops.kamal.dev/retry": "1"})
	md.update(t, nil)
	applyIn(t, ns, exampleXR(t), "metrics-newer", func(spec map[string]any) {
		spec["models"] = []any{map[string]any{"name": "acme/done", "revision": "v2"}}
	})
	waitQuery(t, prom, fmt.Sprintf(`hfops_modeldownload_model_verified{namespace=%q} == 0`, ns), "the unverified completion")
	waitQuery(t, prom, fmt.Sprintf(`hfops_modeldownload_model_attempt{namespace=%q} > 1`, ns), "the retried model's next attempt")
	later := waitQuery(t, prom, fmt.Sprintf(`hfops_modeldownload_condition{namespace=%q, type="DirectoryConflict", status="True"} == 1`, ns), "the directory conflict")
	waitQuery(t, prom, fmt.Sprintf(`ALERTS{alertname="ModelDownloadDirectoryConflict", namespace=%q}`, ns), "the conflict's alert")

	// A model leaves the spec under settings.reclaim Delete: its reclaim Job removes its
	// directory and says what it freed.
	md.update(t, func(spec map[string]any) {
		spec["settings"].(map[string]any)["reclaim"] = "Delete"
		spec["models"] = slices.DeleteFunc(models(spec), func(m any) bool { return m.(map[string]any)["name"] == "acme/queued" })
	})
	xr = md.waitXR(t, "the removed model's reclaim Job", func(xr *unstructured.Unstructured) bool {
		return statusReclaim(xr, "acme/queued")["jobName"] != nil
	})
	finishJobPod(t, ns, statusReclaim(xr, "acme/queued")["jobName"].(string), podOutcome{message: `{"bytesFreed":4096,"files":2}`})
	samples = waitMetrics(t, url, md, "the reclaim", []expectation{
		{"hfops_modeldownload_reclaim_phase", labelSet("model", "acme/queued", "phase", "Completed"), 1},
		{"hfops_modeldownload_reclaim_phase", labelSet("model", "acme/queued", "phase", "Failed"), 0},
		{"hfops_modeldownload_reclaim_bytes_freed", labelSet("model", "acme/queued"), 4096},
	})
	seen = append(seen, samples...)
	reclaimed := waitQuery(t, prom, fmt.Sprintf(`hfops_modeldownload_reclaim_bytes_freed{namespace=%q}`, ns), "the reclaimed directory")

	// Under settings.resyncInterval, a check of the completed model finds its revision
	// moved: status says when, and from which commit.
	md.update(t, func(spec map[string]any) { settingsOf(spec)["resyncInterval"] = "1h" })
	long := time.Now().Add(-2 * time.Hour).UTC().Format(time.RFC3339)
	// Minutes: the next call may come at Crossplane's poll interval.
	waitFor(t, 4*time.Minute, "a check of acme/done", func() (bool, string) {
		if xr, err = md.get(); err != nil {
			return false, err.Error()
		}
		m := statusModel(xr, "acme/done")
		if m["resync"] == nil && m["checkedAt"] != nil && m["checkedAt"] != long {
			if err := md.checkedAt(xr, "acme/done", long); err != nil {
				return false, "writing an older checkedAt: " + err.Error()
			}
		}
		resync, _ := m["resync"].(map[string]any)
		return resync["jobName"] != nil, fmt.Sprintf("status of acme/done: %v", m)
	})
	moved := strings.Repeat("c", 40)
	finishJobPod(t, ns, statusModel(xr, "acme/done")["resync"].(map[string]any)["jobName"].(string), podOutcome{
		message: `{"commit":"` + moved + `","files":3,"bytes":2048,"seconds":1,"verified":true}`,
	})
	waitFor(t, 4*time.Minute, "the check's report in status", func() (bool, string) {
		if xr, err = md.get(); err != nil {
			return false, err.Error()
		}
		resync, _ := statusModel(xr, "acme/done")["resync"].(map[string]any)
		return resync["phase"] == "Completed", fmt.Sprintf("status.models[acme/done].resync: %v", resync)
	})
	seconds := func(field string) float64 {
		at, err := time.Parse(time.RFC3339, fmt.Sprint(unstructuredPath(statusModel(xr, "acme/done"), field)))
		if err != nil {
			t.Fatalf("status.models[acme/done].%s: %v", field, err)
		}
		return float64(at.Unix())
	}
	samples = waitMetrics(t, url, md, "the check that found the revision moved", []expectation{
		{"hfops_modeldownload_model_resync_info", labelSet("model", "acme/done", "phase", "Completed", "moved_from", summaryCommit), 1},
		{"hfops_modeldownload_model_moved_seconds", labelSet("model", "acme/done"), seconds("resync.movedAt")},
		{"hfops_modeldownload_model_checked_seconds", labelSet("model", "acme/done"), seconds("checkedAt")},
		{"hfops_modeldownload_model_info", labelSet("model", "acme/done", "commit", moved), 1},
	})
	seen = append(seen, samples...)
	resynced := waitQuery(t, prom, fmt.Sprintf(`hfops_modeldownload_model_moved_seconds{namespace=%q}`, ns), "the moved revision")
	waitQuery(t, prom, fmt.Sprintf(`ALERTS{alertname="ModelDownloadUpstreamMoved", namespace=%q, model="acme/done"}`, ns), "the moved revision's alert")

	// Every panel of the dashboard, for this namespace, shows something at one of those
	// moments, as Prometheus answers it from what it scraped.
	for title, query := range dashboardQueries(t, ns) {
		var answers []string
		shown := false
		for _, at := range []time.Time{queuedAndRunning, finished, later, reclaimed, resynced} {
			got, err := promQuery(prom, query, at)
			if err != nil {
				t.Fatalf("panel %q: %v", title, err)
			}
			shown = shown || len(got) > 0
			answers = append(answers, fmt.Sprintf("%d series", len(got)))
		}
		if !shown {
			t.Errorf("panel %q shows nothing at any moment (%s): %s", title, strings.Join(answers, ", "), query)
		}
	}

	checkTestSeriesExported(t, seen)
	ksmMayDoNoMore(t)
}

// checkTestSeriesExported: every series the promtool tests of monitoring/ are made of has a
// name kube-state-metrics exported here, and only labels it exported with that name (the
// tests may leave some out).
func checkTestSeriesExported(t testing.TB, samples []sample) {
	t.Helper()
	exported := map[string]map[string]bool{}
	for _, s := range samples {
		if exported[s.name] == nil {
			exported[s.name] = map[string]bool{}
		}
		for k := range s.labels {
			exported[s.name][k] = true
		}
	}
	// A label the test series set that no sample here could carry: queue appears only while
	// a model is queued, commit once one completed; both were seen above.
	for _, file := range []string{"alerts_test.yaml", "dashboard_test.yaml"} {
		b, err := os.ReadFile(filepath.Join(cluster.repoRoot, "monitoring", file))
		if err != nil {
			t.Fatal(err)
		}
		var tests struct {
			Tests []struct {
				InputSeries []struct {
					Series string `json:"series"`
				} `json:"input_series"`
			} `json:"tests"`
		}
		if err := yaml.Unmarshal(b, &tests); err != nil {
			t.Fatal(err)
		}
		checked := 0
		for _, tc := range tests.Tests {
			for _, in := range tc.InputSeries {
				parsed, err := parseSamples(in.Series + " 0")
				if err != nil || len(parsed) != 1 {
					t.Fatalf("%s: series %q: %v", file, in.Series, err)
				}
				s := parsed[0]
				labels, ok := exported[s.name]
				if !ok {
					t.Errorf("%s: %s is not a series kube-state-metrics exported (it exported %v)", file, s.name, slices.Sorted(maps.Keys(exported)))
					continue
				}
				for k := range s.labels {
					if !labels[k] {
						t.Errorf("%s: %s has label %s, which kube-state-metrics never set on it (it set %v)", file, s.name, k, slices.Sorted(maps.Keys(labels)))
					}
				}
				checked++
			}
		}
		if checked == 0 {
			t.Errorf("%s: no input series", file)
		}
	}
}

// ksmMayDoNoMore: the shipped ClusterRole, which was enough above, grants nothing a
// ModelDownload's metrics do not need.
func ksmMayDoNoMore(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	for _, a := range []access{
		{resource: "secrets", verb: "list"},
		{resource: "secrets", verb: "get"},
		{resource: "pods", verb: "list"},
		{group: "batch", resource: "jobs", verb: "list"},
		{group: "hfops.kamal.dev", resource: "modeldownloads", verb: "get"},
		{group: "hfops.kamal.dev", resource: "modeldownloads", verb: "update"},
		{group: "apiextensions.k8s.io", resource: "customresourcedefinitions", verb: "get"},
	} {
		ok, err := allowed(ctx, ksmName(apiGroup), a)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			t.Errorf("kube-state-metrics may %s: the shipped ClusterRole grants more than it needs", a)
		}
	}
	if !slices.ContainsFunc([]access{{group: "hfops.kamal.dev", resource: "modeldownloads", verb: "watch"}}, func(a access) bool {
		ok, err := allowed(ctx, ksmName(apiGroup), a)
		return err == nil && ok
	}) {
		t.Error("kube-state-metrics may not watch modeldownloads, yet exported them: is the check asking about the right account?")
	}
}

// unstructuredPath is the value at a dotted path (a.b) of a status entry, nil when absent.
func unstructuredPath(m map[string]any, path string) any {
	var v any = m
	for _, k := range strings.Split(path, ".") {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}
