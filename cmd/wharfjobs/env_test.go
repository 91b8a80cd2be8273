package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/functions/aggregator"
	"github.com/wharfjobs/wharfjobs/functions/aggregator/wharfapi"
	"github.com/wharfjobs/wharfjobs/functions/provisioner"
	"github.com/wharfjobs/wharfjobs/job/worker"
	"github.com/wharfjobs/wharfjobs/job/worker/kuberun"
)

// commandEnv is what each command reads from the environment: the
// configuration structs its --help must list.
func commandEnv() map[string][]any {
	store := []any{&blob.Config{}}
	return map[string][]any{
		"worker":          {&workerEnv{}, &kuberun.Config{}},
		"provisioner":     {&provisionerEnv{}},
		"aggregator":      {&aggregatorEnv{}},
		"dev":             {&blob.Config{}, &aggregator.Config{}, &wharfapi.Config{}, &provisioner.Config{}, &provisioner.HTTPConfig{}},
		"run":             {&runEnv{}},
		"check":           {&worker.Config{}, &kuberun.Config{}},
		"logs":            store,
		"status":          store,
		"artifacts":       store,
		"store-setup":     store,
		"workspace-fetch": nil,
		"step-exec":       nil,
		"version":         nil,
		"completion":      nil,
	}
}

// helpRows parses the Environment table of a command's --help: variable
// to default.
func helpRows(t *testing.T, help string) map[string]string {
	t.Helper()
	rows := map[string]string{}
	_, table, ok := strings.Cut(help, "\nEnvironment:\n")
	if !ok {
		return rows
	}
	lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
	if f := strings.Fields(lines[0]); len(f) != 3 || f[0] != "VARIABLE" || f[1] != "DEFAULT" || f[2] != "MEANING" {
		t.Fatalf("the table's header is %q, want VARIABLE DEFAULT MEANING", lines[0])
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) < 3 {
			t.Errorf("table row without a meaning: %q", l)
			continue
		}
		rows[f[0]] = f[1]
	}
	return rows
}

// TestHelpListsTheSettings: each command's --help lists every variable
// of the structs it reads, with its default, in a VARIABLE DEFAULT
// MEANING table on stdout.
func TestHelpListsTheSettings(t *testing.T) {
	want := commandEnv()
	for name := range commands() {
		roots, ok := want[name]
		if !ok {
			t.Errorf("commandEnv does not say what %s reads", name)
		}
		if name == "version" {
			continue // no flags, no settings, no --help
		}
		code, out, _ := runCLI(t, name, "--help")
		if code != 0 {
			t.Errorf("%s --help: exit %d", name, code)
			continue
		}
		rows := helpRows(t, out)
		for _, r := range roots {
			for _, v := range envVars(r) {
				def := v.Default
				if def == "" {
					def = "-"
				}
				if got, ok := rows[v.Name]; !ok || got != def {
					t.Errorf("%s --help: %s is listed %v with default %q, want default %q", name, v.Name, ok, got, def)
				}
			}
		}
	}
	_, out, _ := runCLI(t, "worker", "--help")
	if rows := helpRows(t, out); rows["WHARFJOBS_STEP_TIMEOUT"] != "1h" || rows["WHARFJOBS_STORE"] != "fs" || rows["WHARFJOBS_STEP_RUN_AS_USER"] != "65532" {
		t.Errorf("worker --help:\n%s", out)
	}
	_, out, _ = runCLI(t, "provisioner", "--help")
	if rows := helpRows(t, out); rows["PORT"] != "8080" || rows["WHARFJOBS_NAMESPACE"] != "wharfjobs" {
		t.Errorf("provisioner --help:\n%s", out)
	}
}

// TestEverySettingHasADescription: no field of a configuration struct a
// command reads lacks its desc tag, the MEANING of --help.
func TestEverySettingHasADescription(t *testing.T) {
	seen := map[string]bool{}
	for _, roots := range commandEnv() {
		for _, r := range roots {
			for _, v := range envVars(r) {
				if seen[v.Field] {
					continue
				}
				seen[v.Field] = true
				if v.Desc == "" {
					t.Errorf("%s (%s) has no desc tag", v.Field, v.Name)
				}
			}
		}
	}
	if len(seen) < 100 {
		t.Fatalf("found only %d settings: the walk is broken", len(seen))
	}
}

// TestEnvPartsAreTheNestedStructs: loadEnv reads worker.Config's nested
// structs on their own, as the variables are spelled.
func TestEnvPartsAreTheNestedStructs(t *testing.T) {
	var env workerEnv
	parts := envParts(&env)
	want := []any{&env, &env.Store, &env.Worker, &env.Worker.Images, &env.Worker.Log, &env.Worker.Files}
	if !reflect.DeepEqual(parts, want) || parts[4] != any(&env.Worker.Log) {
		t.Fatalf("envParts = %v", parts)
	}
}

// TestNonsenseSettingsAreRefused: a negative duration, size or limit
// stops the command before it does anything, with an error that names the
// variable and what it expects.
func TestNonsenseSettingsAreRefused(t *testing.T) {
	for _, tc := range []struct {
		env, value string
		args       []string
		want       string
	}{
		{"WHARFJOBS_STEP_TIMEOUT", "-1s", []string{"worker", "--ref", "1"}, "WHARFJOBS_STEP_TIMEOUT=-1s: expected a duration of 0 or more"},
		{"WHARFJOBS_STEP_RUNNER", "podman", []string{"worker", "--ref", "1"}, `WHARFJOBS_STEP_RUNNER="podman": expected kube, docker or local`},
		{"WHARFJOBS_LOG_CHUNK_SIZE", "-5", []string{"run", t.TempDir()}, "WHARFJOBS_LOG_CHUNK_SIZE=-5: expected a number of 0 or more (default 262144)"},
		{"WHARFJOBS_MAX_RUNNING_BUILDS", "-1", []string{"provisioner"}, "WHARFJOBS_MAX_RUNNING_BUILDS=-1: expected 0 (no cap) or more"},
		{"WHARFJOBS_HTTP_READ_TIMEOUT", "-1s", []string{"aggregator", "--once", "--no-kube"}, "WHARFJOBS_HTTP_READ_TIMEOUT=-1s"},
		{"WHARFJOBS_TRIGGER_STORE_TIMEOUT", "-1s", []string{"dev", "--state", t.TempDir()}, "WHARFJOBS_TRIGGER_STORE_TIMEOUT=-1s"},
		{"WHARFJOBS_STORE", "ftp", []string{"status", "--fs-root", t.TempDir()}, `WHARFJOBS_STORE="ftp": expected fs, minio or s3`},
		{"WHARFJOBS_STEP_PENDING_TIMEOUT", "-1m", []string{"check", t.TempDir()}, "WHARFJOBS_STEP_PENDING_TIMEOUT=-1m0s"},
	} {
		t.Run(tc.env, func(t *testing.T) {
			t.Setenv("WHARFJOBS_TOKEN", "t")
			t.Setenv("WHARFJOBS_STORE_FS_ROOT", t.TempDir())
			t.Setenv(tc.env, tc.value)
			code, _, errOut := runCLI(t, tc.args...)
			if code != 1 || !strings.Contains(errOut, tc.want) {
				t.Errorf("%s=%s %v: exit %d, stderr %q; want 1 and %q", tc.env, tc.value, tc.args, code, errOut, tc.want)
			}
		})
	}
}

// TestStoreEnvRoundTrips: the store environment dev gives its workers
// reads back as the store dev resolved, every field.
func TestStoreEnvRoundTrips(t *testing.T) {
	cfg := blob.Config{Backend: blob.BackendMinIO, Endpoint: "minio:9000", Bucket: "b", Region: "r", AccessKey: "a", SecretKey: "s",
		TLS: true, PathStyle: false, CreateBucket: false, Timeout: 42e9, UnsignedPayload: true, FSRoot: "rel/store"}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "WHARFJOBS_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	for _, kv := range storeEnv(cfg) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	var got blob.Config
	if err := loadEnv(&got); err != nil {
		t.Fatal(err)
	}
	cfg.FSRoot, _ = filepath.Abs(cfg.FSRoot)
	if got != cfg {
		t.Fatalf("read back %+v, want %+v", got, cfg)
	}
}
