package sinks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/opensearch-project/opensearch-go/v4/signer"
	"github.com/opensearch-project/opensearch-go/v4/signer/awsv2"

	"github.com/sluice-logs/sluice/buffer"
)

// DefaultIndexPattern names one index per UTC day.
const DefaultIndexPattern = "lambda-logs-%Y.%m.%d"

// IndexPattern is an index or data stream name in which %Y, %m, %d and %H
// stand for the UTC year, month, day and hour of a batch, and %% for a
// percent sign. A name without placeholders is used as is: one index, or a
// data stream when an index template declares it one.
type IndexPattern struct {
	Pattern string
}

// ParseIndexPattern checks p: only the placeholders above, and names that
// OpenSearch accepts (lower case, no \/*?"<>|,# or space, not starting with
// -, _ or +, at most 255 bytes).
func ParseIndexPattern(p string) (IndexPattern, error) {
	for i := 0; i < len(p); i++ {
		if p[i] != '%' {
			continue
		}
		if i+1 == len(p) || !strings.ContainsRune("YmdH%", rune(p[i+1])) {
			return IndexPattern{}, fmt.Errorf("index %q: %% must be followed by Y, m, d, H or %%", p)
		}
		i++
	}
	ip := IndexPattern{Pattern: p}
	name := ip.Name(time.Date(2026, 12, 31, 23, 0, 0, 0, time.UTC))
	switch {
	case p == "":
		return IndexPattern{}, errors.New("index is empty")
	case name == "." || name == "..":
		return IndexPattern{}, fmt.Errorf("index %q: not a valid name", p)
	case strings.ContainsAny(name[:1], "-_+"):
		return IndexPattern{}, fmt.Errorf("index %q: must not start with -, _ or +", p)
	case strings.ContainsAny(name, "\\/*?\"<>|, #:"):
		return IndexPattern{}, fmt.Errorf(`index %q: must not contain \ / * ? " < > | , # : or spaces`, p)
	case strings.ToLower(name) != name:
		return IndexPattern{}, fmt.Errorf("index %q: must be lower case", p)
	case len(name) > 255:
		return IndexPattern{}, fmt.Errorf("index %q: longer than 255 bytes", p)
	}
	return ip, nil
}

// Name returns the index name for a batch that starts at t.
func (p IndexPattern) Name(t time.Time) string {
	if !strings.Contains(p.Pattern, "%") {
		return p.Pattern
	}
	t = t.UTC()
	var sb strings.Builder
	for i := 0; i < len(p.Pattern); i++ {
		c := p.Pattern[i]
		if c != '%' || i+1 == len(p.Pattern) {
			sb.WriteByte(c)
			continue
		}
		i++
		switch p.Pattern[i] {
		case 'Y':
			fmt.Fprintf(&sb, "%04d", t.Year())
		case 'm':
			fmt.Fprintf(&sb, "%02d", int(t.Month()))
		case 'd':
			fmt.Fprintf(&sb, "%02d", t.Day())
		case 'H':
			fmt.Fprintf(&sb, "%02d", t.Hour())
		default:
			sb.WriteByte(p.Pattern[i])
		}
	}
	return sb.String()
}

// OpenSearchAuthMode is how a sink authenticates.
type OpenSearchAuthMode string

// The authentication modes.
const (
	AuthSigV4  OpenSearchAuthMode = "sigv4"  // the function's role, SigV4
	AuthSecret OpenSearchAuthMode = "secret" // basic auth from a Secrets Manager secret
	AuthNone   OpenSearchAuthMode = "none"   // no credentials (a local cluster)
)

// OpenSearchTarget is a parsed OpenSearch SLUICE_SINK value.
type OpenSearchTarget struct {
	Endpoint  string // scheme://host[:port], no path
	Index     IndexPattern
	Service   string // SigV4 service: "es" (domains) or "aoss" (Serverless)
	Region    string // SigV4 region; empty means AWS_REGION
	Auth      OpenSearchAuthMode
	SecretARN string // AuthSecret only
	MinLevel  buffer.Level
	BulkBytes int // 0 means DefaultBulkBytes
}

// Serverless reports whether t is an OpenSearch Serverless collection
// (service aoss), which refuses client document ids.
func (t OpenSearchTarget) Serverless() bool { return t.Service == "aoss" }

// Options returns the sink options t determines. The caller adds Function,
// Env, Auth, DeadLetter and Log.
func (t OpenSearchTarget) Options() OpenSearchOptions {
	return OpenSearchOptions{
		Endpoint:   t.Endpoint,
		Index:      t.Index,
		Serverless: t.Serverless(),
		MinLevel:   t.MinLevel,
		BulkBytes:  t.BulkBytes,
	}
}

// String returns t in the syntax ParseOpenSearchURL reads, with every
// option spelled out (the secret's ARN is not a secret).
func (t OpenSearchTarget) String() string {
	q := url.Values{}
	q.Set("service", t.Service)
	if t.Region != "" {
		q.Set("region", t.Region)
	}
	q.Set("auth", string(t.Auth))
	if t.SecretARN != "" {
		q.Set("secret_arn", t.SecretARN)
	}
	if t.MinLevel != buffer.LevelTrace {
		q.Set("min_level", t.MinLevel.String())
	}
	if t.BulkBytes != 0 {
		q.Set("bulk_bytes", strconv.Itoa(t.BulkBytes))
	}
	if strings.HasPrefix(t.Endpoint, "http://") {
		q.Set("allow_http", "true")
	}
	return t.Endpoint + "/" + t.Index.Pattern + "?" + q.Encode()
}

// ParseOpenSearchURL parses an OpenSearch SLUICE_SINK value:
//
//	https://HOST[:PORT][/INDEX][?OPTION=VALUE&...]
//
// INDEX is an IndexPattern (default DefaultIndexPattern), taken literally:
// % starts a date placeholder, not a URL escape. Options:
//
//	service=es|aoss     SigV4 service; default aoss for *.aoss.amazonaws.com,
//	                    else es. aoss means an OpenSearch Serverless collection.
//	region=REGION       SigV4 region; default from an AWS host name
//	                    (*.REGION.es.amazonaws.com), else AWS_REGION.
//	auth=sigv4|secret|none
//	                    default sigv4, or secret when secret_arn is given.
//	secret_arn=ARN      a Secrets Manager secret {"username":..,"password":..}
//	                    for HTTP basic auth, fetched once at start.
//	min_level=LEVEL     index only rows at or above LEVEL (TRACE..FATAL);
//	                    rows without a level (platform.*) are always indexed.
//	bulk_bytes=N        bound of a _bulk body before gzip (default 5 MiB;
//	                    suffixes KiB and MiB allowed).
//	allow_http=true     needed for http:// (a local cluster); https always
//	                    verifies the server's certificate.
//
// Every problem is reported, each naming the part of the value at fault.
func ParseOpenSearchURL(s string) (OpenSearchTarget, error) {
	shown := redactUserinfo(s)
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || (scheme != "https" && scheme != "http") {
		return OpenSearchTarget{}, fmt.Errorf("opensearch url %q: want https://HOST[/INDEX][?OPTIONS]", shown)
	}
	rest, rawQuery, _ := strings.Cut(rest, "?")
	host, path, _ := strings.Cut(rest, "/")
	if strings.Contains(rawQuery, "#") || strings.Contains(path, "#") {
		bad("a fragment (#) has no meaning here")
	}
	t := OpenSearchTarget{Endpoint: scheme + "://" + host}
	hu, err := url.Parse(scheme + "://" + host)
	switch {
	case err != nil:
		bad("host %q: %v", host, err)
	case hu.User != nil:
		bad("host %q: credentials in the URL are not accepted: use secret_arn", "…@"+hu.Host)
	case hu.Hostname() == "":
		bad("no host")
	case hu.Port() != "":
		if p, err := strconv.Atoi(hu.Port()); err != nil || p < 1 || p > 65535 {
			bad("port %q: want 1..65535", hu.Port())
		}
	}
	hostname := ""
	if hu != nil {
		hostname = strings.ToLower(hu.Hostname())
	}

	if path == "" {
		path = DefaultIndexPattern
	}
	if strings.Contains(path, "/") {
		bad("index %q: want one path segment (an index name or pattern)", path)
	} else if ip, err := ParseIndexPattern(path); err != nil {
		bad("%v", err)
	} else {
		t.Index = ip
	}

	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		bad("options %q: %v", rawQuery, err)
	}
	known := map[string]bool{"service": true, "region": true, "auth": true, "secret_arn": true,
		"min_level": true, "bulk_bytes": true, "allow_http": true}
	for k, v := range q {
		switch {
		case !known[k]:
			bad("unknown option %q: want service, region, auth, secret_arn, min_level, bulk_bytes or allow_http", k)
		case len(v) > 1:
			bad("option %q given %d times", k, len(v))
		}
	}

	// Service, from the host unless given.
	switch svc := q.Get("service"); svc {
	case "":
		t.Service = "es"
		if strings.HasSuffix(hostname, ".aoss.amazonaws.com") {
			t.Service = "aoss"
		}
	case "es", "aoss":
		t.Service = svc
	default:
		bad("service=%q: want es (domains) or aoss (Serverless)", svc)
	}

	t.Region = q.Get("region")
	if t.Region == "" {
		t.Region = regionOfHost(hostname)
	} else if !validRegion(t.Region) {
		bad("region=%q: want an AWS region such as us-east-1", t.Region)
	}

	t.SecretARN = q.Get("secret_arn")
	switch mode := OpenSearchAuthMode(q.Get("auth")); mode {
	case "":
		t.Auth = AuthSigV4
		if t.SecretARN != "" {
			t.Auth = AuthSecret
		}
	case AuthSigV4, AuthSecret, AuthNone:
		t.Auth = mode
	default:
		bad("auth=%q: want sigv4, secret or none", mode)
	}
	switch {
	case t.Auth == AuthSecret && t.SecretARN == "":
		bad("auth=secret needs secret_arn=ARN")
	case t.Auth != AuthSecret && t.SecretARN != "":
		bad("secret_arn is given but auth=%s", t.Auth)
	case t.SecretARN != "" && !strings.HasPrefix(t.SecretARN, "arn:") || strings.HasPrefix(t.SecretARN, "arn:") && !strings.Contains(t.SecretARN, ":secretsmanager:"):
		bad("secret_arn=%q: want arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME", t.SecretARN)
	}
	if t.Serverless() && t.Auth != AuthSigV4 && t.Auth != "" {
		bad("auth=%s with service=aoss: Serverless collections take SigV4 only", t.Auth)
	}

	if v := q.Get("min_level"); v != "" {
		if l, ok := buffer.ParseLevelName(v); !ok || l == buffer.LevelOff {
			bad("min_level=%q: want TRACE, DEBUG, INFO, WARN, ERROR or FATAL", v)
		} else {
			t.MinLevel = l
		}
	}
	if v := q.Get("bulk_bytes"); v != "" {
		n, err := parseBytes(v)
		if err != nil || n < 64<<10 || n > 100<<20 {
			bad("bulk_bytes=%q: want a size between 64KiB and 100MiB", v)
		} else {
			t.BulkBytes = n
		}
	}
	allowHTTP := false
	if v := q.Get("allow_http"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad("allow_http=%q: want true or false", v)
		}
		allowHTTP = b
	}
	if scheme == "http" && !allowHTTP {
		bad("http:// sends logs and credentials in clear text: use https, or add allow_http=true for a local cluster")
	}
	if scheme == "http" && t.Auth != AuthNone && strings.HasSuffix(hostname, ".amazonaws.com") {
		bad("http:// to an AWS endpoint: use https")
	}
	if err := errors.Join(errs...); err != nil {
		return OpenSearchTarget{}, fmt.Errorf("opensearch url %q: %w", shown, err)
	}
	return t, nil
}

// redactUserinfo hides credentials written into a URL (user:password@) so
// that an error quoting the value does not carry them into the logs.
func redactUserinfo(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	end := len(rest)
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		end = i
	}
	if at := strings.LastIndexByte(rest[:end], '@'); at >= 0 {
		return scheme + "://REDACTED" + rest[at:]
	}
	return s
}

// regionOfHost returns the region in an AWS OpenSearch host name:
// search-NAME-ID.REGION.es.amazonaws.com or ID.REGION.aoss.amazonaws.com.
func regionOfHost(host string) string {
	for _, suffix := range []string{".es.amazonaws.com", ".aoss.amazonaws.com"} {
		if rest, ok := strings.CutSuffix(host, suffix); ok {
			if i := strings.LastIndexByte(rest, '.'); i >= 0 && validRegion(rest[i+1:]) {
				return rest[i+1:]
			}
		}
	}
	return ""
}

func validRegion(r string) bool {
	if len(r) < 4 || len(r) > 32 || strings.Count(r, "-") < 2 {
		return false
	}
	for i := 0; i < len(r); i++ {
		c := r[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// parseBytes reads N, NKiB or NMiB.
func parseBytes(v string) (int, error) {
	mult := 1
	switch {
	case strings.HasSuffix(v, "MiB"):
		mult, v = 1<<20, strings.TrimSuffix(v, "MiB")
	case strings.HasSuffix(v, "KiB"):
		mult, v = 1<<10, strings.TrimSuffix(v, "KiB")
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > (1<<31)/mult {
		return 0, fmt.Errorf("bad size %q", v)
	}
	return n * mult, nil
}

// sigV4Auth signs requests with opensearch-go's SigV4 signer, which
// hashes the body as sent (gzip included) into X-Amz-Content-Sha256.
type sigV4Auth struct{ s signer.Signer }

func (a sigV4Auth) Authorize(r *http.Request) error { return a.s.SignRequest(r) }

// NewSigV4Auth returns an OpenSearchAuth that signs for service ("es" or
// "aoss") with cfg's credentials and region (region overrides it when not
// empty).
func NewSigV4Auth(cfg aws.Config, service, region string) (OpenSearchAuth, error) {
	if region != "" {
		cfg = cfg.Copy()
		cfg.Region = region
	}
	if cfg.Region == "" {
		return nil, errors.New("sigv4: no region (set AWS_REGION or region= in the URL)")
	}
	if cfg.Credentials == nil {
		return nil, errors.New("sigv4: no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_CONTAINER_CREDENTIALS_FULL_URI; or auth=none)")
	}
	s, err := awsv2.NewSignerWithService(cfg, service)
	if err != nil {
		return nil, fmt.Errorf("sigv4: %w", err)
	}
	return sigV4Auth{s}, nil
}

// GetSecretValueAPI is the part of the Secrets Manager client the sink
// uses; tests pass a function.
type GetSecretValueAPI interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// basicAuth sets HTTP basic credentials.
type basicAuth struct{ user, password string }

func (a basicAuth) Authorize(r *http.Request) error {
	r.SetBasicAuth(a.user, a.password)
	return nil
}

// String keeps the password out of logs.
func (a basicAuth) String() string { return "basic auth as " + a.user }

// NewSecretAuth fetches the secret arn once and returns an OpenSearchAuth
// that sends its credentials as HTTP basic auth. The secret string must be
// JSON {"username":"...","password":"..."}. Errors name the secret, never
// its value.
func NewSecretAuth(ctx context.Context, api GetSecretValueAPI, arn string) (OpenSearchAuth, error) {
	out, err := api.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)})
	if err != nil {
		return nil, fmt.Errorf("get secret %s: %w", arn, err)
	}
	if out.SecretString == nil {
		return nil, fmt.Errorf("get secret %s: no SecretString (a binary secret?): want {\"username\":...,\"password\":...}", arn)
	}
	var c struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := json.Unmarshal([]byte(*out.SecretString), &c); err != nil {
		return nil, fmt.Errorf("get secret %s: not JSON: want {\"username\":...,\"password\":...}", arn)
	}
	if c.Username == "" || c.Password == "" {
		return nil, fmt.Errorf("get secret %s: want both username and password", arn)
	}
	if strings.Contains(c.Username, ":") {
		return nil, fmt.Errorf("get secret %s: username contains ':', which basic auth cannot carry", arn)
	}
	return basicAuth{user: c.Username, password: c.Password}, nil
}

// NewOpenSearchAuth returns the authentication t asks for: SigV4 with cfg
// (the function's role), basic auth from the secret read through sm, or
// none. sm is used only for AuthSecret.
func NewOpenSearchAuth(ctx context.Context, t OpenSearchTarget, cfg aws.Config, sm GetSecretValueAPI) (OpenSearchAuth, error) {
	switch t.Auth {
	case AuthNone:
		return nil, nil
	case AuthSecret:
		if sm == nil {
			return nil, errors.New("basic auth: no Secrets Manager client")
		}
		return NewSecretAuth(ctx, sm, t.SecretARN)
	}
	return NewSigV4Auth(cfg, t.Service, t.Region)
}
