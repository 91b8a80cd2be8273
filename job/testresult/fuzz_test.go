package testresult

import (
	"bytes"
	"encoding/xml"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// wharfTRX has the shape wharf-api v5.2.0 unmarshals a test result into
// (test_result.go there): its field types decide what it rejects.
type wharfTRX struct {
	XMLName xml.Name `xml:"TestRun"`
	Results struct {
		UnitTestResults []struct {
			TestName  string `xml:"testName,attr"`
			Duration  string `xml:"duration,attr"`
			StartTime string `xml:"startTime,attr"`
			EndTime   string `xml:"endTime,attr"`
			Outcome   string `xml:"outcome,attr"`
			Output    struct {
				ErrorInfo struct {
					Message    innerXML `xml:"Message"`
					StackTrace innerXML `xml:"StackTrace"`
				} `xml:"ErrorInfo"`
			} `xml:"Output"`
		} `xml:"UnitTestResult"`
	} `xml:"Results"`
	ResultSummary struct {
		Counters trxCounters `xml:"Counters"`
	} `xml:"ResultSummary"`
}

// FuzzToTRX: whatever the input, ToTRX neither panics nor returns a TRX
// wharf-api would reject; a converted file reads back as TRX with the same
// counts. The seed corpus (the samples, their truncations and odd inputs)
// runs with every go test.
func FuzzToTRX(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/3])
		f.Add(b[:len(b)*2/3])
	}
	for _, s := range []string{
		"", "\ufeff", "<", "<testsuite/>", "<TestRun/>", "<testsuites><testsuite><testcase/></testsuite></testsuites>",
		"<testsuite><testcase name=\"&#1;\"><failure message=\"&#xFFFE;\">&#0;</failure></testcase></testsuite>",
		"<testsuite><testcase name=\"a\"><failure><![CDATA[]]]]><![CDATA[>]]></failure></testcase></testsuite>",
		"<testsuite timestamp=\"9999-12-31T23:59:59Z\"><testcase time=\"1e9\"/><testcase time=\"1e9\"/></testsuite>",
		"<testsuite><testcase time=\"-0\"/><testcase time=\"+Inf\"/><testcase time=\"0x10\"/></testsuite>",
		"<TestRun><ResultSummary><Counters total=\"18446744073709551615\"/></ResultSummary></TestRun>",
		"<TestRun><ResultSummary><Counters total=\"18446744073709551616\"/></ResultSummary></TestRun>",
		"<x:testsuite xmlns:x=\"urn:x\"><x:testcase name=\"ns\"/></x:testsuite>",
		strings.Repeat("<testsuite>", 200) + "<testcase/>" + strings.Repeat("</testsuite>", 200),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		orig := bytes.Clone(data)
		out, counts, err := ToTRX(data, "")
		if !bytes.Equal(data, orig) {
			t.Fatal("ToTRX changed its input")
		}
		if err != nil {
			if out != nil || counts != (Counts{}) {
				t.Fatalf("output beside error %v", err)
			}
			if !strings.HasPrefix(err.Error(), "testresult: ") {
				t.Fatalf("error %q does not say where it is from", err)
			}
			if _, derr := Detect(data); derr == nil && (errors.Is(err, ErrUnknownFormat) && !strings.Contains(err.Error(), "expected")) {
				t.Fatalf("Detect accepts what ToTRX calls unknown: %v", err)
			}
			return
		}
		if _, err := Detect(data); err != nil {
			t.Fatalf("ToTRX accepts what Detect rejects: %v", err)
		}
		var w wharfTRX
		if err := xml.Unmarshal(out, &w); err != nil {
			t.Fatalf("wharf-api would reject the TRX: %v\n%s", err, out)
		}
		if counts.Total < 0 || counts.Passed < 0 || counts.Failed < 0 || counts.Skipped < 0 {
			t.Fatalf("negative counts %+v", counts)
		}
		format, _ := Detect(data)
		if format == TRX {
			if !bytes.Equal(out, data) {
				t.Fatal("a TRX was changed")
			}
			return
		}
		if counts.Total != counts.Passed+counts.Failed+counts.Skipped || counts.Total != len(w.Results.UnitTestResults) {
			t.Fatalf("counts %+v for %d results", counts, len(w.Results.UnitTestResults))
		}
		k := w.ResultSummary.Counters
		if int(k.Total) != counts.Total || int(k.Passed) != counts.Passed || int(k.Failed) != counts.Failed || int(k.NotExecuted) != counts.Skipped {
			t.Fatalf("Counters %+v, counts %+v", k, counts)
		}
		for _, r := range w.Results.UnitTestResults {
			if r.Outcome != "Passed" && r.Outcome != "Failed" && r.Outcome != "NotExecuted" {
				t.Fatalf("outcome %q wharf-api does not know", r.Outcome)
			}
		}
		back, again, err := ToTRX(out, "")
		if err != nil || again != counts || !bytes.Equal(back, out) {
			t.Fatalf("the TRX does not read back: %v, %+v", err, again)
		}
		if out2, _, _ := ToTRX(data, JUnit); !bytes.Equal(out, out2) {
			t.Fatal("not deterministic")
		}
	})
}
