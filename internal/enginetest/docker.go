package enginetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// StartDocker starts a private dockerd, with its own containerd, under a
// fresh directory.
//
// dockerd would use the machine's containerd whenever
// /run/containerd/containerd.sock exists (it has no flag against that), so
// the harness always starts a containerd of its own and hands it over with
// --containerd.
func StartDocker() (*Engine, error) {
	for bin, deb := range map[string]string{DockerdBin: "docker.io", ContainerdBin: "containerd"} {
		if _, err := os.Stat(bin); err != nil {
			return nil, fmt.Errorf("enginetest: %s not found: install Debian's %s: make engines", bin, deb)
		}
	}
	e, err := newEngine("docker")
	if err != nil {
		return nil, err
	}
	if err := e.startDocker(); err != nil {
		e.Stop()
		return nil, fmt.Errorf("enginetest: start dockerd: %w", err)
	}
	return e, nil
}

func (e *Engine) startDocker() error {
	cd := filepath.Join(e.Dir, "containerd")
	cdSock := filepath.Join(cd, "containerd.sock")
	// What dockerd writes for the containerd it manages itself (cri
	// disabled), in containerd 1.6's version 2 format, every path here.
	// The debug and metrics endpoints stay off.
	cdConf := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = %q

[ttrpc]
  address = %q
`, filepath.Join(cd, "root"), filepath.Join(cd, "state"), cdSock, cdSock+".ttrpc")
	if err := os.MkdirAll(cd, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(cd, "config.toml"), []byte(cdConf), 0o600); err != nil {
		return err
	}
	// An empty daemon.json of its own: /etc/docker/daemon.json, when the
	// machine has one, is the machine's dockerd's.
	daemonJSON := filepath.Join(e.Dir, "daemon.json")
	if err := os.WriteFile(daemonJSON, []byte("{}\n"), 0o600); err != nil {
		return err
	}
	// Their temporary files go to the engine's directory too.
	tmp := filepath.Join(e.Dir, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return err
	}
	env := []string{"TMPDIR=" + tmp}
	c, err := e.spawn("containerd", exec.Command(ContainerdBin, "--config", filepath.Join(cd, "config.toml")), env)
	if err != nil {
		return err
	}
	if err := e.waitFor(c, "containerd's socket", func() error { _, err := os.Stat(cdSock); return err }); err != nil {
		return err
	}
	d, err := e.spawn("dockerd", exec.Command(DockerdBin,
		"--host", e.Host,
		"--containerd", cdSock,
		"--config-file", daemonJSON,
		"--data-root", filepath.Join(e.Dir, "data"),
		"--exec-root", filepath.Join(e.Dir, "exec"),
		"--pidfile", filepath.Join(e.Dir, "docker.pid"),
		// No docker0 bridge and no iptables rules: the machine's network
		// stays as it was. Containers run with network mode "none".
		"--bridge", "none", "--iptables=false", "--ip6tables=false", "--ip-masq=false",
	), env)
	if err != nil {
		return err
	}
	return e.waitPing(d)
}
