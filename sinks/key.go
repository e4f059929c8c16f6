package sinks

import (
	"fmt"
	"strings"

	"github.com/sluice-logs/sluice/buffer"
)

// Layout names the objects of one execution environment. Keys are
// Hive-style partitions in UTC, so Athena's partition projection and Glue
// crawlers both find them:
//
//	PREFIX/function=NAME/dt=YYYY-MM-DD/hour=HH/<start>-<env>-<seq><ext>
type Layout struct {
	Prefix   string // optional leading path, e.g. "logs"; slashes at either end are ignored
	Function string // the function's name (the function= partition)
	Env      string // the execution environment's id, unique per environment
}

// Key returns the object key of b. It depends only on the layout and on the
// batch's Start, Seq, Ext and Env, so a retried upload writes the same key.
//
// The start time comes first in the file name and the sequence number is
// zero-padded, so an environment's objects list in the order they were
// written. Function and Env are escaped to [A-Za-z0-9_.-] (any other byte
// becomes %XX) so that neither can add a path segment or a partition.
func (l Layout) Key(b *buffer.Batch) string {
	start := b.Start.UTC()
	var sb strings.Builder
	sb.Grow(len(l.Prefix) + len(l.Function) + len(l.Env) + len(b.Ext) + 80)
	if p := strings.Trim(l.Prefix, "/"); p != "" {
		sb.WriteString(p)
		sb.WriteByte('/')
	}
	sb.WriteString("function=")
	escapeSegment(&sb, l.Function)
	sb.WriteString(start.Format("/dt=2006-01-02/hour=15/20060102T150405Z"))
	sb.WriteByte('-')
	env := l.Env
	if b.Env != "" {
		env = b.Env
	}
	escapeSegment(&sb, env)
	fmt.Fprintf(&sb, "-%08d", b.Seq)
	sb.WriteString(b.Ext)
	return sb.String()
}

// escapeSegment writes s with every byte outside [A-Za-z0-9_.-] as %XX.
// Lambda function names never need it; it keeps an odd name from turning
// into extra path segments or breaking Hive's key=value parsing.
func escapeSegment(sb *strings.Builder, s string) {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if safeKeyByte(c) {
			sb.WriteByte(c)
			continue
		}
		sb.WriteByte('%')
		sb.WriteByte(hex[c>>4])
		sb.WriteByte(hex[c&15])
	}
}

func safeKeyByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_' || c == '.'
}
