//go:build wharfjobs_minio

// This file is copied into MinIO's cmd package by `make minio`; the build
// tag keeps it out of wharfjobs' own builds.
//
// MinIO commit 52eee5a2f (2025-10-24, "Don't send multiple responses for one
// request") wraps every S3 handler's ResponseWriter in a trackingResponseWriter
// without a Flush method, so xhttp.Flush no longer reaches the connection and
// streaming responses stay in the server's buffers: ListenBucketNotification
// sends neither headers nor events. Released MinIO (RELEASE.2025-10-15 and
// older, what manifests/ deploys) predates it; the module proxy serves only
// the newer commit, so the tests' MinIO gets the method back. The forks that
// carry on MinIO fixed it the same way (chainguard-forks/minio#37,
// pgsty/silo#34); minio/minio itself is in maintenance mode.

package cmd

import "net/http"

// Flush passes a streaming handler's flush through to the connection.
func (w *trackingResponseWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
