package jsonscan

import (
	"bytes"
	"unicode/utf16"
	"unicode/utf8"
)

// Text is what the unquoters read: the telemetry decoder holds bytes, the
// redactor and level detection strings.
type Text interface{ ~string | ~[]byte }

// DecodeEscape decodes the escape sequence that starts at s[i], a
// backslash, and returns its rune and length; n is 0 when it is not a
// valid JSON escape. A \u high surrogate followed by a \u low surrogate is
// one rune of 12 bytes; a lone surrogate is U+FFFD, as in encoding/json.
func DecodeEscape[S Text](s S, i int) (r rune, n int) {
	if i+1 >= len(s) {
		return 0, 0
	}
	switch s[i+1] {
	case '"', '\\', '/':
		return rune(s[i+1]), 2
	case 'b':
		return '\b', 2
	case 'f':
		return '\f', 2
	case 'n':
		return '\n', 2
	case 'r':
		return '\r', 2
	case 't':
		return '\t', 2
	case 'u':
		r1 := hex4(s, i+2)
		if r1 < 0 {
			return 0, 0
		}
		if !utf16.IsSurrogate(r1) {
			return r1, 6
		}
		if i+7 < len(s) && s[i+6] == '\\' && s[i+7] == 'u' {
			if d := utf16.DecodeRune(r1, hex4(s, i+8)); d != utf8.RuneError {
				return d, 12
			}
		}
		return utf8.RuneError, 6
	}
	return 0, 0
}

// hex4 decodes the four hex digits at s[i:], or returns -1.
func hex4[S Text](s S, i int) rune {
	if i < 0 || i+4 > len(s) {
		return -1
	}
	var r rune
	for j := i; j < i+4; j++ {
		c := s[j]
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

// Unquote returns the text of the valid JSON string raw (with its quotes),
// decoded exactly as encoding/json decodes it: invalid UTF-8 and unpaired
// surrogates become U+FFFD. fl are the flags SkipString gave raw.
func Unquote(raw []byte, fl Flags) string {
	if len(raw) < 2 {
		return ""
	}
	s := raw[1 : len(raw)-1]
	if fl&Escape == 0 && (fl&High == 0 || utf8.Valid(s)) {
		return string(s)
	}
	out, _ := AppendUnquoted(make([]byte, 0, len(s)), s)
	return string(out)
}

// Verbatim reports whether s, the content of a JSON string that SkipString
// accepted with flags fl (without its quotes), can be copied as it is into
// JSON text that every reader decodes to the same string as encoding/json
// decodes s: it is valid UTF-8 (checked only under High), it holds no raw
// U+2028 or U+2029 (valid JSON, but line ends to JavaScript readers, so
// the archive's writer escapes them), and no \u escape of an unpaired
// surrogate (which encoding/json reads as U+FFFD and other readers may
// reject or keep). Any other escape decodes to the same text wherever it
// is read, so the escaped form can stand for the text.
func Verbatim(s []byte, fl Flags) bool {
	if fl&High != 0 && (!utf8.Valid(s) || hasLineSeparator(s)) {
		return false
	}
	return fl&Surrogate == 0 || !hasLoneSurrogate(s)
}

// hasLineSeparator reports whether s holds U+2028 or U+2029 (E2 80 A8/A9).
func hasLineSeparator(s []byte) bool {
	for {
		i := bytes.IndexByte(s, 0xe2)
		if i < 0 || i+2 >= len(s) {
			return false
		}
		if s[i+1] == 0x80 && (s[i+2] == 0xa8 || s[i+2] == 0xa9) {
			return true
		}
		s = s[i+1:]
	}
}

// hasLoneSurrogate reports whether the JSON string content s holds a \u
// escape of a surrogate that is not half of a \uD8xx\uDCxx pair.
func hasLoneSurrogate(s []byte) bool {
	for i := 0; i < len(s); {
		j := bytes.IndexByte(s[i:], '\\')
		if j < 0 {
			return false
		}
		i += j
		if i+1 >= len(s) {
			return true // not valid content: never call it verbatim
		}
		if s[i+1] != 'u' {
			i += 2 // \\ included, so its second backslash starts nothing
			continue
		}
		if !utf16.IsSurrogate(hex4(s, i+2)) {
			i += 6
			continue
		}
		if _, n := DecodeEscape(s, i); n != 12 {
			return true
		}
		i += 12
	}
	return false
}

// AppendUnquoted appends the decoded content of a JSON string (without its
// quotes) to dst, as encoding/json decodes it. ok is false at an invalid
// escape, where it stops.
func AppendUnquoted[S Text](dst []byte, s S) (_ []byte, ok bool) {
	for i := 0; i < len(s); {
		if j := plainRun(s, i); j > i {
			dst = append(dst, s[i:j]...)
			if i = j; i >= len(s) {
				break
			}
		}
		c := s[i]
		switch {
		case c == '\\':
			r, n := DecodeEscape(s, i)
			if n == 0 {
				return dst, false
			}
			if r < utf8.RuneSelf {
				dst = append(dst, byte(r))
			} else {
				dst = utf8.AppendRune(dst, r)
			}
			i += n
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			var b [utf8.UTFMax]byte
			k := copy(b[:], s[i:])
			r, size := utf8.DecodeRune(b[:k])
			if r == utf8.RuneError && size == 1 {
				dst = utf8.AppendRune(dst, utf8.RuneError)
			} else {
				dst = append(dst, s[i:i+size]...)
			}
			i += size
		}
	}
	return dst, true
}

// plainRun is PlainRun for either kind of text.
func plainRun[S Text](s S, i int) int {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	for i+8 <= len(s) {
		x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		if ((x-lo*0x20)|((x^(lo*'"'))-lo)|((x^(lo*'\\'))-lo)|x)&hi != 0 {
			break
		}
		i += 8
	}
	for i < len(s) && strPlain[s[i]] {
		i++
	}
	return i
}

// AppendUnescaped appends s to dst with every valid JSON escape decoded and
// every other byte, a backslash that starts no valid escape included,
// copied as is: it reads escaped JSON inside text that is not JSON. For
// each byte it appends, pos gets the index in s of the byte or escape it
// came from, so that a match found in the decoded text maps back to s.
// decoded reports whether there was any escape.
func AppendUnescaped(dst []byte, pos []int32, s string) (_ []byte, _ []int32, decoded bool) {
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			dst = append(dst, c)
			pos = append(pos, int32(i))
			i++
			continue
		}
		r, n := DecodeEscape(s, i)
		if n == 0 {
			dst = append(dst, c)
			pos = append(pos, int32(i))
			i++
			continue
		}
		decoded = true
		before := len(dst)
		if r < utf8.RuneSelf {
			dst = append(dst, byte(r))
		} else {
			dst = utf8.AppendRune(dst, r)
		}
		for range len(dst) - before {
			pos = append(pos, int32(i))
		}
		i += n
	}
	return dst, pos, decoded
}

// StringEnd returns the index just past the closing quote of the JSON
// string starting at s[i], or -1; esc reports a backslash inside. It is
// lenient: it checks neither escapes nor control characters.
func StringEnd[S Text](s S, i int) (end int, esc bool) {
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '"':
			return j + 1, esc
		case '\\':
			esc = true
			j++
		}
	}
	return -1, esc
}

// SkipLoose returns the index just past the JSON value at s[i], or -1. It
// matches brackets and strings, not the grammar inside containers.
func SkipLoose[S Text](s S, i int) int {
	if i >= len(s) {
		return -1
	}
	switch s[i] {
	case '"':
		end, _ := StringEnd(s, i)
		return end
	case '{', '[':
		depth := 0
		for ; i < len(s); i++ {
			switch s[i] {
			case '"':
				end, _ := StringEnd(s, i)
				if end < 0 {
					return -1
				}
				i = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return -1
	}
	start := i
	for i < len(s) && !IsSpace(s[i]) && s[i] != ',' && s[i] != '}' && s[i] != ']' {
		i++
	}
	if i == start {
		return -1
	}
	return i
}
