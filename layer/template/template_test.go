// Package template holds sluice's CloudFormation templates; its test checks
// them offline: every reference resolves, every SLUICE_ variable set is one
// sluice reads, and the Glue table is layer/athena's DDL.
package template

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/sluice-logs/sluice/extension"
)

// load parses a template into plain maps, slices and strings, turning the
// short tags (!Ref, !Sub, !GetAtt, !If, ...) into their long forms
// ({"Ref": x}, {"Fn::Sub": x}, ...), so the rest of the test sees one shape.
func load(t *testing.T, path string) map[string]any {
	t.Helper()
	m, ok := loadAny(t, path).(map[string]any)
	if !ok {
		t.Fatalf("%s: top level is not a mapping", path)
	}
	return m
}

// loadAny is load for fragments too (function-policy.yaml is a list of
// policies to paste into a template).
func loadAny(t *testing.T, path string) any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	v, err := convert(&n)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	return v
}

var shortTags = map[string]string{
	"!Ref": "Ref", "!Sub": "Fn::Sub", "!GetAtt": "Fn::GetAtt", "!If": "Fn::If", "!Not": "Fn::Not",
	"!Equals": "Fn::Equals", "!And": "Fn::And", "!Or": "Fn::Or", "!Join": "Fn::Join", "!Select": "Fn::Select",
	"!Split": "Fn::Split", "!GetAZs": "Fn::GetAZs", "!ImportValue": "Fn::ImportValue", "!FindInMap": "Fn::FindInMap",
	"!Base64": "Fn::Base64", "!Cidr": "Fn::Cidr", "!Condition": "Condition",
}

func convert(n *yaml.Node) (any, error) {
	var v any
	switch n.Kind {
	case yaml.DocumentNode:
		return convert(n.Content[0])
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i < len(n.Content); i += 2 {
			val, err := convert(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			m[n.Content[i].Value] = val
		}
		v = m
	case yaml.SequenceNode:
		s := []any{}
		for _, c := range n.Content {
			val, err := convert(c)
			if err != nil {
				return nil, err
			}
			s = append(s, val)
		}
		v = s
	case yaml.ScalarNode:
		v = n.Value
	case yaml.AliasNode:
		return convert(n.Alias)
	}
	if strings.HasPrefix(n.Tag, "!!") || n.Tag == "" {
		return v, nil
	}
	long, ok := shortTags[n.Tag]
	if !ok {
		return nil, fmt.Errorf("line %d: unknown tag %s", n.Line, n.Tag)
	}
	if long == "Fn::GetAtt" {
		if s, ok := v.(string); ok {
			res, attr, _ := strings.Cut(s, ".")
			v = []any{res, attr}
		}
	}
	return map[string]any{long: v}, nil
}

var subVar = regexp.MustCompile(`\$\{([^!}][^}]*)\}`)

// checkRefs walks v and reports every Ref, GetAtt, Sub variable and If
// condition that names nothing in the template.
func checkRefs(t *testing.T, name string, tmpl map[string]any) {
	t.Helper()
	known := map[string]bool{}
	for _, sec := range []string{"Parameters", "Resources"} {
		m, _ := tmpl[sec].(map[string]any)
		for k := range m {
			known[k] = true
		}
	}
	conds, _ := tmpl["Conditions"].(map[string]any)
	resources, _ := tmpl["Resources"].(map[string]any)
	name2ok := func(s string) bool { return known[s] || strings.HasPrefix(s, "AWS::") }
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, val := range x {
				switch k {
				case "Ref":
					if s, _ := val.(string); !name2ok(s) {
						t.Errorf("%s: %s: Ref %q names no parameter or resource", name, path, s)
					}
				case "Fn::GetAtt":
					parts, _ := val.([]any)
					if len(parts) != 2 || resources[fmt.Sprint(parts[0])] == nil {
						t.Errorf("%s: %s: GetAtt %v names no resource", name, path, val)
					}
				case "Fn::Sub":
					s, _ := val.(string)
					vars := map[string]bool{}
					if l, ok := val.([]any); ok && len(l) == 2 {
						s, _ = l[0].(string)
						m, _ := l[1].(map[string]any)
						for k := range m {
							vars[k] = true
						}
					}
					for _, m := range subVar.FindAllStringSubmatch(s, -1) {
						ref, _, _ := strings.Cut(m[1], ".")
						if !name2ok(ref) && !vars[ref] {
							t.Errorf("%s: %s: Sub ${%s} names no parameter or resource", name, path, m[1])
						}
						if strings.Contains(m[1], ".") && resources[ref] == nil {
							t.Errorf("%s: %s: Sub ${%s} takes an attribute of no resource", name, path, m[1])
						}
					}
				case "Fn::If":
					l, _ := val.([]any)
					if len(l) != 3 || conds[fmt.Sprint(l[0])] == nil {
						t.Errorf("%s: %s: If %v names no condition", name, path, val)
					}
				}
				walk(path+"."+k, val)
			}
		case []any:
			for i, val := range x {
				walk(fmt.Sprintf("%s[%d]", path, i), val)
			}
		}
	}
	for _, sec := range []string{"Conditions", "Resources", "Outputs"} {
		walk(sec, tmpl[sec])
	}
}

func templates(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob("*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no templates: %v", err)
	}
	return paths
}

func TestTemplatesReferences(t *testing.T) {
	for _, p := range templates(t) {
		t.Run(p, func(t *testing.T) {
			tmpl, _ := loadAny(t, p).(map[string]any)
			if _, ok := tmpl["Resources"]; !ok {
				// A fragment to paste into a template (function-policy.yaml):
				// it parses; its references are the including template's.
				return
			}
			checkRefs(t, p, tmpl)
		})
	}
}

// TestTemplatesSetKnownVariables: a misspelt variable would only be logged
// as a likely typo at init, and the setting silently ignored.
func TestTemplatesSetKnownVariables(t *testing.T) {
	set := 0
	for _, p := range templates(t) {
		tmpl, _ := loadAny(t, p).(map[string]any)
		res, _ := tmpl["Resources"].(map[string]any)
		for name, r := range res {
			props, _ := r.(map[string]any)["Properties"].(map[string]any)
			env, _ := props["Environment"].(map[string]any)
			vars, _ := env["Variables"].(map[string]any)
			for k := range vars {
				if !strings.HasPrefix(k, "SLUICE_") {
					continue
				}
				set++
				if !slices.Contains(extension.KnownVars, k) {
					t.Errorf("%s: %s sets %s, which sluice does not read", p, name, k)
				}
			}
		}
	}
	if set == 0 {
		t.Error("no template sets a SLUICE_ variable; the example function should")
	}
}

// ddl is what the test reads from layer/athena/logs_ndjson.sql.
type ddl struct {
	columns, partitions [][2]string // name, type
	props               map[string]string
}

var (
	colLine  = regexp.MustCompile("^\\s*`([a-z_]+)`\\s+([a-z]+)")
	propLine = regexp.MustCompile(`^\s*'([^']+)'\s*=\s*'([^']*)'`)
)

func readDDL(t *testing.T) ddl {
	t.Helper()
	b, err := os.ReadFile("../athena/logs_ndjson.sql")
	if err != nil {
		t.Fatal(err)
	}
	d := ddl{props: map[string]string{}}
	section := ""
	for line := range strings.Lines(string(b)) {
		switch {
		case strings.HasPrefix(line, "CREATE EXTERNAL TABLE"):
			section = "columns"
		case strings.HasPrefix(line, "PARTITIONED BY"):
			section = "partitions"
		case strings.HasPrefix(line, "TBLPROPERTIES"):
			section = "props"
		}
		if m := colLine.FindStringSubmatch(line); m != nil {
			switch section {
			case "columns":
				d.columns = append(d.columns, [2]string{m[1], m[2]})
			case "partitions":
				d.partitions = append(d.partitions, [2]string{m[1], m[2]})
			}
		}
		if m := propLine.FindStringSubmatch(line); m != nil && section == "props" {
			d.props[m[1]] = m[2]
		}
	}
	if len(d.columns) < 10 || len(d.partitions) != 3 || len(d.props) < 5 {
		t.Fatalf("read %d columns, %d partition keys, %d properties from the DDL: the reader no longer fits it", len(d.columns), len(d.partitions), len(d.props))
	}
	return d
}

func TestGlueTableMatchesDDL(t *testing.T) {
	want := readDDL(t)
	tmpl := load(t, "sluice.yaml")
	res := tmpl["Resources"].(map[string]any)
	table := res["LogsTable"].(map[string]any)["Properties"].(map[string]any)["TableInput"].(map[string]any)
	cols := func(v any) [][2]string {
		var out [][2]string
		for _, c := range v.([]any) {
			m := c.(map[string]any)
			out = append(out, [2]string{m["Name"].(string), m["Type"].(string)})
		}
		return out
	}
	sd := table["StorageDescriptor"].(map[string]any)
	if d := cmp.Diff(want.columns, cols(sd["Columns"])); d != "" {
		t.Errorf("Glue columns differ from logs_ndjson.sql (-ddl +template):\n%s", d)
	}
	if d := cmp.Diff(want.partitions, cols(table["PartitionKeys"])); d != "" {
		t.Errorf("Glue partition keys differ from logs_ndjson.sql (-ddl +template):\n%s", d)
	}
	if got := sd["SerdeInfo"].(map[string]any)["SerializationLibrary"]; got != "org.apache.hive.hcatalog.data.JsonSerDe" {
		t.Errorf("SerDe = %v, want the DDL's Hive JSON SerDe", got)
	}
	params := table["Parameters"].(map[string]any)
	for k, v := range want.props {
		got := params[k]
		if k == "storage.location.template" {
			// The DDL's placeholders are the template's bucket and prefix;
			// ${!x} is Sub's escape for a literal ${x}.
			v = strings.ReplaceAll(v, "${", "${!")
			v = strings.NewReplacer("<BUCKET>", "${LogBucket}", "<PREFIX>", "${ArchivePrefix}").Replace(v)
			got = got.(map[string]any)["Fn::Sub"]
		}
		if got != v {
			t.Errorf("table property %s = %v, want the DDL's %q", k, got, v)
		}
	}
}

// TestTemplateSecurity checks what the issue asks of the bucket and role.
func TestTemplateSecurity(t *testing.T) {
	res := load(t, "sluice.yaml")["Resources"].(map[string]any)
	props := func(name string) map[string]any { return res[name].(map[string]any)["Properties"].(map[string]any) }
	bucket := props("LogBucket")
	for k, v := range bucket["PublicAccessBlockConfiguration"].(map[string]any) {
		if v != "true" {
			t.Errorf("LogBucket public access block %s = %v, want true", k, v)
		}
	}
	if bucket["BucketEncryption"] == nil {
		t.Error("LogBucket has no default encryption")
	}
	var classes []string
	for _, r := range bucket["LifecycleConfiguration"].(map[string]any)["Rules"].([]any) {
		for _, tr := range asList(r.(map[string]any)["Transitions"]) {
			classes = append(classes, tr.(map[string]any)["StorageClass"].(string))
		}
	}
	if !slices.Contains(classes, "STANDARD_IA") || !slices.Contains(classes, "GLACIER_IR") {
		t.Errorf("lifecycle transitions to %v, want STANDARD_IA and GLACIER_IR", classes)
	}
	var allow, deny []string
	for _, pol := range props("ExampleRole")["Policies"].([]any) {
		for _, st := range pol.(map[string]any)["PolicyDocument"].(map[string]any)["Statement"].([]any) {
			m := st.(map[string]any)
			if ifs, ok := m["Fn::If"]; ok {
				m = ifs.([]any)[1].(map[string]any)
			}
			acts := fmt.Sprint(m["Action"])
			if m["Effect"] == "Deny" {
				deny = append(deny, acts)
			} else {
				allow = append(allow, acts+" on "+fmt.Sprint(m["Resource"]))
			}
		}
	}
	wantAllow := []string{"s3:PutObject on map[Fn::Sub:${LogBucket.Arn}/${ArchivePrefix}/*]", "kms:GenerateDataKey on map[Ref:KmsKeyArn]"}
	if d := cmp.Diff(wantAllow, allow); d != "" {
		t.Errorf("role allows (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"[logs:CreateLogGroup logs:CreateLogStream logs:PutLogEvents]"}, deny); d != "" {
		t.Errorf("role denies (-want +got):\n%s", d)
	}
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}
