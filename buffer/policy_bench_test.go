package buffer

import (
	"math/rand/v2"
	"testing"
)

// policyCorpus is benchCorpus as Lambda delivers it: each invocation opened
// by platform.start and closed by platform.runtimeDone then
// platform.report, 5% of them failing, and 2% of lines carrying an
// address and an email for the redactor to find.
func policyCorpus(n int) []Record {
	rng := rand.New(rand.NewPCG(11, 12))
	src := benchCorpus(n)
	out := make([]Record, 0, n+n/10)
	open := false
	for _, r := range src {
		if !open {
			out = append(out, Record{Time: r.Time, Type: "platform.start", RequestID: r.RequestID})
			open = true
		}
		if r.Type == "platform.report" {
			if rng.IntN(100) < 5 {
				r.Status = "failure"
			}
			out = append(out, Record{Time: r.Time, Type: "platform.runtimeDone", RequestID: r.RequestID, Status: r.Status})
			open = false
		} else if rng.IntN(100) < 2 {
			r.Message += " client 10.1.2.3 user jane.doe@example.com"
		}
		out = append(out, r)
	}
	return out
}

// BenchmarkPolicy compares one record stream through (a) nothing but the
// copy and emit the pipeline does anyway, (b) level detection and tail
// sampling at rate 0.1 (and at rate 1, where nothing is held), (c) the same
// with every redaction preset. One op is one record; MB/s counts Message
// and Fields bytes.
func BenchmarkPolicy(b *testing.B) {
	recs := policyCorpus(40000)
	total := 0
	for i := range recs {
		total += len(recs[i].Message) + len(recs[i].Fields)
	}
	all, err := NewRedactor([]string{"all"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name string
		st   func() *Stager // nil: baseline
	}{
		{"a=baseline", nil},
		{"b=stager-rate0.1", func() *Stager { return NewStager(policy(0.1, nil), nil) }},
		{"b1=stager-rate1", func() *Stager { return NewStager(policy(1, nil), nil) }},
		{"c=stager-rate0.1+redact-all", func() *Stager { return NewStager(policy(0.1, nil), all) }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var emitted, emittedBytes int
			emit := func(r *Record) {
				emitted++
				emittedBytes += len(r.Message)
			}
			var st *Stager
			if c.st != nil {
				st = c.st()
			}
			b.SetBytes(int64(total / len(recs)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r := recs[i] // the pipeline owns a copy either way
				if st == nil {
					emit(&r)
				} else {
					st.Add(&r, emit)
				}
				if i++; i == len(recs) {
					i = 0
				}
			}
			if st != nil {
				st.Flush(emit)
			}
			b.ReportMetric(float64(emitted)/float64(b.N), "emitted/op")
		})
	}
}
