package testresult

import (
	"bytes"
	"encoding/xml"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// trxDoc reads a TRX back the way a TRX reader (wharf-api among them)
// does, with both the decoded and the raw text of the messages: wharf-api
// stores the raw inner XML.
type trxDoc struct {
	XMLName xml.Name `xml:"TestRun"`
	ID      string   `xml:"id,attr"`
	Name    string   `xml:"name,attr"`
	Times   struct {
		Start  string `xml:"start,attr"`
		Finish string `xml:"finish,attr"`
	} `xml:"Times"`
	Results []trxDocResult `xml:"Results>UnitTestResult"`
	Defs    []struct {
		Name   string `xml:"name,attr"`
		ID     string `xml:"id,attr"`
		Method struct {
			ClassName string `xml:"className,attr"`
			Name      string `xml:"name,attr"`
		} `xml:"TestMethod"`
	} `xml:"TestDefinitions>UnitTest"`
	Entries []struct {
		TestID      string `xml:"testId,attr"`
		ExecutionID string `xml:"executionId,attr"`
	} `xml:"TestEntries>TestEntry"`
	Summary struct {
		Outcome  string      `xml:"outcome,attr"`
		Counters trxCounters `xml:"Counters"`
		StdOut   string      `xml:"Output>StdOut"`
	} `xml:"ResultSummary"`
}

type trxDocResult struct {
	ExecutionID  string `xml:"executionId,attr"`
	TestID       string `xml:"testId,attr"`
	TestName     string `xml:"testName,attr"`
	ComputerName string `xml:"computerName,attr"`
	Duration     string `xml:"duration,attr"`
	StartTime    string `xml:"startTime,attr"`
	EndTime      string `xml:"endTime,attr"`
	Outcome      string `xml:"outcome,attr"`
	StdOut       string `xml:"Output>StdOut"`
	StdErr       string `xml:"Output>StdErr"`
	ErrorInfo    struct {
		Message    innerXML `xml:"Message"`
		StackTrace innerXML `xml:"StackTrace"`
	} `xml:"Output>ErrorInfo"`
}

type innerXML struct {
	XML string `xml:",innerxml"`
}

// wharfMessage is the message wharf-api v5.2.0 stores for a test that did
// not pass: the raw inner XML of Message and StackTrace joined by "\n".
func (r trxDocResult) wharfMessage() string {
	return r.ErrorInfo.Message.XML + "\n" + r.ErrorInfo.StackTrace.XML
}

func readTRX(t *testing.T, data []byte) trxDoc {
	t.Helper()
	var d trxDoc
	if err := xml.Unmarshal(data, &d); err != nil {
		t.Fatalf("the TRX does not parse: %v\n%s", err, data)
	}
	return d
}

func readSample(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type wantTest struct {
	name, outcome string
	// message: substrings of what wharf-api will show (raw inner XML of
	// Message, "\n", raw inner XML of StackTrace).
	message []string
}

// samples are the real-shaped files in testdata, with what each must
// become. They are shared with the test against the real wharf-api.
var samples = []struct {
	file   string
	format Format
	counts Counts
	tests  []wantTest
}{
	{
		file: "go-junit-report.xml", format: JUnit,
		counts: Counts{Total: 8, Passed: 4, Failed: 3, Skipped: 1},
		tests: []wantTest{
			{name: "github.com/acme/shop/calc.TestAdd", outcome: "Passed"},
			{name: "github.com/acme/shop/calc.TestDivide", outcome: "Failed", message: []string{
				"Failed\n    calc_test.go:21: Divide(1, 0) = 0, want error \"division by zero\"\n",
				"calc_test.go:22: got &lt;nil> &amp; wanted an error",
			}},
			{name: "github.com/acme/shop/calc.TestParse", outcome: "Failed", message: []string{"Failed\n"}},
			{name: "github.com/acme/shop/calc.TestParse/empty", outcome: "Passed"},
			{name: "github.com/acme/shop/calc.TestParse/negative", outcome: "Failed", message: []string{`parse_test.go:40: Parse("-1") = 1, want -1`}},
			{name: "github.com/acme/shop/calc.TestSlow", outcome: "NotExecuted", message: []string{"Skipped\n    slow_test.go:11: slow test, run with -long"}},
			{name: "github.com/acme/shop/cart.TestCartTotal", outcome: "Passed"},
			{name: "github.com/acme/shop/cart.TestCartEmpty", outcome: "Passed"},
		},
	},
	{
		file: "gotestsum.xml", format: JUnit,
		counts: Counts{Total: 8, Passed: 5, Failed: 2, Skipped: 1},
		tests: []wantTest{
			{name: "example.com/api/handlers.TestGetUser/unknown_id", outcome: "Failed", message: []string{
				"Failed\n=== RUN   TestGetUser/unknown_id\n",
				`users_test.go:59: body = "{\"error\":\"sql: no rows\"}"`,
			}},
			{name: "example.com/api/handlers.TestRateLimit", outcome: "NotExecuted", message: []string{"limit_test.go:12: needs REDIS_URL"}},
			{name: "example.com/api/handlers.TestGetUser/known_id", outcome: "Passed"},
			{name: "example.com/api/handlers.TestHealth", outcome: "Passed"},
			{name: "TestMain", outcome: "Failed", message: []string{"connection refused\nFAIL\texample.com/api/cmd/migrate\t0.004s"}},
			{name: "example.com/api/store.TestPut", outcome: "Passed"},
			{name: "example.com/api/store.TestGet", outcome: "Passed"},
			{name: "example.com/api/store.TestDelete", outcome: "Passed"},
		},
	},
	{
		file: "pytest.xml", format: JUnit,
		counts: Counts{Total: 6, Passed: 3, Failed: 2, Skipped: 1},
		tests: []wantTest{
			{name: "tests.test_calc.test_add", outcome: "Passed"},
			{name: "tests.test_calc.test_divide", outcome: "Failed", message: []string{
				"assert 0.3333333333333333 == 0.33\n +  where 0.3333333333333333 = divide(1, 3)\n    def test_divide():\n>       assert divide(1, 3) == 0.33\n",
				"tests/test_calc.py:12: AssertionError",
			}},
			{name: "tests.test_store.test_save", outcome: "Failed", message: []string{
				`failed on setup with "ConnectionError: database unavailable at localhost:5432"`,
				"tests/conftest.py:9: ConnectionError",
			}},
			{name: "tests.test_calc.test_windows_paths", outcome: "NotExecuted", message: []string{"requires Windows\ntests/test_calc.py:30: requires Windows"}},
			{name: "tests.test_calc.test_round[1.5-2]", outcome: "Passed"},
			{name: "tests.test_calc.test_round[2.5-2]", outcome: "Passed"},
		},
	},
	{
		file: "TEST-com.acme.shop.CartServiceTest.xml", format: JUnit,
		counts: Counts{Total: 5, Passed: 2, Failed: 2, Skipped: 1},
		tests: []wantTest{
			{name: "com.acme.shop.CartServiceTest.addsItem", outcome: "Passed"},
			{name: "com.acme.shop.CartServiceTest.appliesDiscount", outcome: "Failed", message: []string{
				"expected: &lt;90.00> but was: &lt;100.00>\norg.opentest4j.AssertionFailedError: expected: &lt;90.00> but was: &lt;100.00>\n\tat ",
				"\tat com.acme.shop.CartServiceTest.appliesDiscount(CartServiceTest.java:48)",
			}},
			{name: "com.acme.shop.CartServiceTest.loadsSavedCart", outcome: "Failed", message: []string{
				`Cannot invoke "com.acme.shop.Cart.items()" because "cart" is null` + "\njava.lang.NullPointerException",
			}},
			{name: "com.acme.shop.CartServiceTest.checksOut", outcome: "NotExecuted", message: []string{"payment sandbox not available\n"}},
			{name: "com.acme.shop.CartServiceTest.removesItem", outcome: "Passed"},
		},
	},
	{
		file: "dotnet-test.trx", format: TRX,
		counts: Counts{Total: 4, Passed: 2, Failed: 1, Skipped: 1},
		tests: []wantTest{
			{name: "Calc.Tests.CalculatorTests.Adds(a: 1, b: 2, expected: 3)", outcome: "Passed"},
			{name: "Calc.Tests.CalculatorTests.Adds(a: -1, b: 1, expected: 0)", outcome: "Passed"},
			{name: "Calc.Tests.CalculatorTests.Divides_by_zero", outcome: "Failed", message: []string{
				"Assert.Throws() Failure: No exception was thrown\nExpected: typeof(System.DivideByZeroException)\n   at Calc.Tests.CalculatorTests.Divides_by_zero()",
			}},
			{name: "Calc.Tests.CalculatorTests.Multiplies_big_numbers", outcome: "NotExecuted", message: []string{"BigInteger support lands in 2.0"}},
		},
	},
}

func TestSamples(t *testing.T) {
	for _, s := range samples {
		t.Run(s.file, func(t *testing.T) {
			data := readSample(t, s.file)
			if f, err := Detect(data); err != nil || f != s.format {
				t.Fatalf("Detect = %q, %v; want %q", f, err, s.format)
			}
			out, counts, err := ToTRX(data, "")
			if err != nil {
				t.Fatal(err)
			}
			if counts != s.counts {
				t.Errorf("counts = %+v, want %+v", counts, s.counts)
			}
			if s.format == TRX && !bytes.Equal(out, data) {
				t.Error("a TRX was not returned unchanged")
			}
			// The format named explicitly gives the same.
			if out2, _, err := ToTRX(data, s.format); err != nil || !bytes.Equal(out, out2) {
				t.Errorf("ToTRX(%q) differs from detection: %v", s.format, err)
			}
			doc := readTRX(t, out)
			if len(doc.Results) != len(s.tests) {
				t.Fatalf("%d results, want %d", len(doc.Results), len(s.tests))
			}
			for i, w := range s.tests {
				r := doc.Results[i]
				if r.TestName != w.name || r.Outcome != w.outcome {
					t.Errorf("result %d = %q %s, want %q %s", i, r.TestName, r.Outcome, w.name, w.outcome)
				}
				for _, m := range w.message {
					if !strings.Contains(r.wharfMessage(), m) {
						t.Errorf("%s: message %q lacks %q", w.name, r.wharfMessage(), m)
					}
				}
				if w.outcome == "Passed" && r.wharfMessage() != "\n" {
					t.Errorf("%s passed but has an error %q", w.name, r.wharfMessage())
				}
				for _, ts := range []string{r.StartTime, r.EndTime} {
					if _, err := time.Parse(time.RFC3339, ts); err != nil {
						t.Errorf("%s: wharf-api cannot parse time %q: %v", w.name, ts, err)
					}
				}
			}
			k := doc.Summary.Counters
			if got := (Counts{Total: int(k.Total), Passed: int(k.Passed), Failed: int(k.Failed), Skipped: int(k.NotExecuted)}); got != s.counts {
				t.Errorf("Counters = %+v, want %+v", got, s.counts)
			}
			if s.format == JUnit {
				checkConverted(t, doc, out)
			}
		})
	}
}

// checkConverted checks what every converted file must have beyond the
// results: a consistent summary, definitions and entries for every result,
// and a TRX that reads back as TRX with the same counts.
func checkConverted(t *testing.T, doc trxDoc, out []byte) {
	t.Helper()
	k := doc.Summary.Counters
	if k.Executed != k.Passed+k.Failed || k.Total != k.Executed+k.NotExecuted {
		t.Errorf("inconsistent Counters %+v", k)
	}
	wantOutcome := "Completed"
	if k.Failed > 0 {
		wantOutcome = "Failed"
	}
	if doc.Summary.Outcome != wantOutcome {
		t.Errorf("ResultSummary outcome %q, want %q", doc.Summary.Outcome, wantOutcome)
	}
	defs := map[string]string{}
	for _, d := range doc.Defs {
		if _, dup := defs[d.ID]; dup {
			t.Errorf("UnitTest %s defined twice", d.ID)
		}
		defs[d.ID] = d.Name
	}
	if len(doc.Entries) != len(doc.Results) {
		t.Errorf("%d TestEntry for %d results", len(doc.Entries), len(doc.Results))
	}
	execs := map[string]bool{}
	for i, r := range doc.Results {
		if defs[r.TestID] != r.TestName {
			t.Errorf("result %q has testId %s defined as %q", r.TestName, r.TestID, defs[r.TestID])
		}
		if execs[r.ExecutionID] {
			t.Errorf("executionId %s repeated", r.ExecutionID)
		}
		execs[r.ExecutionID] = true
		if i < len(doc.Entries) && (doc.Entries[i].TestID != r.TestID || doc.Entries[i].ExecutionID != r.ExecutionID) {
			t.Errorf("TestEntry %d does not match its result", i)
		}
	}
	back, counts, err := ToTRX(out, TRX)
	if err != nil || !bytes.Equal(back, out) {
		t.Fatalf("the converted TRX does not pass as TRX: %v", err)
	}
	if want := (Counts{Total: int(k.Total), Passed: int(k.Passed), Failed: int(k.Failed), Skipped: int(k.NotExecuted)}); counts != want {
		t.Errorf("TRX counts of the output %+v, want %+v", counts, want)
	}
}

func TestSampleTimes(t *testing.T) {
	// go-junit-report: the suite timestamp (with its zone) starts the
	// suite; each test starts where the previous one ended.
	out, _, err := ToTRX(readSample(t, "go-junit-report.xml"), "")
	if err != nil {
		t.Fatal(err)
	}
	doc := readTRX(t, out)
	r := doc.Results
	if r[0].StartTime != "2024-03-14T10:21:07.0000000+01:00" || r[1].StartTime != r[0].EndTime {
		t.Errorf("times %s-%s, %s-%s", r[0].StartTime, r[0].EndTime, r[1].StartTime, r[1].EndTime)
	}
	if r[1].Duration != "00:00:00.0010000" || r[1].EndTime != "2024-03-14T10:21:07.0010000+01:00" {
		t.Errorf("TestDivide: duration %s, end %s", r[1].Duration, r[1].EndTime)
	}
	// The second suite starts at its own timestamp again.
	if r[6].StartTime != "2024-03-14T10:21:07.0000000+01:00" || r[6].ComputerName != "ci-runner-7" {
		t.Errorf("cart suite: %s on %q", r[6].StartTime, r[6].ComputerName)
	}
	if doc.Times.Start != "2024-03-14T10:21:07.0000000+01:00" || doc.Times.Finish != "2024-03-14T10:21:07.0040000+01:00" {
		t.Errorf("Times %s - %s", doc.Times.Start, doc.Times.Finish)
	}

	// pytest: a timestamp without zone, taken as UTC.
	out, _, _ = ToTRX(readSample(t, "pytest.xml"), "")
	if got := readTRX(t, out).Results[0].StartTime; got != "2024-03-14T10:21:07.5321870Z" {
		t.Errorf("pytest start %s", got)
	}

	// Surefire writes no timestamp: the epoch, or Options.Start.
	surefire := readSample(t, "TEST-com.acme.shop.CartServiceTest.xml")
	out, _, _ = ToTRX(surefire, "")
	if got := readTRX(t, out).Results[0].StartTime; got != "1970-01-01T00:00:00.0000000Z" {
		t.Errorf("Surefire start without Options.Start: %s", got)
	}
	at := time.Date(2024, 3, 14, 9, 0, 0, 0, time.UTC)
	out, _, _ = Options{Start: at}.ToTRX(surefire, "")
	res := readTRX(t, out).Results
	if res[0].StartTime != "2024-03-14T09:00:00.0000000Z" || res[1].StartTime != "2024-03-14T09:00:00.0120000Z" {
		t.Errorf("Surefire with Options.Start: %s, %s", res[0].StartTime, res[1].StartTime)
	}

	// gotestsum's zero timestamp (its golden files) means none.
	zero := []byte(`<testsuites><testsuite name="p" timestamp="0001-01-01T00:00:00Z"><testcase classname="p" name="T" time="1.5"/></testsuite></testsuites>`)
	out, _, _ = Options{Start: at}.ToTRX(zero, "")
	if got := readTRX(t, out).Results[0]; got.StartTime != "2024-03-14T09:00:00.0000000Z" || got.Duration != "00:00:01.5000000" {
		t.Errorf("zero timestamp: %s, %s", got.StartTime, got.Duration)
	}

	// A timestamp on the test case (go-junit-report after v2.1) wins.
	perCase := []byte(`<testsuite name="p" timestamp="2024-01-01T00:00:00Z"><testcase classname="p" name="A" time="1" timestamp="2024-01-01T00:00:05Z"/><testcase classname="p" name="B" time="1"/></testsuite>`)
	out, _, _ = ToTRX(perCase, "")
	res = readTRX(t, out).Results
	if res[0].StartTime != "2024-01-01T00:00:05.0000000Z" || res[1].StartTime != "2024-01-01T00:00:06.0000000Z" {
		t.Errorf("per-case timestamps: %s, %s", res[0].StartTime, res[1].StartTime)
	}
}

func TestDeterministic(t *testing.T) {
	for _, s := range samples {
		data := readSample(t, s.file)
		a, _, err := ToTRX(data, "")
		if err != nil {
			t.Fatal(err)
		}
		b, _, _ := ToTRX(data, "")
		if !bytes.Equal(a, b) {
			t.Errorf("%s: two conversions differ", s.file)
		}
	}
}

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]Format{"": "", "trx": TRX, "TRX": TRX, " JUnit ": JUnit, "junit": JUnit} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"xunit", "junitxml", "nunit", "trx2"} {
		_, err := ParseFormat(in)
		if err == nil || !strings.Contains(err.Error(), `"trx", "junit" or ""`) || !strings.Contains(err.Error(), in) {
			t.Errorf("ParseFormat(%q) = %v, want an error naming it and what is expected", in, err)
		}
	}
	if _, _, err := ToTRX(readSample(t, "pytest.xml"), "xunit"); err == nil || !strings.Contains(err.Error(), `"xunit"`) {
		t.Errorf("ToTRX with an unknown format: %v", err)
	}
}

func TestBadInput(t *testing.T) {
	surefire := readSample(t, "TEST-com.acme.shop.CartServiceTest.xml")
	trx := readSample(t, "dotnet-test.trx")
	cases := []struct {
		name   string
		data   []byte
		format Format
		want   error
		msg    []string // substrings of the error
	}{
		{"empty file", nil, "", ErrNotXML, []string{"testresult: not well-formed XML: the file is empty"}},
		{"blank file", []byte(" \n\t\n"), "", ErrNotXML, []string{"empty"}},
		{"go test output", readSample(t, "bad-go-test-output.txt"), "", ErrNotXML, []string{"line 1", `text "=== RUN   TestAdd`, "before the root element"}},
		{"JSON", []byte(`{"Action":"pass","Test":"TestAdd"}`), "", ErrNotXML, []string{"before the root element"}},
		{"HTML error page", readSample(t, "bad-error-page.html"), "", ErrUnknownFormat, []string{"root element <html>", "TRX <TestRun>", "JUnit <testsuites> or <testsuite>"}},
		{"XHTML", []byte(`<!DOCTYPE html><html xmlns="http://www.w3.org/1999/xhtml"><body><p>hi</p></body></html>`), "", ErrUnknownFormat, []string{"<html>"}},
		{"JUnit with no test case", readSample(t, "bad-no-tests.xml"), "", ErrNoTests, []string{"JUnit file has no <testcase>", "its one <testsuite> is empty"}},
		{"empty testsuites", []byte(`<testsuites/>`), "", ErrNoTests, []string{"no <testcase>", "no <testsuite>"}},
		{"truncated JUnit", surefire[:len(surefire)/2], "", ErrNotXML, []string{"line ", "unexpected EOF"}},
		{"truncated TRX", trx[:len(trx)-200], "", ErrNotXML, []string{"unexpected EOF"}},
		{"mismatched tags", []byte("<testsuite>\n<testcase name=\"a\">\n</testsuite>\n"), "", ErrNotXML, []string{"line 3", "element <testcase> closed by </testsuite>"}},
		{"undefined entity", []byte("<testsuite><testcase name=\"a&nbsp;b\"/></testsuite>"), "", ErrNotXML, []string{"line 1", "invalid character entity &nbsp;"}},
		{"two roots", []byte("<testsuite><testcase name=\"a\"/></testsuite>\n<testsuite><testcase name=\"b\"/></testsuite>\n"), "", ErrNotXML, []string{"line 2", "a second root element <testsuite>"}},
		{"text after the root", []byte("<testsuite><testcase name=\"a\"/></testsuite>\nok  \tpkg\t0.1s\n"), "", ErrNotXML, []string{"text \"ok", "after the root element"}},
		{"latin-1", []byte("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<testsuite/>"), "", ErrNotXML, []string{"ISO-8859-1"}},
		{"invalid UTF-8", []byte("<testsuite><testcase name=\"a\"><failure>\xff\xfe</failure></testcase></testsuite>"), "", ErrNotXML, []string{"invalid UTF-8"}},
		{"TRX asked, JUnit given", surefire, TRX, ErrUnknownFormat, []string{"expected a TRX <TestRun>", "root element is <testsuite>"}},
		{"JUnit asked, TRX given", trx, JUnit, ErrUnknownFormat, []string{"expected a JUnit", "<TestRun>"}},
		{"TRX without results", []byte(`<TestRun><Results/><ResultSummary outcome="Completed"><Counters total="0" passed="0"/></ResultSummary></TestRun>`), "", ErrNoTests, []string{"no <UnitTestResult>"}},
		{"bare TestRun", []byte(`<TestRun/>`), "", ErrNoTests, nil},
		{"TRX counter not a number", []byte("<TestRun>\n<Results><UnitTestResult testName=\"a\" outcome=\"Passed\"/></Results>\n<ResultSummary>\n<Counters total=\"1\" passed=\"-1\"/></ResultSummary></TestRun>"), "", nil, []string{"line 4", `a TRX <Counters> attribute is "-1", not the unsigned integer wharf-api requires`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, counts, err := ToTRX(c.data, c.format)
			if err == nil {
				t.Fatalf("no error; counts %+v, output %s", counts, out)
			}
			if out != nil || counts != (Counts{}) {
				t.Errorf("output beside the error: %+v %q", counts, out)
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Errorf("error %q is not %q", err, c.want)
			}
			if c.want == nil {
				for _, e := range []error{ErrNotXML, ErrUnknownFormat, ErrNoTests} {
					if errors.Is(err, e) {
						t.Errorf("error %q is %q", err, e)
					}
				}
			}
			for _, m := range c.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q lacks %q", err, m)
				}
			}
			if !strings.HasPrefix(err.Error(), "testresult: ") {
				t.Errorf("error %q does not say where it is from", err)
			}
		})
	}
}

func TestDetect(t *testing.T) {
	for data, want := range map[string]Format{
		"\ufeff<?xml version=\"1.0\"?><TestRun xmlns=\"http://microsoft.com/schemas/VisualStudio/TeamTest/2010\">": TRX,
		"<!-- generated --><testsuites>": JUnit,
		"<testsuite name=\"x\">":         JUnit,
	} {
		if got, err := Detect([]byte(data)); err != nil || got != want {
			t.Errorf("Detect(%q) = %q, %v; want %q", data, got, err, want)
		}
	}
	for data, want := range map[string]error{"": ErrNotXML, "hello": ErrNotXML, "<a": ErrNotXML, "<html></html>": ErrUnknownFormat, "<testcase/>": ErrUnknownFormat} {
		if _, err := Detect([]byte(data)); !errors.Is(err, want) {
			t.Errorf("Detect(%q) = %v, want %v", data, err, want)
		}
	}
}

func TestTRXWithoutCounters(t *testing.T) {
	// No ResultSummary: the counts come from the results (wharf-api would
	// store zeros, see TestWharfAPI).
	data := []byte(`<TestRun><Results>
<UnitTestResult testName="a" outcome="Passed"/><UnitTestResult testName="b" outcome="Failed"/>
<UnitTestResult testName="c" outcome="NotExecuted"/><UnitTestResult testName="d" outcome="Timeout"/><UnitTestResult testName="e" outcome="Inconclusive"/>
</Results></TestRun>`)
	out, counts, err := ToTRX(data, "")
	if err != nil || !bytes.Equal(out, data) {
		t.Fatal(err)
	}
	if want := (Counts{Total: 5, Passed: 1, Failed: 2, Skipped: 1}); counts != want {
		t.Errorf("counts %+v, want %+v", counts, want)
	}
}

func TestJUnitVariants(t *testing.T) {
	cases := []struct {
		name   string
		data   string
		counts Counts
		tests  []wantTest
	}{
		{
			name: "nested suites",
			data: `<testsuites name="all"><testsuite name="outer" hostname="h1"><testcase classname="o" name="a"/>
<testsuite name="inner"><testcase classname="o.i" name="b"><error type="java.io.IOException"/></testcase></testsuite></testsuite>
<testsuites><testsuite name="group"><testcase classname="g" name="c"><skipped/></testcase></testsuite></testsuites></testsuites>`,
			counts: Counts{Total: 3, Passed: 1, Failed: 1, Skipped: 1},
			tests: []wantTest{
				{name: "o.a", outcome: "Passed"},
				{name: "o.i.b", outcome: "Failed", message: []string{"java.io.IOException\n"}},
				{name: "g.c", outcome: "NotExecuted"},
			},
		},
		{
			name:   "failure and teardown error on one test (pytest)",
			data:   `<testsuite><testcase classname="t" name="x" time="0.1"><failure message="assert 1 == 2">trace 1</failure><error message="failed on teardown with &quot;boom&quot;">trace 2</error><system-err>warn</system-err></testcase></testsuite>`,
			counts: Counts{Total: 1, Failed: 1},
			tests:  []wantTest{{name: "t.x", outcome: "Failed", message: []string{"assert 1 == 2\ntrace 1\n\nerror: failed on teardown with \"boom\"\ntrace 2"}}},
		},
		{
			name:   "empty names and Surefire flaky failure",
			data:   `<testsuite name="s"><testcase name="" classname="com.A"><failure/></testcase><testcase name="only"/><testcase/><testcase classname="c" name="flaky"><flakyFailure message="first try" type="X"/><system-out>out</system-out></testcase></testsuite>`,
			counts: Counts{Total: 4, Passed: 3, Failed: 1},
			tests: []wantTest{
				{name: "com.A", outcome: "Failed", message: []string{"Failed\n"}},
				{name: "only", outcome: "Passed"},
				{name: "(unnamed test)", outcome: "Passed"},
				{name: "c.flaky", outcome: "Passed"},
			},
		},
		{
			name:   "odd times",
			data:   `<testsuite><testcase classname="c" name="a" time="1,234.5"/><testcase classname="c" name="b" time="0,25"/><testcase classname="c" name="c" time="-3"/><testcase classname="c" name="d" time="NaN"/><testcase classname="c" name="e" time="1e300"/><testcase classname="c" name="f" time="soon"/></testsuite>`,
			counts: Counts{Total: 6, Passed: 6},
		},
		{
			name:   "characters wharf-api shows raw",
			data:   "<testsuite><testcase classname=\"c\" name=\"q&quot;&apos;&lt;\"><failure message=\"it&apos;s &quot;x&quot; &lt;b&gt; &amp; ]]&gt; \t tab\"><![CDATA[line1\r\nline2\rline3 ]]]]><![CDATA[> end]]></failure></testcase></testsuite>",
			counts: Counts{Total: 1, Failed: 1},
			tests: []wantTest{{name: `c.q"'<`, outcome: "Failed", message: []string{
				"it's \"x\" &lt;b> &amp; ]]&gt; \t tab\nline1\nline2\nline3 ]]&gt; end",
			}}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, counts, err := ToTRX([]byte(c.data), "")
			if err != nil {
				t.Fatal(err)
			}
			if counts != c.counts {
				t.Errorf("counts %+v, want %+v", counts, c.counts)
			}
			doc := readTRX(t, out)
			checkConverted(t, doc, out)
			for i, w := range c.tests {
				r := doc.Results[i]
				if r.TestName != w.name || r.Outcome != w.outcome {
					t.Errorf("result %d = %q %s, want %q %s", i, r.TestName, r.Outcome, w.name, w.outcome)
				}
				for _, m := range w.message {
					if !strings.Contains(r.wharfMessage(), m) {
						t.Errorf("%s: message %q lacks %q", w.name, r.wharfMessage(), m)
					}
				}
			}
		})
	}
}

func TestRepeatedTest(t *testing.T) {
	// go test -count=2: one definition, two results and entries.
	out, counts, err := ToTRX([]byte(`<testsuite><testcase classname="p" name="T"/><testcase classname="p" name="T"><failure/></testcase></testsuite>`), "")
	if err != nil {
		t.Fatal(err)
	}
	doc := readTRX(t, out)
	if counts.Total != 2 || len(doc.Defs) != 1 || len(doc.Entries) != 2 || doc.Results[0].TestID != doc.Results[1].TestID {
		t.Errorf("counts %+v, %d definitions, %d entries", counts, len(doc.Defs), len(doc.Entries))
	}
}

func TestOutputs(t *testing.T) {
	out, _, err := ToTRX(readSample(t, "TEST-com.acme.shop.CartServiceTest.xml"), "")
	if err != nil {
		t.Fatal(err)
	}
	doc := readTRX(t, out)
	if got := doc.Results[1].StdOut; !strings.Contains(got, `rule "SPRING10" expired 2024-03-01 & was skipped`) {
		t.Errorf("system-out of a failed test: %q", got)
	}
	if got := doc.Results[4].StdOut; !strings.Contains(got, "removed 1 item(s)") {
		t.Errorf("system-out of a passed test: %q", got)
	}
	out, _, _ = ToTRX(readSample(t, "go-junit-report.xml"), "")
	if got := readTRX(t, out).Summary.StdOut; got != "exit status 1" {
		t.Errorf("suite system-out: %q", got)
	}
}

func TestTRXDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                  "00:00:00.0000000",
		1500 * time.Microsecond:            "00:00:00.0015000",
		61*time.Minute + 2*time.Second:     "01:01:02.0000000",
		49*time.Hour + 100*time.Nanosecond: "2.01:00:00.0000001",
		-time.Second:                       "00:00:00.0000000",
		time.Duration(maxSeconds * 1e9):    "11574.01:46:40.0000000",
		123*time.Millisecond + 99*time.Nanosecond: "00:00:00.1230000",
	} {
		if got := trxDuration(d); got != want {
			t.Errorf("trxDuration(%v) = %s, want %s", d, got, want)
		}
	}
}

func TestEscapeText(t *testing.T) {
	for in, want := range map[string]string{
		"a < b && c > d":  "a &lt; b &amp;&amp; c > d",
		"x]]>y ]> ]]]>":   "x]]&gt;y ]> ]]]&gt;",
		"it's \"q\"\ttab": "it's \"q\"\ttab",
		"a\r\nb\rc\n":     "a\nb\nc\n",
		"nul\x00 bell\x07 bad\xff ok\u00e9 \uFFFE": "nul\uFFFD bell\uFFFD bad\uFFFD ok\u00e9 \uFFFD",
	} {
		got := escapeText(in)
		if got != want {
			t.Errorf("escapeText(%q) = %q, want %q", in, got, want)
		}
		var v struct {
			S string `xml:",chardata"`
		}
		if err := xml.Unmarshal([]byte("<x>"+got+"</x>"), &v); err != nil {
			t.Errorf("escapeText(%q) does not parse: %v", in, err)
		}
	}
}
