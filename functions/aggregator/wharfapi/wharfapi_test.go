package wharfapi

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/functions/aggregator"
)

// fakeWharfAPI serves wharf-api v5's shapes on one port, as wharf-api does
// with cmux: gRPC (HTTP/2, application/grpc) and the HTTP API.
type fakeWharfAPI struct {
	mu          sync.Mutex
	lines       []line
	statuses    []string
	files       map[string][]string // path -> file names
	auth        []string
	conns       atomic.Int32
	streams     atomic.Int32
	failStreams atomic.Int32 // fail this many streams after keeping failAfter lines, as wharf-api on SQLite does
	failAfter   atomic.Int32
	known       map[string]bool
	// countOnly, for benchmarks, counts lines in counted instead of
	// keeping them (and the Authorization headers), so the server's memory
	// does not grow with the run.
	countOnly bool
	counted   atomic.Int64
	// reject, when set, is the gRPC error every log stream ends with at
	// once; hang makes log streams wait for the client to give up.
	reject error
	hang   bool
}

type line struct {
	build, logID, stepID uint64
	ts                   time.Time
	msg                  string
}

func decodeLine(b []byte) (line, error) {
	var l line
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return l, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			b = b[n:]
			switch num {
			case 1:
				l.build = v
			case 2:
				l.logID = v
			case 3:
				l.stepID = v
			}
		case typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			b = b[n:]
			switch num {
			case 4:
				var sec, nanos uint64
				for len(v) > 0 {
					fn, _, k := protowire.ConsumeTag(v)
					v = v[k:]
					x, k := protowire.ConsumeVarint(v)
					v = v[k:]
					if fn == 1 {
						sec = x
					} else {
						nanos = x
					}
				}
				l.ts = time.Unix(int64(sec), int64(nanos))
			case 5:
				l.msg = string(v)
			}
		default:
			return l, fmt.Errorf("unexpected wire type %d", typ)
		}
	}
	return l, nil
}

func (f *fakeWharfAPI) stream(_ any, ss grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(ss)
	if method != LogStreamMethod {
		return fmt.Errorf("unknown method %s", method)
	}
	// wharf-api's cmux sends a connection to its gRPC server only on
	// exactly this content type; anything else lands on its HTTP server.
	md, _ := metadata.FromIncomingContext(ss.Context())
	if len(md["content-type"]) != 1 || md["content-type"][0] != "application/grpc" {
		return status.Errorf(codes.InvalidArgument, "content-type %v: wharf-api's cmux routes only application/grpc to gRPC", md["content-type"])
	}
	f.streams.Add(1)
	if !f.countOnly {
		f.mu.Lock()
		f.auth = append(f.auth, strings.Join(md["authorization"], ","))
		f.mu.Unlock()
	}
	if d := f.reject; d != nil {
		return d // before reading anything: a trailers-only answer
	}
	if f.hang {
		<-ss.Context().Done()
		return ss.Context().Err()
	}
	fail := f.failStreams.Load() > 0
	if fail {
		f.failStreams.Add(-1)
	}
	var (
		got     []line
		counted int
	)
	for {
		var msg []byte
		err := ss.RecvMsg(&msg)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		l, err := decodeLine(msg)
		if err != nil {
			return err
		}
		if l.build == 0 || l.ts.IsZero() {
			continue // wharf-api skips these
		}
		if f.countOnly {
			counted++
			continue
		}
		if fail && len(got) == int(f.failAfter.Load()) {
			// wharf-api inserts line by line: what came before stays.
			f.mu.Lock()
			f.lines = append(f.lines, got...)
			f.mu.Unlock()
			return status.Errorf(codes.Internal, "insert logs: database is locked")
		}
		got = append(got, l)
	}
	f.mu.Lock()
	f.lines = append(f.lines, got...)
	f.mu.Unlock()
	f.counted.Add(int64(counted))
	resp := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), uint64(len(got)+counted))
	return ss.SendMsg(&resp)
}

func (f *fakeWharfAPI) serveHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.countOnly {
		f.auth = append(f.auth, r.Header.Get("Authorization"))
	}
	if r.Method == http.MethodGet && r.URL.Path == "/api/build" {
		if r.URL.Query()["statusId"][0] != "0" || r.URL.Query()["statusId"][1] != "1" || r.URL.Query().Get("limit") != "0" {
			http.Error(w, "bad query "+r.URL.RawQuery, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"list":[{"buildId":42,"statusId":1,"status":"Running","workerId":"wharf-build-42","scheduledOn":"2026-11-23T20:00:00Z"}],"totalCount":1}`)
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/") // api build {id} ...
	if len(parts) < 4 || parts[0] != "api" || parts[1] != "build" {
		http.NotFound(w, r)
		return
	}
	if !f.known[parts[2]] {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusBadGateway)
		fmt.Fprint(w, `{"type":"https://iver-wharf.github.io/#/prob/api/record-not-found","title":"Record not found.","status":502,"detail":"build not found"}`)
		return
	}
	switch {
	case r.Method == http.MethodGet && parts[3] == "log":
		type logLine struct {
			Message   string    `json:"message"`
			Timestamp time.Time `json:"timestamp"`
		}
		out := []logLine{}
		for _, l := range f.lines {
			if strconv.FormatUint(l.build, 10) == parts[2] {
				out = append(out, logLine{l.msg, l.ts})
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	case r.Method == http.MethodPost && parts[3] == "log" && f.countOnly:
		// wharf-api's one-line-per-request endpoint: the benchmarks' baseline.
		var l struct {
			Message   string    `json:"message"`
			Timestamp time.Time `json:"timestamp"`
		}
		if err := json.NewDecoder(r.Body).Decode(&l); err != nil || l.Timestamp.IsZero() {
			http.Error(w, "bad log line", http.StatusBadRequest)
			return
		}
		f.counted.Add(1)
		w.WriteHeader(http.StatusCreated)
	case r.Method == http.MethodPut && parts[3] == "status":
		b, _ := io.ReadAll(r.Body)
		f.statuses = append(f.statuses, string(b))
		w.WriteHeader(http.StatusOK)
	case r.Method == http.MethodPost && (parts[3] == "artifact" || parts[3] == "test-result"):
		_, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		mr := multipart.NewReader(r.Body, params["boundary"])
		for {
			p, err := mr.NextPart()
			if err != nil {
				break
			}
			if p.FormName() == "files" {
				f.files[r.URL.Path] = append(f.files[r.URL.Path], p.FileName())
			}
		}
		if parts[3] == "test-result" && strings.HasSuffix(f.files[r.URL.Path][len(f.files[r.URL.Path])-1], ".txt") {
			// as wharf-api answers a file that is not TRX
			http.Error(w, `{"type":"https://iver-wharf.github.io/#/prob/api/unexpected-body-read-error"}`, http.StatusBadRequest)
			return
		}
		if parts[3] == "test-result" {
			w.WriteHeader(http.StatusOK)
		} else {
			w.WriteHeader(http.StatusCreated)
		}
	default:
		http.NotFound(w, r)
	}
}

func startFake(t testing.TB) (*fakeWharfAPI, string) {
	f, handler := newFake(t)
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protos, Handler: handler, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			f.conns.Add(1)
		}
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return f, "http://" + ln.Addr().String()
}

// newFake is a fake wharf-api and its handler: gRPC for HTTP/2 requests
// with a gRPC content type, as wharf-api's cmux routes them, HTTP otherwise.
func newFake(t testing.TB) (*fakeWharfAPI, http.Handler) {
	f := &fakeWharfAPI{files: map[string][]string{}, known: map[string]bool{"42": true}}
	gs := grpc.NewServer(grpc.UnknownServiceHandler(f.stream), grpc.ForceServerCodecV2(rawCodec{}))
	t.Cleanup(gs.Stop)
	return f, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			gs.ServeHTTP(w, r)
			return
		}
		f.serveHTTP(w, r)
	})
}

// TestOverTLS: with an https:// URL the log stream negotiates HTTP/2 over
// TLS (ALPN) and the HTTP calls go over the same TLS, as behind an ingress.
func TestOverTLS(t *testing.T) {
	f, handler := newFake(t)
	ts := httptest.NewUnstartedServer(handler)
	ts.EnableHTTP2 = true
	ts.StartTLS()
	defer ts.Close()
	// The sink trusts the system's roots; SSL_CERT_FILE makes this test's
	// certificate one of them (read once, at the first TLS handshake of
	// the process, which this package's other tests do not make).
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SSL_CERT_FILE", ca)
	s, err := New(Config{URL: ts.URL, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	b := aggregator.Build{Ref: "42", ID: "42"}
	if err := s.Lines(ctx, b, records(1000)); err != nil {
		t.Fatalf("log stream over TLS: %v", err)
	}
	if err := s.Status(ctx, b, build.Status{Status: build.Running}); err != nil {
		t.Fatalf("status over TLS: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.lines) != 1000 || f.streams.Load() != 1 || len(f.statuses) != 1 {
		t.Fatalf("over TLS: %d lines in %d streams, %d statuses", len(f.lines), f.streams.Load(), len(f.statuses))
	}
}

func records(n int) []build.Record {
	out := make([]build.Record, n)
	for i := range out {
		out[i] = build.Record{Stage: "build", Step: "go", Stream: build.StreamStdout, Line: uint64(i + 1), Time: time.Unix(1795000000, int64(i)), Text: fmt.Sprintf("line %d", i+1)}
	}
	return out
}

func TestLinesStatusArtifactsOverOnePort(t *testing.T) {
	f, url := startFake(t)
	s, err := New(Config{URL: url, Auth: "Basic d2hhcmY6cHc=", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	b := aggregator.Build{Ref: "prod-42", ID: "42"}
	for range 5 {
		if err := s.Lines(ctx, b, records(1000)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Status(ctx, b, build.Status{Status: build.Completed}); err != nil {
		t.Fatal(err)
	}
	if err := s.Artifact(ctx, b, "my%2Fstage/go/out/app.bin", strings.NewReader("binary")); err != nil {
		t.Fatal(err)
	}
	if err := s.TestResult(ctx, b, "test/unit/results.trx", strings.NewReader("<TestRun/>")); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.lines) != 5000 || f.lines[0].build != 42 || f.lines[0].logID != 1 || f.lines[0].msg != "[build/go] line 1" || f.lines[999].ts.Nanosecond() != 999 {
		t.Fatalf("%d lines, first %+v", len(f.lines), f.lines[0])
	}
	if len(f.auth) != 5+3 {
		t.Fatalf("%d requests recorded, want 5 streams and 3 HTTP calls (status, artifact, test result)", len(f.auth))
	}
	if f.streams.Load() != 5 || f.conns.Load() > 2 {
		t.Fatalf("%d streams over %d connections: want one stream per batch on one long-lived connection", f.streams.Load(), f.conns.Load())
	}
	if len(f.statuses) != 1 || f.statuses[0] != `{"status":"Completed"}` {
		t.Fatalf("statuses %q", f.statuses)
	}
	// The path survives wharf-api's base name: '/' shown as '∕', and the
	// stage unescaped.
	if got := f.files["/api/build/42/artifact"]; len(got) != 1 || got[0] != "my∕stage∕go∕out∕app.bin" {
		t.Fatalf("artifact upload %q", f.files)
	}
	if got := f.files["/api/build/42/test-result/"]; len(got) != 1 || got[0] != "test∕unit∕results.trx" {
		t.Fatalf("TRX not sent to /test-result/ (with the slash): %q", f.files)
	}
	f.mu.Unlock()
	// A file wharf-api refuses is refused for good, but the build goes on:
	// ErrRefused, not ErrPermanent.
	err = s.TestResult(ctx, b, "test/unit/notes.txt", strings.NewReader("not xml"))
	f.mu.Lock()
	if !errors.Is(err, aggregator.ErrRefused) || errors.Is(err, aggregator.ErrPermanent) {
		t.Fatalf("refused file: %v, want ErrRefused only", err)
	}
	for _, a := range f.auth {
		if a != "Basic d2hhcmY6cHc=" {
			t.Fatalf("authorization header %q", a)
		}
	}
}

func TestActiveBuilds(t *testing.T) {
	_, url := startFake(t)
	s, err := New(Config{URL: url, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	builds, err := s.ActiveBuilds(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(builds) != 1 || builds[0].ID != "42" || builds[0].Status != "Running" || builds[0].ScheduledOn.Hour() != 20 {
		t.Fatalf("builds %+v", builds)
	}
}

func TestRejections(t *testing.T) {
	f, url := startFake(t)
	s, err := New(Config{URL: url, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	err = s.Status(ctx, aggregator.Build{Ref: "9", ID: "9"}, build.Status{Status: build.Running})
	if !errors.Is(err, aggregator.ErrPermanent) || !strings.Contains(err.Error(), "502") {
		t.Fatalf("unknown build: %v, want a permanent error", err)
	}
	if err := s.Status(ctx, aggregator.Build{Ref: "42", ID: "42"}, build.Status{Status: "running"}); !errors.Is(err, aggregator.ErrPermanent) {
		t.Fatalf("invalid status sent: %v", err)
	}
	// A stream that fails after wharf-api kept 4 of 10 lines: the retry
	// sends only the other 6, so every line is there once.
	f.mu.Lock()
	before := len(f.lines)
	f.mu.Unlock()
	f.failStreams.Store(1)
	f.failAfter.Store(4)
	err = s.Lines(ctx, aggregator.Build{Ref: "42", ID: "42"}, records(10))
	if err == nil || errors.Is(err, aggregator.ErrPermanent) {
		t.Fatalf("a failed stream must be retryable: %v", err)
	}
	if err := s.Lines(ctx, aggregator.Build{Ref: "42", ID: "42"}, records(10)); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	got := f.lines[before:]
	f.mu.Unlock()
	if len(got) != 10 {
		t.Fatalf("after a partly kept stream and its retry wharf-api has %d lines, want 10", len(got))
	}
	for i, l := range got {
		if want := lineText(records(10)[i]); l.msg != want {
			t.Fatalf("line %d = %q, want %q", i, l.msg, want)
		}
	}
	if _, err := New(Config{URL: "ftp://x"}); err == nil || !strings.Contains(err.Error(), "WHARFJOBS_WHARF_API_URL") {
		t.Fatalf("bad URL: %v", err)
	}
}

// BenchmarkRelayGRPC: lines/s through the gRPC stream on loopback, to a
// server sharing its port with HTTP as wharf-api does (net/http's HTTP/2).
// BenchmarkRelayPerLineHTTP is the baseline the design forbids, in the same
// run; BenchmarkRelayGRPCNative is grpc-go's own server transport, the one
// wharf-api's cmux hands gRPC connections to. The servers decode every line
// and count it, nothing more.
func BenchmarkRelayGRPC(b *testing.B) {
	f, url := startFake(b)
	benchRelay(b, f, url)
}

// benchRelay sends batches of 5000 lines to the server at url.
func benchRelay(b *testing.B, f *fakeWharfAPI, url string) {
	f.countOnly = true
	s, err := New(Config{URL: url, Timeout: 30 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	recs := records(5000)
	ctx := context.Background()
	n := 0
	for b.Loop() {
		if err := s.Lines(ctx, aggregator.Build{Ref: "42", ID: "42"}, recs); err != nil {
			b.Fatal(err)
		}
		n += len(recs)
	}
	reportLines(b, f, n)
}

// reportLines reports sent lines per second, after checking the server
// counted every one.
func reportLines(b *testing.B, f *fakeWharfAPI, sent int) {
	if got := f.counted.Load(); got != int64(sent) {
		b.Fatalf("server counted %d lines, %d sent", got, sent)
	}
	b.ReportMetric(float64(sent)/b.Elapsed().Seconds(), "lines/s")
}

func BenchmarkRelayPerLineHTTP(b *testing.B) {
	f, url := startFake(b)
	f.countOnly = true
	client := &http.Client{Timeout: 10 * time.Second}
	recs := records(500)
	n := 0
	for b.Loop() {
		for _, r := range recs {
			body, _ := json.Marshal(map[string]any{"message": lineText(r), "timestamp": r.Time})
			resp, err := client.Post(url+"/api/build/42/log", "application/json", bytes.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				b.Fatalf("POST log: %s", resp.Status)
			}
			n++
		}
	}
	reportLines(b, f, n)
}

// startNativeGRPC serves the log stream with grpc-go's own transport.
func startNativeGRPC(tb testing.TB) (*fakeWharfAPI, string) {
	f := &fakeWharfAPI{files: map[string][]string{}, known: map[string]bool{"42": true}}
	gs := grpc.NewServer(grpc.UnknownServiceHandler(f.stream), grpc.ForceServerCodecV2(rawCodec{}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go gs.Serve(ln)
	tb.Cleanup(gs.Stop)
	return f, "http://" + ln.Addr().String()
}

// BenchmarkRelayGRPCNative: the same client against grpc-go's own server
// transport.
func BenchmarkRelayGRPCNative(b *testing.B) {
	f, url := startNativeGRPC(b)
	benchRelay(b, f, url)
}

// TestEncodeLines: every field survives the framed encoding, for
// lines with and without a step, with and without nanoseconds, across a
// change of step.
func TestEncodeLines(t *testing.T) {
	recs := []build.Record{
		{Stage: "build", Step: "go", Line: 1, Time: time.Unix(1795000000, 5), Text: "compiling"},
		{Stage: "build", Step: "go", Line: 2, Time: time.Unix(1795000001, 0), Text: ""},
		{Stage: "test", Step: "unit", Line: 3, Time: time.Unix(1795000002, 999999999), Text: strings.Repeat("ü", 200)},
		{Line: 4, Time: time.Unix(1795000003, 7), Text: "cloning"},
	}
	buf := appendFramed(nil, 7, recs)
	if len(buf) > framedSize(recs) {
		t.Fatalf("framedSize %d < %d bytes written", framedSize(recs), len(buf))
	}
	var msgs [][]byte
	for len(buf) > 0 {
		if len(buf) < 5 || buf[0] != 0 || int(binary.BigEndian.Uint32(buf[1:5])) > len(buf)-5 {
			t.Fatalf("bad frame header % x", buf[:min(5, len(buf))])
		}
		n := int(binary.BigEndian.Uint32(buf[1:5]))
		msgs, buf = append(msgs, buf[5:5+n]), buf[5+n:]
	}
	if len(msgs) != len(recs) {
		t.Fatalf("%d messages for %d lines", len(msgs), len(recs))
	}
	for i, r := range recs {
		l, err := decodeLine(msgs[i])
		if err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		want := line{build: 7, logID: r.Line, stepID: stepID(r.Stage, r.Step), ts: r.Time, msg: lineText(r)}
		if l.build != want.build || l.logID != want.logID || l.stepID != want.stepID || !l.ts.Equal(want.ts) || l.msg != want.msg {
			t.Errorf("line %d decoded as %+v, want %+v", i, l, want)
		}
	}
}

// rawCodec lets the test servers read and write protobuf bytes as they are.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("raw codec: cannot marshal %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(*b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("raw codec: cannot unmarshal into %T", v)
	}
	*b = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// TestLogStreamErrors: what the log stream says when the far end is not a
// gRPC server, refuses at once (a trailers-only answer), or never answers.
func TestLogStreamErrors(t *testing.T) {
	b := aggregator.Build{Ref: "42", ID: "42"}
	lines := func(url string, timeout time.Duration) error {
		s, err := New(Config{URL: url, Timeout: timeout})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		return s.Lines(context.Background(), b, records(3))
	}

	f, url := startNativeGRPC(t)
	f.reject = status.Error(codes.Unauthenticated, "no token, 100% sure")
	err := lines(url, 5*time.Second)
	if err == nil || errors.Is(err, aggregator.ErrPermanent) || !strings.Contains(err.Error(), "Unauthenticated (16): no token, 100% sure") {
		t.Fatalf("refused stream: %v, want a retryable error with the status and its message", err)
	}

	f, url = startNativeGRPC(t)
	f.hang = true
	start := time.Now()
	err = lines(url, 300*time.Millisecond)
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("a server that never answers: %v after %v, want an error after the 300ms timeout", err, time.Since(start))
	}

	// An HTTP/1.1-only server (a wrong URL, or a proxy without HTTP/2).
	h1 := httptest.NewServer(http.NotFoundHandler())
	defer h1.Close()
	if err := lines(h1.URL, 5*time.Second); err == nil || !strings.Contains(err.Error(), "log stream of build 42") {
		t.Fatalf("HTTP/1.1 server: %v, want an error naming the log stream", err)
	} else {
		t.Logf("against an HTTP/1.1 server: %v", err)
	}

	// An HTTP/2 server that is not gRPC.
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	h2 := httptest.NewUnstartedServer(http.NotFoundHandler())
	h2.Config.Protocols = &protos
	h2.Start()
	defer h2.Close()
	if err := lines(h2.URL, 5*time.Second); err == nil || !strings.Contains(err.Error(), "404 Not Found") || !strings.Contains(err.Error(), "not a gRPC answer") {
		t.Fatalf("HTTP/2 server without gRPC: %v", err)
	}
}

// A sink taking a build over (a new process: it knows nothing of earlier
// streams) and told to Resume skips the lines of its first batch that
// wharf-api already has: an earlier relay delivered them without moving
// the cursor, so the batch starts with them.
func TestResumeSkipsWhatAnEarlierRelayDelivered(t *testing.T) {
	f, url := startFake(t)
	ctx := context.Background()
	b := aggregator.Build{Ref: "42", ID: "42"}
	all := records(10)
	earlier, err := New(Config{URL: url, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := earlier.Lines(ctx, b, all[:6]); err != nil {
		t.Fatal(err)
	}
	earlier.Close()

	later, err := New(Config{URL: url, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer later.Close()
	later.Resume(b)
	if err := later.Lines(ctx, b, all); err != nil { // the cursor's batch: all ten
		t.Fatal(err)
	}
	f.mu.Lock()
	n := len(f.lines)
	var msgs []string
	for _, l := range f.lines {
		msgs = append(msgs, l.msg)
	}
	f.mu.Unlock()
	if n != 10 {
		t.Fatalf("wharf-api has %d lines, want the 10 once each: %q", n, msgs)
	}
	// Without Resume a new sink sends its batch whole.
	if err := later.Lines(ctx, b, all[8:]); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.lines) != 12 {
		t.Fatalf("wharf-api has %d lines after a plain batch of 2, want 12", len(f.lines))
	}
}
