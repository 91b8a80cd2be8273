package enginetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
)

// The harness talks HTTP to the engine's socket itself rather than running
// a docker or podman CLI: the same code serves both engines (Podman's
// Docker-compatible API), no client on the PATH can be the wrong one (this
// machine has a newer docker in /usr/local/bin), and no second libpod
// opens Podman's store, and takes its locks, beside the running service.

// get returns the body of a GET of path (below /v1.41).
func (e *Engine) get(ctx context.Context, path string) ([]byte, error) {
	var out bytes.Buffer
	if err := e.do(ctx, http.MethodGet, path, "", nil, &out); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// do sends a request to the engine's API and copies the answer's body to
// out; a status of 300 or more is an error with the engine's message.
func (e *Engine) do(ctx context.Context, method, path, contentType string, body io.Reader, out io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+e.Name+"/v"+APIVersion+path, body)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	if out == nil {
		out = io.Discard
	}
	_, err = io.Copy(out, resp.Body)
	return err
}

// Load loads a docker-archive tarball (as internal/image writes it) into
// the engine, through POST /images/load.
//
// The names differ: dockerd lists an image tagged "busybox:e2e" as
// "busybox:e2e", Podman as "localhost/busybox:e2e" (a name without a
// registry is local to it). Both find it as "busybox:e2e" when a container
// is created.
func (e *Engine) Load(ctx context.Context, tarball string) error {
	f, err := os.Open(tarball)
	if err != nil {
		return err
	}
	defer f.Close()
	var out bytes.Buffer
	if err := e.do(ctx, http.MethodPost, "/images/load?quiet=1", "application/x-tar", f, &out); err != nil {
		return fmt.Errorf("%s: load %s: %w", e.Name, tarball, err)
	}
	// A failed load can still answer 200, with the error in the stream of
	// JSON messages.
	dec := json.NewDecoder(&out)
	for {
		var msg struct {
			Error       string
			ErrorDetail struct{ Message string }
		}
		if err := dec.Decode(&msg); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("%s: load %s: answer %q: %w", e.Name, tarball, out.String(), err)
		}
		if msg.Error != "" {
			return fmt.Errorf("%s: load %s: %s", e.Name, tarball, msg.Error)
		}
	}
}

// Images returns the tags of the engine's images (GET /images/json),
// sorted.
func (e *Engine) Images(ctx context.Context) ([]string, error) {
	b, err := e.get(ctx, "/images/json")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e.Name, err)
	}
	var imgs []struct{ RepoTags []string }
	if err := json.Unmarshal(b, &imgs); err != nil {
		return nil, fmt.Errorf("%s: images: %w", e.Name, err)
	}
	var tags []string
	for _, img := range imgs {
		tags = append(tags, img.RepoTags...)
	}
	sort.Strings(tags)
	return tags, nil
}

// Containers returns the IDs of the engine's containers in any state
// carrying label ("key=value", or "key" for any value), to check that
// nothing was left behind; "" lists every container.
func (e *Engine) Containers(ctx context.Context, label string) ([]string, error) {
	path := "/containers/json?all=1"
	if label != "" {
		filters, _ := json.Marshal(map[string][]string{"label": {label}})
		path += "&filters=" + url.QueryEscape(string(filters))
	}
	b, err := e.get(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e.Name, err)
	}
	var cs []struct{ Id string }
	if err := json.Unmarshal(b, &cs); err != nil {
		return nil, fmt.Errorf("%s: containers: %w", e.Name, err)
	}
	ids := []string{}
	for _, c := range cs {
		ids = append(ids, c.Id)
	}
	return ids, nil
}
