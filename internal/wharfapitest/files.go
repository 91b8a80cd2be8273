package wharfapitest

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

// filesPipeline is the build that every runner's end-to-end test runs to
// show artifacts and test results in wharf-api: two parallel steps write
// artifacts (each a shared.txt of its own: wait fails if it sees the one
// lines wrote two seconds before), a later stage uses one of them and
// keeps a TRX and a JUnit test result. IMAGE is the step image.
const filesPipeline = `build:
  wait:
    container:
      image: IMAGE
      cmds: ["echo starting", "sleep 2", "test ! -e shared.txt || exit 1", "mkdir -p out", "printf app-binary > out/app.bin", "true > out/empty.log", "echo wait > shared.txt"]
      artifacts: [out/app.bin, out/empty.log, shared.txt]
  lines:
    container:
      image: IMAGE
      cmds: ["for i in $(seq 1 2000); do echo line $i; done", "echo lines > shared.txt"]
      artifacts: [shared.txt]
test:
  unit:
    container:
      image: IMAGE
      cmds: ['test "$(cat out/app.bin)" = app-binary || exit 1', "mkdir -p results", "cp fixtures/* results/"]
      testResults: ["results/*"]
`

// testResultFixtures are real-shaped results of dotnet test and pytest,
// from job/testresult's samples, and what they hold, counted in the files:
// dotnet-test.trx 2 passed, 1 failed, 1 skipped; pytest.xml 3 passed, 1
// failed, 1 error (wharf-api has no "error": failed), 1 skipped.
var (
	testResultFixtures = []string{"dotnet-test.trx", "pytest.xml"}
	fixtureCounts      = TestSummary{Total: 10, Passed: 5, Failed: 3, Skipped: 2}
)

// FilesRepo returns the files of the repository whose .wharf-ci.yml is the
// files pipeline with its steps in image, and the test counts wharf-api
// must show for one of its builds.
func FilesRepo(image string) (map[string]string, TestSummary, error) {
	files := map[string]string{".wharf-ci.yml": strings.ReplaceAll(filesPipeline, "IMAGE", image)}
	root, err := testenv.ModuleRoot()
	if err != nil {
		return nil, TestSummary{}, err
	}
	for _, f := range testResultFixtures {
		b, err := os.ReadFile(filepath.Join(root, "job", "testresult", "testdata", f))
		if err != nil {
			return nil, TestSummary{}, err
		}
		files["fixtures/"+f] = string(b)
	}
	return files, fixtureCounts, nil
}

// CheckFiles checks what wharf-api shows of a build of the files
// pipeline: four artifacts (one of 0 bytes), each once and with its bytes, named with the
// path kept ('∕' for '/'), the two test results (wharf-api lists them
// among the artifacts too: it stores every file it is sent as one), and
// the summed test counts.
func (c *Client) CheckFiles(id string, want TestSummary) error {
	arts, err := c.Artifacts(id)
	if err != nil {
		return err
	}
	var errs []error
	got := map[string]string{}
	for name, b := range arts {
		got[name] = string(b)
	}
	for _, name := range []string{"test∕unit∕results∕dotnet-test.trx", "test∕unit∕results∕pytest.xml.trx"} {
		if !IsTRX(arts[name]) {
			errs = append(errs, fmt.Errorf("build %s: wharf-api has no TRX %s", id, name))
		}
		delete(got, name)
	}
	wantArts := map[string]string{"build∕wait∕out∕app.bin": "app-binary", "build∕wait∕out∕empty.log": "", "build∕wait∕shared.txt": "wait\n", "build∕lines∕shared.txt": "lines\n"}
	if !maps.Equal(got, wantArts) {
		errs = append(errs, fmt.Errorf("build %s: wharf-api's artifacts %q (%q), want %q", id, slices.Sorted(maps.Keys(got)), got, wantArts))
	}
	sum, err := c.TestSummary(id)
	if err != nil {
		return err
	}
	if sum.Passed != want.Passed || sum.Failed != want.Failed || sum.Skipped != want.Skipped || sum.Passed == 0 || sum.Failed == 0 {
		errs = append(errs, fmt.Errorf("build %s: wharf-api's test summary %+v, want %+v", id, sum, want))
	}
	return errors.Join(errs...)
}
