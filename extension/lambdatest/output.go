package lambdatest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"
)

// maxLineBytes splits lines longer than this (64 MiB) so one runaway
// writer cannot exhaust memory; Lambda itself does not cap telemetry lines.
const maxLineBytes = 64 << 20

const timeLayout = "2006-01-02T15:04:05.000Z"

// lineReader splits one process's combined stdout and stderr into lines.
// For the runtime it also answers drain requests: the platform writes a
// marker into the same pipe, behind whatever the runtime wrote before its
// response, and the reader reports the marker once everything before it
// has been emitted. Pipes are FIFO, so no settling delay is needed.
type lineReader struct {
	r     *os.File
	emit  func(line []byte) // must not keep line
	nonce []byte            // marker prefix; nil: no markers
	marks chan uint64
	done  chan struct{}

	wmu sync.Mutex
	w   *os.File // the platform's write end (runtime only)
	seq uint64
}

func (lr *lineReader) run() {
	defer close(lr.done)
	br := bufio.NewReaderSize(lr.r, 64<<10)
	var acc []byte // a line longer than the buffer, or the part before a marker
	for {
		chunk, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			acc = append(acc, chunk...)
			if len(acc) >= maxLineBytes {
				lr.emit(acc)
				acc = acc[:0]
			}
			continue
		}
		if err != nil {
			acc = append(acc, chunk...)
			if len(acc) > 0 {
				lr.emit(trimCR(acc))
			}
			return
		}
		line := chunk
		if len(acc) > 0 {
			acc = append(acc, chunk...)
			line = acc
		}
		if lr.nonce != nil {
			if i := bytes.LastIndex(line, lr.nonce); i >= 0 {
				seq, _ := strconv.ParseUint(string(line[i+len(lr.nonce):len(line)-1]), 10, 64)
				// What precedes the marker is the start of a line the
				// runtime has not finished: keep it.
				if len(acc) > 0 {
					acc = acc[:i]
				} else {
					acc = append(acc, line[:i]...)
				}
				select {
				case lr.marks <- seq:
				default:
				}
				continue
			}
		}
		lr.emit(trimCR(line[:len(line)-1]))
		if cap(acc) > 1<<20 {
			acc = nil
		} else {
			acc = acc[:0]
		}
	}
}

// drain waits until every byte written to the pipe before the call has
// been emitted as a line (or kept as an unfinished line). It reports
// whether that happened within timeout.
func (lr *lineReader) drain(timeout time.Duration) bool {
	lr.wmu.Lock()
	if lr.w == nil {
		lr.wmu.Unlock()
		return false
	}
	lr.seq++
	n := lr.seq
	marker := strconv.AppendUint(slices.Clone(lr.nonce), n, 10)
	_, err := lr.w.Write(append(marker, '\n'))
	lr.wmu.Unlock()
	if err != nil {
		return false
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case got := <-lr.marks:
			if got >= n {
				return true
			}
		case <-lr.done:
			return true
		case <-t.C:
			return false
		}
	}
}

// finish closes the platform's write end, lets the reader reach EOF (the
// processes are dead by now) and forces it to stop after timeout.
func (lr *lineReader) finish(timeout time.Duration) {
	lr.wmu.Lock()
	if lr.w != nil {
		_ = lr.w.Close()
		lr.w = nil
	}
	lr.wmu.Unlock()
	if !waitDone(lr.done, timeout) {
		_ = lr.r.Close() // a descendant still holds the pipe
		<-lr.done
	}
	_ = lr.r.Close()
}

func trimCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}

// functionLine turns one line of runtime output into a function record.
func (p *Platform) functionLine(e *env, line []byte) {
	now := time.Now()
	p.stats.functionLines.Add(1)
	if w := p.cfg.RuntimeOutput; w != nil {
		p.rtOutMu.Lock()
		_, _ = w.Write(line)
		_, _ = w.Write([]byte{'\n'})
		p.rtOutMu.Unlock()
	}
	p.mu.Lock()
	reqID := e.reqID
	p.mu.Unlock()
	data := encodeEvent(now, "function", p.logRecord(line, reqID, now))
	p.mu.Lock()
	p.emitLocked(e, item{cat: "function", data: data, at: now, droppable: true})
	p.mu.Unlock()
}

// extensionLine turns one line of extension output into an extension record.
func (p *Platform) extensionLine(e *env, name string, line []byte) {
	now := time.Now()
	p.stats.extensionLines.Add(1)
	if w := p.cfg.ExtensionOutput; w != nil {
		p.extOutMu.Lock()
		_, _ = w.Write(line)
		_, _ = w.Write([]byte{'\n'})
		p.extOutMu.Unlock()
	}
	data := encodeEvent(now, "extension", p.logRecord(line, "", now))
	p.mu.Lock()
	if len(p.extLines) < maxExtensionLines {
		p.extLines = append(p.extLines, string(line))
	}
	p.emitLocked(e, item{cat: "extension", data: data, at: now, droppable: true})
	p.mu.Unlock()
}

// logRecord is the record of a function or extension line: the line as a
// JSON string in Text format; in JSON format a line that is a JSON object
// as that object, any other line wrapped the way Lambda wraps plain lines.
func (p *Platform) logRecord(line []byte, reqID string, t time.Time) []byte {
	if p.cfg.LogFormat != "JSON" {
		return marshalNoEscape(string(line))
	}
	if trimmed := bytes.TrimSpace(line); len(trimmed) > 0 && trimmed[0] == '{' && json.Valid(trimmed) {
		return trimmed
	}
	return marshalNoEscape(struct {
		Timestamp string `json:"timestamp"`
		Level     string `json:"level"`
		RequestID string `json:"requestId,omitempty"`
		Message   string `json:"message"`
	}{t.UTC().Format(timeLayout), "INFO", reqID, string(line)})
}

// marshalNoEscape encodes v without HTML escaping, as Lambda sends lines.
func marshalNoEscape(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // strings and flat structs of strings always encode
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})
}

// encodeEvent builds one element of a telemetry batch: {time, type, record}.
func encodeEvent(t time.Time, typ string, record []byte) []byte {
	b := make([]byte, 0, len(record)+len(typ)+64)
	b = append(b, `{"time":"`...)
	b = t.UTC().AppendFormat(b, timeLayout)
	b = append(b, `","type":"`...)
	b = append(b, typ...)
	b = append(b, `","record":`...)
	b = append(b, record...)
	return append(b, '}')
}
