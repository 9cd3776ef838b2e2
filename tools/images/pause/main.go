// Command pause is the pod sandbox's process, as Kubernetes' pause.c: it holds
// the pod's namespaces as PID 1, reaps the orphans that the pod's other
// processes leave to it, and exits 0 on SIGINT or SIGTERM.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "pause: warning: not PID 1 of its PID namespace")
	}
	// Two channels: a burst of SIGCHLD must not crowd out a SIGTERM (Notify
	// drops what a full channel cannot take; one reap collects every child).
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	child := make(chan os.Signal, 1)
	signal.Notify(child, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			os.Exit(0)
		case <-child:
			reap()
		}
	}
}

// reap collects every child that has exited, without waiting for the others.
func reap() {
	for {
		pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
	}
}
