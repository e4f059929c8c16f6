package sinks

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/google/go-cmp/cmp"
)

// awsVars are the variables the tests below set; each test starts from
// all of them empty so that the machine's environment does not leak in.
var awsVars = []string{
	"AWS_REGION", "AWS_DEFAULT_REGION",
	"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
	"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
	"AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
	"AWS_CA_BUNDLE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SECRETS_MANAGER",
	"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT",
	"AWS_PROFILE",
}

// isolateAWSEnv empties awsVars and hides the machine's shared files and
// instance metadata from the SDK's loader.
func isolateAWSEnv(t *testing.T) {
	t.Helper()
	for _, k := range awsVars {
		t.Setenv(k, "")
	}
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// credsServer is a container credentials endpoint that answers with keys
// named after the Authorization header it received.
func credsServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{
			"AccessKeyId":     "AKID-" + r.Header.Get("Authorization"),
			"SecretAccessKey": "SECRET",
			"Token":           "TOKEN",
			"Expiration":      time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
		})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// clientView is what the extension's AWS clients resolve from a
// configuration: what must not change when the loader is left out.
type clientView struct {
	Region               string
	S3Endpoint           string
	PathStyle            bool
	FIPS                 aws.FIPSEndpointState
	DualStack            aws.DualStackEndpointState
	MaxAttempts          int
	SecretsEndpoint      string
	AccessKey, SessToken string
}

func viewOf(t *testing.T, cfg aws.Config) clientView {
	t.Helper()
	o := NewS3ClientFromConfig(cfg).Options()
	v := clientView{
		Region:          o.Region,
		S3Endpoint:      aws.ToString(o.BaseEndpoint),
		PathStyle:       o.UsePathStyle,
		FIPS:            o.EndpointOptions.UseFIPSEndpoint,
		DualStack:       o.EndpointOptions.UseDualStackEndpoint,
		MaxAttempts:     o.Retryer.MaxAttempts(),
		SecretsEndpoint: aws.ToString(secretsmanager.NewFromConfig(cfg).Options().BaseEndpoint),
	}
	if cfg.Credentials != nil {
		c, err := cfg.Credentials.Retrieve(t.Context())
		if err != nil {
			t.Fatalf("Retrieve credentials: %v", err)
		}
		v.AccessKey, v.SessToken = c.AccessKeyID, c.SessionToken
	}
	return v
}

// TestAWSConfigFromEnvMatchesLoader checks AWSConfigFromEnv against the
// SDK's configuration loader it replaces in the extension: for each Lambda
// environment, the S3 and Secrets Manager clients resolve the same region,
// endpoints, endpoint variants, retry bound and credentials.
func TestAWSConfigFromEnvMatchesLoader(t *testing.T) {
	keys := map[string]string{"AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "SECRET"}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range keys {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("from-file"), 0o600); err != nil {
		t.Fatal(err)
	}
	creds := credsServer(t)
	tests := []struct {
		name string
		env  map[string]string
		want clientView
	}{
		{"on-demand keys", with(map[string]string{"AWS_SESSION_TOKEN": "ST"}),
			clientView{Region: "eu-west-1", MaxAttempts: sdkMaxAttempts, AccessKey: "AKID", SessToken: "ST"}},
		{"AWS_DEFAULT_REGION", with(map[string]string{"AWS_REGION": "", "AWS_DEFAULT_REGION": "us-east-2"}),
			clientView{Region: "us-east-2", MaxAttempts: sdkMaxAttempts, AccessKey: "AKID"}},
		{"keys win over the container endpoint", with(map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": creds.URL}),
			clientView{Region: "eu-west-1", MaxAttempts: sdkMaxAttempts, AccessKey: "AKID"}},
		{"container endpoint with a token", map[string]string{"AWS_REGION": "eu-west-1",
			"AWS_CONTAINER_CREDENTIALS_FULL_URI": creds.URL + "/creds", "AWS_CONTAINER_AUTHORIZATION_TOKEN": "tok"},
			clientView{Region: "eu-west-1", MaxAttempts: sdkMaxAttempts, AccessKey: "AKID-tok", SessToken: "TOKEN"}},
		{"container endpoint with a token file", map[string]string{"AWS_REGION": "eu-west-1",
			"AWS_CONTAINER_CREDENTIALS_FULL_URI": creds.URL + "/creds", "AWS_CONTAINER_AUTHORIZATION_TOKEN": "tok",
			"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": tokenFile},
			clientView{Region: "eu-west-1", MaxAttempts: sdkMaxAttempts, AccessKey: "AKID-from-file", SessToken: "TOKEN"}},
		{"AWS_ENDPOINT_URL_S3", with(map[string]string{"AWS_ENDPOINT_URL_S3": "https://127.0.0.1:9000"}),
			clientView{Region: "eu-west-1", S3Endpoint: "https://127.0.0.1:9000", PathStyle: true, MaxAttempts: sdkMaxAttempts, AccessKey: "AKID"}},
		{"AWS_ENDPOINT_URL", with(map[string]string{"AWS_ENDPOINT_URL": "https://127.0.0.1:9001"}),
			clientView{Region: "eu-west-1", S3Endpoint: "https://127.0.0.1:9001", PathStyle: true, MaxAttempts: sdkMaxAttempts,
				SecretsEndpoint: "https://127.0.0.1:9001", AccessKey: "AKID"}},
		{"service endpoints beat the global one", with(map[string]string{"AWS_ENDPOINT_URL": "https://127.0.0.1:9001",
			"AWS_ENDPOINT_URL_S3": "https://127.0.0.1:9000", "AWS_ENDPOINT_URL_SECRETS_MANAGER": "https://127.0.0.1:9002"}),
			clientView{Region: "eu-west-1", S3Endpoint: "https://127.0.0.1:9000", PathStyle: true, MaxAttempts: sdkMaxAttempts,
				SecretsEndpoint: "https://127.0.0.1:9002", AccessKey: "AKID"}},
		{"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", with(map[string]string{"AWS_ENDPOINT_URL": "https://127.0.0.1:9001",
			"AWS_ENDPOINT_URL_S3": "https://127.0.0.1:9000", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"}),
			clientView{Region: "eu-west-1", MaxAttempts: sdkMaxAttempts, AccessKey: "AKID"}},
		{"FIPS and dual-stack", with(map[string]string{"AWS_USE_FIPS_ENDPOINT": "TRUE", "AWS_USE_DUALSTACK_ENDPOINT": "true"}),
			clientView{Region: "eu-west-1", FIPS: aws.FIPSEndpointStateEnabled, DualStack: aws.DualStackEndpointStateEnabled,
				MaxAttempts: sdkMaxAttempts, AccessKey: "AKID"}},
		{"FIPS and dual-stack off", with(map[string]string{"AWS_USE_FIPS_ENDPOINT": "false", "AWS_USE_DUALSTACK_ENDPOINT": "False"}),
			clientView{Region: "eu-west-1", FIPS: aws.FIPSEndpointStateDisabled, DualStack: aws.DualStackEndpointStateDisabled,
				MaxAttempts: sdkMaxAttempts, AccessKey: "AKID"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateAWSEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cfg, err := AWSConfigFromEnv(os.Getenv)
			if err != nil {
				t.Fatalf("AWSConfigFromEnv: %v", err)
			}
			got := viewOf(t, cfg)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("AWSConfigFromEnv's clients (-want +got):\n%s", diff)
			}
			loaded, err := config.LoadDefaultConfig(context.Background())
			if err != nil {
				t.Fatalf("LoadDefaultConfig: %v", err)
			}
			if diff := cmp.Diff(viewOf(t, loaded), got); diff != "" {
				t.Errorf("AWSConfigFromEnv differs from the SDK's loader (-loader +env):\n%s", diff)
			}
		})
	}
}

// TestAWSConfigFromEnvNoCredentials checks that an environment without
// credentials gives none (the callers fail init, naming the variables),
// not a provider that fails at the first upload.
func TestAWSConfigFromEnvNoCredentials(t *testing.T) {
	env := map[string]string{"AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "AKID"}
	cfg, err := AWSConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("AWSConfigFromEnv: %v", err)
	}
	if cfg.Credentials != nil {
		t.Errorf("Credentials = %T with only AWS_ACCESS_KEY_ID, want nil", cfg.Credentials)
	}
	if _, err := NewSigV4Auth(cfg, "es", ""); err == nil || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
		t.Errorf("NewSigV4Auth without credentials = %v, want an error naming AWS_ACCESS_KEY_ID", err)
	}
}

// TestReadAWSEnvRelativeURI checks where the relative container URI
// points, and that it wins over the full one, as in the SDK.
func TestReadAWSEnvRelativeURI(t *testing.T) {
	env := map[string]string{
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/abc",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI":     "http://127.0.0.1:9/creds",
	}
	e, err := readAWSEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("readAWSEnv: %v", err)
	}
	if want := "http://169.254.170.2/v2/credentials/abc"; e.credsURL != want || !e.hasCredentials() {
		t.Errorf("credsURL = %q, hasCredentials = %v; want %q, true", e.credsURL, e.hasCredentials(), want)
	}
}

// TestAWSConfigFromEnvErrors checks that each malformed value is reported,
// naming its variable and quoting the value.
func TestAWSConfigFromEnvErrors(t *testing.T) {
	noCert := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(noCert, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"bad FIPS", map[string]string{"AWS_USE_FIPS_ENDPOINT": "yes"}, []string{`AWS_USE_FIPS_ENDPOINT="yes"`}},
		{"every problem at once", map[string]string{"AWS_USE_DUALSTACK_ENDPOINT": "1", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "on",
			"AWS_ENDPOINT_URL_S3": "127.0.0.1:9000"},
			[]string{`AWS_USE_DUALSTACK_ENDPOINT="1"`, `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS="on"`, `AWS_ENDPOINT_URL_S3="127.0.0.1:9000"`}},
		{"bad endpoint", map[string]string{"AWS_ENDPOINT_URL": "ftp://x"}, []string{`AWS_ENDPOINT_URL="ftp://x"`}},
		{"full URI not a URL", map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": "169.254.170.2/creds"},
			[]string{`AWS_CONTAINER_CREDENTIALS_FULL_URI="169.254.170.2/creds"`}},
		{"full URI off the machine over http", map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://10.1.2.3/creds"},
			[]string{`AWS_CONTAINER_CREDENTIALS_FULL_URI="http://10.1.2.3/creds"`, "loopback"}},
		{"missing CA bundle", map[string]string{"AWS_CA_BUNDLE": "/nonexistent/ca.pem"}, []string{`AWS_CA_BUNDLE="/nonexistent/ca.pem"`}},
		{"CA bundle without a certificate", map[string]string{"AWS_CA_BUNDLE": noCert}, []string{"AWS_CA_BUNDLE=", "no certificate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := AWSConfigFromEnv(func(k string) string { return tt.env[k] })
			if err == nil {
				t.Fatalf("AWSConfigFromEnv(%v) succeeded, want an error", tt.env)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("AWSConfigFromEnv(%v) = %v, want it to contain %s", tt.env, err, w)
				}
			}
		})
	}
}

// BenchmarkAWSConfigFromEnv measures what the extension now pays for its
// AWS configuration and S3 client at the first upload.
func BenchmarkAWSConfigFromEnv(b *testing.B) {
	env := map[string]string{"AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "SECRET", "AWS_SESSION_TOKEN": "ST"}
	getenv := func(k string) string { return env[k] }
	var c *s3.Client
	for b.Loop() {
		cfg, err := AWSConfigFromEnv(getenv)
		if err != nil {
			b.Fatal(err)
		}
		c = NewS3ClientFromConfig(cfg)
	}
	_ = c
}
