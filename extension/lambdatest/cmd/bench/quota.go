package main

import (
	"context"
	"errors"
	"io"
)

func runQuota(ctx context.Context, o options, w io.Writer) error {
	return errors.New("not yet")
}
