package script

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestTermStopsHF: the kubelet stops a pod with TERM to its PID 1, the shell running the
// script, for which the kernel ignores TERM unless it is handled. The script must stop hf
// (here a stub that never ends, what a stalled transfer looks like) and end at once, failed,
// with no marker and no hf left running, both as an ordinary process and as PID 1 of its own
// PID namespace (as in a container).
func TestTermStopsHF(t *testing.T) {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		missingTool(t, "unshare (util-linux) not on PATH")
	}
	for _, tc := range []struct {
		name string
		pid1 bool
	}{
		{name: "child process"},
		{name: "PID 1", pid1: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.pid1 {
				if os.Geteuid() != 0 {
					missingTool(t, "a new PID namespace needs root")
				}
				// --fork: the shell, not unshare, becomes PID 1; --kill-child: unshare
				// passes nothing on, so the test signals the shell through its own pid.
				h.sh = append([]string{unshare, "--pid", "--fork", "--kill-child"}, h.sh...)
			}
			s := h.start(map[string]string{"HFSTUB_MODE": "hang"})
			hfPid := waitPidFile(t, h.record+".pid", s)
			shell := s.cmd.Process.Pid
			if tc.pid1 {
				shell = childOf(t, shell)
			}
			if err := syscall.Kill(shell, syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			// hf hangs for ten minutes: only the TERM can end this run.
			r := s.wait()
			if r.code != 1 {
				t.Errorf("exit code %d, want 1; output:\n%s", r.code, r.out)
			}
			h.checkFailure(r, "stopped by SIGTERM before the download of org/name@main finished")
			if !tc.pid1 { // a PID namespace takes its processes with it anyway
				if err := syscall.Kill(hfPid, 0); !errors.Is(err, syscall.ESRCH) {
					t.Errorf("hf (pid %d) still runs after the script ended: kill -0 says %v", hfPid, err)
				}
			}
			assertNoFile(t, MarkerFile, h.dir)
		})
	}
}

// waitPidFile waits until the stub hf of run has written its pid (in its own PID namespace,
// when there is one) to path.
func waitPidFile(t testing.TB, path string, run *started) int {
	t.Helper()
	var b []byte
	waitFor(t, "hf's pid in "+path, run, func() bool {
		var err error
		b, err = os.ReadFile(path)
		return err == nil && strings.HasSuffix(string(b), "\n")
	})
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// childOf is the only child of pid: the shell unshare --fork started.
func childOf(t testing.TB, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(pid) + "/children")
	if err != nil {
		t.Fatal(err)
	}
	kids := strings.Fields(string(b))
	if len(kids) != 1 {
		t.Fatalf("unshare (pid %d) has children %v, want one", pid, kids)
	}
	child, err := strconv.Atoi(kids[0])
	if err != nil {
		t.Fatal(err)
	}
	return child
}
