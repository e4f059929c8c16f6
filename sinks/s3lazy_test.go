package sinks

import (
	"path/filepath"
	"testing"

	"github.com/sluice-logs/sluice/sinks/s3test"
)

// TestLazyS3ClientBuildsAtFirstPut checks that init does no SDK work and
// that the first put builds the client and reaches the server.
func TestLazyS3ClientBuildsAtFirstPut(t *testing.T) {
	srv := s3test.Start(t)
	useServer(t, srv)
	c, err := NewLazyS3Client(t.Context(), srv.Region)
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

// TestLazyS3ClientNoRegion checks that a region found nowhere still fails
// at once, as NewS3Client does, instead of at the first upload.
func TestLazyS3ClientNoRegion(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_PROFILE", "")
	if _, err := NewLazyS3Client(t.Context(), ""); err == nil {
		t.Error("NewLazyS3Client without a region succeeded, want an error")
	}
}

// TestLazyS3ClientRetriesBuild checks that a failed build is not kept: a
// bad CA bundle fails the put, and once fixed the next put succeeds.
func TestLazyS3ClientRetriesBuild(t *testing.T) {
	srv := s3test.Start(t)
	useServer(t, srv)
	good := srv.CAFile
	t.Setenv("AWS_CA_BUNDLE", filepath.Join(t.TempDir(), "missing.pem"))
	c, err := NewLazyS3Client(t.Context(), srv.Region)
	if err != nil {
		t.Fatalf("NewLazyS3Client: %v", err)
	}
	sink := NewS3(c, S3Options{Bucket: srv.Bucket, Layout: Layout{Function: "fn", Env: "lazy"}})
	if err := sink.Write(t.Context(), testBatch(t, 1, rows(1)...)); err == nil {
		t.Fatal("Write with a missing AWS_CA_BUNDLE succeeded, want an error")
	}
	if c.Built() {
		t.Fatal("Built() = true after a failed build, want false")
	}
	t.Setenv("AWS_CA_BUNDLE", good)
	if err := sink.Write(t.Context(), testBatch(t, 1, rows(1)...)); err != nil {
		t.Fatalf("Write after fixing AWS_CA_BUNDLE: %v", err)
	}
}
