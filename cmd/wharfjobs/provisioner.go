package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/backend"
	"github.com/wharfjobs/wharfjobs/functions/provisioner"
	"github.com/wharfjobs/wharfjobs/job/kube"
)

// provisionerEnv is the provisioner's configuration.
type provisionerEnv struct {
	Store blob.Config
	Kube  kube.Config
	API   provisioner.Config
	// ReleaseInterval is how often queued builds are checked for release
	// (with WHARFJOBS_MAX_RUNNING_BUILDS).
	ReleaseInterval time.Duration `envconfig:"QUEUE_RELEASE_INTERVAL" default:"10s"`
	LogFormat       string        `envconfig:"LOG_FORMAT" default:"json"`
}

// listenPort is $PORT (the Knative contract), default 8080: the one place
// it is read, for the provisioner, the aggregator and dev.
func listenPort() string {
	if port := os.Getenv("PORT"); port != "" {
		return port
	}
	return "8080"
}

// listenAddr is every interface on listenPort.
func listenAddr() string { return net.JoinHostPort("", listenPort()) }

func runProvisioner(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cl := newFlags("provisioner", "[--insecure-no-auth]", "Serves the trigger API wharf-api calls (POST /api/worker) on $PORT and creates one\nKubernetes Job per build.", stdout, stderr)
	fl := cl.fl
	insecure := fl.Bool("insecure-no-auth", false, "accept requests without a token (never in production)")
	if _, err := cl.parse(args, 0, 0); err != nil {
		return err
	}
	var env provisionerEnv
	for _, part := range []any{&env, &env.Store, &env.Kube, &env.API} {
		if err := envconfig.Process("WHARFJOBS", part); err != nil {
			return fmt.Errorf("configuration: %w", err)
		}
	}
	env.API.InsecureNoAuth = *insecure
	if env.API.Token == "" && !*insecure {
		return provisioner.ErrNoToken // before connecting anywhere
	}
	logger := newLogger(env.LogFormat, stderr)
	store, err := backend.Open(ctx, env.Store)
	if err != nil {
		return err
	}
	cs, err := kubeClient()
	if err != nil {
		return err
	}
	launcher := &kube.Launcher{Client: cs, Config: env.Kube}
	api, err := provisioner.New(launcher, store, env.API, logger)
	if err != nil {
		return err
	}
	if *insecure {
		logger.Warn("authentication is off (--insecure-no-auth)")
	}
	go releaseLoop(ctx, launcher, env.ReleaseInterval, logger)
	return serve(ctx, listenAddr(), api, logger)
}

// releaseLoop releases queued builds while the provisioner runs.
func releaseLoop(ctx context.Context, l *kube.Launcher, interval time.Duration, logger *slog.Logger) {
	if l.Config.MaxRunning <= 0 || interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		released, err := l.ReleaseQueued(ctx)
		if err != nil {
			logger.Warn("release queued builds", "error", err)
		}
		for _, id := range released {
			logger.Info("queued build released", "workerId", id)
		}
	}
}

// apiServer is the HTTP server of the API's handler h, with the bounds of
// WHARFJOBS_HTTP_* (the provisioner's, the aggregator's and dev's alike).
func apiServer(h http.Handler) (*http.Server, error) {
	var cfg provisioner.HTTPConfig
	if err := envconfig.Process("WHARFJOBS", &cfg); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	return cfg.Server(h), nil
}

// serve runs an HTTP server until ctx ends, then shuts it down gracefully.
func serve(ctx context.Context, addr string, h http.Handler, logger *slog.Logger) error {
	srv, err := apiServer(h)
	if err != nil {
		return err
	}
	srv.Addr = addr
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	logger.Info("listening", "addr", addr)
	select {
	case err := <-errc:
		return fmt.Errorf("listen on %s: %w", addr, err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
