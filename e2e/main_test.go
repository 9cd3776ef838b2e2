// Package e2e runs the function against a real control plane on loopback: etcd,
// kube-apiserver, kube-controller-manager and Crossplane core, each a real process built by
// hack/tools.sh, and a real node (containerd, kubelet, kube-scheduler) whose pods download
// from a fake Hub with the real hf CLI. Tests that need a pod state no node produces on
// demand write pod status as a kubelet would.
package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

// run is TestMain's body, so that its deferred cleanup runs before os.Exit.
func run(m *testing.M) int {
	if core.name == "" {
		fmt.Fprintf(os.Stderr, "e2e: E2E_CROSSPLANE=%q: want v1, v2 or nothing\n", os.Getenv("E2E_CROSSPLANE"))
		return 1
	}
	// Crossplane 1.x serves the claim flavour only: the other tests' v2 API is not there.
	flag.Parse()
	if core.v1 && flag.Lookup("test.run").Value.String() == "" {
		fmt.Fprintln(os.Stderr, "e2e: E2E_CROSSPLANE=v1 runs the claim flavour's tests alone: pass -run as the Makefile does")
		return 1
	}
	root, err := filepath.Abs("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Building and starting happen before m.Run, so go test's -timeout (which m.Run starts)
	// does not count the first, slow build of the tools.
	if err := buildTools(root); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building tools: %v\n", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "hf-download-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cluster = &controlPlane{
		repoRoot: root,
		binDir:   filepath.Join(root, "bin"),
		dir:      dir,
		logDir:   filepath.Join(dir, "logs"),
	}

	// An interrupt (Ctrl-C, or CI's stop) must not leave the control plane running. The
	// processes also die with this one (Pdeathsig), but a clean stop lets etcd and the
	// apiserver shut down without noise.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		cluster.stop()
		fmt.Fprintf(os.Stderr, "e2e: stopped on %v; logs in %s\n", s, cluster.logDir)
		os.Exit(1)
	}()

	code := 1
	defer func() {
		cluster.stop()
		// Keep what a failed run wrote, for a look at the full logs, but not etcd's data
		// (over 100 MB, mostly preallocated log).
		if code == 0 {
			_ = os.RemoveAll(dir)
		} else {
			_ = os.RemoveAll(filepath.Join(dir, "etcd"))
			fmt.Fprintf(os.Stderr, "e2e: control plane logs kept in %s\n", dir)
		}
	}()

	if err := startControlPlane(cluster); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: starting the control plane: %v\n%s\n", err, cluster.logTails(40))
		return code
	}
	code = m.Run()
	if code == 0 {
		found, err := tokensInLogs(cluster.logDir)
		if err != nil || len(found) > 0 {
			fmt.Fprintf(os.Stderr, "e2e: a token reached a log (%v):\n%s\n", err, strings.Join(found, "\n"))
			code = 1
		}
		// The real node may never pull an image: every image it runs was imported.
		pulls, err := cluster.imagePulls()
		fmt.Fprintf(os.Stderr, "e2e: containerd's log shows %d image pulls\n", pulls)
		if err != nil || pulls > 0 {
			fmt.Fprintf(os.Stderr, "e2e: the real node pulled images (%v); see %s\n", err, cluster.logPath("containerd"))
			code = 1
		}
	}
	return code
}

// buildTools runs hack/tools.sh, which builds whatever is missing or out of date into bin/
// and installs etcd, then hack/node.sh, which installs the real node's runtime from Debian
// and builds its images; when everything is current they return in a few seconds.
func buildTools(root string) error {
	for _, script := range []string{"tools.sh", "node.sh"} {
		cmd := exec.Command("bash", filepath.Join(root, "hack", script))
		cmd.Dir = root
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("hack/%s: %w", script, err)
		}
	}
	return nil
}

// moduleDir is where the Go module cache holds the module that the tools module in dir pins.
func moduleDir(root, dir, module string) (string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module)
	cmd.Dir = filepath.Join(root, dir)
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locate module %s: %w", module, err)
	}
	return strings.TrimSpace(string(out)), nil
}
