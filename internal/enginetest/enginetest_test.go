package enginetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

var engines *Engines

func TestMain(m *testing.M) { Main(m, &engines) }

const (
	testImage = "busybox:e2e"
	testLabel = "wharfjobs.test/enginetest=1"
)

// listedAs is how each engine lists testImage after Load.
var listedAs = map[string]string{"docker": "busybox:e2e", "podman": "localhost/busybox:e2e"}

type fakeM func() int

func (f fakeM) Run() int { return f() }

// A package whose tests use no engine starts none.
func TestMainStartsNothingForTestsWithoutEngines(t *testing.T) {
	var s *Engines
	code := Run(fakeM(func() int { return 3 }), &s)
	if code != 3 {
		t.Errorf("exit code %d, want the tests' 3", code)
	}
	if s.docker.engine != nil || s.podman.engine != nil {
		t.Errorf("an engine was started: %+v", s)
	}
	if _, err := s.docker.get(); err == nil {
		t.Error("docker started after Close")
	}
}

func TestEnginesLoadListAndRun(t *testing.T) {
	for _, start := range []func(testing.TB) *Engine{engines.Docker, engines.Podman} {
		t0 := time.Now()
		e := start(t)
		t.Logf("%s: started (or shared) in %v at %s", e.Name, time.Since(t0).Round(time.Millisecond), e.Host)
		t.Run(e.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if ids, err := e.Containers(ctx, testLabel); err != nil || len(ids) != 0 {
				t.Fatalf("containers before any test: %v, %v; want none", ids, err)
			}
			t0 := time.Now()
			if err := e.LoadBusybox(ctx, testImage); err != nil {
				t.Fatal(err)
			}
			t.Logf("built and loaded %s in %v", testImage, time.Since(t0).Round(time.Millisecond))
			tags, err := e.Images(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(tags, listedAs[e.Name]) {
				t.Fatalf("images %v, want %s listed", tags, listedAs[e.Name])
			}

			t0 = time.Now()
			id := create(ctx, t, e, map[string]any{
				"Image":      testImage,
				"Cmd":        []string{"-c", "echo hi; ls /bin | wc -l"},
				"Labels":     map[string]string{"wharfjobs.test/enginetest": "1"},
				"HostConfig": map[string]any{"NetworkMode": "none"},
			})
			if err := e.do(ctx, http.MethodPost, "/containers/"+id+"/start", "", nil, nil); err != nil {
				t.Fatal(err)
			}
			var wait bytes.Buffer
			if err := e.do(ctx, http.MethodPost, "/containers/"+id+"/wait", "", nil, &wait); err != nil {
				t.Fatal(err)
			}
			var status struct{ StatusCode int }
			if err := json.Unmarshal(wait.Bytes(), &status); err != nil || status.StatusCode != 0 {
				t.Fatalf("wait: %s (%v), want status 0; log:\n%s", wait.String(), err, e.Log())
			}
			logs, err := e.get(ctx, "/containers/"+id+"/logs?stdout=1&stderr=1")
			if err != nil {
				t.Fatal(err)
			}
			// The logs come in 8-byte-header frames (no TTY).
			// busybox and its applets.
			entries := fmt.Sprintf("%d\n", len(BusyboxApplets)+1)
			if !bytes.Contains(logs, []byte("hi\n")) || !bytes.Contains(logs, []byte(entries)) {
				t.Fatalf("logs %q, want hi and %d entries in /bin", logs, len(BusyboxApplets)+1)
			}
			t.Logf("container created, run and waited for in %v", time.Since(t0).Round(time.Millisecond))
			if ids, err := e.Containers(ctx, testLabel); err != nil || !slices.Equal(ids, []string{id}) {
				t.Fatalf("containers: %v, %v; want [%s]", ids, err, id)
			}
			if ids, err := e.Containers(ctx, "wharfjobs.test/enginetest=2"); err != nil || len(ids) != 0 {
				t.Fatalf("containers of another label value: %v, %v; want none", ids, err)
			}
			if err := e.do(ctx, http.MethodDelete, "/containers/"+id+"?v=1", "", nil, nil); err != nil {
				t.Fatal(err)
			}
			if ids, err := e.Containers(ctx, testLabel); err != nil || len(ids) != 0 {
				t.Fatalf("containers after removal: %v, %v; want none", ids, err)
			}
		})
	}
}

// A Podman container without a network mode gets the bridge network from
// the compatible API; the stand-in netavark makes it fail to start rather
// than create the podman0 bridge.
func TestPodmanSetsUpNoNetwork(t *testing.T) {
	e := engines.Podman(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.LoadBusybox(ctx, testImage); err != nil {
		t.Fatal(err)
	}
	id := create(ctx, t, e, map[string]any{"Image": testImage, "Cmd": []string{"-c", "true"}})
	defer func() { _ = e.do(ctx, http.MethodDelete, "/containers/"+id+"?force=1", "", nil, nil) }()
	err := e.do(ctx, http.MethodPost, "/containers/"+id+"/start", "", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "sets up no networks") {
		t.Errorf("start with the default network: %v, want the stand-in netavark's refusal", err)
	}
	if ifc, err := net.InterfaceByName("podman0"); err == nil {
		t.Errorf("podman0 exists: %+v", ifc)
	}
}

// Stop leaves no process, mount or file behind, even with a container
// still running.
func TestStopLeavesNothing(t *testing.T) {
	for _, start := range []func() (*Engine, error){StartDocker, StartPodman} {
		t0 := time.Now()
		e, err := start()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: started in %v", e.Name, time.Since(t0).Round(time.Millisecond))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := e.LoadBusybox(ctx, testImage); err != nil {
			cancel()
			e.Stop()
			t.Fatal(err)
		}
		id := create(ctx, t, e, map[string]any{"Image": testImage, "Cmd": []string{"-c", "sleep 600"}, "HostConfig": map[string]any{"NetworkMode": "none"}})
		if err := e.do(ctx, http.MethodPost, "/containers/"+id+"/start", "", nil, nil); err != nil {
			cancel()
			e.Stop()
			t.Fatal(err)
		}
		cancel()
		var pgids []int
		for _, p := range e.procs {
			pgids = append(pgids, p.cmd.Process.Pid)
		}
		t0 = time.Now()
		e.Stop()
		t.Logf("%s: stopped in %v", e.Name, time.Since(t0).Round(time.Millisecond))
		if _, err := os.Stat(e.Dir); !os.IsNotExist(err) {
			t.Errorf("%s: %s still there (%v)", e.Name, e.Dir, err)
		}
		if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), e.Dir) {
			t.Errorf("%s: still mounted under %s:\n%s", e.Name, e.Dir, b)
		}
		for _, pgid := range pgids {
			if err := syscall.Kill(-pgid, 0); err != syscall.ESRCH {
				t.Errorf("%s: process group %d still has processes (%v)", e.Name, pgid, err)
			}
		}
		if pids := e.helpers(nil); len(pids) != 0 {
			t.Errorf("%s: processes %v still run for it", e.Name, pids)
		}
		if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), id) {
			t.Errorf("%s: container %s still mounted", e.Name, id)
		}
	}
}

// create creates a container from the Docker API's create body and
// returns its ID.
func create(ctx context.Context, t *testing.T, e *Engine, body map[string]any) string {
	t.Helper()
	b, _ := json.Marshal(body)
	var out bytes.Buffer
	if err := e.do(ctx, http.MethodPost, "/containers/create", "application/json", bytes.NewReader(b), &out); err != nil {
		t.Fatalf("%s: %v; log:\n%s", e.Name, err, e.Log())
	}
	var created struct{ Id string }
	if err := json.Unmarshal(out.Bytes(), &created); err != nil || created.Id == "" {
		t.Fatalf("%s: create answered %s (%v)", e.Name, out.String(), err)
	}
	return created.Id
}
