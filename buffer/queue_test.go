package buffer

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestQueue(t *testing.T) {
	type push struct {
		size        int      // len(Data) of the pushed batch
		wantEvicted []uint64 // Seqs Push returns
	}
	tests := []struct {
		name      string
		max       int
		pushes    []push
		wantHeld  []uint64 // Seqs left, oldest first
		wantBytes int
	}{
		{
			name:      "under the cap nothing is evicted",
			max:       100,
			pushes:    []push{{size: 30}, {size: 30}, {size: 40}},
			wantHeld:  []uint64{1, 2, 3},
			wantBytes: 100,
		},
		{
			name:      "over the cap the oldest go",
			max:       100,
			pushes:    []push{{size: 30}, {size: 30}, {size: 30}, {size: 30, wantEvicted: []uint64{1}}},
			wantHeld:  []uint64{2, 3, 4},
			wantBytes: 90,
		},
		{
			name:      "several are evicted at once, oldest first",
			max:       100,
			pushes:    []push{{size: 30}, {size: 30}, {size: 30}, {size: 90, wantEvicted: []uint64{1, 2, 3}}},
			wantHeld:  []uint64{4},
			wantBytes: 90,
		},
		{
			name:      "a batch larger than the cap is kept alone",
			max:       100,
			pushes:    []push{{size: 30}, {size: 500, wantEvicted: []uint64{1}}, {size: 10, wantEvicted: []uint64{2}}},
			wantHeld:  []uint64{3},
			wantBytes: 10,
		},
		{
			name:      "a zero cap keeps only the newest",
			max:       0,
			pushes:    []push{{size: 1}, {size: 1, wantEvicted: []uint64{1}}, {size: 0, wantEvicted: []uint64{2}}},
			wantHeld:  []uint64{3},
			wantBytes: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := NewQueue(tt.max)
			for i, p := range tt.pushes {
				evicted := q.Push(&Batch{Seq: uint64(i + 1), Data: make([]byte, p.size)})
				if diff := cmp.Diff(p.wantEvicted, seqs(evicted)); diff != "" {
					t.Errorf("Push(batch %d, %d bytes) evicted mismatch (-want +got):\n%s", i+1, p.size, diff)
				}
			}
			if q.Len() != len(tt.wantHeld) || q.Bytes() != tt.wantBytes {
				t.Errorf("Len, Bytes = %d, %d; want %d, %d", q.Len(), q.Bytes(), len(tt.wantHeld), tt.wantBytes)
			}
			var held []*Batch
			for q.Peek() != nil {
				peeked := q.Peek()
				if popped := q.Pop(); popped != peeked {
					t.Fatalf("Pop = batch %d, Peek said %d", popped.Seq, peeked.Seq)
				}
				held = append(held, peeked)
			}
			if diff := cmp.Diff(tt.wantHeld, seqs(held)); diff != "" {
				t.Errorf("held batches mismatch (-want +got):\n%s", diff)
			}
			if q.Len() != 0 || q.Bytes() != 0 || q.Pop() != nil {
				t.Errorf("drained queue: Len %d, Bytes %d", q.Len(), q.Bytes())
			}
		})
	}
}

func TestQueuePushNil(t *testing.T) {
	q := NewQueue(10)
	if ev := q.Push(nil); ev != nil || q.Len() != 0 {
		t.Errorf("Push(nil) = %v, Len %d; want nothing", ev, q.Len())
	}
}

// TestQueueNothingLost pushes many batches through a small cap and checks
// that every batch is either evicted or popped, exactly once, in order.
func TestQueueNothingLost(t *testing.T) {
	q := NewQueue(1000)
	var out []uint64
	for i := range 10000 {
		out = append(out, seqs(q.Push(&Batch{Seq: uint64(i + 1), Data: make([]byte, i%300)}))...)
		if q.Bytes() > 1000 && q.Len() > 1 {
			t.Fatalf("after push %d: %d bytes in %d batches, cap 1000", i+1, q.Bytes(), q.Len())
		}
		if i%7 == 0 {
			out = append(out, q.Pop().Seq)
		}
	}
	for b := q.Pop(); b != nil; b = q.Pop() {
		out = append(out, b.Seq)
	}
	for i, s := range out {
		if s != uint64(i+1) {
			t.Fatalf("batch %d came out as %d", i+1, s)
		}
	}
	if len(out) != 10000 {
		t.Errorf("%d batches came out, want 10000", len(out))
	}
}

func seqs(bs []*Batch) []uint64 {
	var s []uint64
	for _, b := range bs {
		s = append(s, b.Seq)
	}
	return s
}
