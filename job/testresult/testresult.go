// Package testresult turns the test result files pipelines write into the
// one format wharf-api v5.2.0 parses: TRX (Visual Studio test results XML).
//
// wharf-api's POST /api/build/{id}/test-result/ (multipart field "files";
// the trailing slash matters) only unmarshals a <TestRun>. It stores each
// file as an artifact before parsing it, so anything else stays stored and
// is then answered with 400. Converting here, before the upload, is what
// lets JUnit XML (go-junit-report, gotestsum, pytest, Maven Surefire, ...)
// reach wharf-api's test summaries at all.
//
// What wharf-api v5.2.0 makes of a TRX (pinned by TestWharfAPIParser), and
// so what this package makes sure of:
//   - The counts (summary, list-summary) come only from
//     ResultSummary/Counters, attributes total, passed, failed and
//     notExecuted (shown as skipped); list-summary's total is
//     passed+failed+skipped. Every other counter (error, timeout, ...) is
//     ignored, so a JUnit <error> is counted as failed. A TRX without
//     Counters is accepted with zero counts.
//   - Every Counters attribute must be an unsigned integer, or the whole
//     file is rejected (400, the artifact already stored).
//   - Each Results/UnitTestResult becomes a detail: testName; outcome,
//     exactly Passed, Failed or NotExecuted (any other outcome is stored
//     with an empty status); startTime and endTime, RFC 3339 (others are
//     logged and left empty); and, for every test that did not pass, the
//     raw inner XML of Output/ErrorInfo/Message and StackTrace joined by
//     a newline: entities are not decoded, so the converter escapes only
//     what XML requires (& and < arrive as &amp; and &lt;).
//   - A TRX without any result is accepted (200) with zero counts and no
//     details. ToTRX returns ErrNoTests for it all the same, so that a
//     caller can warn about a test step that ran nothing.
//   - The deprecated GET /api/build/{id}/tests-results counts only files
//     whose name ends in .trx: upload converted files under such a name.
package testresult

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Counts of one test result file.
type Counts struct {
	Total   int `json:"total"`
	Passed  int `json:"passed"`
	Failed  int `json:"failed"`
	Skipped int `json:"skipped"` // TRX notExecuted, JUnit skipped
}

// Format is the kind of a test result file.
type Format string

// The formats ToTRX reads. The empty Format means "detect from the root
// element".
const (
	TRX   Format = "trx"
	JUnit Format = "junit"
)

// The errors ToTRX and Detect wrap, so that callers can tell a file that
// is not a test result (ErrNotXML, ErrUnknownFormat) from a test run that
// ran nothing (ErrNoTests), which a pipeline may want to warn about
// instead of failing on.
var (
	// ErrNotXML: the file is not well-formed XML (or not XML wharf-api's
	// encoding/xml can read, such as a non-UTF-8 encoding).
	ErrNotXML = errors.New("not well-formed XML")
	// ErrUnknownFormat: well-formed XML, but its root is neither a TRX
	// <TestRun> nor a JUnit <testsuites> or <testsuite>, or not the
	// format the caller asked for.
	ErrUnknownFormat = errors.New("unknown test result format")
	// ErrNoTests: a JUnit file without a single <testcase>, or a TRX
	// without a <UnitTestResult> whose Counters (if any) count none.
	ErrNoTests = errors.New("no tests")
)

// ParseFormat reads a format name as a pipeline or the configuration
// spells it: "trx", "junit" or "" (detect), case-insensitively and ignoring
// surrounding blanks. The error names what was expected.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(strings.TrimSpace(s))); f {
	case "", TRX, JUnit:
		return f, nil
	}
	return "", fmt.Errorf(`testresult: unknown test result format %q: want "trx", "junit" or "" (detect from the file)`, s)
}

// Detect tells a file's format from its root element: <TestRun> (in any
// namespace, as wharf-api accepts it) is TRX, <testsuites> or <testsuite>
// is JUnit. Only the XML up to the root's start tag is read, so a
// well-formed start is enough for an answer; ToTRX checks the rest.
func Detect(data []byte) (Format, error) {
	_, root, err := openRoot(data)
	if err != nil {
		return "", err
	}
	return formatOf(root.Name.Local)
}

// Options tune the conversion. The zero Options is what ToTRX uses.
type Options struct {
	// Start is when the tests began, used for the test times of a JUnit
	// file that carries no timestamp (Maven Surefire writes none): a
	// worker passes the start of the step that ran the tests. Zero means
	// the Unix epoch, so that the output depends on the input alone.
	Start time.Time
}

// ToTRX returns data as TRX that wharf-api v5.2.0 accepts, and its counts.
// format "" detects it from the root element. It is ToTRX of the zero
// Options.
//
// TRX input is checked as wharf-api will parse it and returned unchanged
// (the same slice); its counts are those of ResultSummary/Counters (what
// wharf-api stores) or, when the file has no Counters, counted from its
// results (wharf-api would then store zeros: see the package comment).
//
// JUnit input is converted: one UnitTestResult per <testcase>, named
// "classname.name" as TRX names tests; <failure> and <error> are Failed
// with their message and text as ErrorInfo Message and StackTrace,
// <skipped> is NotExecuted with its reason as Message, system-out and
// system-err become StdOut and StdErr. The output is deterministic: ids
// are derived from the input and times from its timestamps.
func ToTRX(data []byte, format Format) ([]byte, Counts, error) {
	return Options{}.ToTRX(data, format)
}

// ToTRX is the package's ToTRX with these options.
func (o Options) ToTRX(data []byte, format Format) ([]byte, Counts, error) {
	switch format {
	case "", TRX, JUnit:
	default:
		return nil, Counts{}, fmt.Errorf(`testresult: unknown test result format %q: want "trx", "junit" or "" (detect from the file)`, string(format))
	}
	dec, root, err := openRoot(data)
	if err != nil {
		return nil, Counts{}, err
	}
	found, err := formatOf(root.Name.Local)
	if err != nil {
		return nil, Counts{}, err
	}
	if format != "" && found != format {
		return nil, Counts{}, fmt.Errorf("testresult: %w: expected %s, but the root element is <%s> (%s)",
			ErrUnknownFormat, describeFormat(format), root.Name.Local, describeFormat(found))
	}
	if found == TRX {
		counts, err := checkTRX(dec, root)
		if err != nil {
			return nil, Counts{}, err
		}
		return data, counts, nil
	}
	suites, err := readJUnit(dec, root)
	if err != nil {
		return nil, Counts{}, err
	}
	start := o.Start
	if start.IsZero() {
		start = time.Unix(0, 0).UTC()
	}
	return convertJUnit(suites, data, start)
}

func formatOf(root string) (Format, error) {
	switch root {
	case "TestRun":
		return TRX, nil
	case "testsuites", "testsuite":
		return JUnit, nil
	}
	return "", fmt.Errorf("testresult: %w: the root element <%s> is neither a TRX <TestRun> nor a JUnit <testsuites> or <testsuite>",
		ErrUnknownFormat, root)
}

func describeFormat(f Format) string {
	if f == TRX {
		return "a TRX <TestRun>"
	}
	return "a JUnit <testsuites> or <testsuite>"
}
