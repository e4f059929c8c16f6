package buffer

import (
	"slices"
	"strings"
	"unsafe"

	"github.com/sluice-logs/sluice/buffer/jsonscan"
)

// maxEscapeDepth bounds how many times escaped text is decoded again: JSON
// in a JSON string in a log line is two levels, and each level costs a
// pass over the line.
const maxEscapeDepth = 3

// textSpans returns the matches in the text s, sorted and merged: those of
// the rules in s as it is, and, where s holds JSON escapes, those found in
// s decoded, mapped back onto the bytes of s they came from. A secret
// after "\n" (AKIA... preceded by the letter n) or around "\/" is only a
// secret once decoded. f are the features of s (or more); ctx is the text
// before s for the aws secret rule. The result lives in r's scratch space
// until the next call.
func (r *Redactor) textSpans(s, ctx string, f feature, depth int) []span {
	m := r.collect(r.matches[:0], s, ctx, f)
	r.matches = m
	if depth < maxEscapeDepth && strings.IndexByte(s, '\\') >= 0 {
		dec, pos, decoded := jsonscan.AppendUnescaped(r.dec[depth][:0], r.pos[depth][:0], s)
		r.dec[depth], r.pos[depth] = dec, pos
		if decoded {
			own := slices.Clone(m) // the deeper call reuses r.matches
			d := unsafe.String(unsafe.SliceData(dec), len(dec))
			for _, sp := range r.textSpans(d, "", r.features(d), depth+1) {
				own = append(own, span{int(pos[sp.start]), rawEnd(pos, sp.end, len(s)), sp.rule})
			}
			r.matches = own
			m = own
		}
	}
	return mergeSpans(m)
}

// rawEnd maps the end of a match in decoded text, index b, to the text it
// was decoded from, whose length is n: the start of the escape or byte that
// the next decoded character came from, past the bytes of a character that
// an escape decoded to several bytes.
func rawEnd(pos []int32, b, n int) int {
	for b > 0 && b < len(pos) && pos[b] == pos[b-1] {
		b++
	}
	if b >= len(pos) {
		return n
	}
	return int(pos[b])
}

// scanKeyText finds the values of the named keys in text: key=value (up to
// a space, '&', ',', ';', a quote or a closing bracket), key: value (to the
// end of the line, as in an HTTP header), a quoted value ("key": "value",
// key='value') up to its closing quote, and an object or array after the
// key whole. The key is a word of letters, digits, '_', '-', '.' or '@'
// that may be quoted.
func (r *Redactor) scanKeyText(m []span, s string) []span {
	// The next ':' and '=' at or after i, found by IndexByte, which is much
	// faster than IndexAny; -1 when there is none.
	colon, eq := -2, -2
	for i := 0; i < len(s); i++ {
		if colon != -1 && colon < i {
			if colon = strings.IndexByte(s[i:], ':'); colon >= 0 {
				colon += i
			}
		}
		if eq != -1 && eq < i {
			if eq = strings.IndexByte(s[i:], '='); eq >= 0 {
				eq += i
			}
		}
		switch {
		case colon < 0 && eq < 0:
			return m
		case colon < 0 || eq >= 0 && eq < colon:
			i = eq
		default:
			i = colon
		}
		c := s[i]
		if i+1 < len(s) && (s[i+1] == c || c == '=' && s[i+1] == '>') {
			i++ // "::", "==", "=>"
			continue
		}
		k := i
		for k > 0 && i-k < 16 && isSpace(s[k-1]) {
			k--
		}
		if k > 0 && (s[k-1] == '"' || s[k-1] == '\'') {
			k--
		}
		e := k
		for k > 0 && e-k < 64 && isKeyChar(s[k-1]) {
			k--
		}
		if k == e || k > 0 && isKeyChar(s[k-1]) || !r.hasKey(s[k:e]) {
			continue
		}
		v := i + 1
		for v < len(s) && (s[v] == ' ' || s[v] == '\t') {
			v++
		}
		if v == len(s) {
			break
		}
		start, end := v, -1
		switch q := s[v]; {
		case q == '"' || q == '\'':
			start = v + 1
			end = quoteEnd(s, start, q)
		case q == '{' || q == '[':
			end = jsonscan.SkipLoose(s, v)
		case c == ':':
			end = lineEnd(s, v)
		default:
			end = v + strings.IndexAny(s[v:], " \t\r\n&,;\"')]}")
			if end < v {
				end = len(s)
			}
		}
		if end < 0 {
			end = lineEnd(s, start)
		}
		if end > start {
			m = append(m, span{start, end, r.keyRule})
			i = end - 1
		}
	}
	return m
}

// quoteEnd returns the index of the quote q that closes the value starting
// at s[i], skipping backslash escapes, or the end of the line.
func quoteEnd(s string, i int, q byte) int {
	for ; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case q:
			return i
		case '\n', '\r':
			return i
		}
	}
	return len(s)
}

func lineEnd(s string, i int) int {
	if j := strings.IndexAny(s[i:], "\r\n"); j >= 0 {
		return i + j
	}
	return len(s)
}

func isKeyChar(c byte) bool { return is(c, cAlnum) || c == '_' || c == '-' || c == '.' || c == '@' }

// hasKey reports whether name is one of r's keys, ignoring case, '-', '_'
// and '.'. It does not allocate.
func (r *Redactor) hasKey(name string) bool {
	if r.keys == nil || len(name) == 0 || len(name) > 64 {
		return false
	}
	// Most words are not keys: their first or last letter tells.
	first, last := 0, len(name)-1
	for first < last && isKeySep(name[first]) {
		first++
	}
	for last > first && isKeySep(name[last]) {
		last--
	}
	if r.keyEnds[name[first]]&1 == 0 || r.keyEnds[name[last]]&2 == 0 {
		return false
	}
	var buf [64]byte
	return r.keys[string(appendKey(buf[:0], name))]
}

// normalizeKey is the form keys are stored and compared in.
func normalizeKey(name string) string { return string(appendKey(nil, name)) }

func isKeySep(c byte) bool { return c == '-' || c == '_' || c == '.' }

func appendKey(dst []byte, name string) []byte {
	for i := range len(name) {
		switch c := name[i]; {
		case isKeySep(c):
		case 'A' <= c && c <= 'Z':
			dst = append(dst, c+'a'-'A')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// validKeyName accepts the names scanKeyText can find: 1 to 64 key
// characters.
func validKeyName(k string) bool {
	if len(k) > 64 || len(normalizeKey(k)) == 0 {
		return false
	}
	for i := range len(k) {
		if !isKeyChar(k[i]) {
			return false
		}
	}
	return true
}
