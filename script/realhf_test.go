package script

import (
	"bytes"
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hfops/function-hf-download/hubtest"
)

// The tests here run the script with the REAL hf CLI (the downloader's locked
// engine, huggingface_hub 2.4.0 with hf_xet 1.8.0, installed into bin/ by
// `bash hack/hf.sh`, which `make test` runs first) against the fake Hub of package hubtest on 127.0.0.1. hf
// reaches nothing else: HF_ENDPOINT points it at the fake Hub, the update
// checks are off (HF_HUB_DISABLE_UPDATE_CHECK, see cli/_cli_utils.py and
// cli/_skills.py), telemetry is off, and the script's env holds no proxy
// settings.

// realHFToken is sent to the fake Hub as hf's Authorization header, and must
// show nowhere else.
const realHFToken = "hf_RealCliTestTokenNeverShown0123456789"

// realHF returns the path of bin/hf. Where CI is set, a missing one fails the
// test; elsewhere it skips it.
func realHF(t testing.TB) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "bin", "hf"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
		missingTool(t, "the real hf CLI is not installed at "+p+" (run `bash hack/hf.sh` from the repository root)")
	}
	return p
}

// realShells are the shells the real-hf tests run the script under: the sh
// on PATH (or SCRIPT_TEST_SHELL), and busybox's sh (with busybox's tools).
func realShells(t testing.TB) map[string][]string {
	t.Helper()
	sh := testShell(t)
	shells := map[string][]string{"sh": sh}
	if filepath.Base(sh[0]) != "busybox" {
		if bb := busybox(t); bb != "" {
			shells["busybox"] = []string{bb, "sh"}
		}
	}
	return shells
}

// busybox returns the path of busybox (hack/hf.sh installs it). Where CI is
// set, a missing one fails the test; elsewhere the caller goes without.
func busybox(t testing.TB) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		msg := "busybox is not installed (run `bash hack/hf.sh` from the repository root): download.sh is not tried under busybox's sh"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Log(msg)
		return ""
	}
	return bb
}

// TestUnderBusybox runs this package's other tests again with busybox's sh
// and tools (SCRIPT_TEST_SHELL="busybox sh"), but for the real-hf ones, which
// try busybox themselves.
func TestUnderBusybox(t *testing.T) {
	if os.Getenv("SCRIPT_TEST_SHELL") != "" {
		t.Skip("already under SCRIPT_TEST_SHELL")
	}
	if busybox(t) == "" {
		missingTool(t, "no busybox (run `bash hack/hf.sh` from the repository root)")
	}
	args := []string{"-test.count=1", "-test.run=.", "-test.skip=^(TestUnderBusybox|TestMissingBusybox|TestRealHF.*)$"}
	// Its own timeout before this binary's, so that a hang there prints
	// which test hangs.
	if d, ok := t.Deadline(); ok {
		args = append(args, "-test.timeout="+(time.Until(d)*9/10).String())
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "SCRIPT_TEST_SHELL=busybox sh")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the tests under busybox sh: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("PASS")) {
		t.Fatalf("the tests under busybox sh said:\n%s", out)
	}
}

// TestMissingBusybox: without busybox the script is not tried under its sh,
// which fails the tests under CI and only skips them elsewhere: nothing
// passes silently in CI.
func TestMissingBusybox(t *testing.T) {
	noBusybox := t.TempDir() // PATH: no busybox there, nor anything else
	for _, tc := range []struct {
		ci   string
		want string // the line of go test's verdict
	}{
		{ci: "true", want: "--- FAIL: TestUnderBusybox"},
		{ci: "", want: "--- SKIP: TestUnderBusybox"},
	} {
		t.Run("CI="+tc.ci, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.count=1", "-test.v", "-test.run=^TestUnderBusybox$")
			for _, kv := range os.Environ() {
				if k, _, _ := strings.Cut(kv, "="); k != "PATH" && k != "CI" && k != "SCRIPT_TEST_SHELL" {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			cmd.Env = append(cmd.Env, "PATH="+noBusybox, "CI="+tc.ci)
			out, _ := cmd.CombinedOutput()
			if !strings.Contains(string(out), tc.want) || !strings.Contains(string(out), "busybox is not installed") {
				t.Errorf("the tests without busybox, CI=%q, said (want %q and why):\n%s", tc.ci, tc.want, out)
			}
		})
	}
}

// newHub is a fake Hub on loopback, closed when the test ends.
func newHub(t testing.TB) *hubtest.Hub {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening on loopback: %v", err)
	}
	hub := hubtest.New(l)
	t.Cleanup(hub.Close)
	return hub
}

// revisionRequests are the requests for repo_info among reqs, sorted.
func revisionRequests(reqs []string) []string {
	var out []string
	for _, r := range reqs {
		if strings.Contains(r, "/revision/") {
			out = append(out, r)
		}
	}
	sort.Strings(out)
	return out
}

// newRealHarness is a harness whose hf is the real CLI, talking to hub.
func newRealHarness(t testing.TB, sh []string, hub *hubtest.Hub) (*harness, map[string]string) {
	t.Helper()
	hf := realHF(t)
	h := newHarnessShell(t, sh)
	mustRemove(t, filepath.Join(h.stubs, "hf"))
	mustRemove(t, filepath.Join(h.stubs, "python3"))
	if err := os.Symlink(hf, filepath.Join(h.stubs, "hf")); err != nil {
		t.Fatal(err)
	}
	// The helper's python3 imports the same huggingface_hub, as in the image.
	if err := os.Symlink(debianPython, filepath.Join(h.stubs, "python3")); err != nil {
		t.Fatal(err)
	}
	src, err := filepath.Abs(filepath.Join("..", "bin", "hf-"+HubVersion))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"PYTHONPATH":                  src,
		"HF_ENDPOINT":                 hub.URL(),
		"HF_HOME":                     filepath.Join(h.root, "hf-home"),
		"HF_HUB_DISABLE_TELEMETRY":    "1",
		"HF_HUB_DISABLE_UPDATE_CHECK": "1",
		// hf's read timeout (10 s by default) must not end a body that a
		// test holds back at the Hub's gate: the watchdog, or the run's
		// deadline, ends a stall.
		"HF_HUB_DOWNLOAD_TIMEOUT": "3600",
		EnvToken:                  realHFToken,
	}
	return h, env
}

func withEnv(base map[string]string, more map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range more {
		out[k] = v
	}
	return out
}

// checkClean checks what every real-hf run must leave: no temporary files of
// the script's, and the token nowhere but in hf's requests.
func checkClean(t testing.TB, h *harness, r result) {
	t.Helper()
	if entries, err := os.ReadDir(filepath.Join(h.root, "tmp")); err != nil || len(entries) != 0 {
		t.Errorf("TMPDIR holds %v (%v), want nothing left", entries, err)
	}
	if strings.Contains(r.out, realHFToken) {
		t.Errorf("the output shows the token:\n%s", r.out)
	}
	err := filepath.WalkDir(h.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Type()&fs.ModeSymlink != 0 {
			return err
		}
		data, err := os.ReadFile(path)
		if err == nil && bytes.Contains(data, []byte(realHFToken)) {
			t.Errorf("the token is in %s", path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRealHFFailureReasons: for each way the Hub refuses a download, the
// termination log holds exactly one plain line that says why, while the pod
// log keeps the message as hf words it. With the helper (planned) the plan
// meets the refusal first, and words huggingface_hub's error as hf does; hf
// never runs. Without it (hf alone), hf meets it: it keeps the directory as
// it is (it holds the lock file) with a warning that quotes the Hub's answer,
// except for a missing revision. In the table, {hub} stands for the fake
// Hub's address (each subtest has its own Hub).
func TestRealHFFailureReasons(t *testing.T) {
	realHF(t)
	long := "Forbidden: " + strings.Repeat("x", 400)
	for _, tc := range []struct {
		name     string
		repoType string
		repo     string
		revision string
		fail     hubtest.Error
		want     string // the termination log's line
		says     string // the words as hf says them, which the log must show
		// aloneWant is want without the helper, when it differs.
		aloneWant string
	}{{
		name: "gated model",
		repo: "org/gated",
		fail: hubtest.Error{Status: 403, Code: "GatedRepo", Message: "Access to model org/gated is restricted and you are not in the authorized list. Visit {hub}/org/gated to ask for access."},
		want: "download of org/gated@main failed: access denied (gated or private repo; check the token and accept the licence at {hub}/org/gated)",
		says: "Error: Access denied. Model 'org/gated' requires approval.",
	}, {
		name:     "gated dataset without a token's access",
		repoType: "dataset",
		repo:     "org/gated-data",
		fail:     hubtest.Error{Status: 401, Code: "GatedRepo", Message: "Access to dataset org/gated-data is restricted. You must have access to it and be authenticated to access it. Please log in."},
		want:     "download of org/gated-data@main failed: access denied (gated or private repo; check the token and accept the licence at {hub}/datasets/org/gated-data)",
		says:     "Error: Access denied. Dataset 'org/gated-data' requires approval.",
	}, {
		name: "private or missing model",
		repo: "org/private",
		fail: hubtest.Error{Status: 401, Code: "RepoNotFound", Message: "Repository not found"},
		want: "download of org/private@main failed: repository not found (or private and the token cannot read it; check the token and the name at {hub}/org/private)",
		says: "Error: Model 'org/private' not found.\nIf the repo is private, make sure you are authenticated and your token has the required permissions.",
	}, {
		name:     "missing dataset",
		repoType: "dataset",
		repo:     "org/no-such-data",
		fail:     hubtest.Error{Status: 404, Code: "RepoNotFound", Message: "Repository not found"},
		want:     "download of org/no-such-data@main failed: repository not found (or private and the token cannot read it; check the token and the name at {hub}/datasets/org/no-such-data)",
		says:     "Error: Dataset 'org/no-such-data' not found.",
	}, {
		name:     "revision not found",
		repo:     "org/name",
		revision: "v9.9",
		fail:     hubtest.Error{Status: 404, Code: "RevisionNotFound", Message: "Invalid rev id: v9.9"},
		want:     "download of org/name@v9.9 failed: revision v9.9 not found in {hub}/org/name",
		says:     "Error: Revision not found in model 'org/name'.",
	}, {
		name:     "revision with slashes not found",
		repoType: "dataset",
		repo:     "org/data",
		revision: "refs/pr/7",
		fail:     hubtest.Error{Status: 404, Code: "RevisionNotFound", Message: "Invalid rev id: refs/pr/7"},
		want:     "download of org/data@refs/pr/7 failed: revision refs/pr/7 not found in {hub}/datasets/org/data",
		says:     "Error: Revision not found in dataset 'org/data'.",
	}, {
		name: "token refused",
		repo: "org/name",
		fail: hubtest.Error{Status: 401, Message: "Invalid credentials in Authorization header"},
		want: "download of org/name@main failed: the token was refused (401); check the token",
		says: "Error: Client error '401 Unauthorized' for url '{hub}/api/models/org/name/revision/main?blobs=true'",
	}, {
		// Anything else: hf's own first line, as it is (a 401 in the URL is
		// not a refused token).
		name:      "hub error",
		repo:      "org/x401",
		fail:      hubtest.Error{Status: 500, Message: "Internal Error - We're working hard to fix this as soon as possible!"},
		want:      "download of org/x401@main failed: Server error '500 Internal Server Error' for url '{hub}/api/models/org/x401/revision/main?blobs=true'",
		says:      "Error: Server error '500 Internal Server Error'",
		aloneWant: "download of org/x401@main failed: Server error '500 Internal Server Error' for url '{hub}/api/models/org/x401/revision/main'",
	}, {
		// A first line longer than 300 bytes is cut there.
		name: "long message cut",
		repo: "org/name",
		fail: hubtest.Error{Status: 403, Message: long},
		want: "download of org/name@main failed: " + ("403 Forbidden: " + long)[:300],
		says: "Error: 403 Forbidden: " + long + ".",
	}} {
		for shName, sh := range realShells(t) {
			for _, planned := range []bool{true, false} {
				mode := map[bool]string{true: "planned", false: "hf alone"}[planned]
				t.Run(tc.name+"/"+shName+"/"+mode, func(t *testing.T) {
					t.Parallel()
					hub := newHub(t)
					at := func(s string) string { return strings.ReplaceAll(s, "{hub}", hub.URL()) }
					repoType, revision := tc.repoType, tc.revision
					if repoType == "" {
						repoType = "model"
					}
					if revision == "" {
						revision = "main"
					}
					fail := tc.fail
					fail.Message = at(fail.Message)
					hub.Set(repoType, tc.repo, hubtest.Repo{Fail: &fail})
					h, env := newRealHarness(t, sh, hub)
					want, says := tc.want, tc.says
					if !planned {
						env[EnvHelper] = filepath.Join(h.root, "no-helper.py")
						if tc.aloneWant != "" {
							want = tc.aloneWant
						}
						if fail.Code != "RevisionNotFound" {
							says = "Returning existing local_dir `" + h.dir + "` as remote repo cannot be accessed in `snapshot_download`"
						}
					}
					r := h.run(withEnv(env, map[string]string{EnvRepoID: tc.repo, EnvRepoType: repoType, EnvRevision: revision}))
					h.checkFailure(r, at(want))
					if !strings.HasPrefix(at(want), FailedPrefix(tc.repo, revision)) {
						t.Errorf("reason %q does not start with FailedPrefix", at(want))
					}
					if !strings.Contains(r.out, at(says)) {
						t.Errorf("the log lacks %q:\n%s", at(says), r.out)
					}
					if _, err := os.Stat(h.markerPath()); !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("marker after a failure: %v", err)
					}
					checkClean(t, h, r)
					reqs, unknown := hub.Seen()
					if len(unknown) != 0 {
						t.Errorf("hf asked the fake Hub for %q", unknown)
					}
					if len(revisionRequests(reqs)) != 1 {
						t.Errorf("requests %q, want one for the revision", reqs)
					}
				})
			}
		}
	}
}

// TestRealHFDownloadThenHubFails: a real download, then the stop at the
// marker, then re-runs that find the Hub refusing or failing. hf itself exits
// 0 there, keeping the files it finds in the local dir unchecked
// (snapshot_download's fallback); the script must not call that a download.
// With the helper (planned), the plan meets the Hub's refusal first and hf
// never runs; without it (hf alone), the script tells hf's fallback.
func TestRealHFDownloadThenHubFails(t *testing.T) {
	realHF(t)
	const commit = "4f1c7a1e0d3b2c5a6978b8c9d0e1f2a3b4c5d6e7"
	files := map[string]string{
		"config.json":       `{"model_type":"tiny"}`,
		"weights/model.bin": strings.Repeat("0123456789abcdef", 64),
	}
	var total int64
	for _, c := range files {
		total += int64(len(c))
	}
	for shName, sh := range realShells(t) {
		for _, planned := range []bool{true, false} {
			mode := map[bool]string{true: "planned", false: "hf alone"}[planned]
			t.Run(shName+"/"+mode, func(t *testing.T) {
				t.Parallel()
				hub := newHub(t)
				ep := hub.URL()
				hub.Set("model", "org/tiny", hubtest.Repo{Commit: commit, Files: files})
				h, env := newRealHarness(t, sh, hub)
				env = withEnv(env, map[string]string{EnvRepoID: "org/tiny"})
				if !planned {
					env[EnvHelper] = filepath.Join(h.root, "no-helper.py")
				}

				r := h.run(env)
				if r.code != 0 {
					t.Fatalf("download: exit %d\n%s", r.code, r.out)
				}
				s, ok := h.readSummary()
				if !ok || s.Commit != commit || s.Files != int64(len(files)) || s.Bytes != total || s.Verified != planned {
					t.Errorf("summary %+v (written %v), want commit %s, %d files, %d bytes\n%s", s, ok, commit, len(files), total, r.out)
				}
				if m := h.readMarker(); m.Commit != commit || m.Files != int64(len(files)) {
					t.Errorf("marker commit %q, %d files", m.Commit, m.Files)
				}
				for name, content := range files {
					if got, err := os.ReadFile(filepath.Join(h.dir, name)); err != nil || string(got) != content {
						t.Errorf("%s: %q, %v", name, got, err)
					}
				}
				checkClean(t, h, r)

				before, _ := hub.Seen()
				if r := h.run(env); r.code != 0 || !strings.Contains(r.lastLine(), "is already complete") {
					t.Errorf("second run: exit %d, want a stop at the marker\n%s", r.code, r.out)
				}
				if after, _ := hub.Seen(); len(after) != len(before) {
					t.Errorf("the stop at the marker asked the Hub %q", after[len(before):])
				}

				for _, step := range []struct {
					name   string
					env    map[string]string
					fail   hubtest.Error
					want   string
					hfSays string
					// planWant and planSays are want and hfSays when planned.
					planWant, planSays string
				}{{
					name:     "forced while the Hub fails",
					env:      map[string]string{EnvForce: "true"},
					fail:     hubtest.Error{Status: 500, Message: "Internal Error"},
					want:     "download of org/tiny@main failed: Server error '500 Internal Server Error' for url '" + ep + "/api/models/org/tiny/revision/main'; hf left the files already in " + h.dir + " unchecked",
					hfSays:   "Returning existing local_dir `" + h.dir + "` as remote repo cannot be accessed in `snapshot_download` (Server error '500 Internal Server Error'",
					planWant: "download of org/tiny@main failed: Server error '500 Internal Server Error' for url '" + ep + "/api/models/org/tiny/revision/main?blobs=true'",
					planSays: "Error: Server error '500 Internal Server Error' for url '" + ep + "/api/models/org/tiny/revision/main?blobs=true'",
				}, {
					name:     "new revision, repo now gated",
					env:      map[string]string{EnvRevision: "v2"},
					fail:     hubtest.Error{Status: 403, Code: "GatedRepo", Message: "Access to model org/tiny is restricted."},
					want:     "download of org/tiny@v2 failed: access denied (gated or private repo; check the token and accept the licence at " + ep + "/org/tiny); hf left the files already in " + h.dir + " unchecked",
					hfSays:   "Cannot access gated repo for url " + ep + "/api/models/org/tiny/revision/v2.",
					planWant: "download of org/tiny@v2 failed: access denied (gated or private repo; check the token and accept the licence at " + ep + "/org/tiny)",
					planSays: "Error: Access denied. Model 'org/tiny' requires approval.",
				}, {
					name:     "new token refused",
					env:      map[string]string{EnvRevision: "v3", EnvToken: realHFToken + "x"},
					fail:     hubtest.Error{Status: 401, Message: "Invalid credentials in Authorization header"},
					want:     "download of org/tiny@v3 failed: the token was refused (401); check the token; hf left the files already in " + h.dir + " unchecked",
					hfSays:   "Invalid credentials in Authorization header",
					planWant: "download of org/tiny@v3 failed: the token was refused (401); check the token",
					planSays: "Invalid credentials in Authorization header",
				}} {
					if planned {
						step.want, step.hfSays = step.planWant, step.planSays
					}
					t.Run(step.name, func(t *testing.T) {
						parent := h.t
						h.t = t
						defer func() { h.t = parent }()
						hub.Set("model", "org/tiny", hubtest.Repo{Fail: &step.fail})
						r := h.run(withEnv(env, step.env))
						h.checkFailure(r, step.want)
						if !strings.Contains(r.out, step.hfSays) {
							t.Errorf("the log lacks hf's own %q:\n%s", step.hfSays, r.out)
						}
						if _, err := os.Stat(h.markerPath()); !errors.Is(err, fs.ErrNotExist) {
							t.Errorf("marker after a failure: %v", err)
						}
						checkClean(t, h, r)
					})
				}
				if _, unknown := hub.Seen(); len(unknown) != 0 {
					t.Errorf("hf asked the fake Hub for %q", unknown)
				}
				// The planned refusals stopped before hf: the files are as they were.
				if planned {
					for name, content := range files {
						if got, err := os.ReadFile(filepath.Join(h.dir, name)); err != nil || string(got) != content {
							t.Errorf("%s after the refusals: %q, %v", name, got, err)
						}
					}
				}
			})
		}
	}
}
