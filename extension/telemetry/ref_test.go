package telemetry

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"

	"github.com/sluice-logs/sluice/buffer"
)

// refDecode is Decode written the obvious way, with encoding/json and maps.
// It is slow and simple; the tests and the fuzz target hold the scanner to
// it, so the two must agree on every input (Fields compared as JSON values,
// since maps do not keep member order).
func refDecode(body []byte, now time.Time) ([]buffer.Record, bool) {
	bad := func() ([]buffer.Record, bool) { return []buffer.Record{malformedRecord(body, now)}, true }
	var evs []json.RawMessage
	if t := bytes.TrimLeft(body, " \t\r\n"); len(t) == 0 || t[0] != '[' || json.Unmarshal(body, &evs) != nil {
		return bad()
	}
	var recs []buffer.Record
	for _, ev := range evs {
		var m map[string]json.RawMessage
		if ev[0] != '{' || json.Unmarshal(ev, &m) != nil {
			return bad()
		}
		typ, ok := m["type"]
		if !ok || typ[0] != '"' {
			return bad()
		}
		var r buffer.Record
		mustUnmarshal(typ, &r.Type)
		t, timeOK := refTime(m["time"])
		rec := m["record"]
		traw := m["time"]
		isLog := r.Type == "function" || r.Type == "extension"
		switch {
		case strings.HasPrefix(r.Type, "sluice."):
			f := map[string]json.RawMessage{"type": typ}
			if rec != nil {
				f["record"] = rec
			}
			r.Fields = refFields(f)
			r.Type = "unknown"
		case rec == nil:
		case isLog && rec[0] == '"':
			mustUnmarshal(rec, &r.Message)
		case isLog && rec[0] == '{':
			var o map[string]json.RawMessage
			mustUnmarshal(rec, &o)
			if v, ok := o["message"]; ok {
				if v[0] == '"' {
					mustUnmarshal(v, &r.Message)
				} else {
					r.Message = refCompact(v)
				}
				delete(o, "message")
			}
			if v, ok := o["level"]; ok && v[0] == '"' {
				var s string
				mustUnmarshal(v, &s)
				r.Level = strings.ToUpper(s)
				delete(o, "level")
			}
			if v, ok := o["requestId"]; ok && v[0] == '"' {
				mustUnmarshal(v, &r.RequestID)
				delete(o, "requestId")
			}
			if v, ok := o["timestamp"]; ok && v[0] == '"' {
				if !timeOK {
					t, timeOK = refTime(v)
					traw = v
				}
				delete(o, "timestamp")
			}
			if r.Level == "" {
				r.Level = refOtherLevel(rec)
			}
			r.Fields = refFields(o)
		case strings.HasPrefix(r.Type, "platform.") && rec[0] == '{':
			var o map[string]json.RawMessage
			mustUnmarshal(rec, &o)
			for k, dst := range map[string]*string{"requestId": &r.RequestID, "status": &r.Status, "errorType": &r.ErrorType} {
				if v, ok := o[k]; ok && v[0] == '"' {
					mustUnmarshal(v, dst)
					delete(o, k)
				}
			}
			if v, ok := o["metrics"]; ok && v[0] == '{' {
				var mm map[string]json.RawMessage
				mustUnmarshal(v, &mm)
				var mv buffer.Metrics
				floats := map[string]*float64{"durationMs": &mv.DurationMs, "billedDurationMs": &mv.BilledDurationMs,
					"initDurationMs": &mv.InitDurationMs, "restoreDurationMs": &mv.RestoreDurationMs}
				ints := map[string]*int64{"memorySizeMB": &mv.MemorySizeMB, "maxMemoryUsedMB": &mv.MaxMemoryUsedMB,
					"producedBytes": &mv.ProducedBytes}
				whole, found := true, false
				for k, raw := range mm {
					f, ok := metricValue(raw)
					switch {
					case ok && floats[k] != nil:
						*floats[k] = f
					case ok && ints[k] != nil:
						*ints[k] = int64(f)
					default:
						whole = false
						continue
					}
					found = true
				}
				if found {
					r.Metrics = &mv
				}
				if whole {
					delete(o, "metrics")
				}
			}
			if v, ok := o["reason"]; ok && v[0] == '"' && r.Type == "platform.logsDropped" {
				mustUnmarshal(v, &r.Message)
			}
			if (r.Type == "platform.runtimeDone" || r.Type == "platform.report") && r.Status != "" && r.Status != "success" {
				r.Level = "ERROR"
			}
			r.Fields = refFields(o)
		default:
			r.Fields = json.RawMessage(refCompact(rec))
		}
		if timeOK && (t.Before(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)) || t.After(now.Add(24*time.Hour))) {
			timeOK = false
			var f any = map[string]any{}
			if r.Fields != nil {
				mustUnmarshal(r.Fields, &f)
			}
			o, isObj := f.(map[string]any)
			if !isObj {
				o = map[string]any{"record": f}
			}
			var orig any
			mustUnmarshal(traw, &orig)
			o["original_time"] = orig
			r.Fields, _ = json.Marshal(o)
		}
		if !timeOK {
			t = now
		}
		r.Time = t
		recs = append(recs, r)
	}
	return recs, false
}

func refTime(raw json.RawMessage) (time.Time, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return time.Time{}, false
	}
	var s string
	mustUnmarshal(raw, &s)
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

func refFields(o map[string]json.RawMessage) json.RawMessage {
	if len(o) == 0 {
		return nil
	}
	b, err := json.Marshal(o)
	if err != nil {
		panic(err)
	}
	return b
}

func refCompact(raw []byte) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		panic(err)
	}
	return b.String()
}

// mustUnmarshal decodes JSON the reference has already validated.
func mustUnmarshal(raw []byte, v any) {
	if err := json.Unmarshal(raw, v); err != nil {
		panic(err)
	}
}

// refOtherLevel is the first level among the members of the object rec
// that name one, in order; of several "level" members only the last counts,
// as encoding/json keeps only the last.
func refOtherLevel(rec []byte) string {
	type member struct {
		key string
		val json.RawMessage
	}
	var ms []member
	dec := json.NewDecoder(bytes.NewReader(rec))
	dec.Token() // {
	for dec.More() {
		k, _ := dec.Token()
		var v json.RawMessage
		if dec.Decode(&v) != nil {
			return ""
		}
		ms = append(ms, member{k.(string), v})
	}
	lastLevel := -1
	for i, m := range ms {
		if m.key == "level" {
			lastLevel = i
		}
	}
	for i, m := range ms {
		if !buffer.IsLevelKey(m.key) || m.key == "level" && i != lastLevel {
			continue
		}
		var s string
		switch {
		case m.val[0] == '"':
			mustUnmarshal(m.val, &s)
		case m.val[0] == '-' || m.val[0] >= '0' && m.val[0] <= '9':
			s = string(m.val)
		default:
			continue
		}
		if l, ok := buffer.LineLevel(s); ok {
			return l.String()
		}
	}
	return ""
}
