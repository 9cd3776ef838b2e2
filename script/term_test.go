package script

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
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
			cmd, out := h.command(map[string]string{"HFSTUB_MODE": "hang"})
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()

			hfPid := waitPidFile(t, h.record+".pid", done)
			shell := cmd.Process.Pid
			if tc.pid1 {
				shell = childOf(t, cmd.Process.Pid)
			}
			if err := syscall.Kill(shell, syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			var runErr error
			select {
			case runErr = <-done:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatalf("the script still runs 20 s after TERM; output:\n%s", out)
			}
			r := h.finish(runErr, out)
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

// waitPidFile waits until the stub hf has written its pid (in its own PID namespace, when
// there is one) to path, failing if the run ends first.
func waitPidFile(t *testing.T, path string, done <-chan error) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && strings.HasSuffix(string(b), "\n") {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
		select {
		case err := <-done:
			t.Fatalf("the script ended (%v) before hf started", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatal("hf did not start within 20 s")
	return 0
}

// childOf is the only child of pid: the shell unshare --fork started.
func childOf(t *testing.T, pid int) int {
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
