package buffer

// Queue is a FIFO of sealed batches whose total compressed size (the sum of
// len(Data)) is capped, so that batches waiting for a slow or failing sink
// cannot exhaust memory. It is owned by one goroutine, like the Batcher.
//
// At the cap the queue makes room by evicting its OLDEST batches and handing
// them back to the caller from Push; it never drops a batch itself. The
// caller writes the evicted batches to the fallback and counts them.
type Queue struct {
	max   int
	bytes int
	items []*Batch // items[0] is the oldest
}

// NewQueue returns an empty queue that holds at most maxBytes of compressed
// data. A batch larger than maxBytes on its own is still accepted, alone, so
// maxBytes <= 0 means the queue holds only the newest batch.
func NewQueue(maxBytes int) *Queue {
	return &Queue{max: maxBytes}
}

// Push appends b as the newest batch. If the total then exceeds the cap, the
// oldest batches are removed until it fits or b is the only one left; they
// are returned, oldest first, and the caller owns them from then on. Push of
// nil does nothing.
func (q *Queue) Push(b *Batch) (evicted []*Batch) {
	if b == nil {
		return nil
	}
	q.items = append(q.items, b)
	q.bytes += len(b.Data)
	for q.bytes > q.max && len(q.items) > 1 {
		evicted = append(evicted, q.Pop())
	}
	return evicted
}

// Peek returns the oldest batch without removing it; nil when empty.
func (q *Queue) Peek() *Batch {
	if len(q.items) == 0 {
		return nil
	}
	return q.items[0]
}

// Pop removes and returns the oldest batch; nil when empty.
func (q *Queue) Pop() *Batch {
	if len(q.items) == 0 {
		return nil
	}
	b := q.items[0]
	// Clear the slot so the backing array does not keep the data alive.
	q.items[0] = nil
	q.items = q.items[1:]
	q.bytes -= len(b.Data)
	return b
}

// Len returns the number of batches held.
func (q *Queue) Len() int { return len(q.items) }

// Bytes returns the compressed bytes held, the quantity the cap limits.
func (q *Queue) Bytes() int { return q.bytes }
