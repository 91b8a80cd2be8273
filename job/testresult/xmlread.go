package testresult

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// openRoot reads data up to its root element's start tag with the same
// decoder settings wharf-api's xml.Unmarshal uses (strict, no charset
// reader), so that what passes here passes there.
func openRoot(data []byte) (*xml.Decoder, xml.StartElement, error) {
	dec := xml.NewDecoder(bytes.NewReader(data))
	for {
		before, _ := dec.InputPos()
		tok, err := dec.Token()
		if err == io.EOF {
			if len(bytes.TrimSpace(data)) == 0 {
				return nil, xml.StartElement{}, fmt.Errorf("testresult: %w: the file is empty", ErrNotXML)
			}
			return nil, xml.StartElement{}, fmt.Errorf("testresult: %w: no root element", ErrNotXML)
		}
		if err != nil {
			// Before the root, the only error that is not a syntax error
			// is an encoding encoding/xml cannot read: not XML for us.
			return nil, xml.StartElement{}, readError(dec, err, true)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return dec, t, nil
		case xml.CharData:
			// encoding/xml lets text stand outside any element; XML
			// does not, and a log or JSON file would otherwise read as
			// "no root element". A byte order mark (vstest writes one)
			// reaches us as text too; wharf-api's decoder skips it alike.
			if s := trimProlog(t); len(s) > 0 {
				return nil, xml.StartElement{}, fmt.Errorf("testresult: line %d: %w: text %s before the root element",
					textLine(before, t), ErrNotXML, quoteStart(s))
			}
		}
	}
}

// checkEnd reads what follows the root element: XML allows only blanks,
// comments and processing instructions there. encoding/xml would read a
// second root happily, and a file of two reports concatenated would then
// lose the second one silently.
func checkEnd(dec *xml.Decoder) error {
	for {
		before, _ := dec.InputPos()
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return readError(dec, err, false)
		}
		line, _ := dec.InputPos()
		switch t := tok.(type) {
		case xml.StartElement:
			return fmt.Errorf("testresult: line %d: %w: a second root element <%s> after the first", line, ErrNotXML, t.Name.Local)
		case xml.CharData:
			if s := bytes.TrimSpace(t); len(s) > 0 {
				return fmt.Errorf("testresult: line %d: %w: text %s after the root element", textLine(before, t), ErrNotXML, quoteStart(s))
			}
		case xml.Directive:
			return fmt.Errorf("testresult: line %d: %w: a <!%s> after the root element", line, ErrNotXML, quoteStart(t))
		}
	}
}

// readError names the line of a decoding error. A syntax error means the
// file is not XML wharf-api can parse, and so does any error when notXML
// is set; anything else (a Counters value that is not a number, too deep
// a nesting) is returned as is, with its line.
func readError(dec *xml.Decoder, err error, notXML bool) error {
	var syn *xml.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Errorf("testresult: line %d: %w: %s", syn.Line, ErrNotXML, syn.Msg)
	}
	line, _ := dec.InputPos()
	if notXML {
		return fmt.Errorf("testresult: line %d: %w: %v", line, ErrNotXML, err)
	}
	return fmt.Errorf("testresult: line %d: %v", line, err)
}

// trimProlog trims blanks and byte order marks.
func trimProlog(t []byte) []byte {
	return bytes.Trim(t, " \t\r\n\ufeff")
}

// textLine is the line where the first non-blank character of text t
// is, t starting on line start.
func textLine(start int, t []byte) int {
	lead := len(t) - len(bytes.TrimLeft(t, " \t\r\n\ufeff"))
	return start + bytes.Count(t[:lead], []byte("\n"))
}

// quoteStart quotes at most the first 40 bytes of s, for error messages
// about stray text.
func quoteStart(s []byte) string {
	const max = 40
	if len(s) <= max {
		return fmt.Sprintf("%q", s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q...", s[:cut])
}
