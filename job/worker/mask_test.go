package worker

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/fs"
	"github.com/wharfjobs/wharfjobs/job"
)

func TestMaskerMultiLineSecret(t *testing.T) {
	key := "-----BEGIN KEY-----\r\nMIIBOgIBAAJBAKj34GkxFhD9\r\nab\r\n}\n-----END KEY-----\n"
	m := newMasker([]string{key})
	cases := map[string]string{
		// Printed as it is, each log line holds one line of the secret.
		"MIIBOgIBAAJBAKj34GkxFhD9":          "*****",
		"key: MIIBOgIBAAJBAKj34GkxFhD9 end": "key: ***** end",
		"-----END KEY-----":                 "*****",
		// Lines under minFragment bytes are not secrets of their own.
		"ab": "ab",
		"}":  "}",
		// The whole value, where a line holds it (a quoted or encoded
		// form of it, say, is one line).
		"[" + key + "]": "[*****]",
		"x" + base64.StdEncoding.EncodeToString([]byte(key)) + "x": "x*****x",
		fmt.Sprintf("%q", key): `"*****"`,
	}
	for in, want := range cases {
		if got := m.Mask(in); got != want {
			t.Errorf("Mask(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMaskerEncodedForms(t *testing.T) {
	for _, secret := range []string{"p@ss w/rd+?&=ü~", "abcdef", "abcd", "tok>>>???"} {
		b := []byte(secret)
		forms := map[string]string{
			"raw":             secret,
			"base64":          base64.StdEncoding.EncodeToString(b),
			"base64 raw":      base64.RawStdEncoding.EncodeToString(b),
			"base64 url":      base64.URLEncoding.EncodeToString(b),
			"base64 url raw":  base64.RawURLEncoding.EncodeToString(b),
			"query escaped":   url.QueryEscape(secret),
			"path escaped":    url.PathEscape(secret),
			"quoted (%q)":     fmt.Sprintf("%q", secret),
			"in a URL":        "https://u:" + url.QueryEscape(secret) + "@example.org/?pw=" + url.QueryEscape(secret),
			"basic auth line": "Authorization: Basic " + base64.StdEncoding.EncodeToString(b),
		}
		m := newMasker([]string{secret})
		for name, form := range forms {
			text := "before " + form + " after"
			got := m.Mask(text)
			if strings.Contains(got, form) || !strings.HasPrefix(got, "before ") || !strings.HasSuffix(got, " after") || !strings.Contains(got, "*****") {
				t.Errorf("%q: %s form %q masked to %q", secret, name, form, got)
			}
		}
	}
	// Several patterns found in one text, longest first where they
	// overlap.
	m := newMasker([]string{"secret", "secret-longer", "abcd", "cdef"})
	for in, want := range map[string]string{
		"a secret-longer one, a secret": "a ***** one, a *****",
		"abcdef":                        "*****ef",
		"cdefabcd secretsecret":         "********** **********",
		"no match here":                 "no match here",
	} {
		if got := m.Mask(in); got != want {
			t.Errorf("Mask(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestMaskPrefixPiecesMatchWhole masks random texts in random pieces, as
// Lines does with a long line, and compares with masking each text whole.
func TestMaskPrefixPiecesMatchWhole(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	alphabet := "abc"
	word := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		return string(b)
	}
	for round := range 2000 {
		var secrets []string
		for range 1 + r.IntN(3) {
			secrets = append(secrets, word(2+r.IntN(6)))
		}
		m := newMasker(secrets)
		text := word(r.IntN(200))
		want := m.Mask(text)
		var got, pending []byte
		for rest := text; ; {
			n := r.IntN(len(rest) + 1)
			pending = append(pending, rest[:n]...)
			rest = rest[n:]
			end := len(rest) == 0
			var done int
			got, done = m.MaskPrefix(got, string(pending), end)
			if !end && len(pending)-done >= m.longest {
				t.Fatalf("round %d: held back %d bytes, the longest secret has %d", round, len(pending)-done, m.longest)
			}
			pending = append(pending[:0], pending[done:]...)
			if end {
				break
			}
		}
		if string(got) != want || len(pending) != 0 {
			t.Fatalf("round %d: secrets %q text %q: in pieces %q, whole %q", round, secrets, text, got, want)
		}
	}
}

// TestPrefilterMissesNoSecret: Mask skips a line its prefilter finds no
// pattern in, so the prefilter must never miss one. Random secrets, short
// and long (the filter's window is capped), with their encoded forms, in
// random texts of a small alphabet and of pieces of the patterns
// themselves; Mask must give what masking the whole text gives.
func TestPrefilterMissesNoSecret(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const alphabet = "ab=%-_cdZ2"
	word := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		return string(b)
	}
	hits := 0
	for round := range 3000 {
		var secrets []string
		for range 1 + r.IntN(4) {
			switch r.IntN(4) {
			case 0:
				secrets = append(secrets, word(1+r.IntN(3)))
			case 1:
				secrets = append(secrets, word(60+r.IntN(100)))
			default:
				secrets = append(secrets, word(4+r.IntN(20)))
			}
		}
		m := newMasker(secrets)
		for range 20 {
			var text strings.Builder
			for range r.IntN(8) {
				if r.IntN(2) == 0 {
					p := m.pats[r.IntN(len(m.pats))]
					i, j := r.IntN(len(p)+1), r.IntN(len(p)+1)
					if r.IntN(2) == 0 {
						i, j = 0, len(p)
					}
					text.WriteString(p[min(i, j):max(i, j)])
				} else {
					text.WriteString(word(r.IntN(30)))
				}
			}
			s := text.String()
			if m.contains(s) {
				hits++
				if !m.filter.mayContain(s) {
					t.Fatalf("round %d: secrets %q: the prefilter misses a pattern in %q", round, secrets, s)
				}
			}
			whole, _ := m.MaskPrefix(nil, s, true)
			if got := m.Mask(s); got != string(whole) {
				t.Fatalf("round %d: secrets %q: Mask(%q) = %q, masked whole %q", round, secrets, s, got, whole)
			}
		}
	}
	if hits < 10000 {
		t.Fatalf("only %d texts held a secret", hits)
	}
	// A line of ordinary text skips the patterns: most of it is not even
	// looked at.
	m := newMasker([]string{"ghp_0123456789abcdefghijABCDEFGHIJ012345", "hunter2-secret"})
	if m.filter.mayContain(strings.Repeat("an ordinary log line ", 5)) {
		t.Fatal("the prefilter finds a secret in a plain line")
	}
}

func TestMaskNoSecretAllocatesNothing(t *testing.T) {
	m := newMasker([]string{"hunter2-secret", "token-0123456789", "line one of it\nline two of it"})
	line := strings.Repeat("an ordinary log line ", 5)
	if n := testing.AllocsPerRun(100, func() { _ = m.Mask(line) }); n != 0 {
		t.Fatalf("Mask of a line without secrets allocates %v times", n)
	}
	if newMasker([]string{"", ""}) != nil || newMasker(nil).Mask("x") != "x" {
		t.Fatal("a masker without secrets must mask nothing")
	}
}

// stepOutput is a StepRunner whose every step writes what write writes.
type stepOutput struct {
	write  func(stdout io.Writer)
	result Result
}

func (s stepOutput) Name() string { return "test" }

func (s stepOutput) Run(_ context.Context, _ Step, stdout, _ io.Writer) (Result, error) {
	s.write(stdout)
	return s.result, nil
}

// runMasked runs a build of pipeline yml with vars, whose steps run
// runner, and returns its status and its log: one line per log line,
// the parts of a long line joined.
func runMasked(t *testing.T, yml string, vars map[string]any, runner StepRunner) (build.Status, string) {
	t.Helper()
	ctx := context.Background()
	s, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ".wharf-ci.yml"), []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := build.WriteStatus(ctx, s, "1", build.Status{Status: build.Scheduling}, ""); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Workdir: dir, SkipClone: true, Heartbeat: time.Second, Environ: []string{},
		Log: build.WriterConfig{SpillDir: t.TempDir()}, Logger: slog.New(slog.DiscardHandler)}
	_, st := Run(ctx, s, job.Request{BuildRef: "1", Vars: vars, GitToken: "tok-0123456789"}, runner, cfg)
	rc, err := build.OpenLog(ctx, s, "1")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var b strings.Builder
	if err := build.ScanRecords(rc, func(r build.Record) error {
		if r.Part <= 1 {
			b.WriteByte('\n')
		}
		b.WriteString(r.Text)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return st, b.String()
}

const passwordPipeline = `
inputs:
  - name: PW
    type: password
use:
  it:
    container:
      image: alpine
      cmds: ["echo ${PW}"]
`

// TestBuildLogMasksMultiLinePassword: a password input of several lines,
// printed as it is, is one log line per line of it.
func TestBuildLogMasksMultiLinePassword(t *testing.T) {
	pw := "first-line-of-it\nsecond-line-of-it\n"
	_, log := runMasked(t, passwordPipeline, map[string]any{"PW": pw}, stepOutput{write: func(w io.Writer) {
		fmt.Fprintf(w, "the key:\n%sdone\n", pw)
	}})
	if strings.Contains(log, "line-of-it") || !strings.Contains(log, "\nthe key:\n*****\n*****\ndone\n") {
		t.Fatalf("log:%s", log)
	}
}

// TestBuildLogMasksPasswordAcrossParts: a password across the MaxText
// boundary of a long line written in pieces, so that the line is cut into
// parts before its end arrives.
func TestBuildLogMasksPasswordAcrossParts(t *testing.T) {
	pw := "split-me-if-you-can"
	line := strings.Repeat("x", build.MaxText-7) + pw + strings.Repeat("y", 100_000)
	_, log := runMasked(t, passwordPipeline, map[string]any{"PW": pw}, stepOutput{write: func(w io.Writer) {
		for rest := line + "\n"; len(rest) > 0; rest = rest[min(4096, len(rest)):] {
			io.WriteString(w, rest[:min(4096, len(rest))])
		}
	}})
	if strings.Contains(log, pw) || !strings.Contains(log, "\n"+strings.Repeat("x", build.MaxText-7)+"*****"+strings.Repeat("y", 100_000)+"\n") {
		t.Fatalf("the long line is not masked whole (password in log: %v)", strings.Contains(log, pw))
	}
}

// TestBuildLogMasksEncodedPassword: base64 and URL-encoded forms.
func TestBuildLogMasksEncodedPassword(t *testing.T) {
	pw := "p@ss/w+rd?"
	forms := []string{base64.StdEncoding.EncodeToString([]byte(pw)), base64.RawURLEncoding.EncodeToString([]byte(pw)), url.QueryEscape(pw), url.PathEscape(pw)}
	_, log := runMasked(t, passwordPipeline, map[string]any{"PW": pw}, stepOutput{write: func(w io.Writer) {
		for _, f := range forms {
			fmt.Fprintf(w, "form %s\n", f)
		}
	}})
	for _, f := range forms {
		if strings.Contains(log, f) {
			t.Errorf("%q in the log", f)
		}
	}
	if strings.Count(log, "form *****\n") != len(forms) {
		t.Fatalf("log:%s", log)
	}
}

// TestInvalidPipelineErrorsMasked: the parser's errors quote values; a
// password's is masked though the parse failed and its errors are printed
// before any step.
func TestInvalidPipelineErrorsMasked(t *testing.T) {
	const pw = "registry-pw-0123"
	for name, yml := range map[string]string{
		"runs-if": `
inputs:
  - name: REGISTRY_PW
    type: password
build:
  runs-if: ${REGISTRY_PW}
  compile:
    container:
      image: alpine
      cmds: [echo hi]
`,
		// The parser rejects the type, but it is meant as a password.
		"type Password": `
inputs:
  - name: REGISTRY_PW
    type: Password
build:
  runs-if: ${REGISTRY_PW}
  compile:
    container:
      image: alpine
      cmds: [echo hi]
`,
		// The value is the input's default.
		"default": `
inputs:
  - name: REGISTRY_PW
    type: password
    default: registry-pw-0123
build:
  runs-if: ${REGISTRY_PW}
  compile:
    container:
      image: alpine
      cmds: [echo hi]
`,
	} {
		t.Run(name, func(t *testing.T) {
			vars := map[string]any{"REGISTRY_PW": pw}
			if name == "default" {
				vars = nil
			}
			st, log := runMasked(t, yml, vars, stepOutput{write: func(io.Writer) {}})
			if st.Status != build.Failed || !strings.HasPrefix(st.Reason, "InvalidPipeline") {
				t.Fatalf("status %s %q\nlog:%s", st.Status, st.Reason, log)
			}
			if strings.Contains(log+st.Reason, pw) {
				t.Fatalf("the password is in the log or reason %q:%s", st.Reason, log)
			}
		})
	}
}

// TestReasonsMasked: a runner's reason for a failed step can quote a
// value; the step's and the build's recorded reasons are masked.
func TestReasonsMasked(t *testing.T) {
	pw := "in-an-image-name"
	st, log := runMasked(t, passwordPipeline, map[string]any{"PW": pw}, stepOutput{write: func(io.Writer) {},
		result: Result{ExitCode: 1, Reason: "ImagePullBackOff: registry.example.org/" + pw}})
	if st.Status != build.Failed || strings.Contains(st.Reason+log, pw) || len(st.Steps) != 1 || strings.Contains(st.Steps[0].Reason, pw) ||
		!strings.Contains(st.Reason, "registry.example.org/*****") {
		t.Fatalf("status %+v\nlog:%s", st, log)
	}
}

// oldMasker is the masker before issue #14: a strings.Replacer.
func oldMasker(secrets []string) func(string) string {
	vals := append([]string(nil), secrets...)
	sort.Slice(vals, func(i, j int) bool { return len(vals[i]) > len(vals[j]) })
	pairs := make([]string, 0, 2*len(vals))
	for _, v := range vals {
		pairs = append(pairs, v, "*****")
	}
	return strings.NewReplacer(pairs...).Replace
}

// BenchmarkMask masks 100-byte log lines (digits, and an ordinary line of
// text), the worker's hot path, with the strings.Replacer of before (raw
// values only) and the masker (raw values, their encodings and lines).
func BenchmarkMask(b *testing.B) {
	plain := strings.Repeat("0123456789", 10)
	// A line as builds print them: letters that the secrets have too.
	logLine := "npm WARN deprecated request@2.88.2: request has been deprecated, see https://github.com/request/request/issues/3142"
	sets := map[string][]string{
		"token":            {"ghp_0123456789abcdefghijABCDEFGHIJ012345"},
		"token+3passwords": {"ghp_0123456789abcdefghijABCDEFGHIJ012345", "hunter2-secret", "p@ss/w+rd?&x", "another-password-value"},
		"token+pemkey": {"ghp_0123456789abcdefghijABCDEFGHIJ012345",
			"-----BEGIN EC PRIVATE KEY-----\n" + strings.Repeat(strings.Repeat("A", 64)+"\n", 5) + "-----END EC PRIVATE KEY-----\n"},
	}
	names := []string{"token", "token+3passwords", "token+pemkey"}
	for _, name := range names {
		secrets := sets[name]
		masked := plain[:60] + secrets[len(secrets)-1][:min(40, len(secrets[len(secrets)-1]))]
		for _, line := range []struct{ name, text string }{{"nomatch", plain}, {"nomatch-log", logLine}, {"match", masked}} {
			b.Run(name+"/"+line.name+"/replacer", func(b *testing.B) {
				mask := oldMasker(secrets)
				b.SetBytes(int64(len(line.text)))
				b.ReportAllocs()
				for b.Loop() {
					_ = mask(line.text)
				}
			})
			b.Run(name+"/"+line.name+"/masker", func(b *testing.B) {
				m := newMasker(secrets)
				b.SetBytes(int64(len(line.text)))
				b.ReportAllocs()
				for b.Loop() {
					_ = m.Mask(line.text)
				}
			})
		}
	}
}
