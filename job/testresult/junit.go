package testresult

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// junitNode is any element of a JUnit file, read generically so that
// document order survives: suites nest (Ant, Karma, some JavaScript
// reporters) and may be mixed with test cases and output, and typed slices
// per element name would separate them. Only what the TRX needs is read;
// the suites' own tests/failures attributes are not, because the test
// cases are the truth and some tools miscount (gotestsum reports tests="0"
// beside a failed TestMain).
type junitNode struct {
	XMLName   xml.Name
	Name      string      `xml:"name,attr"`
	Classname string      `xml:"classname,attr"`
	Time      string      `xml:"time,attr"`
	Timestamp string      `xml:"timestamp,attr"`
	Hostname  string      `xml:"hostname,attr"`
	File      string      `xml:"file,attr"`
	Message   string      `xml:"message,attr"`
	Type      string      `xml:"type,attr"`
	Text      string      `xml:",chardata"`
	Children  []junitNode `xml:",any"`
}

// readJUnit decodes a JUnit file from its root element.
func readJUnit(dec *xml.Decoder, root xml.StartElement) (junitNode, error) {
	var n junitNode
	if err := dec.DecodeElement(&n, &root); err != nil {
		return junitNode{}, readError(dec, err, false)
	}
	if err := checkEnd(dec); err != nil {
		return junitNode{}, err
	}
	return n, nil
}

// converter walks the suites in document order, keeping a clock for the
// tests' times: a suite's (or a case's) timestamp sets it, each case
// advances it by its duration. Tests of one suite ran one after another as
// far as the file tells; that is the best start time it allows.
type converter struct {
	clock    time.Time
	runID    string
	results  []trxResult
	defs     []trxUnitTest
	seenDefs map[string]bool
	entries  []trxEntry
	counts   Counts
	first    time.Time
	last     time.Time
	suiteOut []string
}

func convertJUnit(root junitNode, data []byte, start time.Time) ([]byte, Counts, error) {
	c := &converter{clock: start, runID: guid("run", string(data)), seenDefs: map[string]bool{}}
	c.walk(root, "")
	if c.counts.Total == 0 {
		return nil, Counts{}, fmt.Errorf("testresult: %w: JUnit file has no <testcase> (%s)", ErrNoTests, describeSuites(root))
	}
	k := c.counts
	outcome := "Completed"
	if k.Failed > 0 {
		outcome = "Failed"
	}
	run := trxRun{
		ID:   c.runID,
		Name: runName(root) + " " + c.first.Format("2006-01-02 15:04:05"),
		Times: trxTimes{
			Creation: trxTime(c.first), Queuing: trxTime(c.first),
			Start: trxTime(c.first), Finish: trxTime(c.last),
		},
		Results:     c.results,
		Definitions: c.defs,
		Entries:     c.entries,
		Lists: []trxList{
			{Name: "Results Not in a List", ID: trxListNotInAList},
			{Name: "All Loaded Results", ID: trxListAllLoaded},
		},
		Summary: trxSummary{
			Outcome: outcome,
			Counters: trxCounters{
				Total: uint(k.Total), Executed: uint(k.Passed + k.Failed),
				Passed: uint(k.Passed), Failed: uint(k.Failed), NotExecuted: uint(k.Skipped),
			},
		},
	}
	if out := strings.Join(c.suiteOut, "\n"); out != "" {
		run.Summary.Output = &trxOutput{StdOut: newRawText(out)}
	}
	var buf bytes.Buffer
	// No byte order mark: the header declares UTF-8, and a BOM is one
	// more thing for naive readers of the stored artifact to trip on.
	buf.WriteString(xml.Header)
	enc := xml.NewEncoder(&buf)
	enc.Indent("", "  ")
	if err := enc.Encode(run); err != nil {
		// Every value was escaped or checked above; this would be a bug.
		return nil, Counts{}, fmt.Errorf("testresult: writing TRX: %w", err)
	}
	buf.WriteByte('\n')
	return buf.Bytes(), k, nil
}

// walk converts the children of a <testsuites> or <testsuite> in
// document order: test cases, nested suites (inheriting the host name),
// and the suite's own output, which goes to the run's StdOut.
func (c *converter) walk(s junitNode, host string) {
	if s.Hostname != "" {
		host = s.Hostname
	}
	if t, ok := parseTimestamp(s.Timestamp); ok {
		c.clock = t
	}
	for _, child := range s.Children {
		switch child.XMLName.Local {
		case "testcase":
			c.addCase(s, child, host)
		case "testsuite", "testsuites":
			c.walk(child, host)
		case "system-out", "system-err":
			if out := trimText(child.Text); out != "" {
				c.suiteOut = append(c.suiteOut, out)
			}
		}
	}
}

func (c *converter) addCase(s, tc junitNode, host string) {
	start := c.clock
	if t, ok := parseTimestamp(tc.Timestamp); ok {
		start = t
	}
	d := parseSeconds(tc.Time)
	end := start.Add(d)
	c.clock = end
	if len(c.results) == 0 || start.Before(c.first) {
		c.first = start
	}
	if len(c.results) == 0 || end.After(c.last) {
		c.last = end
	}

	name := testName(tc)
	testID := guid("test", name)
	execID := guid("execution", c.runID, strconv.Itoa(len(c.results)))
	r := trxResult{
		ExecutionID: execID, TestID: testID, TestName: name, ComputerName: host,
		Duration: trxDuration(d), StartTime: trxTime(start), EndTime: trxTime(end),
		TestType: trxUnitTestType, TestListID: trxListNotInAList,
	}
	// Surefire's flakyFailure/flakyError (the test passed on a rerun)
	// and rerunFailure/rerunError (reruns of a test that also has a
	// <failure>) are deliberately not read: the outcome is the final one.
	var failed, skipped []junitNode
	var stdout, stderr []string
	for _, p := range tc.Children {
		switch p.XMLName.Local {
		case "failure", "error":
			failed = append(failed, p)
		case "skipped":
			skipped = append(skipped, p)
		case "system-out":
			stdout = append(stdout, p.Text)
		case "system-err":
			stderr = append(stderr, p.Text)
		}
	}
	out := &trxOutput{StdOut: newRawText(joinText(stdout)), StdErr: newRawText(joinText(stderr))}
	c.counts.Total++
	switch {
	case len(failed) > 0:
		r.Outcome = "Failed"
		c.counts.Failed++
		out.ErrorInfo = failureInfo(failed)
	case len(skipped) > 0:
		r.Outcome = "NotExecuted"
		c.counts.Skipped++
		out.ErrorInfo = skipInfo(skipped[0])
	default:
		r.Outcome = "Passed"
		c.counts.Passed++
	}
	if out.StdOut != nil || out.StdErr != nil || out.ErrorInfo != nil {
		r.Output = out
	}
	c.results = append(c.results, r)

	storage := tc.File
	if storage == "" {
		storage = s.File
	}
	if storage == "" {
		storage = s.Name
	}
	// One definition per test: a test run twice (go test -count=2, a
	// rerun) has two results sharing one testId, as vstest writes them.
	if !c.seenDefs[testID] {
		c.seenDefs[testID] = true
		c.defs = append(c.defs, trxUnitTest{
			Name: name, Storage: storage, ID: testID,
			Execution: trxExecution{ID: execID},
			Method:    trxMethod{CodeBase: storage, AdapterType: "executor://junit/", ClassName: tc.Classname, Name: tc.Name},
		})
	}
	c.entries = append(c.entries, trxEntry{TestID: testID, ExecutionID: execID, TestListID: trxListNotInAList})
}

// testName is "classname.name", the fully qualified name TRX gives tests
// (Namespace.Class.Method), which JUnit splits in two. Surefire writes an
// empty name for a class-level failure and gotestsum an empty classname
// for a failed TestMain: the other half alone is the name then.
func testName(tc junitNode) string {
	cls, name := strings.TrimSpace(tc.Classname), strings.TrimSpace(tc.Name)
	switch {
	case cls != "" && name != "":
		return cls + "." + name
	case name != "":
		return name
	case cls != "":
		return cls
	}
	return "(unnamed test)"
}

// failureInfo is the ErrorInfo of a failed test: the first <failure> or
// <error>'s message (or, if it has none, its type) and its text as the
// stack trace, which is where pytest, Surefire and the Go tools put the
// traceback or the test's log. Further ones (pytest adds an <error> for a
// failing teardown to a failed test) follow in the stack trace.
func failureInfo(ps []junitNode) *trxErrorInfo {
	msg := problemMessage(ps[0])
	trace := trimText(ps[0].Text)
	for _, p := range ps[1:] {
		more := p.XMLName.Local + ": " + problemMessage(p)
		if t := trimText(p.Text); t != "" {
			more += "\n" + t
		}
		if trace != "" {
			trace += "\n\n"
		}
		trace += more
	}
	return &trxErrorInfo{Message: newRawText(msg), StackTrace: newRawText(trace)}
}

func problemMessage(p junitNode) string {
	if m := strings.TrimSpace(p.Message); m != "" {
		return m
	}
	if t := strings.TrimSpace(p.Type); t != "" {
		return t
	}
	if p.XMLName.Local == "error" {
		return "Error"
	}
	return "Failed"
}

// skipInfo is the ErrorInfo of a skipped test, as vstest writes the skip
// reason: in Message. The text of <skipped> (go-junit-report puts the
// test's log there, pytest "file:line: reason") follows the message,
// unless it repeats it.
func skipInfo(p junitNode) *trxErrorInfo {
	msg := strings.TrimSpace(p.Message)
	if t := trimText(p.Text); t != "" && strings.TrimSpace(t) != msg {
		if msg != "" {
			msg += "\n"
		}
		msg += t
	}
	if msg == "" {
		return nil
	}
	return &trxErrorInfo{Message: newRawText(msg)}
}

// trimText drops trailing blanks and newlines (tools end output with one)
// and makes blank text empty; leading indentation is kept, since the Go
// tools indent test logs.
func trimText(s string) string {
	s = strings.TrimRight(s, " \t\r\n")
	if strings.TrimSpace(s) == "" {
		return ""
	}
	return s
}

func joinText(parts []string) string {
	var kept []string
	for _, p := range parts {
		if p = trimText(p); p != "" {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, "\n")
}

// runName names the TestRun after the root (or the only) suite, as vstest
// names it after the user and host.
func runName(root junitNode) string {
	if n := strings.TrimSpace(root.Name); n != "" {
		return n
	}
	var suites []junitNode
	for _, c := range root.Children {
		if c.XMLName.Local == "testsuite" {
			suites = append(suites, c)
		}
	}
	if len(suites) == 1 {
		if n := strings.TrimSpace(suites[0].Name); n != "" {
			return n
		}
	}
	return "JUnit"
}

// describeSuites says what an empty JUnit file held, for ErrNoTests.
func describeSuites(root junitNode) string {
	n := 0
	if root.XMLName.Local == "testsuite" {
		n++
	}
	var count func(s junitNode)
	count = func(s junitNode) {
		for _, c := range s.Children {
			switch c.XMLName.Local {
			case "testsuite":
				n++
				count(c)
			case "testsuites":
				count(c)
			}
		}
	}
	count(root)
	switch n {
	case 0:
		return "and no <testsuite>"
	case 1:
		return "its one <testsuite> is empty"
	}
	return fmt.Sprintf("none of its %d <testsuite> elements has one", n)
}

// maxSeconds caps a test's duration at about 31 years, far beyond any
// real test, so that adding durations never overflows time.Duration.
const maxSeconds = 1e9

// parseSeconds reads a JUnit time attribute: seconds as a decimal number.
// Tools disagree on the details (Surefire once wrote "1,234.5" in some
// locales, others a decimal comma), and a time is not worth rejecting a
// file for, so what cannot be read, or is negative, counts as zero.
func parseSeconds(s string) time.Duration {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		if strings.Contains(s, ".") {
			s = strings.ReplaceAll(s, ",", "")
		} else {
			s = strings.ReplaceAll(s, ",", ".")
		}
		if f, err = strconv.ParseFloat(s, 64); err != nil {
			return 0
		}
	}
	if math.IsNaN(f) || f <= 0 {
		return 0
	}
	if f > maxSeconds {
		f = maxSeconds
	}
	return time.Duration(math.Round(f * float64(time.Second)))
}

// parseTimestamp reads a JUnit timestamp: ISO 8601 with a zone (go-junit-
// report, gotestsum) or without one (pytest and Ant write local time
// without zone: taken as UTC, the file not saying which zone it was).
// gotestsum's zero time ("0001-01-01T00:00:00Z") means no timestamp.
func parseTimestamp(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, false
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05Z07:00", "2006-01-02 15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			if t.Year() < 1900 {
				return time.Time{}, false
			}
			return t, true
		}
	}
	return time.Time{}, false
}
