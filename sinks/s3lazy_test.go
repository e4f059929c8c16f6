package sinks

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-logs/sluice/sinks/s3test"
)

// TestLazyS3ClientBuildsAtFirstPut checks that init does no SDK work and
// that the first put builds the client and reaches the server.
func TestLazyS3ClientBuildsAtFirstPut(t *testing.T) {
	srv := s3test.Start(t)
	useServer(t, srv)
	c, err := NewLazyS3Client(srv.Region)
	if err != nil {
		t.Fatalf("NewLazyS3Client: %v", err)
	}
	if c.Built() {
		t.Fatal("Built() = true before any put, want false")
	}
	sink := NewS3(c, S3Options{Bucket: srv.Bucket, Layout: Layout{Function: "fn", Env: "lazy"}})
	if err := sink.Write(t.Context(), testBatch(t, 1, rows(3)...)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if !c.Built() {
		t.Error("Built() = false after a put, want true")
	}
	if got := len(srv.Objects(t)); got != 1 {
		t.Errorf("objects after one Write = %d, want 1", got)
	}
}

// TestLazyS3ClientInitErrors checks that what can be known without
// building the client fails init, naming the variable.
func TestLazyS3ClientInitErrors(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		wantText string
	}{
		{"no region", map[string]string{"AWS_REGION": "", "AWS_DEFAULT_REGION": ""}, "AWS_REGION"},
		{"no credentials", map[string]string{"AWS_ACCESS_KEY_ID": "", "AWS_CONTAINER_CREDENTIALS_FULL_URI": "", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": ""}, "AWS_ACCESS_KEY_ID"},
		{"missing CA bundle", map[string]string{"AWS_CA_BUNDLE": "/nonexistent/ca.pem"}, `AWS_CA_BUNDLE="/nonexistent/ca.pem"`},
		{"bad AWS_USE_FIPS_ENDPOINT", map[string]string{"AWS_USE_FIPS_ENDPOINT": "yes"}, `AWS_USE_FIPS_ENDPOINT="yes"`},
		{"container endpoint not a URL", map[string]string{"AWS_ACCESS_KEY_ID": "", "AWS_CONTAINER_CREDENTIALS_FULL_URI": "127.0.0.1/creds"}, `AWS_CONTAINER_CREDENTIALS_FULL_URI="127.0.0.1/creds"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("AWS_REGION", "eu-west-1")
			t.Setenv("AWS_ACCESS_KEY_ID", "AKID")
			t.Setenv("AWS_SECRET_ACCESS_KEY", "SECRET")
			t.Setenv("AWS_CA_BUNDLE", "")
			t.Setenv("AWS_USE_FIPS_ENDPOINT", "")
			t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "")
			t.Setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			_, err := NewLazyS3Client("")
			if err == nil || !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("NewLazyS3Client() = %v, want an error naming %s", err, tt.wantText)
			}
		})
	}
}

// TestLazyS3ClientRetriesBuild checks that a failed build is not kept: a CA
// bundle without a certificate fails the put, and once fixed the next put
// succeeds.
func TestLazyS3ClientRetriesBuild(t *testing.T) {
	srv := s3test.Start(t)
	useServer(t, srv)
	good, err := os.ReadFile(srv.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bundle, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_CA_BUNDLE", bundle)
	c, err := NewLazyS3Client(srv.Region)
	if err != nil {
		t.Fatalf("NewLazyS3Client: %v", err)
	}
	sink := NewS3(c, S3Options{Bucket: srv.Bucket, Layout: Layout{Function: "fn", Env: "lazy"}})
	if err := sink.Write(t.Context(), testBatch(t, 1, rows(1)...)); err == nil || !strings.Contains(err.Error(), "CA bundle") {
		t.Fatalf("Write with a bundle holding no certificate = %v, want an error about the CA bundle", err)
	}
	if c.Built() {
		t.Fatal("Built() = true after a failed build, want false")
	}
	if err := os.WriteFile(bundle, good, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := sink.Write(t.Context(), testBatch(t, 1, rows(1)...)); err != nil {
		t.Fatalf("Write after fixing AWS_CA_BUNDLE: %v", err)
	}
}

// TestS3ClientContainerCredentials checks the other source of role
// credentials Lambda uses: the container credentials endpoint, with its
// authorization token read from a file at each retrieval.
func TestS3ClientContainerCredentials(t *testing.T) {
	srv := s3test.Start(t)
	useServer(t, srv)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("tok-1"), 0o644); err != nil {
		t.Fatal(err)
	}
	var auth []string
	creds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = append(auth, r.Header.Get("Authorization"))
		_ = json.NewEncoder(w).Encode(map[string]string{
			"AccessKeyId":     srv.AccessKey,
			"SecretAccessKey": srv.SecretKey,
			"Expiration":      time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
		})
	}))
	defer creds.Close()
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", creds.URL+"/creds")
	t.Setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", tokenFile)

	cfg, err := AWSConfigFromEnv(os.Getenv)
	if err != nil {
		t.Fatalf("AWSConfigFromEnv: %v", err)
	}
	sink := NewS3(NewS3ClientFromConfig(cfg), S3Options{Bucket: srv.Bucket, Layout: Layout{Function: "fn", Env: "container"}})
	if err := sink.Write(t.Context(), testBatch(t, 1, rows(2)...)); err != nil {
		t.Fatalf("Write with container credentials: %v", err)
	}
	if len(auth) != 1 || auth[0] != "tok-1" {
		t.Errorf("credential requests carried Authorization %q, want one with tok-1", auth)
	}
}
