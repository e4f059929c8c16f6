//go:build parquet

package buffer

import (
	"bytes"
	"testing"

	"github.com/parquet-go/parquet-go"
)

// TestParquetEmptyMessage: an empty function line has an empty message in
// Parquet too, not NULL; a platform row without one stays NULL.
func TestParquetEmptyMessage(t *testing.T) {
	bt := sealOne(t, FormatParquet, []Record{{Time: testTime, Type: "function"}, {Time: testTime, Type: "platform.start"}})
	f, err := parquet.OpenFile(bytes.NewReader(bt.Data), int64(len(bt.Data)))
	if err != nil {
		t.Fatal(err)
	}
	col, ok := f.Schema().Lookup("message")
	if !ok {
		t.Fatal("no message column")
	}
	rows := make([]parquet.Row, 2)
	r := f.RowGroups()[0].Rows()
	defer r.Close()
	if n, _ := r.ReadRows(rows); n != 2 {
		t.Fatalf("read %d rows, want 2", n)
	}
	var got []bool
	for _, row := range rows {
		got = append(got, row[col.ColumnIndex].IsNull())
	}
	if got[0] || !got[1] {
		t.Errorf("message IsNull = %v, want [false true] (function line empty, platform event absent)", got)
	}
}
