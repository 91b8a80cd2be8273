// Package provisioner is the function wharf-api calls to start builds. It
// speaks wharf-api's wharf-cmd.v1 engine contract (and serves the same
// handler where Jenkins' generic webhook trigger would be), creates one
// build Job per build and lists and cancels them. It never clones or parses
// anything in the request path: wharf-api waits for the answer with no
// timeout.
package provisioner

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gorilla/mux"
	yaml "go.yaml.in/yaml/v3"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/internal/settings"
	"github.com/wharfjobs/wharfjobs/job"
)

// Launcher starts builds: Kubernetes Jobs in a cluster (job/kube), worker
// processes in wharfjobs dev.
type Launcher interface {
	// Launch starts the build; created is false when it existed already.
	Launch(ctx context.Context, req job.Request) (b job.Build, created bool, err error)
	List(ctx context.Context, instance string) ([]job.Build, error)
	// Get and Cancel return job.ErrNotFound for an unknown worker id.
	Get(ctx context.Context, workerID string) (job.Build, error)
	Cancel(ctx context.Context, workerID string) (job.Build, error)
	// Ready reports whether builds can be launched.
	Ready(ctx context.Context) error
}

// Config configures the provisioner.
type Config struct {
	// Token is the shared secret wharf-api sends as ?token=; empty refuses
	// to start unless InsecureNoAuth.
	Token          string `envconfig:"TOKEN" desc:"shared secret wharf-api sends as ?token= (its ci.engine.token)"`
	InsecureNoAuth bool   `ignored:"true"`
	// MaxQueryBytes bounds a request's query string (VARS can be long).
	MaxQueryBytes int `envconfig:"MAX_QUERY_BYTES" default:"65536" desc:"bound of a request's query string (VARS can be long)"`
	// MaxBodyBytes bounds a request body; the trigger's is empty.
	MaxBodyBytes int64 `envconfig:"MAX_BODY_BYTES" default:"65536" desc:"bound of a request body"`
	// StoreTimeout bounds the store writes of a trigger.
	StoreTimeout time.Duration `envconfig:"TRIGGER_STORE_TIMEOUT" default:"10s" desc:"bound of the store writes of a trigger"`
	// QueueTimeout fails a build that waits in the queue (for a slot of
	// WHARFJOBS_MAX_RUNNING_BUILDS, or Kueue's admission) longer, with
	// reason QueueTimeout; 0 is no bound.
	QueueTimeout time.Duration `envconfig:"QUEUE_TIMEOUT" default:"24h" desc:"fail a build queued longer than this (reason QueueTimeout); 0: no bound"`
}

// Defaults of Config, which its fields' tags repeat for the environment
// (a test keeps the two equal).
const (
	DefaultMaxQueryBytes = 64 << 10
	DefaultMaxBodyBytes  = 64 << 10
	DefaultStoreTimeout  = 10 * time.Second
)

// withDefaults fills the fields a Config built in code leaves zero.
func (c Config) withDefaults() Config {
	if c.MaxQueryBytes <= 0 {
		c.MaxQueryBytes = DefaultMaxQueryBytes
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.StoreTimeout <= 0 {
		c.StoreTimeout = DefaultStoreTimeout
	}
	return c
}

// Validate refuses negative bounds; the error names the variable and what
// it expects. A missing token is New's to refuse (--insecure-no-auth is a
// flag, not a setting).
func (c Config) Validate() error {
	return settings.NonNegative(c)
}

// Server is the provisioner's HTTP API.
type Server struct {
	launcher Launcher
	store    blob.Store
	cfg      Config
	log      *slog.Logger
	router   *mux.Router
	queue    *Queue
}

// Queue is the queue of a launcher that queues builds, for the loop that
// releases them; nil when the launcher does not queue.
func (s *Server) Queue() *Queue { return s.queue }

// ErrNoToken is returned by New when no token is configured and
// InsecureNoAuth is not set.
var ErrNoToken = errors.New("WHARFJOBS_TOKEN is empty: set it (wharf-api sends it as ?token=) or pass --insecure-no-auth")

// New builds the server.
func New(l Launcher, s blob.Store, cfg Config, log *slog.Logger) (*Server, error) {
	if cfg.Token == "" && !cfg.InsecureNoAuth {
		return nil, ErrNoToken
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.Default()
	}
	srv := &Server{launcher: l, store: s, cfg: cfg, log: log, router: mux.NewRouter()}
	if q, ok := l.(Queuer); ok {
		srv.queue = &Queue{Launcher: q, Store: s, Timeout: cfg.QueueTimeout, StoreTimeout: cfg.StoreTimeout, Logger: log}
	}
	r := srv.router
	// gorilla/mux answers a path that needs cleaning ("//api/worker") with
	// a 301 whose Location repeats the query, token included: match paths
	// as they are and let the NotFound handler answer instead.
	r.SkipClean(true)
	r.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("ok\n"))
	})
	r.HandleFunc("/readyz", srv.ready)
	api := r.NewRoute().Subrouter()
	api.Use(srv.auth)
	api.HandleFunc("/api/worker", srv.trigger).Methods(http.MethodPost)
	api.HandleFunc("/generic-webhook-trigger/invoke", srv.trigger).Methods(http.MethodPost)
	api.HandleFunc("/api/worker", srv.list).Methods(http.MethodGet)
	api.HandleFunc("/api/worker/{workerId}", srv.get).Methods(http.MethodGet)
	api.HandleFunc("/api/worker/{workerId}", srv.cancel).Methods(http.MethodDelete)
	api.HandleFunc("/api/build/{ref}/status", srv.buildStatus).Methods(http.MethodGet)
	api.HandleFunc("/api/build/{ref}/log", srv.buildLog).Methods(http.MethodGet)
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, problem{Type: "not-found", Title: "Not found", Status: http.StatusNotFound, Detail: fmt.Sprintf("no route %s %s", r.Method, r.URL.Path)})
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, problem{Type: "method-not-allowed", Title: "Method not allowed", Status: http.StatusMethodNotAllowed, Detail: fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.Path)})
	})
	return srv, nil
}

// Router exposes the routes, so wharfjobs dev can add its own.
func (s *Server) Router() *mux.Router { return s.router }

// ServeHTTP implements http.Handler: size limits, then logging, then the
// routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	if len(r.URL.RawQuery) > s.cfg.MaxQueryBytes {
		writeProblem(rec, problem{Type: "query-too-long", Title: "Query string too long", Status: http.StatusRequestURITooLong,
			Detail: fmt.Sprintf("the query string has %d bytes, at most %d are accepted (WHARFJOBS_MAX_QUERY_BYTES)", len(r.URL.RawQuery), s.cfg.MaxQueryBytes)})
	} else {
		r.Body = http.MaxBytesReader(rec, r.Body, s.cfg.MaxBodyBytes)
		s.router.ServeHTTP(rec, r)
	}
	// The query holds the token and GIT_TOKEN: log the path only.
	s.log.Info("request", "method", r.Method, "path", r.URL.Path, "status", rec.status,
		"duration", time.Since(start).Round(time.Microsecond).String(), "buildRef", r.URL.Query().Get("BUILD_REF"))
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// Flush lets streaming handlers (wharfjobs dev's log follow) flush.
func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Token != "" {
			given := r.URL.Query().Get("token")
			if h := r.Header.Get("Authorization"); given == "" && strings.HasPrefix(h, "Bearer ") {
				given = strings.TrimPrefix(h, "Bearer ")
			}
			if subtle.ConstantTimeCompare([]byte(given), []byte(s.cfg.Token)) != 1 {
				detail := "the token is wrong"
				if given == "" {
					detail = "no token: pass ?token= or Authorization: Bearer"
				}
				w.Header().Set("WWW-Authenticate", `Bearer realm="wharfjobs"`)
				writeProblem(w, problem{Type: "unauthorized", Title: "Unauthorized", Status: http.StatusUnauthorized, Detail: detail})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := s.launcher.Ready(ctx); err != nil {
		writeProblem(w, problem{Type: "not-ready", Title: "Not ready", Status: http.StatusServiceUnavailable, Detail: err.Error()})
		return
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("ok\n"))
}

// problem is an RFC 9457 problem document; wharf-api shows these to its
// users.
type problem struct {
	Type          string         `json:"type"`
	Title         string         `json:"title"`
	Status        int            `json:"status"`
	Detail        string         `json:"detail,omitempty"`
	InvalidParams []invalidParam `json:"invalid-params,omitempty"`
}

type invalidParam struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// ProblemTypeBase prefixes problem types.
const ProblemTypeBase = "https://wharfjobs.invalid/problems/"

func writeProblem(w http.ResponseWriter, p problem) {
	p.Type = ProblemTypeBase + p.Type
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// workerResponse is the answer to a trigger, as wharf-cmd gives it.
type workerResponse struct {
	WorkerID  string `json:"workerId"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Reason    string `json:"reason,omitempty"`
	BuildRef  string `json:"buildRef,omitempty"`
	Instance  string `json:"instance,omitempty"`
	CreatedAt string `json:"createdAt"`
}

var (
	scpLike   = regexp.MustCompile(`^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^/].*`)
	gitScheme = map[string]bool{"http": true, "https": true, "ssh": true, "git": true, "file": true}
)

// parseRequest reads a trigger's query into a request, collecting every
// problem.
func parseRequest(q url.Values) (job.Request, []invalidParam) {
	var bad []invalidParam
	// A control character in a value that reaches a log line (a newline in
	// GIT_BRANCH) would forge lines of the build's or our own log.
	for _, name := range slices.Sorted(maps.Keys(q)) {
		if name == "VARS" || name == "token" || name == "GIT_TOKEN" {
			continue
		}
		for _, v := range q[name] {
			if msg := badText(v, false); msg != "" {
				bad = append(bad, invalidParam{name, msg})
				break
			}
		}
	}
	if msg := badText(q.Get("GIT_TOKEN"), false); msg != "" {
		bad = append(bad, invalidParam{"GIT_TOKEN", msg})
	}
	req := job.Request{
		BuildRef:    q.Get("BUILD_REF"),
		RepoName:    q.Get("REPO_NAME"),
		RepoGroup:   strings.ToLower(q.Get("REPO_GROUP")),
		RepoBranch:  q.Get("REPO_BRANCH"),
		GitBranch:   q.Get("GIT_BRANCH"),
		GitFullURL:  q.Get("GIT_FULLURL"),
		GitToken:    q.Get("GIT_TOKEN"),
		ProjectID:   q.Get("WHARF_PROJECT_ID"),
		Instance:    q.Get("WHARF_INSTANCE"),
		Environment: q.Get("ENVIRONMENT"),
	}
	if n, err := strconv.ParseUint(req.BuildRef, 10, 64); req.BuildRef == "" {
		bad = append(bad, invalidParam{"BUILD_REF", "required: the build's id, a positive integer"})
	} else if err != nil || n == 0 {
		bad = append(bad, invalidParam{"BUILD_REF", fmt.Sprintf("%q is not a positive integer", req.BuildRef)})
	} else {
		// "042" and "42" are one build: one ref, one Job.
		req.BuildRef = strconv.FormatUint(n, 10)
	}
	if req.GitFullURL == "" {
		bad = append(bad, invalidParam{"GIT_FULLURL", "required: the repository's git URL"})
	} else if u, err := url.Parse(req.GitFullURL); !scpLike.MatchString(req.GitFullURL) && (err != nil || !gitScheme[u.Scheme] || (u.Host == "" && u.Scheme != "file")) {
		bad = append(bad, invalidParam{"GIT_FULLURL", "not a git URL: expected https://host/path, ssh://host/path or user@host:path"})
	} else if err == nil && u.User != nil {
		// A password in the URL is a credential: it goes to the build's
		// Secret as the git token (GIT_TOKEN wins when both are given),
		// never into request.json.
		if pw, ok := u.User.Password(); ok {
			if req.GitToken == "" {
				req.GitToken = pw
			}
			u.User = url.User(u.User.Username())
			req.GitFullURL = u.String()
		}
	}
	if req.ProjectID != "" {
		if _, err := strconv.ParseUint(req.ProjectID, 10, 64); err != nil {
			bad = append(bad, invalidParam{"WHARF_PROJECT_ID", fmt.Sprintf("%q is not a number", req.ProjectID)})
		}
	}
	if len(req.Instance) > 63 {
		bad = append(bad, invalidParam{"WHARF_INSTANCE", "longer than 63 characters"})
	}
	if rs := q.Get("RUN_STAGES"); rs != "" && !strings.EqualFold(rs, "ALL") {
		for _, name := range strings.Split(rs, ",") {
			name = strings.TrimSpace(name)
			if name == "" {
				bad = append(bad, invalidParam{"RUN_STAGES", "has an empty stage name; expected ALL or a comma-separated list of stage names"})
				break
			}
			req.RunStages = append(req.RunStages, name)
		}
	}
	if v := q.Get("VARS"); v != "" {
		vars, problems := parseVars(v)
		bad = append(bad, problems...)
		if len(problems) == 0 {
			req.Vars = vars
			req.InputNames = slices.Sorted(maps.Keys(vars))
		}
	}
	return req, bad
}

// badText says what is wrong with a request value, or "": invalid UTF-8 or
// a control character (newlines only where multiline allows them).
func badText(v string, multiline bool) string {
	if !utf8.ValidString(v) {
		return "is not valid UTF-8"
	}
	for i, r := range v {
		if multiline && (r == '\n' || r == '\r' || r == '\t') {
			continue
		}
		if unicode.IsControl(r) {
			return fmt.Sprintf("has the control character %U at byte %d; control characters are not allowed", r, i)
		}
	}
	return ""
}

// maxVarName bounds an input name in VARS.
const maxVarName = 128

var varName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)

// parseVars decodes wharf-api's VARS: a YAML map of input names to single
// values. Everything the worker would choke on later (nested values,
// infinities, odd names) is refused here, while wharf-api still waits for
// the answer and can show it.
func parseVars(v string) (map[string]any, []invalidParam) {
	var node yaml.Node
	if err := yaml.Unmarshal([]byte(v), &node); err != nil {
		return nil, []invalidParam{{"VARS", "invalid YAML, expected a map of input names to values: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	if len(node.Content) == 0 {
		return nil, []invalidParam{{"VARS", "expected a YAML map of input names to values, got nothing"}}
	}
	root := node.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, []invalidParam{{"VARS", "expected a YAML map of input names to values, got " + kindOf(root)}}
	}
	vars := map[string]any{}
	var bad []invalidParam
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, val := root.Content[i], root.Content[i+1]
		name := k.Value
		switch {
		case k.Kind != yaml.ScalarNode:
			bad = append(bad, invalidParam{"VARS", fmt.Sprintf("line %d: an input name must be a plain name, got %s", k.Line, kindOf(k))})
			continue
		case len(name) > maxVarName || !varName.MatchString(name):
			bad = append(bad, invalidParam{"VARS", fmt.Sprintf("input name %q: expected letters, digits, '_', '.' or '-' (at most %d, starting with a letter or '_')", truncate(name, 40), maxVarName)})
			continue
		case vars[name] != nil:
			bad = append(bad, invalidParam{"VARS", fmt.Sprintf("input %s is given twice", name)})
			continue
		case val.Kind != yaml.ScalarNode:
			bad = append(bad, invalidParam{"VARS", fmt.Sprintf("input %s: expected a single value, got %s", name, kindOf(val))})
			continue
		}
		var x any
		if err := val.Decode(&x); err != nil {
			bad = append(bad, invalidParam{"VARS", fmt.Sprintf("input %s: %v", name, err)})
			continue
		}
		switch t := x.(type) {
		case float64:
			if math.IsInf(t, 0) || math.IsNaN(t) {
				bad = append(bad, invalidParam{"VARS", fmt.Sprintf("input %s: %s is not a finite number", name, val.Value)})
				continue
			}
		case string:
			if msg := badText(t, true); msg != "" {
				bad = append(bad, invalidParam{"VARS", fmt.Sprintf("input %s %s", name, msg)})
				continue
			}
		case nil:
			x = ""
		case int, bool:
		default:
			// Timestamps, binary: wharf-api's inputs are strings, numbers
			// and booleans; keep anything else as the text it was.
			x = val.Value
		}
		vars[name] = x
	}
	return vars, bad
}

// kindOf names a YAML node's kind for an error message.
func kindOf(n *yaml.Node) string {
	return map[yaml.Kind]string{yaml.SequenceNode: "a list", yaml.MappingNode: "a map", yaml.ScalarNode: "a single value", yaml.AliasNode: "an alias"}[n.Kind]
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// requestDiff names the trigger parameters in which two requests of one
// build differ. Secret values (GIT_TOKEN, VARS values) are never stored
// outside the build's Secret, so only the names of VARS are compared.
func requestDiff(a, b job.Request) []string {
	var diff []string
	for _, f := range []struct {
		name string
		x, y any
	}{
		{"BUILD_REF", a.BuildRef, b.BuildRef},
		{"WHARF_INSTANCE", a.Instance, b.Instance},
		{"REPO_NAME", a.RepoName, b.RepoName},
		{"REPO_GROUP", a.RepoGroup, b.RepoGroup},
		{"REPO_BRANCH", a.RepoBranch, b.RepoBranch},
		{"GIT_BRANCH", a.GitBranch, b.GitBranch},
		{"GIT_FULLURL", a.GitFullURL, b.GitFullURL},
		{"WHARF_PROJECT_ID", a.ProjectID, b.ProjectID},
		{"ENVIRONMENT", a.Environment, b.Environment},
		{"RUN_STAGES", strings.Join(a.RunStages, ","), strings.Join(b.RunStages, ",")},
		{"VARS", strings.Join(slices.Sorted(slices.Values(a.InputNames)), ","), strings.Join(slices.Sorted(slices.Values(b.InputNames)), ",")},
	} {
		if f.x != f.y {
			diff = append(diff, f.name)
		}
	}
	return diff
}

func (s *Server) trigger(w http.ResponseWriter, r *http.Request) {
	req, bad := parseRequest(r.URL.Query())
	if len(bad) > 0 {
		details := make([]string, len(bad))
		for i, b := range bad {
			details[i] = b.Name + ": " + b.Reason
		}
		writeProblem(w, problem{Type: "invalid-parameter", Title: "Invalid build request", Status: http.StatusBadRequest,
			Detail: strings.Join(details, "; "), InvalidParams: bad})
		return
	}
	ref := req.Ref()
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.StoreTimeout)
	defer cancel()
	// The request and the first status go to the store before the Job
	// exists, so the worker always finds them. The request is written once:
	// a repeated trigger must never change what the first one's Secret
	// (its git token) is used for.
	body, err := req.MarshalPublic()
	if err == nil {
		_, err = s.store.Put(ctx, build.RequestKey(ref), bytes.NewReader(body), int64(len(body)), blob.PutOptions{ContentType: "application/json", IfNoneMatch: true})
	}
	repeat := errors.Is(err, blob.ErrPreconditionFailed)
	if err != nil && !repeat {
		s.fail(w, "store the request of build "+ref, err)
		return
	}
	if repeat {
		if s.repeatedTrigger(ctx, w, req) {
			return
		}
	} else if _, err := build.WriteStatus(ctx, s.store, ref, build.Status{Status: build.Scheduling}, ""); err != nil && !errors.Is(err, blob.ErrPreconditionFailed) {
		s.fail(w, "store the status of build "+ref, err)
		return
	}
	b, created, err := s.launcher.Launch(r.Context(), req)
	if err != nil {
		s.launchFailed(ctx, ref, err)
		s.fail(w, "launch build "+ref, err)
		return
	}
	if b.Queued {
		_, _ = build.UpdateStatus(ctx, s.store, ref, func(st *build.Status) error {
			if st.Status != build.Scheduling || build.ReasonQueued.Of(st.Reason) {
				return build.ErrNoChange
			}
			st.Reason = build.ReasonQueued.String()
			return nil
		})
		if created && s.queue != nil {
			s.queue.Announce(ctx, ref)
		}
	}
	resp := s.response(ctx, b)
	status := http.StatusOK
	if created {
		// A new build is Scheduling until its worker says otherwise, as
		// wharf-cmd answers.
		status, resp.Status = http.StatusCreated, string(build.Scheduling)
	}
	writeJSON(w, status, resp)
}

// repeatedTrigger answers a trigger of a build whose request is stored
// already, and reports whether it did. Other parameters are a conflict
// (409 naming them); the same ones return the build as it is, and a build
// that has ended is never started again. Only a build that has not ended
// goes on to Launch, which finds its Job (or creates it, when the first
// trigger stopped before it could).
func (s *Server) repeatedTrigger(ctx context.Context, w http.ResponseWriter, req job.Request) bool {
	ref := req.Ref()
	raw, _, err := blob.ReadAll(ctx, s.store, build.RequestKey(ref), 1<<20)
	if err != nil {
		s.fail(w, "read the request of build "+ref, err)
		return true
	}
	var first job.Request
	if err := json.Unmarshal(raw, &first); err != nil {
		s.fail(w, "decode the request of build "+ref, err)
		return true
	}
	if diff := requestDiff(first, req); len(diff) > 0 {
		params := make([]invalidParam, len(diff))
		for i, name := range diff {
			params[i] = invalidParam{name, "differs from the first trigger of this build"}
		}
		writeProblem(w, problem{Type: "conflict", Title: "Build already triggered with other parameters", Status: http.StatusConflict,
			Detail:        fmt.Sprintf("build %s was triggered before with other values of %s; a build's request never changes: trigger a new build instead", req.BuildRef, strings.Join(diff, ", ")),
			InvalidParams: params})
		return true
	}
	st, _, err := build.ReadStatus(ctx, s.store, ref)
	if err != nil && !errors.Is(err, blob.ErrNotFound) {
		s.fail(w, "read the status of build "+ref, err)
		return true
	}
	if errors.Is(err, blob.ErrNotFound) {
		// The first trigger stopped between the request and the status.
		if _, err := build.WriteStatus(ctx, s.store, ref, build.Status{Status: build.Scheduling}, ""); err != nil && !errors.Is(err, blob.ErrPreconditionFailed) {
			s.fail(w, "store the status of build "+ref, err)
			return true
		}
		return false
	}
	if !st.Status.Final() {
		return false
	}
	b, err := s.launcher.Get(ctx, req.WorkerID())
	if err != nil {
		// The Job is gone (TTL, cleanup): the store still knows the build.
		b = job.Build{WorkerID: req.WorkerID(), BuildRef: req.BuildRef, Ref: ref, Instance: req.Instance}
		if st.StartedAt != nil {
			b.CreatedAt = *st.StartedAt
		}
	}
	writeJSON(w, http.StatusOK, s.response(ctx, b))
	return true
}

// launchFailed records a build whose Job could not be created as Failed,
// with a log line saying why: wharf-api saved the build before it
// triggered, and nothing else would ever end it.
func (s *Server) launchFailed(ctx context.Context, ref string, launchErr error) {
	ctx = context.WithoutCancel(ctx)
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	reason := build.ReasonLaunchFailed.With(launchErr.Error())
	if err := build.WriteSystemLine(ctx, s.store, ref, "build failed: "+reason, s.log); err != nil {
		s.log.Warn("cannot write the log line of a failed launch", "build", ref, "error", err)
	}
	now := time.Now().UTC()
	_, err := build.UpdateStatus(ctx, s.store, ref, func(st *build.Status) error {
		if st.Status.Final() {
			return build.ErrNoChange
		}
		st.Status, st.Reason, st.FinishedAt = build.Failed, reason, &now
		return nil
	})
	if err != nil {
		s.log.Error("cannot record the failed launch", "build", ref, "error", err)
	}
}

// response merges what the launcher sees with the status document: the
// worker knows best once it runs; before, only the Job can tell.
func (s *Server) response(ctx context.Context, b job.Build) workerResponse {
	resp := workerResponse{WorkerID: b.WorkerID, Name: b.WorkerID, Status: b.Phase, Reason: b.Reason, BuildRef: b.BuildRef,
		Instance: b.Instance, CreatedAt: b.CreatedAt.UTC().Format(time.RFC3339)}
	if b.Ref == "" {
		return resp
	}
	st, _, err := build.ReadStatus(ctx, s.store, b.Ref)
	if err != nil {
		return resp
	}
	if st.Status.Final() || st.Status == build.Running || b.Phase == "Scheduling" {
		resp.Status, resp.Reason = string(st.Status), st.Reason
	}
	if (b.Phase == "Completed" || b.Phase == "Failed") && !st.Status.Final() {
		// The Job ended but the worker never recorded it: trust the Job.
		resp.Status, resp.Reason = b.Phase, b.Reason
	}
	return resp
}

func (s *Server) fail(w http.ResponseWriter, what string, err error) {
	s.log.Error(what, "error", err)
	writeProblem(w, problem{Type: "internal", Title: "Build could not be started", Status: http.StatusInternalServerError, Detail: what + ": " + err.Error()})
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	want := q.Get("status")
	if want != "" && !build.Phase(want).Valid() {
		writeProblem(w, problem{Type: "invalid-parameter", Title: "Invalid filter", Status: http.StatusBadRequest,
			Detail:        fmt.Sprintf("status: %q is not one of Scheduling, Running, Completed, Failed", want),
			InvalidParams: []invalidParam{{"status", "expected Scheduling, Running, Completed or Failed"}}})
		return
	}
	builds, err := s.launcher.List(r.Context(), q.Get("WHARF_INSTANCE"))
	if err != nil {
		s.fail(w, "list builds", err)
		return
	}
	out := []workerResponse{}
	for _, b := range builds {
		resp := s.response(r.Context(), b)
		if want == "" || resp.Status == want {
			out = append(out, resp)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"list": out, "totalCount": len(out)})
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	b, err := s.launcher.Get(r.Context(), mux.Vars(r)["workerId"])
	if s.notFound(w, err) {
		return
	}
	writeJSON(w, http.StatusOK, s.response(r.Context(), b))
}

func (s *Server) notFound(w http.ResponseWriter, err error) bool {
	switch {
	case errors.Is(err, job.ErrNotFound):
		writeProblem(w, problem{Type: "not-found", Title: "No such build", Status: http.StatusNotFound, Detail: err.Error()})
		return true
	case err != nil:
		s.fail(w, "find build", err)
		return true
	}
	return false
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request) {
	b, err := s.launcher.Cancel(r.Context(), mux.Vars(r)["workerId"])
	if s.notFound(w, err) {
		return
	}
	if b.Ref != "" {
		// The worker records Cancelled itself when it gets SIGTERM; a
		// build whose pod never started has nobody else to do it.
		now := time.Now().UTC()
		_, err := build.UpdateStatus(r.Context(), s.store, b.Ref, func(st *build.Status) error {
			if st.Status.Final() {
				return build.ErrNoChange
			}
			st.Status, st.Reason, st.FinishedAt = build.Failed, build.ReasonCancelled.String(), &now
			return nil
		})
		if err != nil {
			s.log.Warn("cannot record the cancellation", "build", b.Ref, "error", err)
		}
	}
	resp := s.response(r.Context(), b)
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) buildStatus(w http.ResponseWriter, r *http.Request) {
	ref := mux.Vars(r)["ref"]
	if !validRef(w, ref) {
		return
	}
	st, _, err := build.ReadStatus(r.Context(), s.store, ref)
	if errors.Is(err, blob.ErrNotFound) {
		writeProblem(w, problem{Type: "not-found", Title: "No such build", Status: http.StatusNotFound, Detail: "no status document for build " + ref})
		return
	}
	if err != nil {
		s.fail(w, "read status of build "+ref, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// validRef answers 400 for a ref that cannot name a build.
func validRef(w http.ResponseWriter, ref string) bool {
	err := build.ValidateRef(ref)
	if err == nil {
		return true
	}
	writeProblem(w, problem{Type: "invalid-parameter", Title: "Invalid build ref", Status: http.StatusBadRequest, Detail: err.Error(),
		InvalidParams: []invalidParam{{"ref", err.Error()}}})
	return false
}

// buildLog streams a build's log: text lines ("stage/step | text"), or the
// JSON records with ?format=json; ?follow=true keeps the response open
// until the build ends, flushing as lines arrive.
func (s *Server) buildLog(w http.ResponseWriter, r *http.Request) {
	ref := mux.Vars(r)["ref"]
	if !validRef(w, ref) {
		return
	}
	asJSON := r.URL.Query().Get("format") == "json"
	follow := r.URL.Query().Get("follow") == "true"
	if _, err := s.store.Stat(r.Context(), build.StatusKey(ref)); errors.Is(err, blob.ErrNotFound) {
		writeProblem(w, problem{Type: "not-found", Title: "No such build", Status: http.StatusNotFound, Detail: "no build " + ref})
		return
	}
	if asJSON {
		w.Header().Set("Content-Type", "application/x-ndjson")
	} else {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	}
	flusher, _ := w.(http.Flusher)
	var buf []byte
	emit := func(rec build.Record) error {
		buf = buf[:0]
		if asJSON {
			buf = rec.AppendJSON(buf)
		} else {
			buf = append(append(append(buf, rec.Source()...), " | "...), rec.Text...)
			buf = append(buf, '\n')
		}
		_, err := w.Write(buf)
		return err
	}
	if follow {
		_, _ = build.Follow(r.Context(), s.store, ref, 500*time.Millisecond, func(rec build.Record) error {
			if err := emit(rec); err != nil {
				return err
			}
			if flusher != nil {
				flusher.Flush()
			}
			return nil
		})
		return
	}
	rc, err := build.OpenLog(r.Context(), s.store, ref)
	if err != nil {
		s.fail(w, "open log of build "+ref, err)
		return
	}
	defer rc.Close()
	_ = build.ScanRecords(rc, emit)
}
