package athena

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// table is what the test needs from a CREATE EXTERNAL TABLE statement.
type table struct {
	Name       string
	Columns    []column
	Partitions []column
	SerDe      string
	SerDeProps map[string]string
	StoredAs   string // lower case; empty when the DDL names a SerDe instead
	Location   string
	Props      map[string]string // TBLPROPERTIES
}

type column struct {
	Name, Type string
}

// parseTable parses the one CREATE EXTERNAL TABLE statement in src. It knows
// the subset of Hive DDL that logs_*.sql use and fails on anything else,
// so that a clause added to the DDL is either understood or noticed.
func parseTable(src string) (*table, error) {
	toks, err := tokenize(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	t, err := p.table()
	if err != nil {
		return nil, fmt.Errorf("parse ddl near token %d (%q): %w", p.pos, p.peek().text, err)
	}
	return t, nil
}

type tokKind int

const (
	tWord   tokKind = iota // keyword, bare identifier or type name
	tQuoted                // `identifier`
	tString                // 'literal', unescaped
	tPunct                 // ( ) , = ; < > :
	tEOF
)

type token struct {
	kind tokKind
	text string
}

// tokenize splits Hive DDL into tokens, dropping -- comments. Hive string
// literals use backslash escapes, not doubled quotes.
func tokenize(src string) ([]token, error) {
	var toks []token
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '-' && strings.HasPrefix(src[i:], "--"):
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '\'' || c == '"':
			var sb strings.Builder
			j := i + 1
			for ; j < len(src) && src[j] != c; j++ {
				if src[j] == '\\' && j+1 < len(src) {
					j++
				}
				sb.WriteByte(src[j])
			}
			if j >= len(src) {
				return nil, errors.New("tokenize ddl: unterminated string")
			}
			if j+1 < len(src) && src[j+1] == c {
				return nil, errors.New("tokenize ddl: doubled quote in a string (Hive escapes with a backslash)")
			}
			toks = append(toks, token{tString, sb.String()})
			i = j + 1
		case c == '`':
			j := strings.IndexByte(src[i+1:], '`')
			if j < 0 {
				return nil, errors.New("tokenize ddl: unterminated `identifier`")
			}
			toks = append(toks, token{tQuoted, src[i+1 : i+1+j]})
			i += j + 2
		case strings.IndexByte("(),=;<>:", c) >= 0:
			toks = append(toks, token{tPunct, string(c)})
			i++
		case isWordByte(c):
			j := i
			for j < len(src) && isWordByte(src[j]) {
				j++
			}
			toks = append(toks, token{tWord, src[i:j]})
			i = j
		default:
			return nil, fmt.Errorf("tokenize ddl: unexpected %q", c)
		}
	}
	return append(toks, token{kind: tEOF}), nil
}

func isWordByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.'
}

type parser struct {
	toks []token
	pos  int
}

func (p *parser) peek() token { return p.toks[p.pos] }
func (p *parser) next() token {
	t := p.toks[p.pos]
	if t.kind != tEOF {
		p.pos++
	}
	return t
}

// keywords consumes the given keywords, case-insensitively, or fails.
func (p *parser) keywords(words ...string) error {
	for _, w := range words {
		t := p.next()
		if t.kind != tWord || !strings.EqualFold(t.text, w) {
			return fmt.Errorf("want %s, got %q", w, t.text)
		}
	}
	return nil
}

// isKeyword reports whether the next token is w, without consuming it.
func (p *parser) isKeyword(w string) bool {
	t := p.peek()
	return t.kind == tWord && strings.EqualFold(t.text, w)
}

func (p *parser) punct(s string) error {
	if t := p.next(); t.kind != tPunct || t.text != s {
		return fmt.Errorf("want %q, got %q", s, t.text)
	}
	return nil
}

func (p *parser) str() (string, error) {
	t := p.next()
	if t.kind != tString {
		return "", fmt.Errorf("want a string literal, got %q", t.text)
	}
	return t.text, nil
}

func (p *parser) ident() (string, error) {
	t := p.next()
	if t.kind != tWord && t.kind != tQuoted {
		return "", fmt.Errorf("want an identifier, got %q", t.text)
	}
	return strings.ToLower(t.text), nil
}

func (p *parser) table() (*table, error) {
	if err := p.keywords("CREATE", "EXTERNAL", "TABLE"); err != nil {
		return nil, err
	}
	if p.isKeyword("IF") {
		if err := p.keywords("IF", "NOT", "EXISTS"); err != nil {
			return nil, err
		}
	}
	var t table
	var err error
	if t.Name, err = p.ident(); err != nil {
		return nil, err
	}
	if t.Columns, err = p.columns(); err != nil {
		return nil, err
	}
	for !p.isEnd() {
		switch {
		case p.isKeyword("PARTITIONED"):
			if err := p.keywords("PARTITIONED", "BY"); err != nil {
				return nil, err
			}
			if t.Partitions, err = p.columns(); err != nil {
				return nil, err
			}
		case p.isKeyword("ROW"):
			if err := p.keywords("ROW", "FORMAT", "SERDE"); err != nil {
				return nil, err
			}
			if t.SerDe, err = p.str(); err != nil {
				return nil, err
			}
			if p.isKeyword("WITH") {
				if err := p.keywords("WITH", "SERDEPROPERTIES"); err != nil {
					return nil, err
				}
				if t.SerDeProps, err = p.props(); err != nil {
					return nil, err
				}
			}
		case p.isKeyword("STORED"):
			if err := p.keywords("STORED", "AS"); err != nil {
				return nil, err
			}
			w := p.next()
			if w.kind != tWord {
				return nil, fmt.Errorf("STORED AS: want a format, got %q", w.text)
			}
			t.StoredAs = strings.ToLower(w.text)
		case p.isKeyword("LOCATION"):
			p.next()
			if t.Location, err = p.str(); err != nil {
				return nil, err
			}
		case p.isKeyword("TBLPROPERTIES"):
			p.next()
			if t.Props, err = p.props(); err != nil {
				return nil, err
			}
		default:
			return nil, errors.New("unsupported clause")
		}
	}
	if len(t.Columns) == 0 {
		return nil, errors.New("no columns")
	}
	return &t, nil
}

// isEnd consumes a final ';' and reports whether the statement ended.
func (p *parser) isEnd() bool {
	if t := p.peek(); t.kind == tPunct && t.text == ";" {
		p.next()
	}
	return p.peek().kind == tEOF
}

// columns parses "( name type [COMMENT 'text'], ... )". Complex types are
// not supported: the archive is flat.
func (p *parser) columns() ([]column, error) {
	if err := p.punct("("); err != nil {
		return nil, err
	}
	var cols []column
	seen := map[string]bool{}
	for {
		name, err := p.ident()
		if err != nil {
			return nil, err
		}
		typ := p.next()
		if typ.kind != tWord {
			return nil, fmt.Errorf("column %s: want a type, got %q", name, typ.text)
		}
		if seen[name] {
			return nil, fmt.Errorf("column %s declared twice", name)
		}
		seen[name] = true
		cols = append(cols, column{Name: name, Type: strings.ToLower(typ.text)})
		if p.isKeyword("COMMENT") {
			p.next()
			if _, err := p.str(); err != nil {
				return nil, err
			}
		}
		t := p.next()
		if t.kind == tPunct && t.text == ")" {
			return cols, nil
		}
		if t.kind != tPunct || t.text != "," {
			return nil, fmt.Errorf("column %s: want ',' or ')', got %q", name, t.text)
		}
	}
}

// props parses "( 'key' = 'value', ... )".
func (p *parser) props() (map[string]string, error) {
	if err := p.punct("("); err != nil {
		return nil, err
	}
	m := map[string]string{}
	for {
		k, err := p.str()
		if err != nil {
			return nil, err
		}
		if err := p.punct("="); err != nil {
			return nil, err
		}
		v, err := p.str()
		if err != nil {
			return nil, err
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("property %s set twice", k)
		}
		m[k] = v
		t := p.next()
		if t.kind == tPunct && t.text == ")" {
			return m, nil
		}
		if t.kind != tPunct || t.text != "," {
			return nil, fmt.Errorf("property %s: want ',' or ')', got %q", k, t.text)
		}
	}
}

func TestParseTable(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		want    *table
		wantErr bool
	}{
		{
			name: "full",
			src: `-- comment ( with ' quotes
CREATE EXTERNAL TABLE IF NOT EXISTS logs (
  ` + "`time`" + ` string COMMENT 'it\'s a (time)',
  n BIGINT
)
PARTITIONED BY (dt string)
ROW FORMAT SERDE 'org.apache.hive.hcatalog.data.JsonSerDe'
WITH SERDEPROPERTIES ('a' = 'b')
LOCATION 's3://b/p/'
TBLPROPERTIES ('projection.enabled'='true', 'x'='${dt}');`,
			want: &table{
				Name:       "logs",
				Columns:    []column{{"time", "string"}, {"n", "bigint"}},
				Partitions: []column{{"dt", "string"}},
				SerDe:      "org.apache.hive.hcatalog.data.JsonSerDe",
				SerDeProps: map[string]string{"a": "b"},
				Location:   "s3://b/p/",
				Props:      map[string]string{"projection.enabled": "true", "x": "${dt}"},
			},
		},
		{
			name: "stored as",
			src:  "CREATE EXTERNAL TABLE t (`time` timestamp) STORED AS PARQUET LOCATION 's3://b/'",
			want: &table{Name: "t", Columns: []column{{"time", "timestamp"}}, StoredAs: "parquet", Location: "s3://b/"},
		},
		{name: "stored as nothing", src: `CREATE EXTERNAL TABLE t (a string) STORED AS 'x'`, wantErr: true},
		{name: "complex type", src: `CREATE EXTERNAL TABLE t (a struct<b:string>)`, wantErr: true},
		{name: "unknown clause", src: `CREATE EXTERNAL TABLE t (a string) CLUSTERED BY (a)`, wantErr: true},
		{name: "duplicate column", src: `CREATE EXTERNAL TABLE t (a string, A int)`, wantErr: true},
		{name: "doubled quote", src: `CREATE EXTERNAL TABLE t (a string COMMENT 'it''s')`, wantErr: true},
		{name: "not a table", src: `CREATE VIEW v AS SELECT 1`, wantErr: true},
		{name: "unterminated", src: `CREATE EXTERNAL TABLE t (a string`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseTable(tt.src)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseTable() = %+v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseTable() error = %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseTable() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// query is one named statement of queries.sql.
type query struct {
	Name, SQL string
}

// parseQueries splits src at "-- name: X" lines; each statement runs to the
// ';' that ends a line that is not a comment.
func parseQueries(src string) ([]query, error) {
	var qs []query
	var cur *query
	for line := range strings.Lines(src) {
		trimmed := strings.TrimSpace(line)
		if name, ok := strings.CutPrefix(trimmed, "-- name:"); ok {
			if cur != nil {
				return nil, fmt.Errorf("parse queries: %s has no terminating ';'", cur.Name)
			}
			qs = append(qs, query{Name: strings.TrimSpace(name)})
			cur = &qs[len(qs)-1]
			continue
		}
		if cur == nil {
			continue
		}
		cur.SQL += line
		if strings.HasSuffix(trimmed, ";") && !strings.HasPrefix(trimmed, "--") {
			cur.SQL = strings.TrimSuffix(strings.TrimSpace(cur.SQL), ";")
			cur = nil
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("parse queries: %s has no terminating ';'", cur.Name)
	}
	if len(qs) == 0 {
		return nil, errors.New("parse queries: no -- name: blocks")
	}
	return qs, nil
}
