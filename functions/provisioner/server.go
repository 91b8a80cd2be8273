package provisioner

import (
	"net/http"
	"time"

	"github.com/wharfjobs/wharfjobs/internal/settings"
)

// HTTPConfig bounds the HTTP server that serves the API, in the cluster
// and in wharfjobs dev alike: a client that sends its request slowly
// must not hold a connection (and a goroutine) forever.
type HTTPConfig struct {
	ReadHeaderTimeout time.Duration `envconfig:"HTTP_READ_HEADER_TIMEOUT" default:"10s" desc:"bound of reading a request's headers"`
	// ReadTimeout bounds reading a whole request, body included. Log
	// follows are responses, so it does not cut them.
	ReadTimeout time.Duration `envconfig:"HTTP_READ_TIMEOUT" default:"30s" desc:"bound of reading a whole request, body included"`
	IdleTimeout time.Duration `envconfig:"HTTP_IDLE_TIMEOUT" default:"120s" desc:"an idle keep-alive connection is closed after this"`
}

// Defaults of HTTPConfig, which its fields' tags repeat for the
// environment (a test keeps the two equal).
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
)

// withDefaults fills the fields left zero with their defaults.
func (c HTTPConfig) withDefaults() HTTPConfig {
	if c.ReadHeaderTimeout <= 0 {
		c.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	return c
}

// Validate refuses negative timeouts; the error names the variable.
func (c HTTPConfig) Validate() error {
	return settings.NonNegative(c)
}

// Server returns an http.Server for h with c's bounds (zero fields take
// the defaults).
func (c HTTPConfig) Server(h http.Handler) *http.Server {
	c = c.withDefaults()
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: c.ReadHeaderTimeout,
		ReadTimeout:       c.ReadTimeout,
		IdleTimeout:       c.IdleTimeout,
		MaxHeaderBytes:    1 << 20,
	}
}
