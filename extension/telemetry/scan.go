package telemetry

import (
	"encoding/binary"
	"unicode/utf16"
	"unicode/utf8"
)

// A small validating JSON scanner. The decoder needs only the spans of a few
// values, so instead of building a tree it walks the bytes once, checks the
// grammar strictly (the same language encoding/json accepts, including its
// nesting limit) and reports where each value starts and ends. It never
// recurses, so hostile nesting costs one byte of stack slice per level.

// Flags describing a scanned value, collected while skipping it.
const (
	flagEscape uint8 = 1 << iota // a string holds a backslash escape
	flagHigh                     // a string holds a byte >= 0x80
	flagSpace                    // insignificant whitespace between tokens
)

// maxDepth is encoding/json's nesting limit: a body it rejects for depth is
// rejected here too, so both agree on what is malformed.
const maxDepth = 10000

// strPlain marks the bytes a string can hold without a closer look: printable
// ASCII other than the quote and the backslash.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// plainRun returns the index of the first byte at or after i that is not
// strPlain, eight bytes at a time while it can.
func plainRun(data []byte, i int) int {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	for i+8 <= len(data) {
		x := binary.LittleEndian.Uint64(data[i:])
		// A byte's high bit ends up set if it is a quote, a backslash, a
		// control character or >= 0x80 (and sometimes, through a borrow,
		// next to one: a false alarm only sends us to the byte loop).
		if ((x-lo*0x20)|((x^(lo*'"'))-lo)|((x^(lo*'\\'))-lo)|x)&hi != 0 {
			break
		}
		i += 8
	}
	for i < len(data) && strPlain[data[i]] {
		i++
	}
	return i
}

// at returns data[i], or 0 past the end; 0 never matches a token, so callers
// need no separate bounds check.
func at(data []byte, i int) byte {
	if i < len(data) {
		return data[i]
	}
	return 0
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' }

func skipSpace(data []byte, i int) int {
	for i < len(data) && isSpace(data[i]) {
		i++
	}
	return i
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// skipString scans the string whose opening quote is at data[i] and returns
// the index after its closing quote.
func skipString(data []byte, i int) (end int, fl uint8, ok bool) {
	i++
	for {
		i = plainRun(data, i)
		if i >= len(data) {
			return 0, 0, false
		}
		switch c := data[i]; {
		case c == '"':
			return i + 1, fl, true
		case c == '\\':
			fl |= flagEscape
			switch at(data, i+1) {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(data) || !isHex(data[i+2]) || !isHex(data[i+3]) || !isHex(data[i+4]) || !isHex(data[i+5]) {
					return 0, 0, false
				}
				i += 6
			default:
				return 0, 0, false
			}
		case c < 0x20:
			return 0, 0, false
		default: // >= 0x80; validity is settled when the string is decoded
			fl |= flagHigh
			i++
		}
	}
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// skipNumber scans a JSON number starting at data[i].
func skipNumber(data []byte, i int) (int, bool) {
	if at(data, i) == '-' {
		i++
	}
	switch c := at(data, i); {
	case c == '0':
		i++
	case '1' <= c && c <= '9':
		for i++; isDigit(at(data, i)); i++ {
		}
	default:
		return 0, false
	}
	if at(data, i) == '.' {
		i++
		if !isDigit(at(data, i)) {
			return 0, false
		}
		for i++; isDigit(at(data, i)); i++ {
		}
	}
	if c := at(data, i); c == 'e' || c == 'E' {
		i++
		if c := at(data, i); c == '+' || c == '-' {
			i++
		}
		if !isDigit(at(data, i)) {
			return 0, false
		}
		for i++; isDigit(at(data, i)); i++ {
		}
	}
	return i, true
}

func hasLiteral(data []byte, i int, lit string) bool {
	return len(data)-i >= len(lit) && string(data[i:i+len(lit)]) == lit
}

// skipValue scans the value starting at data[i] (no leading space) and
// returns the index after it. depth is the nesting of the value's container.
// stack is scratch space, returned for reuse.
func skipValue(data []byte, i, depth int, stack []byte) (end int, fl uint8, ok bool, _ []byte) {
	stack = stack[:0]
	for {
		// A value starts at i.
		switch c := at(data, i); c {
		case '"':
			j, f, ok := skipString(data, i)
			if !ok {
				return 0, 0, false, stack
			}
			fl |= f
			i = j
		case '{', '[':
			closer := byte('}')
			if c == '[' {
				closer = ']'
			}
			stack = append(stack, closer)
			if depth+len(stack) > maxDepth {
				return 0, 0, false, stack
			}
			j := skipSpace(data, i+1)
			if j != i+1 {
				fl |= flagSpace
			}
			i = j
			if at(data, i) == closer {
				i++
				stack = stack[:len(stack)-1]
				break
			}
			if closer == '}' {
				var f uint8
				if i, f, ok = skipKey(data, i); !ok {
					return 0, 0, false, stack
				}
				fl |= f
			}
			continue // the first element or member value
		case 't':
			if !hasLiteral(data, i, "true") {
				return 0, 0, false, stack
			}
			i += 4
		case 'f':
			if !hasLiteral(data, i, "false") {
				return 0, 0, false, stack
			}
			i += 5
		case 'n':
			if !hasLiteral(data, i, "null") {
				return 0, 0, false, stack
			}
			i += 4
		default:
			var ok bool
			if i, ok = skipNumber(data, i); !ok {
				return 0, 0, false, stack
			}
		}
		// A value ended at i: close containers until another value is due.
		for {
			if len(stack) == 0 {
				return i, fl, true, stack
			}
			j := skipSpace(data, i)
			if j != i {
				fl |= flagSpace
			}
			i = j
			closer := stack[len(stack)-1]
			c := at(data, i)
			if c == closer {
				i++
				stack = stack[:len(stack)-1]
				continue
			}
			if c != ',' {
				return 0, 0, false, stack
			}
			j = skipSpace(data, i+1)
			if j != i+1 {
				fl |= flagSpace
			}
			i = j
			if closer == '}' {
				var f uint8
				if i, f, ok = skipKey(data, i); !ok {
					return 0, 0, false, stack
				}
				fl |= f
			}
			break
		}
	}
}

// skipKey scans `"key" :` and the space after the colon, returning where the
// member's value starts.
func skipKey(data []byte, i int) (int, uint8, bool) {
	if at(data, i) != '"' {
		return 0, 0, false
	}
	j, fl, ok := skipString(data, i)
	if !ok {
		return 0, 0, false
	}
	k := skipSpace(data, j)
	if at(data, k) != ':' {
		return 0, 0, false
	}
	m := skipSpace(data, k+1)
	if k != j || m != k+1 {
		fl |= flagSpace
	}
	return m, fl, true
}

// member is one member of a scanned object: the key with its quotes and the
// raw value.
type member struct {
	key, val     span
	keyFl, valFl uint8
	kind         uint8 // which known key it is; 0 for any other
}

type span struct{ start, end int }

// members appends the members of the valid object obj to ms. It reports
// false when obj is not a valid object, which cannot happen for a value that
// skipValue accepted but is checked anyway: the decoder must never panic.
func members(obj []byte, ms []member, stack []byte) ([]member, []byte, bool) {
	if at(obj, 0) != '{' {
		return ms, stack, false
	}
	i := skipSpace(obj, 1)
	if at(obj, i) == '}' {
		return ms, stack, skipSpace(obj, i+1) == len(obj)
	}
	for {
		var m member
		m.key.start = i
		if at(obj, i) != '"' {
			return ms, stack, false
		}
		j, f, ok := skipString(obj, i)
		if !ok {
			return ms, stack, false
		}
		m.key.end, m.keyFl = j, f
		i = skipSpace(obj, j)
		if at(obj, i) != ':' {
			return ms, stack, false
		}
		i = skipSpace(obj, i+1)
		m.val.start = i
		// The object itself is at depth 0 here; the absolute depth was
		// checked when the whole body was scanned.
		if i, m.valFl, ok, stack = skipValue(obj, i, 1, stack); !ok {
			return ms, stack, false
		}
		m.val.end = i
		ms = append(ms, m)
		i = skipSpace(obj, i)
		switch at(obj, i) {
		case ',':
			i = skipSpace(obj, i+1)
		case '}':
			return ms, stack, skipSpace(obj, i+1) == len(obj)
		default:
			return ms, stack, false
		}
	}
}

// unquote returns the text of the valid JSON string raw (with its quotes),
// decoded exactly as encoding/json decodes it: invalid UTF-8 and unpaired
// surrogates become U+FFFD.
func unquote(raw []byte, fl uint8) string {
	if len(raw) < 2 {
		return ""
	}
	s := raw[1 : len(raw)-1]
	if fl&flagEscape == 0 && (fl&flagHigh == 0 || utf8.Valid(s)) {
		return string(s)
	}
	return string(appendUnquoted(make([]byte, 0, len(s)), s))
}

func appendUnquoted(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		if j := plainRun(s, i); j > i {
			dst = append(dst, s[i:j]...)
			if i = j; i >= len(s) {
				break
			}
		}
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			switch s[i+1] {
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				r := hex4(s[i+2:])
				if r < 0 {
					return append(dst, s[i:]...) // unreachable for scanned input
				}
				i += 6
				if utf16.IsSurrogate(r) {
					r2 := rune(-1)
					if i+1 < len(s) && s[i] == '\\' && s[i+1] == 'u' {
						r2 = hex4(s[i+2:])
					}
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						i += 6
						r = dec
					} else {
						r = utf8.RuneError
					}
				}
				dst = utf8.AppendRune(dst, r)
				continue
			default: // '"', '\\', '/'
				dst = append(dst, s[i+1])
			}
			i += 2
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			r, size := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && size == 1 {
				dst = utf8.AppendRune(dst, utf8.RuneError)
			} else {
				dst = append(dst, s[i:i+size]...)
			}
			i += size
		}
	}
	return dst
}

// hex4 decodes the four hex digits at the start of s, or returns -1.
func hex4(s []byte) rune {
	if len(s) < 4 {
		return -1
	}
	var r rune
	for _, c := range s[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// appendCompact appends the valid JSON value raw without its insignificant
// whitespace, so a value copied into Fields never carries a newline into an
// NDJSON row.
func appendCompact(dst, raw []byte, fl uint8) []byte {
	if fl&flagSpace == 0 {
		return append(dst, raw...)
	}
	for i := 0; i < len(raw); {
		switch c := raw[i]; {
		case c == '"':
			j, _, ok := skipString(raw, i)
			if !ok {
				return append(dst, raw[i:]...) // unreachable for scanned input
			}
			dst = append(dst, raw[i:j]...)
			i = j
		case isSpace(c):
			i++
		default:
			dst = append(dst, c)
			i++
		}
	}
	return dst
}
