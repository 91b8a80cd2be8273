package worker_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/job"
	"github.com/wharfjobs/wharfjobs/job/worker"
	"github.com/wharfjobs/wharfjobs/job/worker/localrun"
)

// junitSample is what pytest --junitxml writes for two passed tests, a
// failure and a skip.
const junitSample = `<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" failures="1" skipped="1" tests="4" time="0.05" timestamp="2026-12-01T10:00:00.000000" hostname="ci"><testcase classname="tests.test_app" name="test_ok" time="0.001" /><testcase classname="tests.test_app" name="test_ok_too" time="0.001" /><testcase classname="tests.test_app" name="test_bad" time="0.002"><failure message="assert 1 == 2">def test_bad():
&gt;       assert 1 == 2
E       assert 1 == 2</failure></testcase><testcase classname="tests.test_app" name="test_later" time="0.000"><skipped type="pytest.skip" message="not yet">tests/test_app.py:9: not yet</skipped></testcase></testsuite></testsuites>
`

// runFiles runs the pipeline of files (a checkout, not cloned) with the
// local runner against the real MinIO and returns the final status and
// the log text.
func runFiles(t *testing.T, s blob.Store, ref string, files map[string]string, cfg func(*worker.Config)) (int, build.Status, string) {
	t.Helper()
	return runFilesAs(t, s, ref, "7", files, cfg)
}

// runFilesAs is runFiles for a build of project.
func runFilesAs(t testing.TB, s blob.Store, ref, project string, files map[string]string, cfg func(*worker.Config)) (int, build.Status, string) {
	t.Helper()
	return runFilesWith(t, s, ref, project, files, cfg, localrun.Runner{})
}

// runFilesWith is runFilesAs with runner.
func runFilesWith(t testing.TB, s blob.Store, ref, project string, files map[string]string, cfg func(*worker.Config), runner worker.StepRunner) (int, build.Status, string) {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c := testConfig(t)
	c.Workdir, c.SkipClone = dir, true
	if cfg != nil {
		cfg(&c)
	}
	req := job.Request{BuildRef: ref, ProjectID: project}
	if _, err := build.WriteStatus(ctx, s, req.Ref(), build.Status{Status: build.Scheduling}, ""); err != nil {
		t.Fatal(err)
	}
	code, st := worker.Run(ctx, s, req, runner, c)
	rc, err := build.OpenLog(ctx, s, req.Ref())
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var text strings.Builder
	if err := build.ScanRecords(rc, func(r build.Record) error {
		text.WriteString("[" + r.Source() + "] " + r.Text + "\n")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return code, st, text.String()
}

func object(t *testing.T, s blob.Store, key string) string {
	t.Helper()
	rc, _, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return string(b)
}

func stepOf(st build.Status, stage, step string) build.StepStatus {
	for _, s := range st.Steps {
		if s.Stage == stage && s.Step == step {
			return s
		}
	}
	return build.StepStatus{}
}

// The workspace model and the declared files, as issue #15 states them:
// each step starts from the checkout plus the artifacts of earlier stages;
// parallel steps never see each other's files, also when both write the
// same name; test results are kept as TRX with their counts. The same in
// every runner: processes, and containers on Docker and on Podman.
func TestArtifactsReachLaterStagesOnly(t *testing.T) {
	s := newMinIO(t)
	for _, rn := range []string{"local", "docker", "podman"} {
		t.Run(rn, func(t *testing.T) { artifactsReachLaterStagesOnly(t, s, "files-1-"+rn, exampleRunner(t, rn)) })
	}
}

func artifactsReachLaterStagesOnly(t *testing.T, s blob.Store, ref string, runner worker.StepRunner) {
	pipe := `build:
  compile:
    container:
      image: alpine
      cmds:
        - mkdir -p out/bin && printf app-binary > out/bin/app.bin
        - echo compile > shared.txt
        - 'true > out/empty.log'
        - sleep 0.3
        - test ! -e other.txt && echo "compile does not see other.txt"
      artifacts: ["out/**", shared.txt]
  other:
    container:
      image: alpine
      cmds:
        - echo other > shared.txt
        - echo x > other.txt
        - sleep 0.3
        - test ! -e out/bin/app.bin && echo "other does not see out/"
        - test "$(cat shared.txt)" = other && echo "other sees its own shared.txt"
      artifacts: [shared.txt]
test:
  unit:
    container:
      image: alpine
      cmds:
        - 'echo "restored $(cat out/bin/app.bin) and shared.txt=$(cat shared.txt)"'
        - test -e other.txt || echo "unit does not see other.txt (not declared)"
        - mkdir -p results && cp fixtures/pytest.xml results/ && cp fixtures/report.trx results/
      testResults: ["results/*.xml", "results/*.trx"]
      artifacts: {paths: ["missing/*"], ifNoFilesFound: warn}
`
	code, st, log := runFilesWith(t, s, ref, "7", map[string]string{".wharf-ci.yml": pipe, "fixtures/pytest.xml": junitSample, "fixtures/report.trx": trxSample}, nil, runner)
	if code != worker.ExitCompleted {
		t.Fatalf("build ended %d %+v\n%s", code, st, log)
	}
	for _, want := range []string{
		"compile does not see other.txt", "other does not see out/", "other sees its own shared.txt",
		// Stages restore in step order: other's shared.txt comes last.
		"restored app-binary and shared.txt=other", "unit does not see other.txt (not declared)",
		`warning: artifacts: no file matches "missing/*"`,
		"kept 3 artifact(s)", "test result results/pytest.xml: 2 passed, 1 failed, 1 skipped",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	arts := build.ArtifactPrefix(ref)
	for key, want := range map[string]string{
		arts + "build/compile/out/bin/app.bin": "app-binary", arts + "build/compile/shared.txt": "compile\n",
		arts + "build/other/shared.txt": "other\n", arts + "build/compile/out/empty.log": "",
	} {
		if got := object(t, s, key); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	trx := object(t, s, build.TestResultPrefix(ref)+"test/unit/results/pytest.xml.trx")
	if !strings.Contains(trx, "<TestRun") || !strings.Contains(trx, "assert 1 == 2") {
		t.Errorf("JUnit kept as %q, want TRX with the failure", trx)
	}
	if got := object(t, s, build.TestResultPrefix(ref)+"test/unit/results/report.trx"); got != trxSample {
		t.Errorf("TRX changed on the way: %q", got)
	}
	unit := stepOf(st, "test", "unit")
	if unit.Tests == nil || *unit.Tests != (build.TestCounts{Total: 7, Passed: 4, Failed: 2, Skipped: 1}) {
		t.Errorf("unit's test counts %+v", unit.Tests)
	}
	if c := stepOf(st, "build", "compile"); c.Artifacts != 3 || c.ArtifactBytes != int64(len("app-binary")+len("compile\n")) {
		t.Errorf("compile kept %d artifacts, %d bytes", c.Artifacts, c.ArtifactBytes)
	}
	// The steps' archives are gone once the build ended.
	if left, _ := s.List(context.Background(), blob.ListOptions{Prefix: build.Dir(ref) + "steps/"}); len(left) != 0 {
		t.Errorf("staging archives left: %v", left)
	}
}

// trxSample is a small `dotnet test --logger trx` result: 2 passed, 1
// failed.
const trxSample = `<?xml version="1.0" encoding="utf-8"?>
<TestRun id="2c6f0f6e-1d2b-4c1e-9c41-3d8b4b1d9a10" name="ci@runner 2026-12-01 10:00:00" xmlns="http://microsoft.com/schemas/VisualStudio/TeamTest/2010">
  <Times creation="2026-12-01T10:00:00.0000000+00:00" queuing="2026-12-01T10:00:00.0000000+00:00" start="2026-12-01T10:00:00.0000000+00:00" finish="2026-12-01T10:00:01.0000000+00:00" />
  <Results>
    <UnitTestResult executionId="a1" testId="b1" testName="App.Tests.Adds" computerName="runner" duration="00:00:00.0010000" startTime="2026-12-01T10:00:00.1000000+00:00" endTime="2026-12-01T10:00:00.1010000+00:00" testType="13cdc9d9-ddb5-4fa4-a97d-d965ccfc6d4b" outcome="Passed" testListId="8c84fa94-04c1-424b-9868-57a2d4851a1d" relativeResultsDirectory="a1" />
    <UnitTestResult executionId="a2" testId="b2" testName="App.Tests.Subtracts" computerName="runner" duration="00:00:00.0010000" startTime="2026-12-01T10:00:00.2000000+00:00" endTime="2026-12-01T10:00:00.2010000+00:00" testType="13cdc9d9-ddb5-4fa4-a97d-d965ccfc6d4b" outcome="Passed" testListId="8c84fa94-04c1-424b-9868-57a2d4851a1d" relativeResultsDirectory="a2" />
    <UnitTestResult executionId="a3" testId="b3" testName="App.Tests.Divides" computerName="runner" duration="00:00:00.0020000" startTime="2026-12-01T10:00:00.3000000+00:00" endTime="2026-12-01T10:00:00.3020000+00:00" testType="13cdc9d9-ddb5-4fa4-a97d-d965ccfc6d4b" outcome="Failed" testListId="8c84fa94-04c1-424b-9868-57a2d4851a1d" relativeResultsDirectory="a3">
      <Output><ErrorInfo><Message>Assert.Equal() Failure: Expected 2, Actual 3</Message><StackTrace>at App.Tests.Divides() in /src/Tests.cs:line 20</StackTrace></ErrorInfo></Output>
    </UnitTestResult>
  </Results>
  <TestDefinitions>
    <UnitTest name="App.Tests.Adds" storage="/src/bin/app.tests.dll" id="b1"><Execution id="a1" /><TestMethod codeBase="/src/bin/app.tests.dll" adapterTypeName="executor://xunit/VsTestRunner2/netcoreapp" className="App.Tests" name="Adds" /></UnitTest>
    <UnitTest name="App.Tests.Subtracts" storage="/src/bin/app.tests.dll" id="b2"><Execution id="a2" /><TestMethod codeBase="/src/bin/app.tests.dll" adapterTypeName="executor://xunit/VsTestRunner2/netcoreapp" className="App.Tests" name="Subtracts" /></UnitTest>
    <UnitTest name="App.Tests.Divides" storage="/src/bin/app.tests.dll" id="b3"><Execution id="a3" /><TestMethod codeBase="/src/bin/app.tests.dll" adapterTypeName="executor://xunit/VsTestRunner2/netcoreapp" className="App.Tests" name="Divides" /></UnitTest>
  </TestDefinitions>
  <ResultSummary outcome="Failed">
    <Counters total="3" executed="3" passed="2" failed="1" error="0" timeout="0" aborted="0" inconclusive="0" passedButRunAborted="0" notRunnable="0" notExecuted="0" disconnected="0" warning="0" completed="0" inProgress="0" pending="0" />
  </ResultSummary>
</TestRun>
`

// Bad input from a pipeline: each case fails the step with a reason that
// names the problem, or warns and goes on, as documented.
func TestDeclaredFilesBadInput(t *testing.T) {
	s := newMinIO(t)
	for _, tc := range []struct {
		name, cmds, decl string
		ok               bool
		want             string
	}{
		{"symlink out of the workspace", `ln -s /etc/passwd passwd`, `artifacts: [passwd]`, false, "passwd"},
		{"file over the limit", `head -c 2048 /dev/zero > big.bin`, `artifacts: [big.bin]`, false, "big.bin"},
		{"no match is an error when asked", `true`, `artifacts: {paths: [dist/*], ifNoFilesFound: error}`, false, `no file matches "dist/*"`},
		{"non-XML test result", `echo 'not xml' > r.xml`, `testResults: [r.xml]`, true, "test result r.xml not kept"},
		{"JUnit with no test cases", `echo '<testsuites><testsuite name="empty" tests="0"/></testsuites>' > r.xml`, `testResults: [r.xml]`, true, "test result r.xml not kept"},
		{"too many files", `mkdir d; for i in 1 2 3 4; do echo $i > d/$i; done`, `artifacts: [d]`, false, "WHARFJOBS_ARTIFACT_MAX_FILES=3"},
		{"0-byte file", `true > empty.bin`, `artifacts: [empty.bin]`, true, "kept 1 artifact(s), 0 B"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := "bad-" + strings.ReplaceAll(tc.name, " ", "-")
			pipe := "s:\n  x:\n    container:\n      image: alpine\n      cmds: [" + quoteYAML(tc.cmds) + "]\n      " + tc.decl + "\n"
			code, st, log := runFiles(t, s, ref, map[string]string{".wharf-ci.yml": pipe}, func(c *worker.Config) {
				c.Files.ArtifactMaxFileSize, c.Files.ArtifactMaxFiles = 1024, 3
			})
			if tc.ok != (code == worker.ExitCompleted) {
				t.Fatalf("exit %d, status %+v, want ok=%v\n%s", code, st, tc.ok, log)
			}
			x := stepOf(st, "s", "x")
			if !tc.ok && (!build.ReasonOutputsFailed.Of(x.Reason) || !strings.Contains(x.Reason, tc.want)) {
				t.Errorf("step reason %q, want OutputsFailed naming %q", x.Reason, tc.want)
			}
			if !strings.Contains(log, tc.want) {
				t.Errorf("log lacks %q:\n%s", tc.want, log)
			}
		})
	}
}

func quoteYAML(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// A cache saved by one build is restored into the next build of the same
// project, and never into another project's.
func TestCacheAcrossBuilds(t *testing.T) {
	s := newMinIO(t)
	pipe := `s:
  x:
    container:
      image: alpine
      cmds:
        - 'if [ -e deps/lib.txt ]; then echo "warm: $(cat deps/lib.txt)"; else echo cold; mkdir -p deps; echo downloaded > deps/lib.txt; fi'
      cache: {key: deps, files: [lock.txt], paths: [deps]}
`
	files := map[string]string{".wharf-ci.yml": pipe, "lock.txt": "v1\n"}
	_, _, first := runFiles(t, s, "cache-1", files, nil)
	_, _, second := runFiles(t, s, "cache-2", files, nil)
	if !strings.Contains(first, "] cold") || !strings.Contains(first, "none saved yet") || !strings.Contains(first, "saved") {
		t.Fatalf("first build:\n%s", first)
	}
	if !strings.Contains(second, "warm: downloaded") || !strings.Contains(second, "restored cache deps-") {
		t.Fatalf("second build did not restore the cache:\n%s", second)
	}
	files["lock.txt"] = "v2\n"
	if _, _, third := runFiles(t, s, "cache-3", files, nil); !strings.Contains(third, "] cold") {
		t.Fatalf("a changed lock file still restored the old cache:\n%s", third)
	}
	// Another project, same key: its own cache, none yet.
	ctx := context.Background()
	keys, _ := s.List(ctx, blob.ListOptions{Prefix: build.CacheRoot})
	for _, k := range keys {
		if !strings.HasPrefix(k.Key, "cache/_/7/deps-") {
			t.Errorf("cache stored at %s, want below cache/_/7/", k.Key)
		}
	}
}
