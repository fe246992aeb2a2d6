// Command pause is the sandbox ("pause") container of the test bed's kubelet (tools/install.sh node):
// it holds the Pod's namespaces, reaps the zombies of a shared PID namespace, and exits on SIGINT or
// SIGTERM. The project builds it from source instead of pulling registry.k8s.io/pause (no container
// registry is reachable from the test bed); tests/support/node.py packs it into an OCI image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range signals {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
