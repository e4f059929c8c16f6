package buffer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"iter"
)

// maxDecodeWindow rejects frames that would make the decoder allocate more
// than a Batcher's window calls for; spilled files may be damaged.
const maxDecodeWindow = 8 << 20

// Rows yields the NDJSON lines of a sealed batch in any Format, without
// their trailing newline, decoding as it goes (see NewReader) so that only
// about one line and the decoder's window are in memory. A Parquet batch
// yields the rows AppendRow writes for its records, byte for byte what the
// NDJSON formats would hold. A yielded line is only valid until the next
// iteration. A decoding error is yielded once, with a nil line, and ends the
// sequence; lines before it were intact.
func Rows(b *Batch) iter.Seq2[[]byte, error] {
	return rows(b.Data, fmt.Sprintf("decode batch %d", b.Seq))
}

// rows is Rows; op names the operation in errors.
func rows(data []byte, op string) iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		dec, err := NewReader(data)
		if err != nil {
			yield(nil, fmt.Errorf("%s: %w", op, err))
			return
		}
		defer dec.Close()
		r := bufio.NewReaderSize(dec, 32<<10)
		var long []byte // assembles lines longer than r's buffer
		for {
			line, err := r.ReadSlice('\n')
			if errors.Is(err, bufio.ErrBufferFull) {
				long = append(long, line...)
				continue
			}
			if len(long) > 0 {
				line = append(long, line...)
				long = nil
			}
			if err != nil && !errors.Is(err, io.EOF) {
				yield(nil, fmt.Errorf("%s: %w", op, err))
				return
			}
			if n := len(line); n > 0 && line[n-1] == '\n' {
				line = line[:n-1]
			} else if n == 0 && err != nil {
				return // end of data
			}
			if !yield(line, nil) || err != nil {
				return
			}
		}
	}
}

// DecodeBatch returns the NDJSON lines of sealed batch data in any Format,
// each without its trailing newline. Unlike Rows it holds every line in
// memory at once.
func DecodeBatch(data []byte) ([][]byte, error) {
	var lines [][]byte
	for line, err := range rows(data, "decode batch") {
		if err != nil {
			return nil, err
		}
		lines = append(lines, bytes.Clone(line))
	}
	return lines, nil
}
