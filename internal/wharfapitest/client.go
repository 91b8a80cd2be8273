package wharfapitest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client is what tests ask a wharf-api: projects, builds, and what a
// build shows in wharf-web (status, artifacts, test results).
type Client struct {
	URL  string
	HTTP *http.Client
}

// Client returns a client of s.
func (s *Server) Client() *Client {
	return &Client{URL: s.URL, HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// JSON sends body (if not nil) as JSON and decodes a 2xx answer into out
// (if not nil); another answer is an error with its body.
func (c *Client) JSON(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.URL+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: %w: %s", method, path, err, b)
		}
	}
	return nil
}

// CreateProject creates a project whose builds clone gitURL.
func (c *Client) CreateProject(name, gitURL, buildDefinition string) (uint, error) {
	var p struct {
		ProjectID uint `json:"projectId"`
	}
	err := c.JSON(http.MethodPost, "/api/project", map[string]any{
		"name": name, "groupName": "wharfjobs", "gitUrl": gitURL, "buildDefinition": buildDefinition,
	}, &p)
	return p.ProjectID, err
}

// StartBuild starts a build of the project's main branch, as a person
// does in wharf-web, and returns its id (BUILD_REF).
func (c *Client) StartBuild(project uint) (string, error) {
	var started struct {
		BuildRef string `json:"buildRef"`
	}
	if err := c.JSON(http.MethodPost, fmt.Sprintf("/api/project/%d/build?branch=main", project), map[string]any{}, &started); err != nil {
		return "", err
	}
	if started.BuildRef == "" || started.BuildRef == "0" {
		return "", fmt.Errorf("wharf-api started build %q", started.BuildRef)
	}
	return started.BuildRef, nil
}

// Build is a build as wharf-api shows it.
type Build struct {
	Status   string `json:"status"`
	WorkerID string `json:"workerId"`
}

// Build reads a build.
func (c *Client) Build(id string) (Build, error) {
	var b Build
	err := c.JSON(http.MethodGet, "/api/build/"+id, nil, &b)
	return b, err
}

// Artifacts returns the build's artifacts by file name, with their bytes
// as wharf-api serves them. A name listed twice is an error.
func (c *Client) Artifacts(id string) (map[string][]byte, error) {
	var list struct {
		List []struct {
			ArtifactID uint   `json:"artifactId"`
			FileName   string `json:"fileName"`
		} `json:"list"`
	}
	if err := c.JSON(http.MethodGet, "/api/build/"+id+"/artifact", nil, &list); err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, a := range list.List {
		if _, twice := out[a.FileName]; twice {
			return nil, fmt.Errorf("build %s: artifact %s listed twice", id, a.FileName)
		}
		resp, err := c.HTTP.Get(fmt.Sprintf("%s/api/build/%s/artifact/%d", c.URL, id, a.ArtifactID))
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("artifact %s of build %s: %s %v", a.FileName, id, resp.Status, err)
		}
		out[a.FileName] = b
	}
	return out, nil
}

// TestSummary is wharf-api's sum of a build's test results.
type TestSummary struct {
	Total, Passed, Failed, Skipped int
}

// TestSummary reads GET /api/build/{id}/test-result/list-summary.
func (c *Client) TestSummary(id string) (TestSummary, error) {
	var s TestSummary
	err := c.JSON(http.MethodGet, "/api/build/"+id+"/test-result/list-summary", nil, &s)
	return s, err
}

// IsTRX reports whether data looks like a TRX file, for tests that tell
// wharf-api's copies of test results among its artifacts.
func IsTRX(data []byte) bool { return strings.Contains(string(data), "<TestRun") }
