package buffer

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/zstd"
)

func compress(t *testing.T, s string) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	return enc.EncodeAll([]byte(s), nil)
}

func TestDecodeBatch(t *testing.T) {
	long := strings.Repeat("y", 200<<10) // longer than the line reader's buffer
	tests := []struct {
		name string
		data string
		want []string
	}{
		{"lines", "a\nbb\nccc\n", []string{"a", "bb", "ccc"}},
		{"no final newline", "a\nb", []string{"a", "b"}},
		{"empty lines kept", "\n\na\n", []string{"", "", "a"}},
		{"empty", "", nil},
		{"long lines", "a\n" + long + "\n" + long + "z\nb\n", []string{"a", long, long + "z", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeBatch(compress(t, tt.data))
			if err != nil {
				t.Fatalf("DecodeBatch: %v", err)
			}
			var gotS []string
			for _, l := range got {
				gotS = append(gotS, string(l))
			}
			if diff := cmp.Diff(tt.want, gotS); diff != "" {
				t.Errorf("DecodeBatch mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeBatchErrors(t *testing.T) {
	good := compress(t, strings.Repeat("some line of text\n", 1000))
	corrupt := bytes.Clone(good)
	corrupt[len(corrupt)/2] ^= 0xff
	tests := []struct {
		name string
		data []byte
	}{
		{"not zstd", []byte("plain text\n")},
		{"truncated", good[:len(good)-10]},
		{"corrupt", corrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeBatch(tt.data); err == nil {
				t.Error("DecodeBatch = nil error, want one")
			}
		})
	}
}

func TestRowsStopsEarly(t *testing.T) {
	b := &Batch{Seq: 7, Data: compress(t, "a\nb\nc\n")}
	var got []string
	for line, err := range Rows(b) {
		if err != nil {
			t.Fatalf("Rows: %v", err)
		}
		got = append(got, string(line))
		if len(got) == 2 {
			break
		}
	}
	if diff := cmp.Diff([]string{"a", "b"}, got); diff != "" {
		t.Errorf("Rows mismatch (-want +got):\n%s", diff)
	}
}

func TestRowsErrorNamesBatch(t *testing.T) {
	var errs []error
	for _, err := range Rows(&Batch{Seq: 42, Data: []byte("junk")}) {
		errs = append(errs, err)
	}
	if len(errs) != 1 || errs[0] == nil || !strings.Contains(errs[0].Error(), "decode batch 42") {
		t.Errorf("Rows yielded errors %v, want one naming batch 42", errs)
	}
}
