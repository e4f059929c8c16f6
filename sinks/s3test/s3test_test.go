package s3test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/google/go-cmp/cmp"
)

func TestServer(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ctx := t.Context()
	want := map[string][]byte{
		"a.txt":           []byte("hello"),
		"dir/sub/b.bin":   bytes.Repeat([]byte{0, 1, 2}, 1000),
		"function=f/x.gz": {},
	}
	for k, v := range want {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{
			Bucket:            aws.String(s.Bucket),
			Key:               aws.String(k),
			Body:              bytes.NewReader(v),
			ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
		})
		if err != nil {
			t.Fatalf("PutObject(%s): %v", k, err)
		}
	}
	got := s.Objects(t)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Objects() mismatch (-want +got):\n%s", diff)
	}
}

// The server must check what clients send, or tests against it prove
// nothing: a wrong checksum and a wrong signature are refused.
func TestServerChecks(t *testing.T) {
	s := Start(t)
	ctx := t.Context()

	bad := make([]byte, 4)
	binary.BigEndian.PutUint32(bad, crc32.Checksum([]byte("other"), crc32.MakeTable(crc32.Castagnoli)))
	_, err := s.Client(t).PutObject(ctx, &s3.PutObjectInput{
		Bucket:         aws.String(s.Bucket),
		Key:            aws.String("bad-checksum"),
		Body:           bytes.NewReader([]byte("data")),
		ChecksumCRC32C: aws.String(base64.StdEncoding.EncodeToString(bad)),
	})
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Errorf("PutObject with a wrong CRC32C: err = %v, want an API error", err)
	} else {
		t.Logf("wrong CRC32C: %s", ae.ErrorCode())
	}

	wrong := *s
	wrong.SecretKey = "not-the-secret"
	_, err = wrong.Client(t).PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(s.Bucket),
		Key:    aws.String("bad-signature"),
		Body:   bytes.NewReader([]byte("data")),
	})
	if !errors.As(err, &ae) || ae.ErrorCode() != "SignatureDoesNotMatch" {
		t.Errorf("PutObject with a wrong secret: err = %v, want SignatureDoesNotMatch", err)
	}
	if objs := s.Objects(t); len(objs) != 0 {
		t.Errorf("Objects() = %d objects after refused puts, want none", len(objs))
	}
}

func TestEnv(t *testing.T) {
	s := &Server{Endpoint: "https://127.0.0.1:1", AccessKey: "a", SecretKey: "s", Region: "r", CAFile: "/ca.pem"}
	want := []string{
		"AWS_ACCESS_KEY_ID=a",
		"AWS_SECRET_ACCESS_KEY=s",
		"AWS_REGION=r",
		"AWS_ENDPOINT_URL_S3=https://127.0.0.1:1",
		"AWS_CA_BUNDLE=/ca.pem",
	}
	if diff := cmp.Diff(want, s.Env()); diff != "" {
		t.Errorf("Env() mismatch (-want +got):\n%s", diff)
	}
}

func TestRunCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, _, err := Run(ctx, t.TempDir())
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run(canceled ctx) err = %v, want context.Canceled", err)
	}
}
