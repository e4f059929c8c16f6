// Package sinks writes sealed batches to where the archive lives: S3, a local
// directory, and the stdout fallback.
package sinks

import (
	"context"

	"github.com/sluice-logs/sluice/buffer"
)

// Sink stores sealed batches. Write returns nil only when the whole batch is
// durably accepted; it blocks until then or until ctx ends, which is the
// back-pressure. Writing a batch that was already stored (same Seq) succeeds
// without duplicating it. Close is idempotent.
type Sink interface {
	Write(ctx context.Context, b *buffer.Batch) error
	Close(ctx context.Context) error
}
