package buffer

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// On Lambda Managed Instances invocations interleave, no runtimeDone comes
// and platform.report (durationMs and status only) decides; a text line
// carries no requestId and belongs to no invocation.
func TestStagerConcurrent(t *testing.T) {
	concurrent := func(p *Policy) { p.Concurrent = true }
	tests := []struct {
		name  string
		p     Policy
		in    *stream
		flush bool
		want  []string
	}{
		{
			name: "report status decides interleaved invocations",
			p:    policy(0, concurrent),
			in: new(stream).start("a").start("b").line("a", "a1").line("b", "b1").line("a", "a2").line("b", "b2").
				report("b", "error").report("a", "success"),
			want: []string{"start a", "start b", "function b INFO b1", "function b INFO b2", "report b error", "report a success"},
		},
		{
			name: "a text line is not given to the invocation that started last",
			p:    policy(0, concurrent),
			in:   new(stream).start("a").start("b").line("", "no id").line("", "ERROR no id").report("b", "error").report("a", "error"),
			want: []string{"start a", "start b", "function  ERROR ERROR no id", "report b error", "report a error"},
		},
		{
			name: "on demand the same text lines belong to the running invocation",
			p:    policy(0, nil),
			in:   new(stream).start("b").line("", "no id").report("b", "error"),
			want: []string{"start b", "function b INFO no id", "report b error"},
		},
		{
			name: "text lines stream through at rate 1",
			p:    policy(1, concurrent),
			in:   new(stream).start("a").line("", "t1").line("a", "j1").line("", "t2"),
			want: []string{"start a", "function  INFO t1", "function a INFO j1", "function  INFO t2"},
		},
		{
			name:  "no report: decided at Flush by the lines seen",
			p:     policy(0, concurrent),
			in:    new(stream).start("a").start("b").line("a", "a1").line("b", "FATAL b1").line("b", "b2"),
			flush: true,
			want:  []string{"start a", "start b", "function b FATAL FATAL b1", "function b INFO b2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := NewStager(tt.p, nil)
			out := feed(st, tt.in.recs, tt.flush)
			if diff := cmp.Diff(tt.want, show(out)); diff != "" {
				t.Errorf("emitted (-want +got):\n%s", diff)
			}
			checkAccounting(t, st.Stats(), out, tt.flush)
		})
	}
}
