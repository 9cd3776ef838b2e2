package script

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hfops/function-hf-download/hubtest"
)

// The tests run the real script under the host's sh (dash here, as in most
// downloader images) with stub hf and python3 programs first on a PATH that
// holds only the tools the script is documented to use. SCRIPT_TEST_SHELL runs
// them all under another shell instead, e.g. SCRIPT_TEST_SHELL="busybox sh"
// (the command line that stands for sh, split at spaces; under busybox the
// tools are busybox's applets too). realhf_test.go runs the real hf CLI
// against a fake Hub under both.

// hangDeadline ends a run of the script, or a wait for what it does, that
// hangs. It is far beyond what any takes on a busy machine, so that it fires
// only on a hang, and then fails that test by name, with what the run wrote so
// far, rather than the whole binary at its timeout.
const hangDeadline = 3 * time.Minute

const (
	commitA = "0123456789abcdef0123456789abcdef01234567"
	commitB = "fedcba9876543210fedcba9876543210fedcba98"
	// unset in a run's env overrides removes the variable.
	unset = "\x00unset"
)

// scriptTools are the commands download.sh may use besides the shell builtins.
var scriptTools = []string{"cat", "date", "find", "flock", "mkdir", "mkfifo", "mktemp", "mv", "rm", "sed", "sh", "sleep", "sort", "stat", "tail", "tee", "tr"}

// debianPython is the python3 that hack/hf.sh runs hf with, where Debian's
// packages of huggingface_hub's dependencies are (another python3 may come
// first on PATH). Without PYTHONPATH it cannot import huggingface_hub.
const debianPython = "/usr/bin/python3"

// stubFiles is what the stub hf "downloads" into --local-dir.
var stubFiles = map[string]string{
	"config.json":               `{"model_type":"stub"}`,
	"README.md":                 "a stub model",
	"weights/model.safetensors": strings.Repeat("0123456789", 10),
}

// stubHF records each call (argv one per line, whether HF_TOKEN is set and
// its length but never its value, PYTHONPATH, hf_xet's download buffer
// bounds when set, whether the marker existed) and
// then hangs, fails, leaves partial files and fails, or writes stubFiles plus hf's
// local-dir metadata, as HFSTUB_MODE says. A failing stub writes HFSTUB_MSG,
// or the file HFSTUB_STDERR, to stderr and exits with HFSTUB_EXIT.
func stubHF() string {
	var b strings.Builder
	b.WriteString(`#!/bin/sh
PATH=/usr/bin:/bin
dir= prev=
for a; do
	[ "$prev" = --local-dir ] && dir=$a
	prev=$a
done
{
	echo "call hf"
	for a; do printf 'arg=%s\n' "$a"; done
	if [ -n "${HF_TOKEN+x}" ]; then echo "token=set len=${#HF_TOKEN}"; else echo token=unset; fi
	echo "pythonpath=${PYTHONPATH:-}"
	[ -z "${HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_LIMIT:-}" ] ||
		echo "xetbuffer=$HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_SIZE $HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_PERFILE_SIZE $HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_LIMIT"
	if [ -e "$dir/.hf-download-complete.json" ]; then echo marker=present; else echo marker=absent; fi
} >>"$HFSTUB_RECORD"
case ${HFSTUB_MODE:-ok} in
hang)
	# What a stalled transfer looks like from outside: hf never ends by itself.
	echo $$ >"$HFSTUB_RECORD.pid"
	exec sleep 600
	;;
fail)
	echo "progress 10%"
	if [ -n "${HFSTUB_STDERR:-}" ]; then
		cat "$HFSTUB_STDERR" >&2
	else
		printf '%s\n' "${HFSTUB_MSG:-stub failure}" >&2
	fi
	exit "${HFSTUB_EXIT:-3}"
	;;
partial)
	mkdir -p "$dir/weights" "$dir/.cache/huggingface/download/weights"
	printf half >"$dir/weights/model.safetensors"
	: >"$dir/.cache/huggingface/download/weights/model.safetensors.incomplete"
	echo "connection reset by peer" >&2
	exit 1
	;;
esac
mkdir -p "$dir/weights" "$dir/.cache/huggingface/download/weights"
`)
	for _, name := range sortedKeys(stubFiles) {
		fmt.Fprintf(&b, "printf '%%s' '%s' >\"$dir/%s\"\n", stubFiles[name], name)
		fmt.Fprintf(&b, "[ -z \"${HFSTUB_COMMIT:-}\" ] || printf '%%s\\n%%s\\n%%s\\n' \"$HFSTUB_COMMIT\" etag-%s \"${HFSTUB_TIME:-1700000000.25}\" >\"$dir/.cache/huggingface/download/%s.metadata\"\n", name, name)
	}
	b.WriteString("echo \"$dir\"\n")
	return b.String()
}

// stubPython plays `python3 -m pip install --target T ...`: it records its
// argv and installs the stub hf (from PYSTUB_HF) as T/bin/hf, as pip installs
// console scripts into the target's bin. Anything else (the helper) runs with
// the real python3 (PYSTUB_PYTHON), where huggingface_hub cannot be imported
// unless PYTHONPATH says where: an image whose hf has a Python of its own.
const stubPython = `#!/bin/sh
# PYSTUB_OLD plays a python3 older than the lock allows, for the script's version check.
[ "${1:-}" = -c ] && [ -n "${PYSTUB_OLD:-}" ] && exit 1
[ "${1:-}" = -m ] || exec "$PYSTUB_PYTHON" "$@"
PATH=/usr/bin:/bin
{
	echo "call python3"
	for a; do printf 'arg=%s\n' "$a"; done
	if [ -n "${HF_TOKEN+x}" ]; then echo "token=set len=${#HF_TOKEN}"; else echo token=unset; fi
} >>"$HFSTUB_RECORD"
if [ -n "${PYSTUB_FAIL:-}" ]; then
	echo "ERROR: Could not find a version that satisfies the requirement" >&2
	exit 2
fi
target= prev=
for a; do
	[ "$prev" = --target ] && target=$a
	prev=$a
done
mkdir -p "$target/bin" && cp "$PYSTUB_HF" "$target/bin/hf"
`

type call struct {
	Prog       string
	Args       []string
	Token      string
	PythonPath string
	// XetBuffer is hf_xet's download buffer: "size perfile limit" in bytes.
	XetBuffer string
	Marker    string
}

type result struct {
	code  int
	out   string // stdout and stderr, interleaved as in a pod's log
	calls []call
}

func (r result) lastLine() string {
	lines := strings.Split(strings.TrimRight(r.out, "\n"), "\n")
	return lines[len(lines)-1]
}

// marker mirrors the completion marker's JSON.
type marker struct {
	RepoID      string   `json:"repoId"`
	RepoType    string   `json:"repoType"`
	Revision    string   `json:"revision"`
	Include     []string `json:"include"`
	Exclude     []string `json:"exclude"`
	ContentHash string   `json:"contentHash"`
	Commit      string   `json:"commit"`
	Files       int64    `json:"files"`
	Bytes       int64    `json:"bytes"`
	Verified    bool     `json:"verified"`
	Card        *Card    `json:"card"`
	Seconds     int64    `json:"seconds"`
	CompletedAt string   `json:"completedAt"`
}

type harness struct {
	t      testing.TB
	sh     []string // the command that runs the script as sh would
	root   string
	stubs  string // first on PATH: stub hf and python3
	tools  string // then only scriptTools
	work   string // the script's working directory
	dir    string // default HFDL_LOCAL_DIR
	helper string // default HFDL_HELPER, in a folder holding the ConfigMap's files
	runs   int
	record string // the last run's call record
	// deadline ends each run that hangs: hangDeadline, unless a test needs
	// a hang found sooner.
	deadline time.Duration
}

// testShell is the command line that runs the script: SCRIPT_TEST_SHELL, or
// the sh on PATH.
func testShell(t testing.TB) []string {
	t.Helper()
	if v := strings.Fields(os.Getenv("SCRIPT_TEST_SHELL")); len(v) > 0 {
		p, err := exec.LookPath(v[0])
		if err != nil {
			t.Fatalf("SCRIPT_TEST_SHELL: %v", err)
		}
		return append([]string{p}, v[1:]...)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		missingTool(t, "no sh on PATH")
	}
	return []string{sh}
}

// missingTool fails the test under CI, where the test command installs every
// tool, and skips it elsewhere: nothing passes silently in CI.
func missingTool(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	return newHarnessShell(t, testShell(t))
}

func newHarnessShell(t testing.TB, sh []string) *harness {
	t.Helper()
	root := t.TempDir()
	h := &harness{
		t:      t,
		sh:     sh,
		root:   root,
		stubs:  filepath.Join(root, "stubs"),
		tools:  filepath.Join(root, "tools"),
		work:   filepath.Join(root, "work"),
		dir:    filepath.Join(root, "models", "org", "name"),
		helper: helperPath(t),

		deadline: hangDeadline,
	}
	for _, d := range []string{h.stubs, h.tools, h.work, filepath.Join(root, "home"), filepath.Join(root, "tmp"), filepath.Join(root, "stubsrc")} {
		mustMkdir(t, d)
	}
	// Under busybox's sh, the tools are busybox's too, as in an Alpine image
	// (but for those Debian's busybox lacks: flock).
	underBusybox := filepath.Base(sh[0]) == "busybox"
	applets := map[string]bool{}
	if underBusybox {
		out, err := exec.Command(sh[0], "--list").Output()
		if err != nil {
			t.Fatalf("busybox --list: %v", err)
		}
		for _, a := range strings.Fields(string(out)) {
			applets[a] = true
		}
	}
	for _, tool := range scriptTools {
		p, err := exec.LookPath(tool)
		if applets[tool] {
			p = sh[0]
		} else if err != nil {
			missingTool(t, tool+" not on PATH")
		}
		if err := os.Symlink(p, filepath.Join(h.tools, tool)); err != nil {
			t.Fatal(err)
		}
	}
	// A file in the working directory, so an unquoted * would visibly expand.
	mustWrite(t, filepath.Join(h.work, "existing.txt"), "x")
	mustWriteExec(t, filepath.Join(root, "stubsrc", "hf"), stubHF())
	mustWriteExec(t, filepath.Join(h.stubs, "hf"), stubHF())
	mustWriteExec(t, filepath.Join(h.stubs, "python3"), stubPython)
	return h
}

// stoppedClock makes the script's clock, `date +%s` (the watchdog's), stand
// at seconds until the function it returns sets it; the script's other dates
// are real. A stall then comes when the test says, however fast the machine.
func (h *harness) stoppedClock(seconds int) func(seconds int) {
	h.t.Helper()
	clock := filepath.Join(h.root, "clock")
	set := func(seconds int) {
		mustWrite(h.t, clock+".new", strconv.Itoa(seconds)+"\n")
		if err := os.Rename(clock+".new", clock); err != nil {
			h.t.Fatal(err)
		}
	}
	set(seconds)
	mustWriteExec(h.t, filepath.Join(h.stubs, "date"), `#!/bin/sh
if [ "$*" = +%s ]; then
	read -r now <'`+clock+`' && printf '%s\n' "$now"
	exit
fi
exec '`+filepath.Join(h.tools, "date")+`' "$@"
`)
	return set
}

func (h *harness) termLog() string { return filepath.Join(h.root, "termination-log") }

func (h *harness) markerPath() string { return filepath.Join(h.dir, MarkerFile) }

// run runs the script's text with sh, as the Job runs its file, configured
// only through env. overrides may add, change or (with unset) remove entries.
func (h *harness) run(overrides map[string]string) result {
	h.t.Helper()
	if err := os.Remove(h.termLog()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		h.t.Fatal(err)
	}
	return h.runKeepTermLog(overrides)
}

// runKeepTermLog is run, with whatever the termination log already holds.
func (h *harness) runKeepTermLog(overrides map[string]string) result {
	h.t.Helper()
	return h.start(overrides).wait()
}

// started is a run of the script under way, in a process group of its own
// (the script, hf, the watchdog, the reporter, a stub's sleep): wait ends it
// and returns its result.
type started struct {
	h    *harness
	cmd  *exec.Cmd
	out  *hubtest.SyncBuffer // stdout and stderr, as they come
	done chan struct{}       // closed once the script has ended and no process holds its output
	err  error               // Wait's, once done is closed
	// killed says that the run's deadline came first and killed the group.
	killed atomic.Bool
}

// start starts the script as run does. When h.deadline has passed since,
// the whole process group is killed, and wait or waitFor fail the test with
// the output so far; the test's end kills it too.
func (h *harness) start(overrides map[string]string) *started {
	h.t.Helper()
	h.runs++
	h.record = filepath.Join(h.root, fmt.Sprintf("record-%d", h.runs))
	env := map[string]string{
		"PATH":            h.stubs + ":" + h.tools,
		"HOME":            filepath.Join(h.root, "home"),
		"TMPDIR":          filepath.Join(h.root, "tmp"),
		"HFSTUB_RECORD":   h.record,
		"HFSTUB_COMMIT":   commitA,
		"PYSTUB_HF":       filepath.Join(h.root, "stubsrc", "hf"),
		"PYSTUB_PYTHON":   debianPython,
		EnvHelper:         h.helper,
		EnvCgroup:         filepath.Join(h.root, "cgroup"),
		EnvRepoID:         "org/name",
		EnvLocalDir:       h.dir,
		EnvContentHash:    "hash-1",
		EnvTerminationLog: h.termLog(),
	}
	for k, v := range overrides {
		if v == unset {
			delete(env, k)
			continue
		}
		env[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.deadline)
	s := &started{h: h, out: &hubtest.SyncBuffer{}, done: make(chan struct{})}
	s.cmd = exec.CommandContext(ctx, h.sh[0], append(append([]string{}, h.sh[1:]...), "-c", Text, "hf-download")...)
	s.cmd.Dir = h.work
	for _, k := range sortedKeys(env) {
		s.cmd.Env = append(s.cmd.Env, k+"="+env[k])
	}
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s.cmd.Cancel = func() error {
		s.killed.Store(true)
		return s.kill()
	}
	// A process the script left behind may hold its output: Wait waits for
	// it no longer than a hang.
	s.cmd.WaitDelay = h.deadline
	if err := s.cmd.Start(); err != nil {
		cancel()
		h.t.Fatal(err)
	}
	go func() {
		s.err = s.cmd.Wait()
		cancel()
		close(s.done)
	}()
	h.t.Cleanup(func() {
		select {
		case <-s.done:
			// Nothing holds the group's number any more: it may be another's.
		default:
			_ = s.kill()
			<-s.done
		}
	})
	return s
}

// kill kills the run's process group. Only while done is open: until then
// the script, or a process of its group, holds the group's number.
func (s *started) kill() error {
	return syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
}

// wait waits for the run's end and returns its result.
func (s *started) wait() result {
	s.h.t.Helper()
	<-s.done
	s.failIfKilled("")
	return s.h.finish(s.err, s.out.String())
}

// failIfKilled fails the test when the run's deadline killed it, before what
// when the test waited for something.
func (s *started) failIfKilled(what string) {
	s.h.t.Helper()
	if !s.killed.Load() {
		return
	}
	if what != "" {
		what = ", before " + what
	}
	s.h.t.Fatalf("%s: the script still ran %v after it started%s: its process group is killed. Its output so far:\n%s",
		s.h.t.Name(), s.h.deadline, what, s.out.String())
}

// waitFor waits until cond holds, polling. It fails the test if run (unless
// nil) ends first, or its deadline kills it, or after hangDeadline.
func waitFor(t testing.TB, what string, run *started, cond func() bool) {
	t.Helper()
	var ended <-chan struct{}
	if run != nil {
		ended = run.done
	}
	deadline := time.NewTimer(hangDeadline)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ended:
			if cond() {
				return
			}
			run.failIfKilled(what)
			t.Fatalf("%s: the script ended (%v) before %s; its output:\n%s", t.Name(), run.err, what, run.out.String())
		case <-deadline.C:
			t.Fatalf("%s: still no %s after %v", t.Name(), what, hangDeadline)
		case <-tick.C:
		}
	}
}

// finish is the result of a run that ended with err.
func (h *harness) finish(err error, out string) result {
	h.t.Helper()
	r := result{out: out, calls: h.calls()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case errors.Is(err, exec.ErrWaitDelay):
		h.t.Fatalf("the script ended, but a process it left still held its output %v later:\n%s", h.deadline, r.out)
	default:
		h.t.Fatalf("running the script: %v", err)
	}
	return r
}

// calls parses the stubs' record of the last run.
func (h *harness) calls() []call {
	h.t.Helper()
	data, err := os.ReadFile(h.record)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		h.t.Fatal(err)
	}
	var calls []call
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if prog, ok := strings.CutPrefix(line, "call "); ok {
			calls = append(calls, call{Prog: prog})
			continue
		}
		c := &calls[len(calls)-1]
		key, val, _ := strings.Cut(line, "=")
		switch key {
		case "arg":
			c.Args = append(c.Args, val)
		case "token":
			c.Token = val
		case "pythonpath":
			c.PythonPath = val
		case "xetbuffer":
			c.XetBuffer = val
		case "marker":
			c.Marker = val
		default:
			h.t.Fatalf("bad record line %q", line)
		}
	}
	return calls
}

// helperPath is the path of hfdl.py, as EnvHelper gives it, in a folder holding every file of
// the ConfigMap (Files), as the Job mounts it: the lock for the pip fallback sits beside it.
func helperPath(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range Files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "hfdl.py")
}

// readMarker parses the marker strictly: every field present, none unknown.
func (h *harness) readMarker() marker {
	h.t.Helper()
	data, err := os.ReadFile(h.markerPath())
	if err != nil {
		h.t.Fatalf("reading the marker: %v", err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		h.t.Fatalf("marker is not JSON: %v\n%s", err, data)
	}
	want := []string{"bytes", "commit", "completedAt", "contentHash", "exclude", "files", "include", "repoId", "repoType", "revision", "seconds", "verified"}
	if _, ok := fields["card"]; ok {
		want = append(want, "card")
		sort.Strings(want)
	}
	if diff := cmp.Diff(want, sortedKeys(fields)); diff != "" {
		h.t.Errorf("marker fields (-want +got):\n%s", diff)
	}
	var m marker
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		h.t.Fatalf("decoding the marker: %v\n%s", err, data)
	}
	return m
}

// readSummary returns the termination log's one line, or false if absent.
func (h *harness) readSummary() (Summary, bool) {
	h.t.Helper()
	data, err := os.ReadFile(h.termLog())
	if errors.Is(err, fs.ErrNotExist) {
		return Summary{}, false
	}
	if err != nil {
		h.t.Fatal(err)
	}
	if n := bytes.Count(data, []byte("\n")); n != 1 || !bytes.HasSuffix(data, []byte("\n")) {
		h.t.Errorf("termination log is not one line: %q", data)
	}
	var s Summary
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		h.t.Fatalf("termination log is not a Summary: %v: %q", err, data)
	}
	return s, true
}

// readTermLog returns what the termination log holds, or false if absent.
func (h *harness) readTermLog() (string, bool) {
	h.t.Helper()
	data, err := os.ReadFile(h.termLog())
	if errors.Is(err, fs.ErrNotExist) {
		return "", false
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return string(data), true
}

// checkFailure checks that a run failed with reason: exit 1, the reason as
// the output's last line (after "hf-download: ") and as the termination
// log's one and only line, so that it is the pod's termination message.
func (h *harness) checkFailure(r result, reason string) {
	h.t.Helper()
	if r.code != 1 {
		h.t.Errorf("exit %d, want 1", r.code)
	}
	if want := LogPrefix + reason; r.lastLine() != want {
		h.t.Errorf("last line of output\n %q, want\n %q\n%s", r.lastLine(), want, r.out)
	}
	if got, ok := h.readTermLog(); !ok {
		h.t.Error("no termination log written on failure")
	} else if got != reason+"\n" {
		h.t.Errorf("termination log\n %q, want exactly the line\n %q", got, reason+"\n")
	}
}

// wantArgs is hf's argv for a download of a model with the given values.
func wantArgs(repo, revision, dir string, extra ...string) []string {
	return append([]string{"download", repo, "--repo-type", "model", "--revision", revision, "--local-dir", dir, "--max-workers", "8"}, extra...)
}

func stubBytes() int64 {
	var n int64
	for _, c := range stubFiles {
		n += int64(len(c))
	}
	return n
}

// checkMarker compares the marker with want, after checking the fields that
// depend on the clock.
func checkMarker(t testing.TB, h *harness, want marker, since time.Time) {
	t.Helper()
	got := h.readMarker()
	at, err := time.Parse(time.RFC3339, got.CompletedAt)
	if err != nil || !strings.HasSuffix(got.CompletedAt, "Z") {
		t.Errorf("completedAt %q is not UTC RFC 3339: %v", got.CompletedAt, err)
	} else if at.Before(since.Truncate(time.Second)) || at.After(time.Now().Add(time.Second)) {
		t.Errorf("completedAt %s is not the time of the run (%s)", at, since)
	}
	// Whole seconds of the script's clock, within the test's measure of it.
	if took := time.Since(since); got.Seconds < 0 || time.Duration(got.Seconds)*time.Second > took+time.Second {
		t.Errorf("seconds = %d, want the run's duration (at most %v)", got.Seconds, took)
	}
	got.CompletedAt, got.Seconds = "", 0
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("marker (-want +got):\n%s", diff)
	}
}

func TestScriptSyntax(t *testing.T) {
	sh := testShell(t)
	if out, err := exec.Command(sh[0], append(sh[1:], "-n", "download.sh")...).CombinedOutput(); err != nil {
		t.Errorf("sh -n download.sh: %v\n%s", err, out)
	}
}

// TestConstantsMatchScript keeps the Go names, the script and the image in step.
func TestConstantsMatchScript(t *testing.T) {
	envs := []string{EnvRepoID, EnvRepoType, EnvRevision, EnvLocalDir, EnvInclude, EnvExclude, EnvMaxWorkers, EnvForce, EnvContentHash, EnvTerminationLog, EnvHelper, EnvPVC, EnvCgroup, EnvStallTimeout, EnvProgressToken, EnvProgressCA, EnvProgressInterval, EnvResync}
	for _, name := range envs {
		if !strings.Contains(Text, "${"+name+":-") {
			t.Errorf("the script does not read $%s", name)
		}
	}
	if got := regexp.MustCompile(`HFDL_[A-Z_]+`).FindAllString(Text, -1); len(got) == 0 {
		t.Error("the script reads no HFDL_ variable")
	} else {
		// The script sets EnvLiveDir for its helper; nothing reads it in.
		known := map[string]bool{EnvLiveDir: true}
		for _, name := range envs {
			known[name] = true
		}
		for _, name := range got {
			if !known[name] {
				t.Errorf("the script uses %s, which has no Env constant", name)
			}
		}
	}
	for _, want := range []string{"marker_name=" + MarkerFile + "\n", "lock_name=" + LockFile + "\n", "huggingface_hub==" + HubVersion + "\n", "hf_xet==" + XetVersion + "\n",
		"repo_type=${" + EnvRepoType + ":-" + DefaultRepoType + "}\n", "revision=${" + EnvRevision + ":-" + DefaultRevision + "}\n", "dir=${" + EnvLocalDir + ":-" + DefaultMountPath + "/${" + EnvRepoID + ":-}}\n", "workers=${" + EnvMaxWorkers + ":-" + strconv.Itoa(DefaultMaxWorkers) + "}\n",
		"stall_timeout=${" + EnvStallTimeout + ":-" + strconv.Itoa(DefaultStallTimeoutSeconds) + "}\n", "helper=${" + EnvHelper + ":-/opt/hf-download/hfdl.py}\n", "cgroup=${" + EnvCgroup + ":-/sys/fs/cgroup}\n",
		"progress_token=${" + EnvProgressToken + ":-" + ProgressTokenPath + "}\n", "progress_ca=${" + EnvProgressCA + ":-" + ProgressCAPath + "}\n",
		"progress_interval=${" + EnvProgressInterval + ":-" + strconv.Itoa(DefaultProgressIntervalSeconds) + "}\n", "_pf=${helper%/*}/" + ProgressFile + " "} {
		if !strings.Contains(Text, want) {
			t.Errorf("the script does not contain %q", want)
		}
	}
	for _, want := range []string{
		"log() { printf '" + LogPrefix + "%s\\n' \"$1\"; }\n",
		"\tprintf '" + LogPrefix + "%s\\n' \"$_reason\" >&2\n",
		"die \"" + FailedPrefix("$repo", "$revision") + "$why\"\n",
	} {
		if !strings.Contains(Text, want) {
			t.Errorf("the script does not contain %q", want)
		}
	}
	// The helper knows the script's file names, and the ConfigMap holds both.
	for _, want := range []string{"MARKER = \"" + MarkerFile + "\"\n", "LOCK = \"" + LockFile + "\"\n", "PREFIX = \"" + LogPrefix + "\"\n",
		"PROGRESS_FILE = \"" + ProgressFile + "\"\n", "PROGRESS_TOKEN = \"" + ProgressTokenPath + "\"\n", "PROGRESS_CA = \"" + ProgressCAPath + "\"\n",
		"os.environ.get(\"" + EnvProgressToken + "\")", "os.environ.get(\"" + EnvProgressCA + "\")", "os.environ.get(\"" + EnvProgressInterval + "\")", "os.environ.get(\"" + EnvContentHash + "\""} {
		if !strings.Contains(Files["hfdl.py"], want) {
			t.Errorf("hfdl.py does not contain %q", want)
		}
	}
	if diff := cmp.Diff([]string{"download.sh", "hfdl.py", "requirements.txt"}, sortedKeys(Files)); diff != "" || Files["download.sh"] != Text {
		t.Errorf("Files (-want +got):\n%s", diff)
	}
	if strings.Contains(Text, "huggingface-cli") || strings.Contains(Text, "eval") {
		t.Error("the script must not use huggingface-cli or eval")
	}
	// The lock pins HubVersion and XetVersion, once each, with hashes; the Dockerfile installs
	// that lock and nothing else.
	lock := Files["requirements.txt"]
	for name, version := range map[string]string{"huggingface_hub": HubVersion, "hf-xet": XetVersion} {
		pins := regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(name)+`==(\S+) \\\n\s+--hash=sha256:[0-9a-f]{64}`).FindAllStringSubmatch(lock, -1)
		if len(pins) != 1 || pins[0][1] != version {
			t.Errorf("downloader/requirements.txt pins %s %q, want one hashed %s==%s", name, pins, name, version)
		}
	}
	dockerfile, err := os.ReadFile(filepath.Join("..", "downloader", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(dockerfile), "--require-hashes --no-deps --only-binary=:all: -r /tmp/requirements.txt") ||
		strings.Contains(string(dockerfile), "HUB_VERSION") {
		t.Error("downloader/Dockerfile must install downloader/requirements.txt, hashes required, and pin no version of its own")
	}
}

func TestFirstDownload(t *testing.T) {
	h := newHarness(t)
	start := time.Now()
	r := h.run(map[string]string{
		EnvInclude: "*.json\n\n*.safetensors\n",
		EnvExclude: "*.bin",
	})
	if r.code != 0 {
		t.Fatalf("exit %d, want 0; output:\n%s", r.code, r.out)
	}
	want := []call{{
		Prog:   "hf",
		Args:   wantArgs("org/name", "main", h.dir, "--include", "*.json", "--include", "*.safetensors", "--exclude", "*.bin"),
		Token:  "unset",
		Marker: "absent",
	}}
	if diff := cmp.Diff(want, r.calls); diff != "" {
		t.Errorf("hf calls (-want +got):\n%s", diff)
	}
	checkMarker(t, h, marker{
		RepoID:      "org/name",
		RepoType:    "model",
		Revision:    "main",
		Include:     []string{"*.json", "*.safetensors"},
		Exclude:     []string{"*.bin"},
		ContentHash: "hash-1",
		Commit:      commitA,
		Files:       int64(len(stubFiles)),
		Bytes:       stubBytes(),
	}, start)
	if data, err := os.ReadFile(h.markerPath()); err == nil {
		t.Logf("marker:\n%s", data)
	}
	got, ok := h.readSummary()
	if !ok {
		t.Fatal("no termination log written")
	}
	got.Seconds = 0
	if diff := cmp.Diff(Summary{Commit: commitA, Files: int64(len(stubFiles)), Bytes: stubBytes()}, got); diff != "" {
		t.Errorf("summary (-want +got):\n%s", diff)
	}
	if entries, _ := os.ReadDir(h.dir); len(entries) != len([]string{".cache", MarkerFile, LockFile, "README.md", "config.json", "weights"}) {
		t.Errorf("local dir holds %d entries, want no temporary marker left behind", len(entries))
	}
}

func TestSecondRunStopsAtMarker(t *testing.T) {
	h := newHarness(t)
	env := map[string]string{EnvInclude: "*.json", EnvRevision: "v1.0", EnvRepoType: "dataset", EnvMaxWorkers: "4", EnvForce: "false"}
	if r := h.run(env); r.code != 0 {
		t.Fatalf("first run: exit %d\n%s", r.code, r.out)
	}
	before, err := os.ReadFile(h.markerPath())
	if err != nil {
		t.Fatal(err)
	}
	r := h.run(env)
	if r.code != 0 {
		t.Fatalf("second run: exit %d\n%s", r.code, r.out)
	}
	if len(r.calls) != 0 {
		t.Errorf("second run called %v, want no hf at all", r.calls)
	}
	if want := "hf-download: org/name@v1.0 is already complete in " + h.dir + " (commit " + commitA + "); nothing to do"; r.lastLine() != want {
		t.Errorf("last line %q, want %q", r.lastLine(), want)
	}
	after, err := os.ReadFile(h.markerPath())
	if err != nil || !bytes.Equal(before, after) {
		t.Errorf("marker changed or vanished (%v):\n%s\nthen\n%s", err, before, after)
	}
	got, ok := h.readSummary()
	if diff := cmp.Diff(Summary{Commit: commitA, Files: int64(len(stubFiles)), Bytes: stubBytes()}, got); !ok || diff != "" {
		t.Errorf("summary written %v (-want +got):\n%s", ok, diff)
	}
}

func TestChangedSpecDownloadsAgain(t *testing.T) {
	first := map[string]string{EnvInclude: "*.json\n*.md", EnvExclude: "*.bin"}
	for name, change := range map[string]map[string]string{
		"revision":         {EnvRevision: "v2"},
		"repo type":        {EnvRepoType: "dataset"},
		"include added":    {EnvInclude: "*.json\n*.md\n*.safetensors"},
		"include reorder":  {EnvInclude: "*.md\n*.json"},
		"exclude removed":  {EnvExclude: unset},
		"content hash":     {EnvContentHash: "hash-2"},
		"repo id":          {EnvRepoID: "org/other"},
		"content hash off": {EnvContentHash: unset},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			if r := h.run(first); r.code != 0 {
				t.Fatalf("first run: exit %d\n%s", r.code, r.out)
			}
			second := map[string]string{"HFSTUB_COMMIT": commitB}
			for k, v := range first {
				second[k] = v
			}
			for k, v := range change {
				second[k] = v
			}
			r := h.run(second)
			if r.code != 0 || len(r.calls) != 1 {
				t.Fatalf("second run: exit %d, hf calls %v\n%s", r.code, r.calls, r.out)
			}
			if r.calls[0].Marker != "absent" {
				t.Error("the stale marker was still there while hf ran")
			}
			m := h.readMarker()
			if m.Commit != commitB {
				t.Errorf("marker commit %q, want %q", m.Commit, commitB)
			}
			if r := h.run(second); len(r.calls) != 0 {
				t.Errorf("third run with the same spec called hf: %v\n%s", r.calls, r.out)
			}
		})
	}
}

func TestForceDownloadsDespiteMarker(t *testing.T) {
	h := newHarness(t)
	if r := h.run(nil); r.code != 0 {
		t.Fatalf("first run: exit %d\n%s", r.code, r.out)
	}
	r := h.run(map[string]string{EnvForce: "true", "HFSTUB_COMMIT": commitB})
	if r.code != 0 {
		t.Fatalf("forced run: exit %d\n%s", r.code, r.out)
	}
	want := []call{{Prog: "hf", Args: wantArgs("org/name", "main", h.dir, "--force-download"), Token: "unset", Marker: "absent"}}
	if diff := cmp.Diff(want, r.calls); diff != "" {
		t.Errorf("hf calls (-want +got):\n%s", diff)
	}
	if m := h.readMarker(); m.Commit != commitB {
		t.Errorf("marker commit %q, want %q", m.Commit, commitB)
	}
}

func TestFailureLeavesNoMarker(t *testing.T) {
	for name, tc := range map[string]struct {
		env      map[string]string
		complete bool // a complete download of another revision is on disk
		want     string
	}{
		// No "Error: " line of hf's own to tell more (realhf_test.go has those).
		"hf fails": {
			env:  map[string]string{"HFSTUB_MODE": "fail", "HFSTUB_MSG": "401 Client Error: Unauthorized", "HFSTUB_EXIT": "3"},
			want: "download of org/name@main failed: hf exited with code 3",
		},
		"partial files": {
			env:  map[string]string{"HFSTUB_MODE": "partial", EnvRevision: "v9"},
			want: "download of org/name@v9 failed: hf exited with code 1",
		},
		"old marker removed": {
			env:      map[string]string{"HFSTUB_MODE": "fail", EnvRevision: "v2"},
			complete: true,
			want:     "download of org/name@v2 failed: hf exited with code 3",
		},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			if tc.complete {
				if r := h.run(nil); r.code != 0 {
					t.Fatalf("first run: exit %d\n%s", r.code, r.out)
				}
			}
			r := h.run(tc.env)
			if r.code == 0 {
				t.Errorf("exit 0, want a failure\n%s", r.out)
			}
			if len(r.calls) != 1 {
				t.Errorf("hf calls %v, want one", r.calls)
			}
			h.checkFailure(r, tc.want)
			if _, err := os.Stat(h.markerPath()); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("marker after a failure: %v", err)
			}
		})
	}
}

func TestIncompleteDirectoryIsDownloaded(t *testing.T) {
	identity := "{\n  \"repoId\": \"org/name\",\n  \"repoType\": \"model\",\n  \"revision\": \"main\",\n  \"include\": [],\n  \"exclude\": [],\n  \"contentHash\": \"hash-1\",\n"
	for name, markerText := range map[string]string{
		"files but no marker": "",
		"marker of other hash": strings.Replace(identity, "hash-1", "hash-0", 1) +
			"  \"commit\": \"\",\n  \"files\": 1,\n  \"bytes\": 4,\n  \"seconds\": 1,\n  \"completedAt\": \"2024-01-01T00:00:00Z\"\n}\n",
		"marker cut short": identity + "  \"commit\": \"\",\n  \"fil",
		"not our marker":   `{"repoId":"org/name","revision":"main","contentHash":"hash-1"}`,
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			mustMkdir(t, filepath.Join(h.dir, "weights"))
			mustWrite(t, filepath.Join(h.dir, "weights", "model.safetensors"), "half")
			mustWrite(t, h.markerPath()+".tmp.4242", identity) // from a run killed while writing it
			if markerText != "" {
				mustWrite(t, h.markerPath(), markerText)
			}
			r := h.run(nil)
			if r.code != 0 || len(r.calls) != 1 {
				t.Fatalf("exit %d, hf calls %v, want one successful download\n%s", r.code, r.calls, r.out)
			}
			if m := h.readMarker(); m.Files != int64(len(stubFiles)) || m.Bytes != stubBytes() {
				t.Errorf("marker counts %d files, %d bytes, want %d, %d", m.Files, m.Bytes, len(stubFiles), stubBytes())
			}
		})
	}
}

// TestHostileValuesStayArguments: values are data, never code or patterns.
func TestHostileValuesStayArguments(t *testing.T) {
	h := newHarness(t)
	const payload = "a b'c\"d;e$(echo>pwned)`echo>pwned`$(touch pwned)*|&>x\\"
	repo := "org/" + payload
	revision := "rev " + payload
	include := []string{"*.json " + payload, "* *", "*"}
	exclude := []string{"-x " + payload}
	h.dir = filepath.Join(h.root, "models", "dir "+payload)
	env := map[string]string{
		EnvRepoID:      repo,
		EnvRevision:    revision,
		EnvInclude:     strings.Join(include, "\n"),
		EnvExclude:     strings.Join(exclude, "\n"),
		EnvContentHash: payload,
		EnvLocalDir:    h.dir,
	}
	start := time.Now()
	r := h.run(env)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.out)
	}
	want := []call{{
		Prog:   "hf",
		Args:   wantArgs(repo, revision, h.dir, "--include", include[0], "--include", include[1], "--include", include[2], "--exclude", exclude[0]),
		Token:  "unset",
		Marker: "absent",
	}}
	if diff := cmp.Diff(want, r.calls); diff != "" {
		t.Errorf("hf calls (-want +got):\n%s", diff)
	}
	checkMarker(t, h, marker{
		RepoID: repo, RepoType: "model", Revision: revision, Include: include, Exclude: exclude,
		ContentHash: payload, Commit: commitA, Files: int64(len(stubFiles)), Bytes: stubBytes(),
	}, start)
	if r := h.run(env); r.code != 0 || len(r.calls) != 0 {
		t.Errorf("second run: exit %d, hf calls %v, want a stop at the marker\n%s", r.code, r.calls, r.out)
	}
	assertNoFile(t, "pwned", h.root, ".")
}

// TestMarkerEscapesEveryCharacter: the marker stays valid JSON, and matches
// itself on the next run, whatever bytes a value holds.
func TestMarkerEscapesEveryCharacter(t *testing.T) {
	h := newHarness(t)
	var all strings.Builder
	for c := rune(1); c < 0x80; c++ {
		all.WriteRune(c)
	}
	all.WriteString("é✓😀\n")
	start := time.Now()
	r := h.run(map[string]string{EnvContentHash: all.String()})
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.out)
	}
	checkMarker(t, h, marker{
		RepoID: "org/name", RepoType: "model", Revision: "main", Include: []string{}, Exclude: []string{},
		ContentHash: all.String(), Commit: commitA, Files: int64(len(stubFiles)), Bytes: stubBytes(),
	}, start)
	if r := h.run(map[string]string{EnvContentHash: all.String()}); r.code != 0 || len(r.calls) != 0 {
		t.Errorf("second run: exit %d, hf calls %v, want a stop at the marker\n%s", r.code, r.calls, r.out)
	}
}

func TestInstallsPinnedHubWhenHfMissing(t *testing.T) {
	h := newHarness(t)
	mustRemove(t, filepath.Join(h.stubs, "hf"))
	r := h.run(map[string]string{EnvToken: "hf_notARealTokenButSecret"})
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.out)
	}
	if len(r.calls) != 2 || r.calls[0].Prog != "python3" || r.calls[1].Prog != "hf" {
		t.Fatalf("calls %v, want python3 (pip) then hf", r.calls)
	}
	pip := r.calls[0]
	target := pip.Args[slices.Index(pip.Args, "--target")+1]
	if !strings.HasPrefix(target, filepath.Join(h.root, "tmp")+"/hf-download.") {
		t.Errorf("pip target %q is not under TMPDIR", target)
	}
	// The lock beside the helper, hashes required, wheels only: the image's exact set.
	wantPip := call{
		Prog: "python3",
		Args: []string{"-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check", "--no-input",
			"--target", target, "--require-hashes", "--no-deps", "--only-binary=:all:", "-r", filepath.Join(filepath.Dir(h.helper), "requirements.txt")},
		Token: "unset",
	}
	if diff := cmp.Diff(wantPip, pip); diff != "" {
		t.Errorf("pip call (-want +got):\n%s", diff)
	}
	// An install at run time trusts the index the pod reaches: the log must say it happened.
	if want := "hf is not on PATH: this image is not the downloader image, so huggingface_hub==" + HubVersion; !strings.Contains(r.out, want) {
		t.Errorf("the log does not say %q:\n%s", want, r.out)
	}
	wantHF := call{Prog: "hf", Args: wantArgs("org/name", "main", h.dir), Token: "set len=25", PythonPath: target, Marker: "absent"}
	if diff := cmp.Diff(wantHF, r.calls[1]); diff != "" {
		t.Errorf("hf call (-want +got):\n%s", diff)
	}
	if m := h.readMarker(); m.Commit != commitA {
		t.Errorf("marker commit %q, want %q", m.Commit, commitA)
	}
}

func TestInstallFailures(t *testing.T) {
	for name, tc := range map[string]struct {
		removePython bool
		env          map[string]string
		want         string // HELPER stands for the folder of the run's helper
	}{
		"no python3": {
			removePython: true,
			want:         "hf-download: hf is not on PATH and python3 is missing, so huggingface_hub==" + HubVersion + " cannot be installed: use an image with Python or the downloader image",
		},
		"pip fails": {
			env:  map[string]string{"PYSTUB_FAIL": "1"},
			want: "hf-download: installing huggingface_hub==" + HubVersion + " hf_xet==" + XetVersion + " from " + filepath.Join("HELPER", "requirements.txt") + " failed (exit 2)",
		},
		"no lock beside the helper": {
			env:  map[string]string{EnvHelper: "/nonexistent/hfdl.py"},
			want: "hf-download: hf is not on PATH and the lock /nonexistent/requirements.txt is missing, so huggingface_hub==" + HubVersion + " cannot be installed: use the downloader image",
		},
		"python3 older than the lock allows": {
			env:  map[string]string{"PYSTUB_OLD": "1"},
			want: "hf-download: hf is not on PATH and this image's python3 is older than 3.11, which huggingface_hub==" + HubVersion + "'s locked dependencies need: use the downloader image",
		},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			mustRemove(t, filepath.Join(h.stubs, "hf"))
			if tc.removePython {
				mustRemove(t, filepath.Join(h.stubs, "python3"))
			}
			r := h.run(tc.env)
			want := strings.ReplaceAll(tc.want, "HELPER", filepath.Dir(h.helper))
			if r.code == 0 || r.lastLine() != want {
				t.Errorf("exit %d, last line %q, want a failure with %q\n%s", r.code, r.lastLine(), want, r.out)
			}
			h.checkFailure(r, strings.TrimPrefix(want, "hf-download: "))
			for _, c := range r.calls {
				if c.Prog == "hf" {
					t.Errorf("hf ran: %v", c)
				}
			}
		})
	}
}

func TestTokenNeverLeaks(t *testing.T) {
	const token = "hf_SuperSecretTokenValue0123456789"
	h := newHarness(t)
	var outputs []string
	for _, env := range []map[string]string{
		{EnvToken: token},
		{EnvToken: token},
		{EnvToken: token, EnvRevision: "v2", "HFSTUB_MODE": "fail"},
		{EnvToken: token, EnvRevision: "v3"},
	} {
		r := h.run(env)
		outputs = append(outputs, r.out)
		for _, c := range r.calls {
			if c.Token != fmt.Sprintf("set len=%d", len(token)) {
				t.Errorf("hf saw HF_TOKEN %q, want it set, unchanged", c.Token)
			}
			for _, a := range c.Args {
				if strings.Contains(a, token) {
					t.Errorf("token in hf's argv: %q", a)
				}
			}
		}
	}
	for i, out := range outputs {
		if strings.Contains(out, token) {
			t.Errorf("run %d printed the token:\n%s", i+1, out)
		}
	}
	// The marker, the termination log and everything else written.
	err := filepath.WalkDir(h.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Type()&fs.ModeSymlink != 0 {
			return err
		}
		data, err := os.ReadFile(path)
		if err == nil && bytes.Contains(data, []byte(token)) {
			t.Errorf("the token is in %s", path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := h.readSummary(); !ok {
		t.Error("the last run wrote no termination log")
	}
}

func TestRejectsBadEnv(t *testing.T) {
	for name, tc := range map[string]struct {
		env  map[string]string
		want string
	}{
		"no repo id":      {map[string]string{EnvRepoID: unset}, "hf-download: HFDL_REPO_ID is required (the Hugging Face repo id, e.g. org/name)"},
		"empty repo id":   {map[string]string{EnvRepoID: ""}, "hf-download: HFDL_REPO_ID is required (the Hugging Face repo id, e.g. org/name)"},
		"option repo id":  {map[string]string{EnvRepoID: "--help"}, `hf-download: HFDL_REPO_ID must not start with '-': "--help"`},
		"space repo type": {map[string]string{EnvRepoType: "space"}, `hf-download: HFDL_REPO_TYPE must be model or dataset, not "space"`},
		"zero workers":    {map[string]string{EnvMaxWorkers: "0"}, `hf-download: HFDL_MAX_WORKERS must be a positive integer, not "0"`},
		"word workers":    {map[string]string{EnvMaxWorkers: "8; echo"}, `hf-download: HFDL_MAX_WORKERS must be a positive integer, not "8; echo"`},
		"force typo":      {map[string]string{EnvForce: "yes"}, `hf-download: HFDL_FORCE must be true or false, not "yes"`},
		"zero stall":      {map[string]string{EnvStallTimeout: "0"}, `hf-download: HFDL_STALL_TIMEOUT must be a positive integer (seconds), not "0"`},
		"octal stall":     {map[string]string{EnvStallTimeout: "0600"}, `hf-download: HFDL_STALL_TIMEOUT must be a positive integer (seconds), not "0600"`},
		"word stall":      {map[string]string{EnvStallTimeout: "10m"}, `hf-download: HFDL_STALL_TIMEOUT must be a positive integer (seconds), not "10m"`},
		"huge stall":      {map[string]string{EnvStallTimeout: "1234567890"}, `hf-download: HFDL_STALL_TIMEOUT must be a positive integer (seconds), not "1234567890"`},
		"zero interval":   {map[string]string{EnvProgressInterval: "0"}, `hf-download: HFDL_PROGRESS_INTERVAL must be a positive integer (seconds), not "0"`},
		"octal interval":  {map[string]string{EnvProgressInterval: "015"}, `hf-download: HFDL_PROGRESS_INTERVAL must be a positive integer (seconds), not "015"`},
		"word interval":   {map[string]string{EnvProgressInterval: "15s"}, `hf-download: HFDL_PROGRESS_INTERVAL must be a positive integer (seconds), not "15s"`},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			r := h.run(tc.env)
			if r.code == 0 || r.lastLine() != tc.want || len(r.calls) != 0 {
				t.Errorf("exit %d, last line %q, hf calls %v; want a failure with %q and no hf\n%s", r.code, r.lastLine(), r.calls, tc.want, r.out)
			}
			h.checkFailure(r, strings.TrimPrefix(tc.want, "hf-download: "))
		})
	}
}

func TestCommitFromMetadata(t *testing.T) {
	for name, tc := range map[string]struct {
		env   map[string]string
		stale string // a metadata file left by an earlier revision
		want  string
	}{
		"no metadata":    {env: map[string]string{"HFSTUB_COMMIT": unset}, want: ""},
		"not a commit":   {env: map[string]string{"HFSTUB_COMMIT": "main"}, want: ""},
		"short hex":      {env: map[string]string{"HFSTUB_COMMIT": "abc123"}, want: ""},
		"newest wins":    {stale: commitB + "\netag\n1600000000.5\n", want: commitA},
		"stale is newer": {env: map[string]string{"HFSTUB_TIME": "1500000000"}, stale: commitB + "\netag\n1600000000.5\n", want: commitB},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			if tc.stale != "" {
				meta := filepath.Join(h.dir, ".cache", "huggingface", "download", "old")
				mustMkdir(t, meta)
				mustWrite(t, filepath.Join(meta, "removed.bin.metadata"), tc.stale)
			}
			r := h.run(tc.env)
			if r.code != 0 {
				t.Fatalf("exit %d\n%s", r.code, r.out)
			}
			if m := h.readMarker(); m.Commit != tc.want {
				t.Errorf("marker commit %q, want %q", m.Commit, tc.want)
			}
			if s, ok := h.readSummary(); !ok || s.Commit != tc.want {
				t.Errorf("summary (written: %v) commit %q, want %q", ok, s.Commit, tc.want)
			}
		})
	}
}

func TestMissingTerminationLogIsNotFatal(t *testing.T) {
	h := newHarness(t)
	path := filepath.Join(h.root, "no", "such", "dir", "termination-log")
	r := h.run(map[string]string{EnvTerminationLog: path})
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.out)
	}
	if !strings.Contains(r.out, "hf-download: warning: cannot write the summary to "+path+"\n") {
		t.Errorf("no warning about the termination log:\n%s", r.out)
	}
	// Only the script's own lines and the stub hf's (the local dir it prints);
	// the shell's own error ("hf-download: 77: cannot create ...") is noise.
	shellError := regexp.MustCompile(`^hf-download: [0-9]+: `)
	for _, line := range strings.Split(strings.TrimSuffix(r.out, "\n"), "\n") {
		if (!strings.HasPrefix(line, "hf-download: ") && line != h.dir) || shellError.MatchString(line) {
			t.Errorf("stray output line %q", line)
		}
	}
	h.readMarker()
}

func assertNoFile(t testing.TB, name string, dirs ...string) {
	t.Helper()
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.Name() == name {
				t.Errorf("%s exists: a value ran as code", path)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func mustMkdir(t testing.TB, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustWriteExec(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

func mustRemove(t testing.TB, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

// TestXetBufferFollowsTheMemoryLimit: hf_xet's download buffer is bounded by the container's
// memory limit, read from cgroup v2 or v1: half of what 384 MiB for Python, hf and hf_xet's
// runtime leave, at least 128 MiB, a half of it as base and an eighth per file (so that the base
// and one file's part hold a 64 MiB term). No limit sets nothing, and what the environment sets
// wins.
func TestXetBufferFollowsTheMemoryLimit(t *testing.T) {
	const mib = 1 << 20
	bounds := func(total int64) string {
		return fmt.Sprintf("%d %d %d", total/2, total/8, total)
	}
	for _, tc := range []struct {
		name  string
		file  string // under the cgroup mount; none: no file
		limit string
		env   map[string]string
		want  string
	}{
		{name: "v2, 1Gi", file: "memory.max", limit: "1073741824\n", want: bounds((1024 - 384) * mib / 2)},
		{name: "v2, 4Gi", file: "memory.max", limit: "4294967296\n", want: bounds((4096 - 384) * mib / 2)},
		{name: "v2, no limit", file: "memory.max", limit: "max\n"},
		{name: "v1, 2Gi", file: "memory/memory.limit_in_bytes", limit: "2147483648\n", want: bounds((2048 - 384) * mib / 2)},
		{name: "v1, no limit", file: "memory/memory.limit_in_bytes", limit: "9223372036854771712\n"},
		{name: "below the floor", file: "memory.max", limit: "268435456\n", want: bounds(128 * mib)},
		{name: "no cgroup file"},
		{name: "the environment wins", file: "memory.max", limit: "1073741824\n", env: map[string]string{
			"HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_SIZE": "1", "HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_PERFILE_SIZE": "2",
			"HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_LIMIT": "3"}, want: "1 2 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.file != "" {
				p := filepath.Join(h.root, "cgroup", tc.file)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(tc.limit), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			r := h.run(tc.env)
			if r.code != 0 || len(r.calls) != 1 {
				t.Fatalf("exit %d, calls %v\n%s", r.code, r.calls, r.out)
			}
			if got := r.calls[0].XetBuffer; got != tc.want {
				t.Errorf("hf_xet's download buffer %q, want %q\n%s", got, tc.want, r.out)
			}
			if logged := strings.Contains(r.out, "hf_xet's download buffer: "); logged != (tc.want != "") {
				t.Errorf("the log says the buffer: %v, want %v\n%s", logged, !logged, r.out)
			}
		})
	}
}
