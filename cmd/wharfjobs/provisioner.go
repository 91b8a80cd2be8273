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

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/backend"
	"github.com/wharfjobs/wharfjobs/functions/provisioner"
	"github.com/wharfjobs/wharfjobs/internal/settings"
	"github.com/wharfjobs/wharfjobs/job/kube"
)

// provisionerEnv is the provisioner's configuration.
type provisionerEnv struct {
	Store blob.Config
	Kube  kube.Config
	API   provisioner.Config
	HTTP  provisioner.HTTPConfig
	// ReleaseInterval is how often queued builds are checked for release
	// (with WHARFJOBS_MAX_RUNNING_BUILDS).
	ReleaseInterval time.Duration `envconfig:"QUEUE_RELEASE_INTERVAL" default:"10s" desc:"how often builds queued by WHARFJOBS_MAX_RUNNING_BUILDS are checked for release"`
	LogFormat       string        `envconfig:"LOG_FORMAT" default:"json" desc:"format of the process's own log on stderr: json or text"`
}

// Validate refuses a negative release interval or an unknown log format.
func (e *provisionerEnv) Validate() error {
	if err := settings.NonNegative(e); err != nil {
		return err
	}
	return validLogFormat(e.LogFormat)
}

// defaultPort is the port without $PORT.
const defaultPort = "8080"

// listenPort is $PORT (the Knative contract), default 8080: the one place
// it is read, for the provisioner, the aggregator and dev.
func listenPort() string {
	if port := os.Getenv("PORT"); port != "" {
		return port
	}
	return defaultPort
}

// listenAddr is every interface on listenPort.
func listenAddr() string { return net.JoinHostPort("", listenPort()) }

func runProvisioner(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cl := newFlags("provisioner", "[--insecure-no-auth]", "Serves the trigger API wharf-api calls (POST /api/worker) on $PORT and creates one\nKubernetes Job per build.", stdout, stderr)
	fl := cl.fl
	insecure := fl.Bool("insecure-no-auth", false, "accept requests without a token (never in production)")
	cl.env(&provisionerEnv{})
	cl.envVar("PORT", defaultPort, "port the API listens on (the Knative contract)")
	if _, err := cl.parse(args, 0, 0); err != nil {
		return err
	}
	var env provisionerEnv
	if err := loadEnv(&env); err != nil {
		return err
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
	go releaseLoop(ctx, launcher.Config.MaxRunning > 0 || launcher.Config.KueueQueue != "", api.Queue(), env.ReleaseInterval, logger)
	return serve(ctx, listenAddr(), env.HTTP.Server(api), logger)
}

// releaseLoop releases queued builds while the provisioner runs, and
// keeps their logs telling where they stand.
func releaseLoop(ctx context.Context, queues bool, q *provisioner.Queue, interval time.Duration, logger *slog.Logger) {
	if !queues || q == nil || interval <= 0 {
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
		if err := q.Pass(ctx); err != nil {
			logger.Warn("release queued builds", "error", err)
		}
	}
}

// serve runs srv (its bounds from WHARFJOBS_HTTP_*, provisioner.HTTPConfig)
// on addr until ctx ends, then shuts it down gracefully.
func serve(ctx context.Context, addr string, srv *http.Server, logger *slog.Logger) error {
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
