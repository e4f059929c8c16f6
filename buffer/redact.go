package buffer

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/sluice-logs/sluice/buffer/jsonscan"
)

// The redaction presets, in the order their rules are listed. Each is a
// hand-written scanner behind a cheap test (a byte or a short substring
// that every match contains), so that a line with nothing to redact costs a
// few substring searches and one pass over its digits.
//
//	aws     access key ids: AKIA or ASIA and 16 upper-case letters or digits,
//	        as a whole word. Secret access keys: a word of exactly 40
//	        characters of [A-Za-z0-9+/] mixing upper case, lower case and a
//	        digit, '+' or '/', and only when "secret" (or "SECRET", as in
//	        SecretAccessKey or aws_secret_access_key) occurs within the 80
//	        bytes before it: such words are otherwise indistinguishable from
//	        hashes and ids, so without that context they are left alone.
//	        Session tokens: a base64 word of 16 or more characters starting
//	        with the prefix STS gives them (IQoJb3JpZ2lu, or an older one).
//	jwt     eyJ<header>.eyJ<payload>.<signature> in base64url.
//	bearer  the token after "Bearer ", "bearer " or "BEARER ": [A-Za-z0-9-._~+/]+ and '='
//	        padding, at least 8 characters with a digit or a symbol, or 20.
//	        The word "Bearer" stays.
//	email   local@domain.tld or URL-encoded local%40domain.tld, the
//	        top-level label being letters only or punycode (xn--...); not
//	        file names such as logo@2x.png or a.min@site.js.
//	card    13 to 19 digits, plain or in groups of four (or 4-6-5 / 4-6-4)
//	        separated by a space, two spaces or a dash, as a whole word,
//	        starting with 2 to 6 (the issuers' ranges) and passing the Luhn
//	        check. Epoch timestamps (starting with 1), UUIDs and dates never
//	        match; about one in ten other 13-19 digit ids starting with 2-6
//	        does, except after a word that calls it an id ("order id").
//	ip      IPv4 dotted quads with octets 0-255 and no leading zeros, as a
//	        whole word (not 1.2.3.4.5, not v1.2.3.4, not after "release",
//	        "version" and the like); IPv6 in any form net/netip accepts
//	        (compressed, IPv4-embedded), as a whole word.
const (
	presetAWS = iota
	presetJWT
	presetBearer
	presetEmail
	presetCard
	presetIP
	numPresets
)

var presetNames = [numPresets]string{"aws", "jwt", "bearer", "email", "card", "ip"}

// Redactor replaces secrets and personal data in log text with a marker
// naming the rule that matched, "[REDACTED:<rule>]", and counts the
// replacements per rule. Rules are the presets by name, "key" for the
// values of the named keys, user patterns named pattern1, pattern2, ... in
// the order given, and "undecodable" for text that could not be decoded to
// be looked at, which is masked whole.
//
// A Redactor keeps scratch space and counters: it is owned by one goroutine.
// A nil *Redactor redacts nothing.
type Redactor struct {
	rules    []string // presets in use, then "key", then patterns, then "undecodable"
	need     feature  // the features the presets in use look for
	presetOf [numPresets]int
	keys     map[string]bool // normalized key names; nil when the key rule is off
	keyEnds  [256]uint8      // bit 0: a key starts with the byte (either case), bit 1: ends with it
	keyRule  int             // rule index of "key", or -1
	patterns []*regexp.Regexp
	first    int // rule index of the first pattern
	undec    int // rule index of "undecodable"
	counts   []int64
	pending  []int64 // counts of the value being redacted, committed at its end
	matches  []span
	scratch  []byte                  // a decoded JSON string
	scratch2 []byte                  // its redacted form
	text     []byte                  // a message held Escaped, decoded
	dec      [maxEscapeDepth][]byte  // escaped text decoded, per nesting level
	pos      [maxEscapeDepth][]int32 // where each decoded byte came from
}

// span is a match: bytes [start, end) of the text, found by rule.
type span struct{ start, end, rule int }

// RuleCount is the number of replacements one rule has made.
type RuleCount struct {
	Rule  string
	Count int64
}

// RedactSetting says which part of a Redactor's configuration an error is
// about, so that the caller can name the setting it came from.
type RedactSetting int

// The parts of a Redactor's configuration.
const (
	SettingPresets RedactSetting = iota
	SettingPatterns
	SettingKeys
)

// RedactError is one problem NewRedactor found.
type RedactError struct {
	Setting RedactSetting
	Err     error
}

func (e *RedactError) Error() string { return e.Err.Error() }
func (e *RedactError) Unwrap() error { return e.Err }

// DefaultRedactKeys returns the key names whose values are redacted when
// the user names none: passwords, secrets, tokens, API keys, credentials
// headers and cookies.
func DefaultRedactKeys() []string {
	return []string{
		"password", "passwd", "pwd", "secret", "client_secret", "private_key",
		"api_key", "apikey", "x-api-key",
		"token", "access_token", "refresh_token", "id_token", "auth_token", "session_token",
		"aws_secret_access_key", "aws_session_token", "x-amz-security-token",
		"authorization", "proxy-authorization", "cookie", "set-cookie",
	}
}

// NewRedactor returns a Redactor for the named presets (aws, jwt, bearer,
// email, card, ip, or all of them with "all"; names are trimmed and
// case-insensitive, empty ones ignored), the extra regular expressions in
// patterns (RE2 syntax, as package regexp) and the key names in keys. Pattern
// i (from 1) is the rule "pattern<i>"; a name=regex syntax would be
// ambiguous with patterns that contain '='. A key name matches whatever its
// case and its '-', '_' and '.' (access_token, accessToken and
// Access-Token are one name).
//
// The error joins one *RedactError per problem: an unknown preset, a pattern
// that does not compile or matches the empty string, a key that is not a
// name. It quotes no pattern, as a pattern may hold the secret it is meant
// to hide; callers prefix the name of the setting it came from.
func NewRedactor(presets, patterns []string, keys ...string) (*Redactor, error) {
	r := &Redactor{keyRule: -1}
	var use [numPresets]bool
	var errs []error
	for _, p := range presets {
		name := strings.ToLower(strings.TrimSpace(p))
		switch name {
		case "":
			continue
		case "all":
			for i := range use {
				use[i] = true
			}
			continue
		}
		i := indexOf(presetNames[:], name)
		if i < 0 {
			errs = append(errs, &RedactError{SettingPresets, fmt.Errorf("unknown preset %q (known: %s, all)", p, strings.Join(presetNames[:], ", "))})
			continue
		}
		use[i] = true
	}
	for i := range use {
		r.presetOf[i] = -1
		if use[i] {
			r.need |= presetFeatures[i]
			r.presetOf[i] = len(r.rules)
			r.rules = append(r.rules, presetNames[i])
		}
	}
	for _, k := range keys {
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		if !validKeyName(k) {
			errs = append(errs, &RedactError{SettingKeys, fmt.Errorf("key %q: want a field name of letters, digits, '_', '-', '.', '@' (at most 64)", k)})
			continue
		}
		if r.keys == nil {
			r.keys = map[string]bool{}
			r.keyRule = len(r.rules)
			r.rules = append(r.rules, "key")
		}
		n := normalizeKey(k)
		r.keys[n] = true
		for _, c := range [...]byte{n[0], n[0] &^ 0x20} {
			r.keyEnds[c] |= 1
		}
		for _, c := range [...]byte{n[len(n)-1], n[len(n)-1] &^ 0x20} {
			r.keyEnds[c] |= 2
		}
	}
	r.first = len(r.rules)
	for i, p := range patterns {
		re, err := regexp.Compile(p)
		switch {
		case err != nil:
			// The syntax error's code only: its text repeats the pattern.
			msg := "does not compile"
			if se := (*syntax.Error)(nil); errors.As(err, &se) {
				msg = se.Code.String()
			}
			errs = append(errs, &RedactError{SettingPatterns, fmt.Errorf("pattern %d: %s", i+1, msg)})
			continue
		case re.MatchString(""):
			errs = append(errs, &RedactError{SettingPatterns, fmt.Errorf("pattern %d: matches the empty string", i+1)})
			continue
		}
		r.patterns = append(r.patterns, re)
		r.rules = append(r.rules, "pattern"+strconv.Itoa(i+1))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(r.rules) == 0 {
		return r, nil
	}
	r.undec = len(r.rules)
	r.rules = append(r.rules, "undecodable")
	r.counts = make([]int64, len(r.rules))
	r.pending = make([]int64, len(r.rules))
	return r, nil
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// Enabled reports whether r has any rule.
func (r *Redactor) Enabled() bool { return r != nil && len(r.rules) > 0 }

// Rules returns the names of r's rules in the order they are counted.
func (r *Redactor) Rules() []string {
	if r == nil || len(r.rules) == 0 {
		return nil
	}
	return append([]string(nil), r.rules[:r.undec]...)
}

// Counts returns the replacements made so far, one entry per rule in
// Rules order, zero counts included, then "undecodable" if anything was
// masked for not decoding.
func (r *Redactor) Counts() []RuleCount {
	if r == nil || len(r.rules) == 0 {
		return nil
	}
	out := make([]RuleCount, 0, len(r.rules))
	for i, name := range r.rules {
		if i < r.undec || r.counts[i] > 0 {
			out = append(out, RuleCount{Rule: name, Count: r.counts[i]})
		}
	}
	return out
}

// RedactRecord redacts rec.Message as text and rec.Fields as JSON (see
// RedactJSON) in place, and reports whether anything was replaced. The old
// values are not modified, only replaced. The message of a sluice.malformed
// row that holds its body as base64 (the body was not UTF-8) is decoded,
// redacted and encoded again; if it does not decode, it is masked whole.
// A message held Escaped is redacted as the text it stands for (its escapes
// would hide or fake matches otherwise); it keeps its escaped form when
// nothing in it was replaced.
func (r *Redactor) RedactRecord(rec *Record) bool {
	if !r.Enabled() {
		return false
	}
	var changedM bool
	switch {
	case rec.Escaped:
		// Decoded into scratch space: the text outlives this call only as
		// Redact's copy, made when something matched.
		text := rec.Message
		if strings.IndexByte(text, '\\') >= 0 {
			r.text, _ = jsonscan.AppendUnquoted(r.text[:0], text)
			text = unsafe.String(unsafe.SliceData(r.text), len(r.text))
		}
		var red string
		if red, changedM = r.Redact(text); changedM {
			rec.Message, rec.Escaped = red, false
		}
		if cap(r.text) > 64<<10 {
			r.text = nil // do not keep one huge line's buffer for good
		}
	case rec.Type == typeMalformed && bytes.Contains(rec.Fields, []byte(`"encoding":"base64"`)):
		changedM = r.redactBase64(rec)
	default:
		rec.Message, changedM = r.Redact(rec.Message)
	}
	f, changedF := r.RedactJSON(rec.Fields)
	rec.Fields = f
	return changedM || changedF
}

// typeMalformed is the type of the row that carries a telemetry body that
// did not parse (telemetry.TypeMalformed, which imports this package).
const typeMalformed = "sluice.malformed"

func (r *Redactor) redactBase64(rec *Record) bool {
	raw, err := base64.StdEncoding.DecodeString(rec.Message)
	if err != nil {
		rec.Message = string(r.appendMarker(nil, r.undec))
		r.commit()
		return true
	}
	red, changed := r.Redact(unsafe.String(unsafe.SliceData(raw), len(raw)))
	if changed {
		rec.Message = base64.StdEncoding.EncodeToString([]byte(red))
	}
	return changed
}

// Redact returns s with every match replaced by its rule's marker, and
// whether there was any. Overlapping matches are merged into one marker
// named by the rule of the earliest match, so no byte of any match
// survives. Text that holds JSON escapes (a serialized request, a body
// logged as JSON text) is also looked at decoded, escapes within escapes
// too, and what matches there is replaced in s: an escape never hides a
// secret. It allocates only when it replaces something or decodes escapes.
func (r *Redactor) Redact(s string) (string, bool) {
	if !r.Enabled() || s == "" {
		return s, false
	}
	m := r.textSpans(s, "", r.features(s), 0)
	if len(m) == 0 {
		return s, false
	}
	out := r.apply(make([]byte, 0, len(s)+16*len(m)), s, m)
	r.commit()
	return string(out), true
}

// RedactJSON redacts JSON text without breaking it: each string (object
// keys included) is decoded, redacted as text and re-encoded only if
// something matched; a number with a match (a card number written as a
// number) becomes the marker as a string. Matches therefore never span a
// quote or an escape, and valid JSON stays valid. A pattern sees one
// decoded string at a time, never the quotes or the key next to it; the
// aws secret rule alone looks at the raw bytes before a string for its
// "secret" context. Text that is not made of JSON tokens is redacted as
// plain text instead. The input is not modified; the result is b itself
// when nothing matched.
func (r *Redactor) RedactJSON(b []byte) ([]byte, bool) {
	if !r.Enabled() || len(b) == 0 {
		return b, false
	}
	// A read-only view: nothing below keeps it past this call or writes b.
	s := unsafe.String(unsafe.SliceData(b), len(b))
	out, ok := r.redactJSON(s)
	if !ok {
		clear(r.pending)
		red, changed := r.Redact(s)
		if !changed {
			return b, false
		}
		return []byte(red), true
	}
	if out == nil {
		return b, false
	}
	r.commit()
	return out, true
}

// secretWindow is how far before a 40-character word the aws rule looks for
// "secret".
const secretWindow = 80

// redactJSON returns the redacted text, or nil when nothing matched; ok is
// false when s holds something other than JSON tokens.
func (r *Redactor) redactJSON(s string) (out []byte, ok bool) {
	// What the whole text cannot contain, no unescaped string in it does;
	// an escaped one is looked at once decoded.
	whole := r.features(s)
	if whole == 0 && len(r.patterns) == 0 && strings.IndexByte(s, '\\') < 0 &&
		(r.keys == nil || len(r.scanKeyText(r.matches[:0], s)) == 0) {
		// Without escapes, every key is found in the raw text too.
		return nil, true
	}
	last := 0         // s[:last] is in out already
	maskNext := false // the next value belongs to a key the key rule names
	for i := 0; i < len(s); {
		c := s[i]
		if maskNext && c != ':' && !isSpace(c) {
			maskNext = false
			end := -1
			switch {
			case c == '"' || c == '{' || c == '[':
				if end = jsonscan.SkipLoose(s, i); end < 0 {
					end = len(s) // cut short: mask to the end
				}
			case c == '-' || isDigit(c):
				end = numberEnd(s, i)
			}
			if end > i { // true, false and null stay
				out = append(out, s[last:i]...)
				out = append(out, '"')
				out = r.appendMarker(out, r.keyRule)
				out = append(out, '"')
				last, i = end, end
				continue
			}
		}
		switch {
		case c == '"':
			end, esc := jsonscan.StringEnd(s, i)
			closed := end >= 0
			if !closed {
				end = len(s) // unterminated: redact to the end all the same
			}
			content := s[i+1 : end]
			if closed {
				content = s[i+1 : end-1]
			}
			ctx := s[max(0, i-secretWindow):i]
			isKey := closed && r.keys != nil && colonAfter(s, end)
			if !esc {
				if isKey && r.hasKey(content) {
					maskNext = true
				}
				if m := r.textSpans(content, ctx, whole, 0); len(m) > 0 {
					out = append(out, s[last:i+1]...)
					out = r.apply(out, content, m)
					last = i + 1 + len(content)
				}
			} else {
				var valid bool
				r.scratch, valid = jsonscan.AppendUnquoted(r.scratch[:0], content)
				if !valid {
					return nil, false
				}
				dec := unsafe.String(unsafe.SliceData(r.scratch), len(r.scratch))
				if isKey && r.hasKey(dec) {
					maskNext = true
				}
				if m := r.textSpans(dec, ctx, r.features(dec)|whole&fAWSSecret, 0); len(m) > 0 {
					r.scratch2 = r.apply(r.scratch2[:0], dec, m)
					out = append(out, s[last:i]...)
					out = appendString(out, r.scratch2)
					last = end
					if !closed {
						// appendString closed the quote the input left open.
						out = out[:len(out)-1]
					}
				}
			}
			i = end
		case c == '-' || isDigit(c):
			j := numberEnd(s, i)
			if m := r.scan(s[i:j], "", whole); len(m) > 0 {
				out = append(out, s[last:i]...)
				out = append(out, '"')
				out = r.appendMarker(out, m[0].rule)
				out = append(out, '"')
				last = j
			}
			i = j
		case c == '{' || c == '}' || c == '[' || c == ']' || c == ',' || c == ':' || isSpace(c):
			i++
		case strings.HasPrefix(s[i:], "true"):
			i += 4
		case strings.HasPrefix(s[i:], "null"):
			i += 4
		case strings.HasPrefix(s[i:], "false"):
			i += 5
		default:
			return nil, false
		}
	}
	if out == nil {
		return nil, true
	}
	return append(out, s[last:]...), true
}

// numberEnd returns the end of the number-like run at s[i].
func numberEnd(s string, i int) int {
	j := i + 1
	for j < len(s) && (isDigit(s[j]) || s[j] == '.' || s[j] == 'e' || s[j] == 'E' || s[j] == '+' || s[j] == '-') {
		j++
	}
	return j
}

// colonAfter reports whether the next token after s[:i] is a colon: the
// string that ends at i is an object key.
func colonAfter(s string, i int) bool {
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	return i < len(s) && s[i] == ':'
}

// commit adds the pending counts of the value just redacted.
func (r *Redactor) commit() {
	for i, n := range r.pending {
		r.counts[i] += n
	}
	clear(r.pending)
}

// apply appends s to dst with the spans m, sorted and disjoint, replaced by
// markers, and counts them as pending.
func (r *Redactor) apply(dst []byte, s string, m []span) []byte {
	last := 0
	for _, sp := range m {
		dst = append(dst, s[last:sp.start]...)
		dst = r.appendMarker(dst, sp.rule)
		last = sp.end
	}
	return append(dst, s[last:]...)
}

// appendMarker writes the marker of rule and counts one replacement. The
// marker holds no quote, backslash or control character, so it is safe
// inside a JSON string as is.
func (r *Redactor) appendMarker(dst []byte, rule int) []byte {
	r.pending[rule]++
	dst = append(dst, "[REDACTED:"...)
	dst = append(dst, r.rules[rule]...)
	return append(dst, ']')
}

// scan returns the matches of every rule in s, sorted by start and merged
// where they overlap. ctx is the text before s, which only the aws secret
// rule reads. The result lives in r's scratch space until the next scan.
func (r *Redactor) scan(s, ctx string, f feature) []span {
	r.matches = r.collect(r.matches[:0], s, ctx, f)
	return mergeSpans(r.matches)
}

// collect appends the matches of every rule in s to m, unsorted.
func (r *Redactor) collect(m []span, s, ctx string, f feature) []span {
	if f&fAWSKey != 0 {
		m = scanAWSKeyID(m, s, r.presetOf[presetAWS])
	}
	if f&fAWSSecret != 0 {
		m = scanAWSSecret(m, s, ctx, r.presetOf[presetAWS])
	}
	if f&fAWSToken != 0 {
		m = scanAWSToken(m, s, r.presetOf[presetAWS])
	}
	if f&fJWT != 0 {
		m = scanJWT(m, s, r.presetOf[presetJWT])
	}
	if f&fBearer != 0 {
		m = scanBearer(m, s, r.presetOf[presetBearer])
	}
	if f&fEmail != 0 {
		m = scanEmail(m, s, r.presetOf[presetEmail])
	}
	if f&fCard != 0 {
		m = scanCard(m, s, r.presetOf[presetCard])
	}
	if f&fIPv6 != 0 {
		m = scanIPv6(m, s, r.presetOf[presetIP])
	}
	if f&fIPv4 != 0 {
		m = scanIPv4(m, s, r.presetOf[presetIP])
	}
	if r.keys != nil {
		m = r.scanKeyText(m, s)
	}
	for i, re := range r.patterns {
		for _, loc := range re.FindAllStringIndex(s, -1) {
			if loc[1] > loc[0] {
				m = append(m, span{loc[0], loc[1], r.first + i})
			}
		}
	}
	return m
}

// A feature is a cheap sign that a scanner may match: the scanners run
// only on text that has their sign.
type feature uint16

const (
	fAWSKey    feature = 1 << iota // "AKIA" or "ASIA"
	fAWSSecret                     // "ecret" or "ECRET", 40 bytes or more
	fJWT                           // "eyJ"
	fBearer                        // "bearer", "Bearer" or "BEARER"
	fEmail                         // '@'
	fCard                          // 13 digits with at most single ' ' or '-' between
	fIPv4                          // digits and three dots between digits
	fIPv6                          // ':' between hex digits or colons
	fAWSToken                      // "IQoJb3JpZ2lu", "FwoGZXIvYXdz" or "FQoGZXIvYXdz"
)

var presetFeatures = [numPresets]feature{
	presetAWS:    fAWSKey | fAWSSecret | fAWSToken,
	presetJWT:    fJWT,
	presetBearer: fBearer,
	presetEmail:  fEmail,
	presetCard:   fCard,
	presetIP:     fIPv4 | fIPv6,
}

// features returns the features of s that r's presets look for. Each
// substring is searched by its least common byte: strings.Index searches
// by the first one, and 'e' is everywhere.
func (r *Redactor) features(s string) feature {
	need := r.need
	var f feature
	if need&fEmail != 0 && (strings.IndexByte(s, '@') >= 0 || containsVia(s, "%40", 0)) {
		f |= fEmail
	}
	if need&fJWT != 0 && containsVia(s, "eyJ", 2) {
		f |= fJWT
	}
	if need&fAWSKey != 0 && (containsVia(s, "AKIA", 1) || containsVia(s, "ASIA", 1)) {
		f |= fAWSKey
	}
	if need&fAWSToken != 0 && (containsVia(s, "IQoJb3JpZ2lu", 1) || containsVia(s, "GZXIvYXdz", 1)) {
		f |= fAWSToken
	}
	if need&fAWSSecret != 0 && len(s) >= 40 && hasSecretWord(s) {
		f |= fAWSSecret
	}
	if need&fBearer != 0 && (containsVia(s, "bearer", 0) || containsVia(s, "Bearer", 0) || containsVia(s, "BEARER", 0)) {
		f |= fBearer
	}
	if need&(fCard|fIPv4|fIPv6) != 0 {
		f |= numericFeatures(s, need&(fCard|fIPv4|fIPv6))
	}
	return f
}

// containsVia reports whether s contains needle, looking for its byte k
// first.
func containsVia(s, needle string, k int) bool {
	c := needle[k]
	for i := k; i < len(s); {
		j := strings.IndexByte(s[i:], c)
		if j < 0 {
			return false
		}
		if p := i + j - k; p+len(needle) <= len(s) && s[p:p+len(needle)] == needle {
			return true
		}
		i += j + 1
	}
	return false
}

// numericFeatures finds fCard, fIPv4 and fIPv6 in one pass over s, eight
// bytes at a time, stopping once all of want are found. The signs are
// necessary conditions, cheap to test word-wide:
//
//	fCard  a run of 13 or more digits and ' ', '-' or "  " between digits;
//	fIPv4  three digit-dot-digit places within 16 bytes;
//	fIPv6  a ':' between two hex digits or colons.
func numericFeatures(s string, want feature) feature {
	if len(s) < 10 {
		return numericFeaturesSlow(s, want)
	}
	var f feature
	run := 0    // card characters ending at the previous word
	prevDD := 0 // digit-dot-digit places in the previous word
	for i := 0; i < len(s); i += 8 {
		var w uint64
		if i+8 <= len(s) {
			w = load64(s, i)
		} else {
			var b [8]byte // zero bytes match nothing
			copy(b[:], s[i:])
			w = load64(b[:], 0)
		}
		// The bytes either side of the word, for the neighbour tests.
		var before, before2, after, after2 byte
		if i > 0 {
			before = s[i-1]
		}
		if i > 1 {
			before2 = s[i-2]
		}
		if i+8 < len(s) {
			after = s[i+8]
		}
		if i+9 < len(s) {
			after2 = s[i+9]
		}
		d := digits64(w)
		colon := eq64(w, ':')
		if d == 0 && colon == 0 {
			run, prevDD = 0, 0
			continue
		}
		dl := d<<8 | boolHigh(isDigit(before))
		dr := d>>8 | boolHigh(isDigit(after))<<56
		if colon != 0 {
			h := hexColon64(w)
			hl := h<<8 | boolHigh(is(before, cHex) || before == ':')
			hr := h>>8 | boolHigh(is(after, cHex) || after == ':')<<56
			if colon&hl&hr != 0 {
				f |= fIPv6
			}
		}
		dd := bits.OnesCount64(eq64(w, '.') & dl & dr)
		if prevDD+dd >= 3 {
			f |= fIPv4
		}
		prevDD = dd
		// A separator has a digit on each side, or, for a double space, a
		// space and then a digit.
		sp := eq64(w, ' ')
		sl := sp<<8 | boolHigh(before == ' ')
		sr := sp>>8 | boolHigh(after == ' ')<<56
		dl2 := d<<16 | boolHigh(isDigit(before))<<8 | boolHigh(isDigit(before2))
		dr2 := d>>16 | boolHigh(isDigit(after))<<48 | boolHigh(isDigit(after2))<<56
		card := d | (sp|eq64(w, '-'))&dl&dr | sp&(dl|sl&dl2)&(dr|sr&dr2)
		if card == highs64 {
			run += 8
		} else {
			notCard := ^card & highs64
			if run+bits.TrailingZeros64(notCard)/8 >= 13 {
				f |= fCard
			}
			run = bits.LeadingZeros64(notCard) / 8
		}
		if run >= 13 {
			f |= fCard
		}
		if f&want == want {
			break
		}
	}
	return f & want
}

const (
	ones64  = 0x0101010101010101
	highs64 = 0x8080808080808080
	lows64  = 0x7f7f7f7f7f7f7f7f
)

// boolHigh returns the high bit of the lowest byte when b is set.
func boolHigh(b bool) uint64 {
	if b {
		return 0x80
	}
	return 0
}

// eq64 sets the high bit of each byte of w that equals c, exactly.
func eq64(w uint64, c byte) uint64 {
	y := w ^ uint64(c)*ones64
	return ^((y&lows64 + lows64) | y) & highs64
}

// inRange64 sets the high bit of each byte of w in [lo, hi], for hi < 0x80.
func inRange64(w uint64, lo, hi byte) uint64 {
	x := w & lows64 // seven bits per byte: the additions cannot carry
	ge := x + uint64(0x80-lo)*ones64
	gt := x + uint64(0x7f-hi)*ones64
	return ge &^ gt &^ w & highs64
}

func digits64(w uint64) uint64 { return inRange64(w, '0', '9') }

// hexColon64 marks hex digits and colons. Folding case also marks control
// characters 0x10-0x1a, which only costs a needless scan.
func hexColon64(w uint64) uint64 {
	f := w | 0x2020202020202020
	return (inRange64(f, '0', ':') | inRange64(f, 'a', 'f')) &^ w & highs64
}

// numericFeaturesSlow is numericFeatures byte by byte, for short strings.
func numericFeaturesSlow(s string, want feature) feature {
	var f feature
	run, dots := 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isDigit(c) {
			if run++; run >= 13 {
				f |= fCard
			}
			continue
		}
		switch c {
		case '.':
			run = 0
			if i > 0 && isDigit(s[i-1]) && i+1 < len(s) && isDigit(s[i+1]) {
				if dots++; dots >= 3 {
					f |= fIPv4
				}
			} else {
				dots = 0
			}
		case ':':
			run, dots = 0, 0
			if i > 0 && i+1 < len(s) && (is(s[i+1], cHex) || s[i+1] == ':') && (is(s[i-1], cHex) || s[i-1] == ':') {
				f |= fIPv6
			}
		case ' ', '-':
			dots = 0
			if cardSep(s, i) == 0 && !(c == ' ' && i > 0 && s[i-1] == ' ' && i+1 < len(s) && isDigit(s[i+1])) {
				run = 0
			}
		default:
			run, dots = 0, 0
		}
	}
	return f & want
}

// mergeSpans sorts m by start (longest first on a tie) and merges
// overlapping spans into the earliest one, in place.
func mergeSpans(m []span) []span {
	if len(m) < 2 {
		return m
	}
	slices.SortFunc(m, func(a, b span) int {
		if a.start != b.start {
			return cmp.Compare(a.start, b.start)
		}
		return cmp.Compare(b.end, a.end)
	})
	out := m[:1]
	for _, sp := range m[1:] {
		cur := &out[len(out)-1]
		if sp.start < cur.end {
			cur.end = max(cur.end, sp.end)
			continue
		}
		out = append(out, sp)
	}
	return out
}

// Character classes of the scanners.
const (
	cAlnum      = 1 << iota // A-Z a-z 0-9
	cUpperDigit             // A-Z 0-9
	cB64                    // A-Z a-z 0-9 + /
	cB64URL                 // A-Z a-z 0-9 - _
	cToken                  // RFC 6750 b64token: A-Z a-z 0-9 - . _ ~ + /
	cLocal                  // email local part: A-Z a-z 0-9 . _ % + -
	cDomain                 // A-Z a-z 0-9 -
	cHex                    // 0-9 A-F a-f
)

// classes is read-only after initialisation.
var classes = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		upper, lower, digit := 'A' <= b && b <= 'Z', 'a' <= b && b <= 'z', isDigit(b)
		alnum := upper || lower || digit
		var f uint8
		if alnum {
			f |= cAlnum | cB64 | cB64URL | cToken | cLocal | cDomain
		}
		if upper || digit {
			f |= cUpperDigit
		}
		if digit || 'a' <= b|0x20 && b|0x20 <= 'f' {
			f |= cHex
		}
		switch b {
		case '+':
			f |= cB64 | cToken | cLocal
		case '/':
			f |= cB64 | cToken
		case '-':
			f |= cB64URL | cToken | cLocal | cDomain
		case '_':
			f |= cB64URL | cToken | cLocal
		case '.':
			f |= cToken | cLocal
		case '~':
			f |= cToken
		case '%':
			f |= cLocal
		}
		t[c] = f
	}
	return t
}()

func is(c byte, class uint8) bool { return classes[c]&class != 0 }

// wordChar is what may not touch a whole-word match.
func wordChar(c byte) bool { return is(c, cAlnum) || c == '_' }

func scanAWSKeyID(m []span, s string, rule int) []span {
	for _, prefix := range [...]string{"AKIA", "ASIA"} {
		for i := 0; ; {
			j := strings.Index(s[i:], prefix)
			if j < 0 {
				break
			}
			start, end := i+j, i+j+20
			i = start + len(prefix)
			if end > len(s) || start > 0 && is(s[start-1], cAlnum) || end < len(s) && is(s[end], cAlnum) {
				continue
			}
			if allClass(s[start+4:end], cUpperDigit) {
				m = append(m, span{start, end, rule})
			}
		}
	}
	return m
}

// awsTokenPrefixes start the base64 of STS session tokens: the current
// ones ("IQoJb3JpZ2lu", from "\x21\x0a\x09origin") and older ones.
var awsTokenPrefixes = [...]string{"IQoJb3JpZ2lu", "FwoGZXIvYXdz", "FQoGZXIvYXdz"}

// scanAWSToken finds session tokens (AWS_SESSION_TOKEN, X-Amz-Security-Token)
// by their prefix: a base64 word of 16 characters or more that starts with
// one of awsTokenPrefixes, with its '=' padding.
func scanAWSToken(m []span, s string, rule int) []span {
	for _, prefix := range awsTokenPrefixes {
		for i := 0; ; {
			j := strings.Index(s[i:], prefix)
			if j < 0 {
				break
			}
			start := i + j
			end := runEnd(s, start, cB64)
			i = end
			if start > 0 && is(s[start-1], cB64) || end-start < 16 {
				continue
			}
			for end < len(s) && s[end] == '=' {
				end++
			}
			m = append(m, span{start, end, rule})
			i = end
		}
	}
	return m
}

func allClass(s string, class uint8) bool {
	for i := range len(s) {
		if !is(s[i], class) {
			return false
		}
	}
	return true
}

// hasSecretWord reports whether s contains "ecret" or "ECRET". Every letter
// of it is common, so instead of a byte search it looks for the pair "cr"
// (either case) eight bytes at a time and checks the few places found.
func hasSecretWord(s string) bool {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
		fold  = 0x2020202020202020 // 'C' and 'R' become 'c' and 'r'; nothing else does
	)
	i := 0
	// Windows overlap by one byte so that every pair lies inside one.
	for ; i+8 <= len(s); i += 7 {
		w := load64(s, i) | fold
		c, r := w^('c'*ones), w^('r'*ones)
		// High bit of each byte that is zero (and perhaps of a byte above
		// one, which the check below rules out).
		cz := (c - ones) &^ c & highs
		rz := (r - ones) &^ r & highs
		m := cz & (rz >> 8)
		for ; m != 0; m &= m - 1 {
			if secretAt(s, i+bits.TrailingZeros64(m)/8) {
				return true
			}
		}
	}
	for ; i+1 < len(s); i++ {
		if s[i]|0x20 == 'c' && secretAt(s, i) {
			return true
		}
	}
	return false
}

// secretAt reports whether the 'c' of "ecret" or "ECRET" is at s[j].
func secretAt(s string, j int) bool {
	if j < 1 || j+4 > len(s) {
		return false
	}
	w := s[j-1 : j+4]
	return w == "ecret" || w == "ECRET"
}

func scanAWSSecret(m []span, s, ctx string, rule int) []span {
	if len(s) < 40 || !hasSecretWord(s) && !hasSecretWord(ctx) {
		return m
	}
	for i := 0; i < len(s); {
		if !is(s[i], cB64) {
			i++
			continue
		}
		start := i
		for i < len(s) && is(s[i], cB64) {
			i++
		}
		if i-start != 40 || i < len(s) && s[i] == '=' {
			continue
		}
		var upper, lower, other bool
		for _, c := range []byte(s[start:i]) {
			switch {
			case 'A' <= c && c <= 'Z':
				upper = true
			case 'a' <= c && c <= 'z':
				lower = true
			default:
				other = true
			}
		}
		if !upper || !lower || !other {
			continue
		}
		near := hasSecretWord(s[max(0, start-secretWindow):start])
		if !near && start < secretWindow {
			near = hasSecretWord(ctx[max(0, len(ctx)-(secretWindow-start)):])
		}
		if near {
			m = append(m, span{start, i, rule})
		}
	}
	return m
}

func scanJWT(m []span, s string, rule int) []span {
	for i := 0; ; {
		j := strings.Index(s[i:], "eyJ")
		if j < 0 {
			return m
		}
		start := i + j
		i = start + 3
		if start > 0 && (is(s[start-1], cB64URL) || s[start-1] == '.') {
			continue
		}
		// On a miss, skip the runs read: an "eyJ" inside them touches a
		// base64url character or a dot, so cannot start a token.
		p := runEnd(s, start, cB64URL)
		i = p
		if p-start < 8 || p >= len(s) || s[p] != '.' || !strings.HasPrefix(s[p+1:], "eyJ") {
			continue
		}
		q := runEnd(s, p+1, cB64URL)
		i = q
		if q-(p+1) < 8 || q >= len(s) || s[q] != '.' {
			continue
		}
		end := runEnd(s, q+1, cB64URL)
		m = append(m, span{start, end, rule})
		i = end
	}
}

// runEnd returns the end of the run of class characters starting at i.
func runEnd(s string, i int, class uint8) int {
	for i < len(s) && is(s[i], class) {
		i++
	}
	return i
}

func scanBearer(m []span, s string, rule int) []span {
	for _, word := range [...]string{"Bearer", "bearer", "BEARER"} {
		for i := 0; ; {
			j := strings.Index(s[i:], word)
			if j < 0 {
				break
			}
			at := i + j
			i = at + len(word)
			if at > 0 && wordChar(s[at-1]) {
				continue
			}
			p := i
			for p < len(s) && (s[p] == ' ' || s[p] == '\t') {
				p++
			}
			if p == i {
				continue
			}
			end := runEnd(s, p, cToken)
			tok := s[p:end]
			for end < len(s) && s[end] == '=' {
				end++
			}
			if len(tok) >= 20 || len(tok) >= 8 && hasNonLetter(tok) {
				m = append(m, span{p, end, rule})
				i = end
			}
		}
	}
	return m
}

func hasNonLetter(s string) bool {
	for i := range len(s) {
		if !isLetter(s[i]) {
			return true
		}
	}
	return false
}

func scanEmail(m []span, s string, rule int) []span {
	m = scanEmailAt(m, s, "@", rule)
	if strings.Contains(s, "%40") {
		m = scanEmailAt(m, s, "%40", rule) // URL-encoded: john.doe%40example.com
	}
	return m
}

func scanEmailAt(m []span, s, sep string, rule int) []span {
	for i := 0; ; {
		j := strings.Index(s[i:], sep)
		if j < 0 {
			return m
		}
		at := i + j
		i = at + len(sep)
		start := at
		for start > 0 && is(s[start-1], cLocal) {
			start--
		}
		for start < at && s[start] == '.' {
			start++
		}
		if start == at {
			continue
		}
		end := at + len(sep)
		for end < len(s) && (is(s[end], cDomain) || s[end] == '.') {
			end++
		}
		for end > at+len(sep) && (s[end-1] == '.' || s[end-1] == '-') {
			end--
		}
		if validDomain(s[at+len(sep) : end]) {
			m = append(m, span{start, end, rule})
			i = end
		}
	}
}

// validDomain reports whether d is dot-separated non-empty labels, at least
// two, the last of two or more letters or a punycode label (xn--p1ai). A
// first label such as "2x" (logo@2x.png, an image scale) or a last one
// that is a file extension no top-level domain uses makes a file name, not
// an address.
func validDomain(d string) bool {
	dot := strings.LastIndexByte(d, '.')
	if dot <= 0 || strings.Contains(d, "..") || d[0] == '.' {
		return false
	}
	tld := d[dot+1:]
	if len(tld) < 2 {
		return false
	}
	if len(tld) > 4 && strings.EqualFold(tld[:4], "xn--") {
		return allClass(tld[4:], cDomain)
	}
	for i := range len(tld) {
		if !isLetter(tld[i]) {
			return false
		}
	}
	if first := d[:strings.IndexByte(d, '.')]; len(first) >= 2 && (first[len(first)-1]|0x20) == 'x' && allDigits(first[:len(first)-1]) {
		return false
	}
	return !isFileExt(tld)
}

// isFileExt reports whether tld is a file extension that no top-level
// domain uses (.zip and .mov are domains, so they are not listed).
func isFileExt(tld string) bool {
	switch strings.ToLower(tld) {
	case "png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "tif", "tiff", "avif",
		"css", "js", "mjs", "cjs", "ts", "tsx", "jsx", "map", "json", "txt", "html", "htm", "xml",
		"pdf", "woff", "woff2", "ttf", "otf", "eot", "wasm", "gz", "zst":
		return true
	}
	return false
}

// maxCardGroups bounds the digit groups of one run that are tried.
const maxCardGroups = 24

func scanCard(m []span, s string, rule int) []span {
	var groups [maxCardGroups]struct{ start, end int }
	for i := 0; i < len(s); {
		if !isDigit(s[i]) {
			i++
			continue
		}
		start := i
		leftOK := start == 0 || !(wordChar(s[start-1]) || s[start-1] == '.')
		ng, digits := 0, 0
		for {
			gs := i
			for i < len(s) && isDigit(s[i]) {
				i++
			}
			if ng < maxCardGroups {
				groups[ng].start, groups[ng].end = gs, i
				ng++
			}
			digits += i - gs
			if n := cardSep(s, i); n > 0 {
				i += n
				continue
			}
			break
		}
		rightOK := i == len(s) || !(wordChar(s[i]) || s[i] == '.' && i+1 < len(s) && isDigit(s[i+1]))
		if digits < 13 {
			continue
		}
		for first := 0; first < ng; first++ {
			if first == 0 && !leftOK {
				continue
			}
			n := 0
			for last := first; last < ng; last++ {
				n += groups[last].end - groups[last].start
				if n > 19 {
					break
				}
				if n < 13 || last == ng-1 && !rightOK || !cardGrouping(groups[first:last+1]) {
					continue
				}
				if cs := s[groups[first].start:groups[last].end]; cs[0] >= '2' && cs[0] <= '6' && luhn(cs) && !notCardContext(s, groups[first].start) {
					m = append(m, span{groups[first].start, groups[last].end, rule})
					first = last
					break
				}
			}
		}
	}
	return m
}

// cardSep returns the length of the separator between two digit groups at
// s[i]: a dash, or one or two spaces, followed by a digit; 0 for none.
func cardSep(s string, i int) int {
	switch {
	case i+1 >= len(s):
	case (s[i] == ' ' || s[i] == '-') && isDigit(s[i+1]):
		return 1
	case s[i] == ' ' && s[i+1] == ' ' && i+2 < len(s) && isDigit(s[i+2]):
		return 2
	}
	return 0
}

// notCardContext reports whether the one or two words before s[at] say that
// the number there is an id ("order id 5105105105105100"), unless one of
// them says it is a card.
func notCardContext(s string, at int) bool {
	id := false
	for range 2 {
		var word string
		if word, at = wordBefore(s, at); word == "" {
			break
		}
		switch normalizeWord(word) {
		case "card", "cc", "pan", "cardnumber", "creditcard", "ccnumber", "cardno":
			return false
		case "order", "orderid", "id", "invoice", "ref", "reference", "tracking", "txn", "transaction",
			"trace", "traceid", "request", "requestid", "shipment", "sku", "ticket":
			id = true
		}
	}
	return id
}

// wordBefore returns the word of letters and '_' that ends before s[at],
// separated from it by spaces and punctuation such as ':', '=', '#', quotes,
// and where it starts.
func wordBefore(s string, at int) (string, int) {
	e := at
	for e > 0 && at-e < 4 && strings.IndexByte(" \t:=#\"'", s[e-1]) >= 0 {
		e--
	}
	b := e
	for b > 0 && e-b < 32 && (isLetter(s[b-1]) || s[b-1] == '_') {
		b--
	}
	if b == e || b > 0 && wordChar(s[b-1]) {
		return "", at
	}
	return s[b:e], b
}

// normalizeWord lower-cases w and drops '_', for the context word lists.
func normalizeWord(w string) string {
	var buf [32]byte
	n := 0
	for i := range len(w) {
		if c := w[i]; c != '_' && n < len(buf) {
			buf[n] = c | 0x20
			n++
		}
	}
	return string(buf[:n])
}

// cardGrouping accepts one run of digits, or the groupings cards are
// printed in: fours with a shorter last group, 4-6-5 and 4-6-4.
func cardGrouping(g []struct{ start, end int }) bool {
	if len(g) == 1 {
		return true
	}
	w := func(i int) int { return g[i].end - g[i].start }
	if len(g) == 3 && w(0) == 4 && w(1) == 6 && (w(2) == 5 || w(2) == 4) {
		return true
	}
	for i := range len(g) - 1 {
		if w(i) != 4 {
			return false
		}
	}
	return w(len(g)-1) <= 4
}

// luhn checks the Luhn digit of the digits in s, skipping separators.
func luhn(s string) bool {
	sum, double := 0, false
	for i := len(s) - 1; i >= 0; i-- {
		c := s[i]
		if !isDigit(c) {
			continue
		}
		d := int(c - '0')
		if double {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

func scanIPv4(m []span, s string, rule int) []span {
	if strings.IndexByte(s, '.') < 0 {
		return m
	}
	for i := 0; i < len(s); {
		if !isDigit(s[i]) {
			i++
			continue
		}
		start := i
		if start > 0 && (wordChar(s[start-1]) || s[start-1] == '.') {
			for i < len(s) && isDigit(s[i]) {
				i++
			}
			continue
		}
		end, ok := parseIPv4(s, start)
		if ok && (end == len(s) || !(wordChar(s[end]) || s[end] == '.' && end+1 < len(s) && isDigit(s[end+1]))) && !versionContext(s, start) {
			m = append(m, span{start, end, rule})
			i = end
			continue
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	return m
}

// versionContext reports whether the word before s[at] names a version
// ("release 2.1.0.7"), so that the dotted quad there is not an address.
func versionContext(s string, at int) bool {
	word, _ := wordBefore(s, at)
	switch normalizeWord(word) {
	case "release", "version", "ver", "build", "rev", "revision", "firmware", "patch",
		"update", "upgrade", "kernel", "sdk", "runtime", "agent", "v":
		return true
	}
	return false
}

// parseIPv4 reads a dotted quad at s[i:] and returns its end.
func parseIPv4(s string, i int) (int, bool) {
	for part := range 4 {
		if part > 0 {
			if i >= len(s) || s[i] != '.' {
				return 0, false
			}
			i++
		}
		start, v := i, 0
		for i < len(s) && isDigit(s[i]) && i-start < 4 {
			v = v*10 + int(s[i]-'0')
			i++
		}
		if n := i - start; n == 0 || n > 3 || v > 255 || n > 1 && s[start] == '0' {
			return 0, false
		}
	}
	return i, true
}

func scanIPv6(m []span, s string, rule int) []span {
	for i := 0; ; {
		j := strings.IndexByte(s[i:], ':')
		if j < 0 {
			return m
		}
		k := i + j
		start := k
		for start > 0 && (is(s[start-1], cHex) || s[start-1] == ':') {
			start--
		}
		end := k
		for end < len(s) && (is(s[end], cHex) || s[end] == ':' || s[end] == '.') {
			end++
		}
		i = end
		for end > start && s[end-1] == '.' {
			end--
		}
		if end-start >= 2 && s[end-1] == ':' && s[end-2] != ':' {
			end--
		}
		if start > 0 && (wordChar(s[start-1]) || s[start-1] == '.') || end < len(s) && wordChar(s[end]) {
			continue
		}
		cand := s[start:end]
		if strings.Count(cand, ":") < 2 || !hasHex(cand) {
			continue
		}
		if a, err := netip.ParseAddr(cand); err == nil && a.Is6() {
			m = append(m, span{start, end, rule})
		}
	}
}

func hasHex(s string) bool {
	for i := range len(s) {
		if is(s[i], cHex) {
			return true
		}
	}
	return false
}
