//go:build !parquet

package buffer

import "io"

// ParquetBuilt says whether this build can write Parquet (build tag
// "parquet"). parquet-go adds about 13 MB to the binary and 5 ms to every
// cold start, so the default layer leaves it out.
const ParquetBuilt = false

// pqWriter stands in for the Parquet writer in builds without it. Limits
// and ParseFormat keep FormatParquet from reaching it.
type pqWriter struct{}

func newPQWriter(Meta) *pqWriter                     { return nil }
func (*pqWriter) add(*Record, int)                   {}
func (*pqWriter) reset(io.Writer)                    {}
func (*pqWriter) close() error                       { return errNoParquet }
func newParquetNDJSON([]byte) (io.ReadCloser, error) { return nil, errNoParquet }
