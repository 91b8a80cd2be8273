package testresult

import (
	"crypto/sha256"
	"encoding/xml"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// trxCheck has the shape and the field types of what wharf-api v5.2.0
// unmarshals a TRX into, so that decoding into it fails exactly where
// wharf-api's would (a Counters attribute that is not an unsigned integer
// fails the whole file there).
type trxCheck struct {
	Results []struct {
		UnitTestResults []struct {
			Outcome string `xml:"outcome,attr"`
		} `xml:"UnitTestResult"`
	} `xml:"Results"`
	ResultSummary struct {
		Counters *trxCounters `xml:"Counters"`
	} `xml:"ResultSummary"`
}

// trxCounters are ResultSummary/Counters, all of them: wharf-api parses
// every one as an unsigned integer even though it stores four.
type trxCounters struct {
	Total               uint `xml:"total,attr"`
	Executed            uint `xml:"executed,attr"`
	Passed              uint `xml:"passed,attr"`
	Failed              uint `xml:"failed,attr"`
	Error               uint `xml:"error,attr"`
	Timeout             uint `xml:"timeout,attr"`
	Aborted             uint `xml:"aborted,attr"`
	Inconclusive        uint `xml:"inconclusive,attr"`
	PassedButRunAborted uint `xml:"passedButRunAborted,attr"`
	NotRunnable         uint `xml:"notRunnable,attr"`
	NotExecuted         uint `xml:"notExecuted,attr"`
	Disconnected        uint `xml:"disconnected,attr"`
	Warning             uint `xml:"warning,attr"`
	Completed           uint `xml:"completed,attr"`
	InProgress          uint `xml:"inProgress,attr"`
	Pending             uint `xml:"pending,attr"`
}

// checkTRX decodes a TRX from its root as wharf-api will and returns its
// counts.
func checkTRX(dec *xml.Decoder, root xml.StartElement) (Counts, error) {
	var run trxCheck
	if err := dec.DecodeElement(&run, &root); err != nil {
		var num *strconv.NumError
		if errors.As(err, &num) {
			line, _ := dec.InputPos()
			return Counts{}, fmt.Errorf("testresult: line %d: a TRX <Counters> attribute is %q, not the unsigned integer wharf-api requires: %v", line, num.Num, num.Err)
		}
		return Counts{}, readError(dec, err, false)
	}
	if err := checkEnd(dec); err != nil {
		return Counts{}, err
	}
	results := 0
	var c Counts
	for _, r := range run.Results {
		for _, u := range r.UnitTestResults {
			results++
			switch u.Outcome {
			case "Passed":
				c.Passed++
			case "NotExecuted":
				c.Skipped++
			case "Failed", "Error", "Timeout", "Aborted":
				c.Failed++
			}
		}
	}
	c.Total = results
	if k := run.ResultSummary.Counters; k != nil {
		// What wharf-api stores, so that a caller reports what the UI
		// will show.
		c = Counts{Total: clampInt(k.Total), Passed: clampInt(k.Passed), Failed: clampInt(k.Failed), Skipped: clampInt(k.NotExecuted)}
	}
	if results == 0 && c.Total == 0 {
		return Counts{}, fmt.Errorf("testresult: %w: the TRX has no <UnitTestResult> and its Counters count no test", ErrNoTests)
	}
	return c, nil
}

func clampInt(u uint) int {
	const maxInt = int(^uint(0) >> 1)
	if u > uint(maxInt) {
		return maxInt
	}
	return int(u)
}

// The fixed identifiers every TRX the Visual Studio test platform writes
// uses: the unit test type and the two built-in test lists.
const (
	trxNamespace      = "http://microsoft.com/schemas/VisualStudio/TeamTest/2010"
	trxUnitTestType   = "13cdc9d9-ddb5-4fa4-a97d-d965ccfc6d4b"
	trxListNotInAList = "8c84fa94-04c1-424b-9868-57a2d4851a1d"
	trxListAllLoaded  = "19431567-8539-422a-85d7-44ee4e166bda"
)

// trxRun is the TRX written for a converted file, element for element in
// the order vstest's TRX logger writes them.
type trxRun struct {
	XMLName     xml.Name      `xml:"http://microsoft.com/schemas/VisualStudio/TeamTest/2010 TestRun"`
	ID          string        `xml:"id,attr"`
	Name        string        `xml:"name,attr"`
	Times       trxTimes      `xml:"Times"`
	Results     []trxResult   `xml:"Results>UnitTestResult"`
	Definitions []trxUnitTest `xml:"TestDefinitions>UnitTest"`
	Entries     []trxEntry    `xml:"TestEntries>TestEntry"`
	Lists       []trxList     `xml:"TestLists>TestList"`
	Summary     trxSummary    `xml:"ResultSummary"`
}

type trxTimes struct {
	Creation string `xml:"creation,attr"`
	Queuing  string `xml:"queuing,attr"`
	Start    string `xml:"start,attr"`
	Finish   string `xml:"finish,attr"`
}

type trxResult struct {
	ExecutionID  string     `xml:"executionId,attr"`
	TestID       string     `xml:"testId,attr"`
	TestName     string     `xml:"testName,attr"`
	ComputerName string     `xml:"computerName,attr,omitempty"`
	Duration     string     `xml:"duration,attr"`
	StartTime    string     `xml:"startTime,attr"`
	EndTime      string     `xml:"endTime,attr"`
	TestType     string     `xml:"testType,attr"`
	Outcome      string     `xml:"outcome,attr"`
	TestListID   string     `xml:"testListId,attr"`
	Output       *trxOutput `xml:"Output,omitempty"`
}

type trxOutput struct {
	StdOut    *rawText      `xml:"StdOut,omitempty"`
	StdErr    *rawText      `xml:"StdErr,omitempty"`
	ErrorInfo *trxErrorInfo `xml:"ErrorInfo,omitempty"`
}

type trxErrorInfo struct {
	Message    *rawText `xml:"Message,omitempty"`
	StackTrace *rawText `xml:"StackTrace,omitempty"`
}

// rawText is element content this package escapes itself (see
// escapeText): wharf-api stores Message and StackTrace as their raw inner
// XML, so every entity written there is what its users read.
type rawText struct {
	XML string `xml:",innerxml"`
}

func newRawText(s string) *rawText {
	if s == "" {
		return nil
	}
	return &rawText{XML: escapeText(s)}
}

type trxUnitTest struct {
	Name      string       `xml:"name,attr"`
	Storage   string       `xml:"storage,attr"`
	ID        string       `xml:"id,attr"`
	Execution trxExecution `xml:"Execution"`
	Method    trxMethod    `xml:"TestMethod"`
}

type trxExecution struct {
	ID string `xml:"id,attr"`
}

type trxMethod struct {
	CodeBase    string `xml:"codeBase,attr"`
	AdapterType string `xml:"adapterTypeName,attr"`
	ClassName   string `xml:"className,attr"`
	Name        string `xml:"name,attr"`
}

type trxEntry struct {
	TestID      string `xml:"testId,attr"`
	ExecutionID string `xml:"executionId,attr"`
	TestListID  string `xml:"testListId,attr"`
}

type trxList struct {
	Name string `xml:"name,attr"`
	ID   string `xml:"id,attr"`
}

type trxSummary struct {
	Outcome  string      `xml:"outcome,attr"`
	Counters trxCounters `xml:"Counters"`
	Output   *trxOutput  `xml:"Output,omitempty"`
}

// trxTime is how vstest writes times (.NET's round-trip format), which is
// also RFC 3339, the only layout wharf-api parses.
func trxTime(t time.Time) string {
	return t.Format("2006-01-02T15:04:05.0000000Z07:00")
}

// trxDuration writes d as a .NET TimeSpan ("c" format), as TRX durations
// are: [d.]hh:mm:ss.fffffff.
func trxDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	ticks := int64(d / 100)
	frac := ticks % 1e7
	secs := ticks / 1e7
	days, secs := secs/86400, secs%86400
	s := fmt.Sprintf("%02d:%02d:%02d.%07d", secs/3600, secs/60%60, secs%60, frac)
	if days > 0 {
		s = fmt.Sprintf("%d.%s", days, s)
	}
	return s
}

// guid returns a name-based UUID (version 5 layout, SHA-256 truncated) of
// parts, so that ids are stable for the same input: the same test name
// always gets the same testId, which is how TRX ties repeated runs of one
// test together.
func guid(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	b := h.Sum(nil)[:16]
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// escapeText escapes s as element content with as few entities as XML
// allows: wharf-api stores Message and StackTrace as raw inner XML, so an
// apostrophe written as &#39; (as encoding/xml's escaping would) or a
// newline as &#xA; would reach its users as such. Only & and < must be
// escaped, and > only where it would close "]]>". Line ends are written
// as \n (an XML parser turns a literal \r into \n anyway) and characters
// XML cannot carry (NUL, most control characters, invalid UTF-8) become
// U+FFFD, as encoding/xml does, so that the output always parses.
func escapeText(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteRune('\uFFFD')
		case r == '&':
			b.WriteString("&amp;")
		case r == '<':
			b.WriteString("&lt;")
		case r == '>' && strings.HasSuffix(b.String(), "]]"):
			b.WriteString("&gt;")
		case r == '\r':
			b.WriteByte('\n')
			if i+1 < len(s) && s[i+1] == '\n' {
				size++
			}
		case !isXMLChar(r):
			b.WriteRune('\uFFFD')
		default:
			b.WriteRune(r)
		}
		i += size
	}
	return b.String()
}

// isXMLChar is XML 1.0's Char production.
func isXMLChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}
