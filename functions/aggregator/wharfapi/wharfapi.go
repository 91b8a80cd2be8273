// Package wharfapi is the aggregator's Sink to wharf-api v5: log lines
// through the gRPC client stream wharf.api.v5.Builds/CreateLogStream on
// wharf-api's HTTP port (one long-lived connection, many lines per stream),
// status with PUT /api/build/{id}/status, artifacts and TRX test results
// with multipart POSTs. The HTTP calls are our own, with contexts and
// timeouts.
//
// The log stream is gRPC's HTTP/2 protocol spoken with net/http (grpc.go
// says why), and the two gRPC messages are small and stable, so they are
// encoded with protowire directly instead of generated code
// (wharf-api-client-go, which has the generated package, is not served by
// this project's module proxy):
//
//	CreateLogStreamRequest  {uint64 build_id=1; uint64 worker_log_id=2;
//	                         uint64 worker_step_id=3;
//	                         google.protobuf.Timestamp timestamp=4; string message=5}
//	CreateLogStreamResponse {uint64 lines_inserted=1}
package wharfapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/functions/aggregator"
)

// LogStreamMethod is the full gRPC method name of wharf-api's log stream.
const LogStreamMethod = "/wharf.api.v5.Builds/CreateLogStream"

// Config configures the sink.
type Config struct {
	// URL is wharf-api's base URL; gRPC goes to the same host and port.
	URL string `envconfig:"WHARF_API_URL" desc:"wharf-api's base URL, e.g. http://wharf-api:8080; empty: relay to stdout"`
	// Auth is an Authorization header value (Basic or Bearer), optional.
	// It goes with the HTTP calls and the log stream: wharf-api checks it
	// on HTTP only, but a proxy in front of it may check both.
	Auth string `envconfig:"WHARF_API_AUTH" desc:"value of the Authorization header sent to wharf-api (Basic or Bearer); optional"`
	// Timeout bounds each call (a whole log stream included).
	Timeout time.Duration `envconfig:"WHARF_API_TIMEOUT" default:"30s" desc:"time limit of each call to wharf-api, a whole log stream included"`
}

// defaultTimeout is Config.Timeout for a Config built in code; the
// envconfig default tag says the same.
const defaultTimeout = 30 * time.Second

// Sink delivers to wharf-api.
type Sink struct {
	base    *url.URL
	auth    string
	timeout time.Duration
	http    *http.Client
	grpc    *http.Client // HTTP/2 only, for the log stream

	mu sync.Mutex
	// partial holds the builds whose last log stream failed: wharf-api may
	// have kept part of it.
	partial map[uint64]bool
}

var (
	_ aggregator.Sink    = (*Sink)(nil)
	_ aggregator.Resumer = (*Sink)(nil)
)

// New connects (lazily) to wharf-api at cfg.URL.
func New(cfg Config) (*Sink, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("WHARFJOBS_WHARF_API_URL=%q: expected http(s)://host[:port]", cfg.URL)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultTimeout
	}
	return &Sink{
		base:    u,
		auth:    cfg.Auth,
		timeout: cfg.Timeout,
		http:    &http.Client{Timeout: cfg.Timeout},
		grpc:    newGRPCClient(cfg.Timeout),
		partial: map[uint64]bool{},
	}, nil
}

// Close closes idle connections.
func (s *Sink) Close() error {
	s.grpc.CloseIdleConnections()
	s.http.CloseIdleConnections()
	return nil
}

// Lines implements aggregator.Sink: one client stream per batch on the
// shared connection.
//
// wharf-api inserts a stream's lines one by one and, when an insert fails
// (SQLite's "database is locked"), ends the stream with an error that does
// not say how many it kept. Sending the batch again would double those, so
// after a failed stream the next delivery for that build first reads the
// end of wharf-api's log and skips the lines of the batch already there
// (only this relay appends to a build's log while it holds the lease).
func (s *Sink) Lines(ctx context.Context, b aggregator.Build, recs []build.Record) error {
	id, err := strconv.ParseUint(b.ID, 10, 64)
	if err != nil || id == 0 {
		return fmt.Errorf("build %s: wharf-api build id %q is not a positive number: %w", b.Ref, b.ID, aggregator.ErrPermanent)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	lines := make([]build.Record, 0, len(recs))
	for _, r := range recs {
		if !r.Time.IsZero() { // wharf-api drops lines without a timestamp anyway
			lines = append(lines, r)
		}
	}
	if s.uncertain(id) {
		have, err := s.alreadyInserted(ctx, id, lines)
		if err != nil {
			return fmt.Errorf("build %d: which lines of the failed stream wharf-api kept: %w", id, err)
		}
		lines = lines[have:]
		s.setUncertain(id, false)
	}
	if len(lines) == 0 {
		return nil
	}
	if err := s.stream(ctx, id, lines); err != nil {
		if !errors.Is(err, aggregator.ErrPermanent) {
			s.setUncertain(id, true)
		}
		return err
	}
	return nil
}

// Resume implements aggregator.Resumer: the next delivery of b's lines
// first reads the end of wharf-api's log of b, as after a failed stream,
// because an earlier relay of b (another replica, or this process before
// a restart) may have delivered the batch without recording so.
func (s *Sink) Resume(b aggregator.Build) {
	if id, err := strconv.ParseUint(b.ID, 10, 64); err == nil && id != 0 {
		s.setUncertain(id, true)
	}
}

func (s *Sink) uncertain(id uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.partial[id]
}

func (s *Sink) setUncertain(id uint64, v bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v {
		s.partial[id] = true
	} else {
		delete(s.partial, id)
	}
}

// stream sends lines in one client stream and checks wharf-api's count.
func (s *Sink) stream(ctx context.Context, id uint64, lines []build.Record) error {
	resp, err := callLogStream(ctx, s.grpc, s.base, s.auth, id, lines)
	if err != nil {
		return fmt.Errorf("log stream of build %d: %w", id, err)
	}
	inserted, err := decodeInserted(resp)
	if err != nil {
		return err
	}
	if inserted != uint64(len(lines)) {
		// wharf-api answers for the lines it committed; it does not
		// de-duplicate, so resending would double the others.
		return fmt.Errorf("build %d: wharf-api inserted %d of %d lines: %w", id, inserted, len(lines), aggregator.ErrPermanent)
	}
	return nil
}

// alreadyInserted returns how many of lines, from the first, are the last
// lines of wharf-api's log of the build: what a failed stream kept.
func (s *Sink) alreadyInserted(ctx context.Context, id uint64, lines []build.Record) (int, error) {
	if len(lines) == 0 {
		return 0, nil
	}
	var logs []logLine
	if err := s.getJSON(ctx, fmt.Sprintf("/api/build/%d/log", id), &logs); err != nil {
		return 0, err
	}
	return matchTail(logs, lines, func(l logLine, r build.Record) bool {
		// Databases may keep microseconds only.
		return l.Message == lineText(r) && l.Timestamp.Truncate(time.Microsecond).Equal(r.Time.Truncate(time.Microsecond))
	}), nil
}

// logLine is a line of wharf-api's GET /api/build/{id}/log.
type logLine struct {
	Message   string    `json:"message"`
	Timestamp time.Time `json:"timestamp"`
}

// matchTail returns the largest k such that the last k of have equal the
// first k of want.
func matchTail[H, W any](have []H, want []W, eq func(H, W) bool) int {
	for k := min(len(have), len(want)); k > 0; k-- {
		tail := have[len(have)-k:]
		ok := true
		for i := range tail {
			if !eq(tail[i], want[i]) {
				ok = false
				break
			}
		}
		if ok {
			return k
		}
	}
	return 0
}

// stepID is a stable number for a step within a build.
func stepID(stage, step string) uint64 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(stage + "/" + step))
	return uint64(h.Sum32())
}

// appendLine appends r as a CreateLogStreamRequest.
func appendLine(m []byte, buildID, step uint64, r build.Record) []byte {
	m = protowire.AppendTag(m, 1, protowire.VarintType)
	m = protowire.AppendVarint(m, buildID)
	m = protowire.AppendTag(m, 2, protowire.VarintType)
	m = protowire.AppendVarint(m, r.Line)
	m = protowire.AppendTag(m, 3, protowire.VarintType)
	m = protowire.AppendVarint(m, step)
	// google.protobuf.Timestamp{seconds = 1, nanos = 2}
	secs, nanos := uint64(r.Time.Unix()), uint64(r.Time.Nanosecond())
	tsLen := 1 + protowire.SizeVarint(secs)
	if nanos != 0 {
		tsLen += 1 + protowire.SizeVarint(nanos)
	}
	m = protowire.AppendTag(m, 4, protowire.BytesType)
	m = protowire.AppendVarint(m, uint64(tsLen))
	m = protowire.AppendTag(m, 1, protowire.VarintType)
	m = protowire.AppendVarint(m, secs)
	if nanos != 0 {
		m = protowire.AppendTag(m, 2, protowire.VarintType)
		m = protowire.AppendVarint(m, nanos)
	}
	// The message is lineText(r), written without building the string.
	m = protowire.AppendTag(m, 5, protowire.BytesType)
	m = protowire.AppendVarint(m, uint64(lineTextLen(r)))
	return appendLineText(m, r)
}

// lineText is the message wharf-api gets: step lines carry their step,
// since wharf-api keeps one log per build and steps run in parallel.
func lineText(r build.Record) string {
	return string(appendLineText(make([]byte, 0, lineTextLen(r)), r))
}

// appendLineText appends lineText(r), "[stage/step] text" for step lines.
func appendLineText(b []byte, r build.Record) []byte {
	if r.Step != "" {
		b = append(b, '[')
		b = append(b, r.Stage...)
		b = append(b, '/')
		b = append(b, r.Step...)
		b = append(b, "] "...)
	}
	return append(b, r.Text...)
}

// lineTextLen is len(lineText(r)).
func lineTextLen(r build.Record) int {
	if r.Step != "" {
		return len(r.Stage) + len(r.Step) + 4 + len(r.Text)
	}
	return len(r.Text)
}

func decodeInserted(b []byte) (uint64, error) {
	var n uint64
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return 0, fmt.Errorf("log stream response: %w", protowire.ParseError(l))
		}
		b = b[l:]
		if num == 1 && typ == protowire.VarintType {
			v, l := protowire.ConsumeVarint(b)
			if l < 0 {
				return 0, fmt.Errorf("log stream response: %w", protowire.ParseError(l))
			}
			n, b = v, b[l:]
			continue
		}
		l = protowire.ConsumeFieldValue(num, typ, b)
		if l < 0 {
			return 0, fmt.Errorf("log stream response: %w", protowire.ParseError(l))
		}
		b = b[l:]
	}
	return n, nil
}

// Status implements aggregator.Sink.
func (s *Sink) Status(ctx context.Context, b aggregator.Build, st build.Status) error {
	if !st.Status.Valid() {
		// An invalid value resets the build in wharf-api: never send one.
		return fmt.Errorf("build %s: status %q is not one wharf-api accepts: %w", b.Ref, st.Status, aggregator.ErrPermanent)
	}
	body, _ := json.Marshal(map[string]string{"status": string(st.Status)})
	return s.do(ctx, http.MethodPut, "/api/build/"+url.PathEscape(b.ID)+"/status", "application/json", bytes.NewReader(body))
}

// Artifact implements aggregator.Sink: POST /api/build/{id}/artifact.
func (s *Sink) Artifact(ctx context.Context, b aggregator.Build, name string, r io.Reader) error {
	return s.postFile(ctx, "/api/build/"+url.PathEscape(b.ID)+"/artifact", name, r)
}

// TestResult implements aggregator.Sink: POST /api/build/{id}/test-result/
// (the trailing slash matters), which wharf-api parses as TRX.
func (s *Sink) TestResult(ctx context.Context, b aggregator.Build, name string, r io.Reader) error {
	return s.postFile(ctx, "/api/build/"+url.PathEscape(b.ID)+"/test-result/", name, r)
}

// postFile streams r as the multipart field "files", never holding the
// file in memory. A refusal (4xx) wraps aggregator.ErrRefused: that file
// is never sent again, the build goes on.
func (s *Sink) postFile(ctx context.Context, path, name string, r io.Reader) error {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		fw, err := mw.CreateFormFile("files", FileName(name))
		if err == nil {
			_, err = io.Copy(fw, r)
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	err := s.do(ctx, http.MethodPost, path, mw.FormDataContentType(), pr)
	// The request may end before the body was read (a refusal): unblock
	// the writer.
	pr.CloseWithError(io.ErrClosedPipe)
	if errors.Is(err, aggregator.ErrPermanent) && !errors.Is(err, errUnknownBuild) {
		// Flattened: a refused file must not park the build as
		// ErrPermanent does.
		return fmt.Errorf("%w: %v", aggregator.ErrRefused, err)
	}
	return err
}

// FileName is the name wharf-api lists a file under. wharf-api keeps
// only the base name of a multipart file name (v5.2.0 drops everything up
// to the last '/'), so the path "<stage>/<step>/<path>" is kept with each
// '/' shown as '∕' (U+2215 DIVISION SLASH), which wharf-web displays like
// a slash: "build∕compile∕out∕app.bin". The stage, escaped in the key to
// stay one segment, is unescaped here.
func FileName(name string) string {
	parts := strings.Split(name, "/")
	for i := range parts[:min(2, len(parts))] {
		if u, err := url.PathUnescape(parts[i]); err == nil {
			parts[i] = strings.ReplaceAll(u, "/", "∕")
		}
	}
	return strings.Join(parts, "∕")
}

// errUnknownBuild marks wharf-api's answer for a build it does not have.
var errUnknownBuild = errors.New("build unknown to wharf-api")

// problem is the part of wharf-api's problem documents we look at.
type problem struct {
	Type   string `json:"type"`
	Detail string `json:"detail"`
}

// newRequest is a request to wharf-api's pathAndQuery (below the base
// URL's path), with the Authorization header when one is configured.
func (s *Sink) newRequest(ctx context.Context, method, pathAndQuery string, body io.Reader) (*http.Request, error) {
	u := *s.base
	path, query, _ := strings.Cut(pathAndQuery, "?")
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawQuery = query
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	if s.auth != "" {
		req.Header.Set("Authorization", s.auth)
	}
	return req, nil
}

func (s *Sink) do(ctx context.Context, method, path, contentType string, body io.Reader) error {
	req, err := s.newRequest(ctx, method, path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := s.http.Do(req)
	if err != nil {
		return fmt.Errorf("wharf-api %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var p problem
	_ = json.Unmarshal(raw, &p)
	err = fmt.Errorf("wharf-api %s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(p.Detail))
	// An unknown build answers 502 with a record-not-found problem; a 4xx
	// will not change on retry either (but for 408 and 429).
	if strings.HasSuffix(p.Type, "record-not-found") {
		return errors.Join(err, errUnknownBuild, aggregator.ErrPermanent)
	}
	if resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
		return errors.Join(err, aggregator.ErrPermanent)
	}
	return err
}

// ActiveBuilds lists the builds wharf-api has in Scheduling or Running
// (GET /api/build?statusId=0&statusId=1&limit=0), for the aggregator to
// fail those whose trigger never reached wharfjobs.
func (s *Sink) ActiveBuilds(ctx context.Context) ([]aggregator.RemoteBuild, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var page struct {
		List []struct {
			BuildID     uint64    `json:"buildId"`
			Status      string    `json:"status"`
			ScheduledOn time.Time `json:"scheduledOn"`
		} `json:"list"`
	}
	if err := s.getJSON(ctx, "/api/build?statusId=0&statusId=1&limit=0", &page); err != nil {
		return nil, fmt.Errorf("wharf-api build list: %w", err)
	}
	out := make([]aggregator.RemoteBuild, 0, len(page.List))
	for _, b := range page.List {
		out = append(out, aggregator.RemoteBuild{ID: strconv.FormatUint(b.BuildID, 10), Status: b.Status, ScheduledOn: b.ScheduledOn})
	}
	return out, nil
}

// getJSON GETs pathAndQuery from wharf-api and decodes the JSON answer.
func (s *Sink) getJSON(ctx context.Context, pathAndQuery string, v any) error {
	path, _, _ := strings.Cut(pathAndQuery, "?")
	req, err := s.newRequest(ctx, http.MethodGet, pathAndQuery, nil)
	if err != nil {
		return err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 256<<20)).Decode(v); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}
