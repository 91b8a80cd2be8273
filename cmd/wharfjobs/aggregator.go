package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/backend"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/minio"
	"github.com/wharfjobs/wharfjobs/functions/aggregator"
	"github.com/wharfjobs/wharfjobs/functions/aggregator/wharfapi"
	"github.com/wharfjobs/wharfjobs/functions/provisioner"
	"github.com/wharfjobs/wharfjobs/job/kube"
)

// aggregatorEnv is the aggregator's configuration.
type aggregatorEnv struct {
	Store     blob.Config
	Kube      kube.Config
	Relay     aggregator.Config
	WharfAPI  wharfapi.Config
	HTTP      provisioner.HTTPConfig
	LogFormat string `envconfig:"LOG_FORMAT" default:"json" desc:"format of the process's own log on stderr: json or text"`
}

// Validate refuses an unknown log format.
func (e *aggregatorEnv) Validate() error { return validLogFormat(e.LogFormat) }

func runAggregator(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cl := newFlags("aggregator", "[--once] [--no-kube]", "Relays new log lines, statuses and artifacts of the builds in the store to wharf-api\n(WHARFJOBS_WHARF_API_URL) or stdout; serves /healthz, /readyz and /metrics on $PORT.", stdout, stderr)
	fl := cl.fl
	once := fl.Bool("once", false, "relay everything pending, then exit (for a CronJob or a PingSource)")
	noKube := fl.Bool("no-kube", false, "find builds in the store only (no Kubernetes API)")
	cl.env(&aggregatorEnv{})
	cl.envVar("PORT", defaultPort, "port of /healthz, /readyz and /metrics")
	if _, err := cl.parse(args, 0, 0); err != nil {
		return err
	}
	var env aggregatorEnv
	if err := loadEnv(&env); err != nil {
		return err
	}
	logger := newLogger(env.LogFormat, stderr)
	env.Relay.Logger = logger
	store, err := backend.Open(ctx, env.Store)
	if err != nil {
		return err
	}
	var sink aggregator.Sink = &aggregator.WriterSink{W: stdout}
	if env.WharfAPI.URL != "" {
		ws, err := wharfapi.New(env.WharfAPI)
		if err != nil {
			return err
		}
		defer ws.Close()
		sink = ws
	}
	var jobs aggregator.Jobs
	if !*noKube {
		cs, err := kubeClient()
		if err != nil {
			return fmt.Errorf("%w (or pass --no-kube)", err)
		}
		jobs = &kube.Launcher{Client: cs, Config: env.Kube}
	}
	agg := aggregator.New(store, sink, jobs, env.Relay)
	watchMinIO(agg, store, logger)
	if *once {
		return agg.Once(ctx)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		// The error names the store or the API server, never a secret.
		if err := agg.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("/metrics", agg.MetricsHandler())
	// The server and the relay end together: whichever stops first (the
	// port is taken; the aggregator is idle or fails) stops the other, and
	// both are waited for, so shutdown always runs.
	drainCtx, endDrain := drainOnStop(ctx, agg, logger)
	defer endDrain()
	runCtx, stop := context.WithCancelCause(drainCtx)
	defer stop(nil)
	srvErr := make(chan error, 1)
	go func() {
		err := serve(runCtx, listenAddr(), env.HTTP.Server(mux), logger)
		if err != nil {
			err = fmt.Errorf("serve /healthz, /readyz and /metrics: %w", err)
			stop(err)
		}
		srvErr <- err
	}()
	err = agg.Run(runCtx)
	stop(nil)
	if serr := <-srvErr; serr != nil {
		return serr
	}
	return err
}

// drainOnStop returns a context for the aggregator's run that outlives
// ctx (SIGTERM) by up to timeout: when ctx ends, the aggregator drains,
// relaying what is pending and returning once nothing is, so a scale-in
// (KEDA's cooldown, a rolling update) does not leave a finished build
// without its final status until the next replica starts. Calling the
// returned cancel ends it.
func drainOnStop(ctx context.Context, agg *aggregator.Aggregator, logger *slog.Logger) (context.Context, context.CancelFunc) {
	timeout := agg.DrainTimeout()
	run, cancel := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		select {
		case <-ctx.Done():
		case <-run.Done():
			return
		}
		if timeout <= 0 {
			cancel()
			return
		}
		logger.Info("stopping: relaying the pending builds first", "timeout", timeout)
		agg.Drain()
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-t.C:
			logger.Warn("stopping with builds still pending after WHARFJOBS_DRAIN_TIMEOUT; the next aggregator relays them", "timeout", timeout)
			cancel()
		case <-run.Done():
		}
	}()
	return run, cancel
}

// watchMinIO makes the aggregator react to MinIO's bucket notifications
// when the store is MinIO; other stores are polled only.
func watchMinIO(agg *aggregator.Aggregator, store blob.Store, logger *slog.Logger) {
	ms, ok := store.(*minio.Store)
	if !ok {
		return
	}
	agg.WatchChanges(func(ctx context.Context) <-chan string {
		return ms.Watch(ctx, build.Root, func(err error) {
			logger.Warn("bucket notifications failed: polling every build until they deliver again", "error", err)
			agg.ChangeStreamFailed(err)
		})
	})
}
