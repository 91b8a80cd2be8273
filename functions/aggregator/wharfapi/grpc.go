package wharfapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/wharfjobs/wharfjobs/blob/build"
)

// The log stream speaks gRPC's HTTP/2 protocol with net/http instead of
// grpc-go. A batch is one client stream, and the whole batch is known
// before it starts, so its messages go out framed in one request body:
// net/http writes them in large DATA frames, where grpc-go's client pays a
// lock, a queue item and a wake-up of its writer per message, about 2 µs a
// line. Per the protocol (grpc.io PROTOCOL-HTTP2): POST to /Service/Method
// with content-type application/grpc and te: trailers; each message is a
// compressed flag byte, a 4-byte big-endian length and the protobuf bytes;
// the result is grpc-status (and grpc-message) in the trailers, or in the
// headers of a trailers-only response.

// newGRPCClient returns an HTTP/2-only client for gRPC at scheme://host:
// prior-knowledge HTTP/2 without TLS for http, HTTP/2 over TLS for https.
// One connection carries every stream (the Transport multiplexes).
func newGRPCClient(timeout time.Duration) *http.Client {
	var protos http.Protocols
	protos.SetHTTP2(true)
	protos.SetUnencryptedHTTP2(true)
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Protocols:           &protos,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout: 10 * time.Second,
			TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12},
			ForceAttemptHTTP2:   true,
			HTTP2: &http.HTTP2Config{
				// A connection that went quiet is probed, and dropped when
				// the ping goes unanswered, so a dead wharf-api is noticed
				// before the call's own timeout.
				SendPingTimeout: 30 * time.Second,
				PingTimeout:     15 * time.Second,
			},
		},
	}
}

// appendFramed appends each line as a length-prefixed CreateLogStreamRequest.
func appendFramed(buf []byte, buildID uint64, lines []build.Record) []byte {
	var lastStage, lastStep string
	var step uint64
	for i, r := range lines {
		if i == 0 || r.Stage != lastStage || r.Step != lastStep {
			lastStage, lastStep, step = r.Stage, r.Step, stepID(r.Stage, r.Step)
		}
		start := len(buf)
		buf = append(buf, 0, 0, 0, 0, 0) // not compressed, length below
		buf = appendLine(buf, buildID, step, r)
		binary.BigEndian.PutUint32(buf[start+1:], uint32(len(buf)-start-5))
	}
	return buf
}

// framedSize is an upper bound of appendFramed's output.
func framedSize(lines []build.Record) int {
	n := 0
	for _, r := range lines {
		n += 5 + 48 + len(r.Stage) + len(r.Step) + len(r.Text)
	}
	return n
}

// callLogStream sends lines in one CreateLogStream call to the gRPC server
// at base (scheme and host) and returns CreateLogStreamResponse's bytes.
func callLogStream(ctx context.Context, client *http.Client, base *url.URL, auth string, id uint64, lines []build.Record) ([]byte, error) {
	body := appendFramed(make([]byte, 0, framedSize(lines)), id, lines)
	u := url.URL{Scheme: base.Scheme, Host: base.Host, Path: LogStreamMethod}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	// Exactly application/grpc: wharf-api's connection multiplexer (cmux)
	// hands a connection to its gRPC server only on that value; anything
	// else ("application/grpc+proto") reaches its HTTP server. Found
	// against a real wharf-api v5.2.0.
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	req.Header.Set("User-Agent", "wharfjobs-aggregator")
	if dl, ok := ctx.Deadline(); ok {
		req.Header.Set("Grpc-Timeout", grpcTimeout(time.Until(dl)))
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s from %s, not a gRPC answer", resp.Status, u.String())
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read the answer: %w", err)
	}
	// Trailers are complete once the body is read.
	code, msg := resp.Trailer.Get("Grpc-Status"), resp.Trailer.Get("Grpc-Message")
	if code == "" {
		code, msg = resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
	}
	if code != "0" {
		if code == "" {
			return nil, fmt.Errorf("answer without grpc-status (content-type %q)", resp.Header.Get("Content-Type"))
		}
		if m, err := url.PathUnescape(msg); err == nil {
			msg = m
		}
		return nil, fmt.Errorf("gRPC status %s: %s", codeName(code), msg)
	}
	if len(data) < 5 || data[0] != 0 || int(binary.BigEndian.Uint32(data[1:5])) != len(data)-5 {
		return nil, fmt.Errorf("answer is not one uncompressed gRPC message (%d bytes)", len(data))
	}
	return data[5:], nil
}

// grpcTimeout encodes d as a grpc-timeout value (at most 8 digits).
func grpcTimeout(d time.Duration) string {
	if ms := d.Milliseconds(); ms < 1e8 {
		return strconv.FormatInt(max(ms, 1), 10) + "m"
	}
	return strconv.FormatInt(int64(d/time.Second), 10) + "S"
}

// codeName names a gRPC status code for error messages.
func codeName(code string) string {
	names := []string{"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists",
		"PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented",
		"Internal", "Unavailable", "DataLoss", "Unauthenticated"}
	if n, err := strconv.Atoi(code); err == nil && n >= 0 && n < len(names) {
		return names[n] + " (" + code + ")"
	}
	return code
}
