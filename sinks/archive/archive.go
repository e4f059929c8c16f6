// Package archive reads back what sluice's sinks wrote: it lists the
// partitions a time window needs, downloads their objects in parallel with
// a bound, decodes every format the batcher writes, and merges the rows of
// all objects by time in one stream, with bounded memory. It serves the
// `sluice logs` command.
//
// Objects are keyed as sinks.Layout writes them:
//
//	PREFIX/function=NAME/dt=YYYY-MM-DD/hour=HH/<start>-<env>-<seq><ext>
//
// A batch never spans two UTC hours of record time (buffer.Batcher seals at
// the boundary), so every row of an object lies in its object's hour: the
// hour prefixes that overlap a window hold every row of the window, and no
// other prefix need be listed. Within an hour nothing is as strict: a
// batch's first row gives <start>, but late telemetry can put rows earlier
// than it, and a batch stays open while its environment is frozen, so rows
// can come long after it. Every object of an hour is therefore read, and
// rows are filtered by their own time.
package archive

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/sinks"
)

// Object is one archived batch, as its key describes it.
type Object struct {
	Key      string
	Size     int64
	Function string    // the function= partition, unescaped
	Hour     time.Time // the dt= and hour= partitions, UTC
	Start    time.Time // <start>: the batch's first record time, to the second
	Env      string    // <env>, unescaped
	Seq      uint64    // <seq>
	Ext      string    // ".json.zst", ".json.gz" or ".parquet"
}

// HourPrefix returns the key prefix, ending in '/', of function's objects
// for the UTC hour holding t. It is built by sinks.Layout itself, so reader
// and writer cannot disagree on escaping or padding.
func HourPrefix(prefix, function string, t time.Time) string {
	k := sinks.Layout{Prefix: prefix, Function: function}.Key(&buffer.Batch{Start: t})
	return k[:strings.LastIndexByte(k, '/')+1]
}

// Hours returns the UTC hours that overlap [start, end): the partitions a
// window needs. end must be after start.
func Hours(start, end time.Time) []time.Time {
	var hs []time.Time
	for h := start.UTC().Truncate(time.Hour); h.Before(end); h = h.Add(time.Hour) {
		hs = append(hs, h)
	}
	return hs
}

// exts are the extensions the batcher writes, longest match first.
var exts = []string{buffer.ExtNDJSONZstd, buffer.ExtNDJSONGzip, buffer.ExtParquet}

// startLayout is <start> in a key.
const startLayout = "20060102T150405Z"

// ParseKey returns the object that key names, or an error when key is not
// one that sinks.Layout writes (a foreign file in the prefix, say). The
// key's <start> must lie in its hour partition, as the batcher guarantees.
func ParseKey(key string) (Object, error) {
	o := Object{Key: key}
	fail := func(why string) (Object, error) {
		return Object{}, fmt.Errorf("parse key %q: %s", key, why)
	}
	// PREFIX may hold anything, so the partitions are found from the end.
	parts := strings.Split(key, "/")
	if len(parts) < 4 {
		return fail("want PREFIX/function=NAME/dt=YYYY-MM-DD/hour=HH/FILE")
	}
	fn, dt, hr, name := parts[len(parts)-4], parts[len(parts)-3], parts[len(parts)-2], parts[len(parts)-1]
	esc, ok := strings.CutPrefix(fn, "function=")
	if !ok {
		return fail("no function= partition")
	}
	var err error
	if o.Function, err = unescape(esc); err != nil {
		return fail("function: " + err.Error())
	}
	d, ok1 := strings.CutPrefix(dt, "dt=")
	h, ok2 := strings.CutPrefix(hr, "hour=")
	if !ok1 || !ok2 || len(d) != 10 || len(h) != 2 {
		return fail("want dt=YYYY-MM-DD/hour=HH")
	}
	if o.Hour, err = time.Parse("2006-01-02T15", d+"T"+h); err != nil {
		return fail("bad dt= or hour=")
	}
	for _, e := range exts {
		if strings.HasSuffix(name, e) {
			o.Ext = e
			name = name[:len(name)-len(e)]
			break
		}
	}
	if o.Ext == "" {
		return fail("unknown extension")
	}
	// <start>-<env>-<seq>; env is escaped but may itself hold '-'.
	if len(name) < len(startLayout)+1 || name[len(startLayout)] != '-' {
		return fail("want <start>-<env>-<seq>")
	}
	if o.Start, err = time.Parse(startLayout, name[:len(startLayout)]); err != nil {
		return fail("bad <start>")
	}
	if !o.Start.Truncate(time.Hour).Equal(o.Hour) {
		return fail("<start> outside its hour partition")
	}
	rest := name[len(startLayout)+1:]
	i := strings.LastIndexByte(rest, '-')
	if i <= 0 || len(rest)-i-1 < 8 {
		return fail("want <start>-<env>-<seq>")
	}
	if o.Seq, err = strconv.ParseUint(rest[i+1:], 10, 64); err != nil {
		return fail("bad <seq>")
	}
	if o.Env, err = unescape(rest[:i]); err != nil {
		return fail("env: " + err.Error())
	}
	return o, nil
}

// unescape undoes sinks' %XX escaping of a key segment.
func unescape(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			sb.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errors.New("truncated %XX")
		}
		b, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", errors.New("bad %XX")
		}
		sb.WriteByte(byte(b))
		i += 2
	}
	return sb.String(), nil
}

// RowTime returns the time of an archived row. Every row starts with its
// time, written by buffer.AppendRow as `{"time":"2006-01-02T15:04:05.000Z"`;
// that form is read by hand, as it runs for every row of a window. ok is
// false for anything else.
func RowTime(row []byte) (t time.Time, ok bool) {
	const head = `{"time":"`
	const n = len(head) + len("2006-01-02T15:04:05.000Z")
	if len(row) < n+1 || string(row[:len(head)]) != head || row[n] != '"' {
		return time.Time{}, false
	}
	b := row[len(head):n]
	if b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' || b[19] != '.' || b[23] != 'Z' {
		return time.Time{}, false
	}
	num := func(i, w int) int {
		v := 0
		for _, c := range b[i : i+w] {
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	year, month, day := num(0, 4), num(5, 2), num(8, 2)
	hour, minute, sec, ms := num(11, 2), num(14, 2), num(17, 2), num(20, 3)
	if year < 0 || month < 1 || month > 12 || day < 1 || day > 31 ||
		hour < 0 || hour > 23 || minute < 0 || minute > 59 || sec < 0 || sec > 59 || ms < 0 {
		return time.Time{}, false
	}
	t = time.Date(year, time.Month(month), day, hour, minute, sec, ms*int(time.Millisecond), time.UTC)
	if t.Day() != day { // February 30th and the like
		return time.Time{}, false
	}
	return t, true
}
