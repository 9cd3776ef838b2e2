package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// process is one component of the test control plane, run as its own process group so that
// stopping it also stops anything it started.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has exited
	err     error         // why it exited; read only after done is closed
}

// startProcess runs bin with args and extra environment, its output going to
// <logDir>/<name>.log. Pdeathsig makes the kernel kill the process if the test binary dies
// without running its cleanup (a panic in a test, a -timeout, SIGKILL), so nothing is ever
// left running.
func startProcess(logDir, name string, env []string, bin string, args ...string) (*process, error) {
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended, and why.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// stop asks the process group to terminate, then kills it if it is still there after a
// grace period. The group is killed even when the leader has already exited, in case it
// left children behind.
func (p *process) stop() {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.done
}

// tail returns the last n lines of the process's log.
func (p *process) tail(n int) string {
	return tailFile(p.logPath, n)
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// portInUse tells whether a process that exited early lost a race for its port, so the
// caller can retry with fresh ports instead of failing the run.
func (p *process) portInUse() bool {
	b, _ := os.ReadFile(p.logPath)
	return bytes.Contains(b, []byte("address already in use"))
}

// freePorts returns n distinct loopback ports that were free a moment ago. Another process
// may take one before the component binds it; startWithRetry covers that.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// errNotReady is what a readiness probe returns while the component is still starting.
var errNotReady = errors.New("not ready")

// waitReady polls ready until it succeeds, the process exits, or the timeout passes.
func (p *process) waitReady(timeout time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if ok, err := p.exited(); ok {
			return fmt.Errorf("%s exited before it was ready (%w); log tail:\n%s", p.name, err, p.tail(30))
		}
		if last = ready(); last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %w; log tail:\n%s", p.name, timeout, last, p.tail(30))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// startWithRetry starts a component on fresh ports, retrying when it lost a port race.
// start gets the ports and returns the process and its readiness probe.
func startWithRetry(nPorts int, timeout time.Duration, start func(ports []int) (*process, func() error, error)) error {
	var lastErr error
	for range 3 {
		ports, err := freePorts(nPorts)
		if err != nil {
			return err
		}
		p, ready, err := start(ports)
		if err != nil {
			return err
		}
		if lastErr = p.waitReady(timeout, ready); lastErr == nil {
			return nil
		}
		p.stop()
		if !p.portInUse() {
			return lastErr
		}
	}
	return lastErr
}

// envList turns pairs into KEY=VALUE strings, sorted by the caller's order.
func envList(kv ...string) []string {
	var out []string
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, kv[i]+"="+kv[i+1])
	}
	return out
}

// listening is a readiness probe: something accepts TCP connections at addr.
func listening(addr string) func() error {
	return func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
		}
		return err
	}
}
