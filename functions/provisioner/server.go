package provisioner

import (
	"net/http"
	"time"
)

// HTTPConfig bounds the HTTP server that serves the API, in the cluster
// and in wharfjobs dev alike: a client that sends its request slowly
// must not hold a connection (and a goroutine) forever.
type HTTPConfig struct {
	ReadHeaderTimeout time.Duration `envconfig:"HTTP_READ_HEADER_TIMEOUT" default:"10s"`
	// ReadTimeout bounds reading a whole request, body included. Log
	// follows are responses, so it does not cut them.
	ReadTimeout time.Duration `envconfig:"HTTP_READ_TIMEOUT" default:"30s"`
	IdleTimeout time.Duration `envconfig:"HTTP_IDLE_TIMEOUT" default:"120s"`
}

// Server returns an http.Server for h with c's bounds (zero fields take
// the documented defaults).
func (c HTTPConfig) Server(h http.Handler) *http.Server {
	or := func(d, def time.Duration) time.Duration {
		if d > 0 {
			return d
		}
		return def
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: or(c.ReadHeaderTimeout, 10*time.Second),
		ReadTimeout:       or(c.ReadTimeout, 30*time.Second),
		IdleTimeout:       or(c.IdleTimeout, 120*time.Second),
		MaxHeaderBytes:    1 << 20,
	}
}
