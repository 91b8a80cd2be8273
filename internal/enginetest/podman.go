package enginetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// StartPodman starts a private `podman system service` under a fresh
// directory.
//
// Everything Podman 4.3 would keep in /etc/containers, /var/lib/containers,
// /run/libpod or /var/tmp goes there instead: storage (overlay), the libpod
// database, its tmp dirs, the network configuration, volumes, the events
// log and the container locks (file locks, not the shared-memory segment
// /dev/shm/libpod_lock that every rootful Podman on the machine shares and
// that, as libpod's refresh reads, a Podman starting with a fresh tmp dir
// frees wholesale). Its netavark is a stand-in that refuses to set up a
// network, so a container must have network mode "none" (or "host") to
// start, and nothing can create the podman0 bridge.
//
// Two paths no setting moves, /var/tmp (a load first tries the tarball as
// an OCI archive and unpacks it there) and /var/lib/containers/cache
// (containers/image's cache of layer digests), are the engine's own
// directories in the service's private mount namespace (see startPodman).
// What stays outside: runc's per-container state under /run/runc (removed
// with the container), and for a container started with a network, which
// fails, a network namespace file in /run/netns (removed again) and
// netavark's address database in its fixed run directory
// /run/containers/networks (the address is released again).
func StartPodman() (*Engine, error) {
	if _, err := os.Stat(PodmanBin); err != nil {
		return nil, fmt.Errorf("enginetest: %s not found: install Debian's podman: make engines", PodmanBin)
	}
	e, err := newEngine("podman")
	if err != nil {
		return nil, err
	}
	if err := e.startPodman(); err != nil {
		e.Stop()
		return nil, fmt.Errorf("enginetest: start podman: %w", err)
	}
	return e, nil
}

func (e *Engine) startPodman() error {
	root, run, tmp, nets, bin := filepath.Join(e.Dir, "root"), filepath.Join(e.Dir, "run"), filepath.Join(e.Dir, "tmp"), filepath.Join(e.Dir, "networks"), filepath.Join(e.Dir, "bin")
	for _, d := range []string{root, run, tmp, nets, bin} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	// Podman's Docker-compatible API gives a container without a network
	// mode the bridge network whatever containers.conf says (its netns =
	// "none" below serves the libpod API), and netavark
	// would then create the podman0 bridge and its firewall rules. This
	// Podman's netavark is a stand-in that refuses, so such a container
	// fails to start instead of changing the machine's network.
	if err := os.WriteFile(filepath.Join(bin, "netavark"), []byte(noNetavark), 0o755); err != nil {
		return err
	}
	// default_ulimits = [], cgroupfs and the file events logger are the
	// settings Podman 4.3 was verified to run containers with on the test
	// machines (a VM without systemd or journald, open files limited to
	// 20000).
	conf := fmt.Sprintf(`[containers]
default_ulimits = []
netns = "none"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = %q
lock_type = "file"
tmp_dir = %q
image_copy_tmp_dir = %q
volume_path = %q
helper_binaries_dir = [%q]

[network]
network_backend = "netavark"
network_config_dir = %q
`, filepath.Join(tmp, "events.log"), tmp, tmp, filepath.Join(root, "volumes"), bin, nets)
	storage := fmt.Sprintf("[storage]\ndriver = \"overlay\"\ngraphroot = %q\nrunroot = %q\n", root, run)
	confPath, storagePath := filepath.Join(e.Dir, "containers.conf"), filepath.Join(e.Dir, "storage.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(storagePath, []byte(storage), 0o600); err != nil {
		return err
	}
	env := []string{
		"CONTAINERS_CONF=" + confPath,
		"CONTAINERS_STORAGE_CONF=" + storagePath,
		"TMPDIR=" + tmp,
	}
	// Two paths no setting moves: a load first tries the tarball as an
	// OCI archive, unpacking it under /var/tmp, and containers/image
	// records layer digests in /var/lib/containers/cache. The service runs
	// in a mount namespace of its own (its helpers, conmon and runc, with
	// it) where both are the engine's directories. The overlay mounts of
	// storage and containers stay in that namespace and go with it.
	varTmp, cache := filepath.Join(e.Dir, "var-tmp"), filepath.Join(e.Dir, "blob-cache")
	for _, d := range []string{varTmp, cache} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	const wrap = `set -e
if [ -d /var/lib/containers/cache ]; then mount --bind "$1" /var/lib/containers/cache; fi
mount --bind "$2" /var/tmp
shift 2
exec "$@"`
	p, err := e.spawn("podman", exec.Command(UnshareBin, "--mount", "--propagation", "private", "/bin/sh", "-c", wrap, "sh", cache, varTmp,
		PodmanBin, "--root", root, "--runroot", run, "--tmpdir", tmp, "--network-config-dir", nets,
		"system", "service", "--time", "0", e.Host), env)
	if err != nil {
		return err
	}
	return e.waitPing(p)
}

// noNetavark is the netavark of a Podman from StartPodman. Podman reads a
// failed netavark's message as JSON from its standard output.
const noNetavark = `#!/bin/sh
echo '{"error": "enginetest: this Podman sets up no networks (they would change the machine network): create containers with network mode none"}'
exit 1
`
