package sinks

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/sluice-logs/sluice/buffer"
)

// fallbackMark is inserted at the start of every row the fallback writes so
// that its output can be told apart from the extension's own logs (and
// filtered out of, or into, a CloudWatch query).
const fallbackMark = `"sluice":"fallback"`

// fallbackChunk is both the read buffer and about the size of each write.
// A row shorter than it is never split across writes, so a concurrent writer
// to the same stream cannot land in the middle of one; longer rows stream
// through in pieces and are never held whole.
const fallbackChunk = 64 << 10

// Fallback is the last-resort Sink: it writes each row of a batch to w
// (stdout, which reaches CloudWatch Logs when the role allows it) as one
// NDJSON line that starts with {"sluice":"fallback",. It is safe for
// concurrent use; batches are not interleaved.
type Fallback struct {
	w    io.Writer
	rows atomic.Int64

	mu  sync.Mutex
	buf []byte // output not yet written; reused between batches
	br  *bufio.Reader
}

// NewFallback returns a fallback writing to w.
func NewFallback(w io.Writer) *Fallback {
	return &Fallback{w: w}
}

// Rows returns how many rows the fallback has written.
func (f *Fallback) Rows() int64 { return f.rows.Load() }

// Close does nothing: w belongs to the caller. It is idempotent.
func (f *Fallback) Close(context.Context) error { return nil }

// Write decodes b, in any buffer.Format, and writes its rows as NDJSON. It
// streams: besides the decoder's state (a window, or a few hundred Parquet
// rows) it holds two buffers of fallbackChunk bytes, whatever the size of a
// row. It fails only when w does. A damaged batch is not an
// error: what decodes is written, then a row of type "sluice.fallback_error"
// that says what was lost.
func (f *Fallback) Write(_ context.Context, b *buffer.Batch) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := fallbackStream{f: f, buf: f.buf[:0]}
	derr := s.copy(b.Data)
	if derr != nil && s.err == nil {
		if s.inRow {
			s.put([]byte("\n")) // end the cut row; it is not counted
		}
		s.ensure(256)
		s.buf = appendFallbackError(s.buf, b, derr)
	}
	s.flush()
	f.buf = s.buf[:0]
	if cap(f.buf) > 4*fallbackChunk {
		f.buf = nil // an odd row grew it; do not keep that memory
	}
	if s.err != nil {
		return fmt.Errorf("fallback batch %d: %w", b.Seq, s.err)
	}
	return nil
}

// fallbackStream is the state of one Write.
type fallbackStream struct {
	f       *Fallback
	buf     []byte
	pending int64 // complete rows in buf
	err     error // the first error of w; output stops there

	inRow bool // a row longer than the read buffer is being streamed
	raw   bool // ... and it is not a JSON object: it goes out escaped
	esc   escaper
}

// copy streams the rows of batch data to the output. It returns the
// decoding error, if any; write errors are in s.err.
func (s *fallbackStream) copy(data []byte) error {
	dec, err := buffer.NewReader(data)
	if err != nil {
		return fmt.Errorf("decode batch: %w", err)
	}
	defer dec.Close()
	if s.f.br == nil {
		s.f.br = bufio.NewReaderSize(dec, fallbackChunk)
	} else {
		s.f.br.Reset(dec)
	}
	defer s.f.br.Reset(nil) // drop the decoder
	for s.err == nil {
		frag, err := s.f.br.ReadSlice('\n')
		complete := len(frag) > 0 && frag[len(frag)-1] == '\n'
		if complete {
			frag = frag[:len(frag)-1]
		}
		switch {
		case err == nil, errors.Is(err, io.EOF):
			// A fragment without a newline at the end of the data is
			// still a whole row.
			s.endRow(frag)
			if err != nil {
				return nil
			}
		case errors.Is(err, bufio.ErrBufferFull):
			s.rowPart(frag)
		default:
			s.rowPart(frag)
			return fmt.Errorf("decode batch: %w", err)
		}
	}
	return nil
}

// rowPart writes a piece of a row longer than the read buffer.
func (s *fallbackStream) rowPart(p []byte) {
	if len(p) == 0 {
		return
	}
	if !s.inRow {
		s.inRow = true
		s.raw = p[0] != '{'
		if s.raw {
			s.put([]byte(`{` + fallbackMark + `,"raw":"`))
		} else {
			s.put([]byte(`{` + fallbackMark + `,`))
			p = p[1:]
		}
	}
	if s.raw {
		s.ensure(6 * len(p))
		s.buf = s.esc.append(s.buf, p)
		return
	}
	s.put(p)
}

// endRow writes the last piece of a row (or a whole row) and its newline.
func (s *fallbackStream) endRow(p []byte) {
	if !s.inRow {
		if len(p) > 0 {
			s.ensure(len(fallbackMark) + 8 + 6*len(p))
			s.buf = appendMarked(s.buf, p)
			s.pending++
		}
		return
	}
	s.rowPart(p)
	if s.raw {
		s.ensure(16)
		s.buf = s.esc.finish(s.buf)
		s.buf = append(s.buf, `"}`...)
	}
	s.put([]byte("\n"))
	s.pending++
	s.inRow = false
}

// ensure flushes the buffer if n more bytes would take it past a chunk.
func (s *fallbackStream) ensure(n int) {
	if len(s.buf)+n > fallbackChunk {
		s.flush()
	}
}

// put adds p to the output, writing it directly when it is a chunk or more.
func (s *fallbackStream) put(p []byte) {
	s.ensure(len(p))
	if len(p) < fallbackChunk {
		s.buf = append(s.buf, p...)
		return
	}
	if s.err == nil {
		_, s.err = s.f.w.Write(p)
	}
}

func (s *fallbackStream) flush() {
	if len(s.buf) > 0 && s.err == nil {
		_, s.err = s.f.w.Write(s.buf)
		if s.err == nil {
			s.f.rows.Add(s.pending)
		}
	}
	s.buf = s.buf[:0]
	s.pending = 0
}

// appendMarked appends line with the mark as its first key, and a newline.
// Rows are flat JSON objects; anything else is kept as a JSON string under
// "raw" so that every output line stays one JSON object.
func appendMarked(dst, line []byte) []byte {
	switch {
	case isEmptyObject(line):
		dst = append(dst, `{`+fallbackMark+`}`...)
	case line[0] == '{':
		dst = append(dst, `{`+fallbackMark+`,`...)
		dst = append(dst, line[1:]...)
	default:
		var e escaper
		dst = append(dst, `{`+fallbackMark+`,"raw":"`...)
		dst = e.finish(e.append(dst, line))
		dst = append(dst, `"}`...)
	}
	return append(dst, '\n')
}

func isEmptyObject(line []byte) bool {
	t := bytes.TrimSpace(line)
	return len(t) >= 2 && t[0] == '{' && t[len(t)-1] == '}' && len(bytes.TrimSpace(t[1:len(t)-1])) == 0
}

// escaper writes bytes as the inside of a JSON string, in pieces: a UTF-8
// sequence cut between two pieces is carried over, so the result is the same
// as escaping the whole at once. Invalid UTF-8 becomes U+FFFD byte by byte,
// as encoding/json does.
type escaper struct {
	carry [utf8.UTFMax]byte
	n     int
}

func (e *escaper) append(dst, p []byte) []byte {
	// Complete the carried sequence from p, one rune at a time: the
	// carried bytes may turn out invalid, and then the bytes taken from p
	// start runes of their own.
	for e.n > 0 {
		if !utf8.FullRune(e.carry[:e.n]) {
			if len(p) == 0 {
				return dst // wait for more
			}
			e.carry[e.n] = p[0]
			e.n++
			p = p[1:]
			continue
		}
		_, size := utf8.DecodeRune(e.carry[:e.n])
		dst = appendEscaped(dst, e.carry[:size])
		e.n = copy(e.carry[:], e.carry[size:e.n])
	}
	cut := len(p)
	for k := 1; k < utf8.UTFMax && k <= len(p); k++ {
		if j := len(p) - k; utf8.RuneStart(p[j]) {
			if !utf8.FullRune(p[j:]) {
				cut = j
			}
			break
		}
	}
	dst = appendEscaped(dst, p[:cut])
	e.n = copy(e.carry[:], p[cut:])
	return dst
}

// finish writes what is carried over: the input ended inside a sequence.
func (e *escaper) finish(dst []byte) []byte {
	dst = appendEscaped(dst, e.carry[:e.n])
	e.n = 0
	return dst
}

// appendEscaped escapes p completely: a cut sequence at its end is invalid.
func appendEscaped(dst, p []byte) []byte {
	const hex = "0123456789abcdef"
	for i := 0; i < len(p); {
		c := p[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, `\n`...)
			case c == '\r':
				dst = append(dst, `\r`...)
			case c == '\t':
				dst = append(dst, `\t`...)
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(p[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029': // line separators some readers split on
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&15])
		default:
			dst = append(dst, p[i:i+size]...)
		}
		i += size
	}
	return dst
}

// appendFallbackError appends the row that reports a damaged batch.
func appendFallbackError(dst []byte, b *buffer.Batch, err error) []byte {
	var e escaper
	dst = append(dst, `{`+fallbackMark+`,"time":"`...)
	dst = b.Start.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z")
	dst = append(dst, `","type":"sluice.fallback_error","message":"`...)
	dst = e.finish(e.append(dst, []byte(err.Error())))
	dst = fmt.Appendf(dst, `","seq":%d,"records":%d}`, b.Seq, b.Records)
	return append(dst, '\n')
}
