package testresult

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/internal/wharfapitest"
)

// wharfAPI is a real wharf-api v5.2.0 with one project, whose builds'
// trigger goes to a stub engine (it only has to answer with a worker id).
type wharfAPI struct {
	t       *testing.T
	url     string
	project uint
	client  *http.Client
}

func startWharfAPI(t *testing.T) *wharfAPI {
	t.Helper()
	engine := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, `{"workerId":"testresult-worker"}`)
	}))
	t.Cleanup(engine.Close)
	srv := wharfapitest.StartTest(t, "127.0.0.1:0", wharfapitest.Engine{URL: engine.URL + "/api/worker", Token: "t"})
	a := &wharfAPI{t: t, url: srv.URL, client: &http.Client{Timeout: 30 * time.Second}}
	var project struct {
		ProjectID uint `json:"projectId"`
	}
	a.json(http.MethodPost, "/api/project", map[string]any{
		"name": "testresult", "groupName": "wharfjobs", "gitUrl": "https://git.example/wharfjobs/testresult.git",
		"buildDefinition": "test:\n  unit:\n    container:\n      image: golang\n      cmds: [go test ./...]\n",
	}, &project)
	a.project = project.ProjectID
	return a
}

// json sends body as JSON and decodes a 2xx answer into out.
func (a *wharfAPI) json(method, path string, body, out any) {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, a.url+path, rd)
	req.Header.Set("Content-Type", "application/json")
	status, b := a.do(req)
	if status >= 300 {
		a.t.Fatalf("%s %s: %d %s", method, path, status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			a.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

// on returns a with its failures reported to t, a subtest's.
func (a wharfAPI) on(t *testing.T) *wharfAPI {
	a.t = t
	return &a
}

func (a *wharfAPI) do(req *http.Request) (int, []byte) {
	a.t.Helper()
	resp, err := a.client.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// newBuild starts a build of the project, so that each file's summary
// stands alone.
func (a *wharfAPI) newBuild() string {
	a.t.Helper()
	var started struct {
		BuildRef string `json:"buildRef"`
	}
	a.json(http.MethodPost, fmt.Sprintf("/api/project/%d/build?branch=main", a.project), map[string]any{}, &started)
	if started.BuildRef == "" || started.BuildRef == "0" {
		a.t.Fatalf("wharf-api started build %q", started.BuildRef)
	}
	return started.BuildRef
}

// upload posts data as the multipart field "files", as the aggregator
// does, and returns wharf-api's status and answer.
func (a *wharfAPI) upload(build, fileName string, data []byte) (int, []byte) {
	a.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	part, _ := mw.CreateFormFile("files", fileName)
	part.Write(data)
	mw.Close()
	// The trailing slash matters: without it gin redirects, and a
	// redirected POST loses its body.
	req, _ := http.NewRequest(http.MethodPost, a.url+"/api/build/"+build+"/test-result/", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return a.do(req)
}

type listSummary struct {
	Total, Passed, Failed, Skipped int
}

func (a *wharfAPI) listSummary(build string) listSummary {
	a.t.Helper()
	var s listSummary
	a.json(http.MethodGet, "/api/build/"+build+"/test-result/list-summary", nil, &s)
	return s
}

type detail struct {
	Name        string  `json:"name"`
	Message     *string `json:"message"`
	Status      string  `json:"status"`
	StartedOn   *string `json:"startedOn"`
	CompletedOn *string `json:"completedOn"`
}

func (a *wharfAPI) details(build string) []detail {
	a.t.Helper()
	var d struct {
		List []detail `json:"list"`
	}
	a.json(http.MethodGet, "/api/build/"+build+"/test-result/detail", nil, &d)
	return d.List
}

// wharfStatus is the status wharf-api gives a TRX outcome.
var wharfStatus = map[string]string{"Passed": "Success", "Failed": "Failed", "NotExecuted": "Skipped"}

// TestWharfAPI uploads every sample, converted, to a real wharf-api
// v5.2.0 and reads back what it made of them: the counts, each test's
// name and status, the failure messages and the times.
func TestWharfAPI(t *testing.T) {
	api := startWharfAPI(t)
	for _, s := range samples {
		t.Run(s.file, func(t *testing.T) {
			api := api.on(t)
			out, counts, err := ToTRX(readSample(t, s.file), "")
			if err != nil {
				t.Fatal(err)
			}
			build := api.newBuild()
			name := strings.TrimSuffix(strings.TrimSuffix(s.file, ".xml"), ".trx") + ".trx"
			if status, b := api.upload(build, name, out); status != http.StatusOK {
				t.Fatalf("upload: %d %s", status, b)
			}
			got := api.listSummary(build)
			if want := listSummary(counts); got != want {
				t.Errorf("list-summary %+v, want %+v", got, want)
			}
			// The summary per file carries the file name and the total.
			var sums struct {
				List []struct {
					FileName string `json:"fileName"`
					Total    int    `json:"total"`
				} `json:"list"`
			}
			api.json(http.MethodGet, "/api/build/"+build+"/test-result/summary", nil, &sums)
			if len(sums.List) != 1 || sums.List[0].FileName != name || sums.List[0].Total != counts.Total {
				t.Errorf("summary %+v", sums.List)
			}
			ds := api.details(build)
			if len(ds) != len(s.tests) {
				t.Fatalf("%d details, want %d", len(ds), len(s.tests))
			}
			doc := readTRX(t, out)
			for i, w := range s.tests {
				d := ds[i]
				if d.Name != w.name || d.Status != wharfStatus[w.outcome] {
					t.Errorf("detail %d = %q %s, want %q %s", i, d.Name, d.Status, w.name, wharfStatus[w.outcome])
				}
				msg := ""
				if d.Message != nil {
					msg = *d.Message
				}
				if w.outcome == "Passed" && d.Message != nil {
					t.Errorf("%s passed with message %q", w.name, msg)
				}
				for _, m := range w.message {
					if !strings.Contains(msg, m) {
						t.Errorf("%s: wharf-api's message %q lacks %q", w.name, msg, m)
					}
				}
				// wharf-api parsed the times (it logs and drops those it
				// cannot) to the same instants.
				if d.StartedOn == nil || d.CompletedOn == nil {
					t.Errorf("%s: times dropped: %v %v", w.name, d.StartedOn, d.CompletedOn)
					continue
				}
				for _, pair := range [][2]string{{*d.StartedOn, doc.Results[i].StartTime}, {*d.CompletedOn, doc.Results[i].EndTime}} {
					got, err1 := time.Parse(time.RFC3339, pair[0])
					want, err2 := time.Parse(time.RFC3339, pair[1])
					if err1 != nil || err2 != nil || !got.Equal(want) {
						t.Errorf("%s: wharf-api time %s, TRX %s", w.name, pair[0], pair[1])
					}
				}
			}
			// The deprecated /tests-results (still what older wharf-web
			// versions read) only counts files named *.trx.
			var old struct {
				Passed, Failed int
				Status         string
			}
			api.json(http.MethodGet, "/api/build/"+build+"/tests-results", nil, &old)
			if old.Passed != counts.Passed || old.Failed != counts.Failed {
				t.Errorf("tests-results %+v, counts %+v", old, counts)
			}
		})
	}
}

// TestWharfAPIParser pins what wharf-api v5.2.0 does with the TRX that
// ToTRX refuses or passes through, which the package comment tells
// callers.
func TestWharfAPIParser(t *testing.T) {
	api := startWharfAPI(t)

	t.Run("JUnit as is is rejected after being stored", func(t *testing.T) {
		api := api.on(t)
		build := api.newBuild()
		status, b := api.upload(build, "pytest.xml", readSample(t, "pytest.xml"))
		if status != http.StatusBadRequest || !strings.Contains(string(b), "test-results-parse") {
			t.Fatalf("raw JUnit: %d %s", status, b)
		}
		var arts struct {
			List []struct {
				FileName string `json:"fileName"`
			} `json:"list"`
		}
		api.json(http.MethodGet, "/api/build/"+build+"/artifact", nil, &arts)
		if len(arts.List) != 1 || arts.List[0].FileName != "pytest.xml" {
			t.Errorf("artifacts after a rejected upload: %+v", arts.List)
		}
	})

	t.Run("a TRX without results is accepted with zero counts", func(t *testing.T) {
		api := api.on(t)
		build := api.newBuild()
		empty := []byte(`<?xml version="1.0" encoding="utf-8"?><TestRun xmlns="http://microsoft.com/schemas/VisualStudio/TeamTest/2010"><ResultSummary outcome="Completed"><Counters total="0" executed="0" passed="0" failed="0" notExecuted="0"/></ResultSummary></TestRun>`)
		if _, _, err := ToTRX(empty, ""); err == nil {
			t.Error("ToTRX accepts a TRX without tests")
		}
		if status, b := api.upload(build, "empty.trx", empty); status != http.StatusOK {
			t.Fatalf("empty TRX: %d %s", status, b)
		}
		if got := api.listSummary(build); got != (listSummary{}) {
			t.Errorf("list-summary %+v", got)
		}
		if ds := api.details(build); len(ds) != 0 {
			t.Errorf("details %+v", ds)
		}
	})

	t.Run("a TRX without Counters counts nothing", func(t *testing.T) {
		api := api.on(t)
		build := api.newBuild()
		noCounters := []byte(`<TestRun><Results><UnitTestResult testName="a" outcome="Passed"/><UnitTestResult testName="b" outcome="Failed"/></Results></TestRun>`)
		_, counts, err := ToTRX(noCounters, "")
		if err != nil || counts != (Counts{Total: 2, Passed: 1, Failed: 1}) {
			t.Fatalf("ToTRX: %+v %v", counts, err)
		}
		if status, b := api.upload(build, "bare.trx", noCounters); status != http.StatusOK {
			t.Fatalf("TRX without Counters: %d %s", status, b)
		}
		if got := api.listSummary(build); got != (listSummary{}) {
			t.Errorf("list-summary %+v, want zeros", got)
		}
		if ds := api.details(build); len(ds) != 2 || ds[1].Status != "Failed" || ds[0].StartedOn != nil {
			t.Errorf("details %+v", ds)
		}
	})

	t.Run("a Counters attribute that is not a number fails the file", func(t *testing.T) {
		api := api.on(t)
		build := api.newBuild()
		bad := []byte(`<TestRun><Results><UnitTestResult testName="a" outcome="Passed"/></Results><ResultSummary><Counters total="1" passed="one"/></ResultSummary></TestRun>`)
		if _, _, err := ToTRX(bad, ""); err == nil {
			t.Error("ToTRX accepts it")
		}
		if status, b := api.upload(build, "bad.trx", bad); status != http.StatusBadRequest {
			t.Fatalf("bad counter: %d %s", status, b)
		}
	})

	t.Run("other outcomes get an empty status", func(t *testing.T) {
		api := api.on(t)
		build := api.newBuild()
		trx := []byte(`<TestRun><Results><UnitTestResult testName="t" outcome="Timeout"><Output><ErrorInfo><Message>a &lt; b</Message></ErrorInfo></Output></UnitTestResult></Results><ResultSummary><Counters total="1" timeout="1"/></ResultSummary></TestRun>`)
		if status, b := api.upload(build, "timeout.trx", trx); status != http.StatusOK {
			t.Fatalf("%d %s", status, b)
		}
		ds := api.details(build)
		if len(ds) != 1 || ds[0].Status != "" || ds[0].Message == nil || *ds[0].Message != "a &lt; b\n" {
			t.Errorf("details %+v", ds)
		}
		if got := api.listSummary(build); got != (listSummary{}) {
			t.Errorf("list-summary %+v", got)
		}
	})
}
