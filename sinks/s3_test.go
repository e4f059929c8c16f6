package sinks

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/google/go-cmp/cmp"

	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/sinks/s3test"
)

// putFunc is a PutObjectAPI made of a function.
type putFunc func(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)

func (f putFunc) PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	return f(ctx, in, opts...)
}

// useServer points the AWS environment at s, as the extension binary
// sees it, and returns a client made the production way.
func useServer(t *testing.T, s *s3test.Server) *s3.Client {
	t.Helper()
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("AWS_SESSION_TOKEN", "")
	cfg, err := AWSConfigFromEnv(os.Getenv)
	if err != nil {
		t.Fatalf("AWSConfigFromEnv: %v", err)
	}
	return NewS3ClientFromConfig(cfg)
}

func TestS3Write(t *testing.T) {
	srv := s3test.Start(t)
	client := useServer(t, srv)
	layout := Layout{Prefix: "logs/", Function: "fn", Env: "env1"}
	sink := NewS3(client, S3Options{Bucket: srv.Bucket, Layout: layout})
	ctx := t.Context()

	b1 := testBatch(t, 1, rows(3)...)
	b2 := testBatch(t, 2, rows(500)...)
	for _, b := range []*buffer.Batch{b1, b2} {
		start := time.Now()
		if err := sink.Write(ctx, b); err != nil {
			t.Fatalf("Write(seq %d): %v", b.Seq, err)
		}
		// The first put includes the TLS handshake.
		t.Logf("Write(seq %d, %d bytes): %v", b.Seq, len(b.Data), time.Since(start))
	}
	want := map[string][]byte{layout.Key(b1): b1.Data, layout.Key(b2): b2.Data}
	if diff := cmp.Diff(want, srv.Objects(t)); diff != "" {
		t.Errorf("objects mismatch (-want +got):\n%s", diff)
	}

	head, err := client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket:       aws.String(srv.Bucket),
		Key:          aws.String(layout.Key(b1)),
		ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		t.Fatalf("HeadObject: %v", err)
	}
	if got := aws.ToString(head.ContentType); got != contentType {
		t.Errorf("ContentType = %q, want %q", got, contentType)
	}
	// The SDK sends "Content-Encoding: aws-chunked" for the trailing
	// checksum. S3 drops it from the object; versitygw v1.8.0 keeps it.
	if got := aws.ToString(head.ContentEncoding); got != "" && got != "aws-chunked" {
		t.Errorf("ContentEncoding = %q, want none", got)
	}
	if head.ChecksumCRC32C == nil {
		t.Errorf("ChecksumCRC32C not stored: the upload carried no CRC32C")
	}
}

// A retried batch (same Seq) must succeed without a second object and
// without touching the first: If-None-Match makes the repeat a 412.
func TestS3WriteTwice(t *testing.T) {
	srv := s3test.Start(t)
	client := srv.Client(t)
	layout := Layout{Function: "fn", Env: "env1"}
	sink := NewS3(client, S3Options{Bucket: srv.Bucket, Layout: layout})
	ctx := t.Context()

	b := testBatch(t, 1, rows(10)...)
	if err := sink.Write(ctx, b); err != nil {
		t.Fatalf("first Write: %v", err)
	}
	// What the server answers the repeated conditional put.
	_, err := client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:      aws.String(srv.Bucket),
		Key:         aws.String(layout.Key(b)),
		Body:        bytes.NewReader(b.Data),
		IfNoneMatch: aws.String("*"),
	})
	var ae smithy.APIError
	var re httpStatusError
	if !errors.As(err, &ae) || !errors.As(err, &re) {
		t.Fatalf("repeated conditional put: err = %v, want an API error", err)
	}
	t.Logf("repeated conditional put: HTTP %d %s", re.HTTPStatusCode(), ae.ErrorCode())
	if !alreadyExists(err) {
		t.Errorf("alreadyExists(%v) = false, want true", err)
	}

	again := *b
	again.Data = testBatch(t, 1, rows(20)...).Data // a different body must not replace the first
	if err := sink.Write(ctx, &again); err != nil {
		t.Fatalf("second Write of seq 1: %v", err)
	}
	want := map[string][]byte{layout.Key(b): b.Data}
	if diff := cmp.Diff(want, srv.Objects(t)); diff != "" {
		t.Errorf("objects after a repeated write (-want +got):\n%s", diff)
	}
}

func TestS3WritePermanentErrors(t *testing.T) {
	srv := s3test.Start(t)
	wrongSecret := *srv
	wrongSecret.SecretKey = "wrong-secret"
	wrongKey := *srv
	wrongKey.AccessKey = "nobody"
	tests := []struct {
		name   string
		srv    *s3test.Server
		bucket string
	}{
		{"wrong secret", &wrongSecret, srv.Bucket},
		{"unknown access key", &wrongKey, srv.Bucket},
		{"no such bucket", srv, "missing-bucket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			layout := Layout{Function: "fn", Env: "e"}
			sink := NewS3(tt.srv.Client(t), S3Options{Bucket: tt.bucket, Layout: layout})
			b := testBatch(t, 1, rows(2)...)
			err := sink.Write(t.Context(), b)
			if err == nil {
				t.Fatal("Write succeeded, want an error")
			}
			t.Logf("error: %v", err)
			if Retryable(err) {
				t.Errorf("Retryable(%v) = true, want false", err)
			}
			if prefix := fmt.Sprintf("put s3://%s/%s: ", tt.bucket, layout.Key(b)); !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q does not start with %q", err, prefix)
			}
		})
	}
	if objs := srv.Objects(t); len(objs) != 0 {
		t.Errorf("%d objects stored by refused writes, want none", len(objs))
	}
}

// A server that cannot be reached is worth retrying; one whose certificate
// is not trusted is not.
func TestS3WriteTransportErrors(t *testing.T) {
	srv := s3test.Start(t)
	t.Run("connection refused", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		down := *srv
		down.Endpoint = "https://" + addr
		err = NewS3(down.Client(t), S3Options{Bucket: srv.Bucket}).Write(t.Context(), testBatch(t, 1, row("a")))
		if err == nil || !Retryable(err) {
			t.Errorf("Write to a closed port: err = %v, Retryable = false, want a retryable error", err)
		}
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		untrusted := *srv
		untrusted.CAFile = "/etc/ssl/certs/ca-certificates.crt"
		if _, err := os.Stat(untrusted.CAFile); err != nil {
			t.Skip("no system CA bundle")
		}
		err := NewS3(untrusted.Client(t), S3Options{Bucket: srv.Bucket}).Write(t.Context(), testBatch(t, 1, row("a")))
		if err == nil || Retryable(err) {
			t.Errorf("Write with an untrusted certificate: err = %v, want a permanent error", err)
		}
	})
}

func TestS3WriteRequest(t *testing.T) {
	tests := []struct {
		name  string
		opts  S3Options
		owner string
		sse   types.ServerSideEncryption
		kms   string
	}{
		{name: "plain", opts: S3Options{Bucket: "bkt"}},
		{name: "owner", opts: S3Options{Bucket: "bkt", ExpectedBucketOwner: "111122223333"}, owner: "111122223333"},
		{
			name: "kms",
			opts: S3Options{Bucket: "bkt", KMSKeyID: "arn:aws:kms:us-east-1:111122223333:key/k"},
			sse:  types.ServerSideEncryptionAwsKms, kms: "arn:aws:kms:us-east-1:111122223333:key/k",
		},
		{
			name:  "owner and kms",
			opts:  S3Options{Bucket: "bkt", ExpectedBucketOwner: "111122223333", KMSKeyID: "alias/logs"},
			owner: "111122223333", sse: types.ServerSideEncryptionAwsKms, kms: "alias/logs",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Layout = Layout{Prefix: "p", Function: "fn", Env: "e"}
			b := testBatch(t, 5, rows(4)...)
			var got *s3.PutObjectInput
			var body []byte
			fake := putFunc(func(_ context.Context, in *s3.PutObjectInput, _ ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
				got = in
				if _, ok := in.Body.(io.Seeker); !ok {
					t.Errorf("Body is a %T, want a seekable reader", in.Body)
				}
				var err error
				body, err = io.ReadAll(in.Body)
				return &s3.PutObjectOutput{}, err
			})
			if err := NewS3(fake, tt.opts).Write(t.Context(), b); err != nil {
				t.Fatalf("Write: %v", err)
			}
			checks := []struct {
				field     string
				got, want any
			}{
				{"Bucket", aws.ToString(got.Bucket), "bkt"},
				{"Key", aws.ToString(got.Key), tt.opts.Layout.Key(b)},
				{"ContentType", aws.ToString(got.ContentType), "application/x-ndjson"},
				{"ContentEncoding", got.ContentEncoding, (*string)(nil)},
				{"ContentLength", aws.ToInt64(got.ContentLength), int64(len(b.Data))},
				{"ChecksumAlgorithm", got.ChecksumAlgorithm, types.ChecksumAlgorithmCrc32c},
				{"IfNoneMatch", aws.ToString(got.IfNoneMatch), "*"},
				{"ExpectedBucketOwner", aws.ToString(got.ExpectedBucketOwner), tt.owner},
				{"ServerSideEncryption", got.ServerSideEncryption, tt.sse},
				{"SSEKMSKeyId", aws.ToString(got.SSEKMSKeyId), tt.kms},
				{"Body", body, b.Data},
			}
			for _, c := range checks {
				if diff := cmp.Diff(c.want, c.got); diff != "" {
					t.Errorf("PutObjectInput.%s mismatch (-want +got):\n%s", c.field, diff)
				}
			}
		})
	}
}

// apiError is an S3 error response as the SDK returns it.
func apiError(status int, code string) error {
	return &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
		Err:      &smithy.GenericAPIError{Code: code, Message: "test"},
	}
}

func TestS3WriteResults(t *testing.T) {
	tests := []struct {
		name      string
		putErr    error
		wantErr   bool
		retryable bool
	}{
		{name: "stored", putErr: nil},
		{name: "already there", putErr: apiError(412, "PreconditionFailed")},
		{name: "412 without a code", putErr: apiError(412, "")},
		{name: "conflict", putErr: apiError(409, "ConditionalRequestConflict"), wantErr: true, retryable: true},
		{name: "slow down", putErr: apiError(503, "SlowDown"), wantErr: true, retryable: true},
		{name: "denied", putErr: apiError(403, "AccessDenied"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := putFunc(func(context.Context, *s3.PutObjectInput, ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
				return nil, &smithy.OperationError{ServiceID: "S3", OperationName: "PutObject", Err: tt.putErr}
			})
			if tt.putErr == nil {
				fake = func(context.Context, *s3.PutObjectInput, ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
					return &s3.PutObjectOutput{}, nil
				}
			}
			err := NewS3(fake, S3Options{Bucket: "b"}).Write(t.Context(), testBatch(t, 1, row("a")))
			if (err != nil) != tt.wantErr {
				t.Fatalf("Write() err = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && Retryable(err) != tt.retryable {
				t.Errorf("Retryable(%v) = %v, want %v", err, !tt.retryable, tt.retryable)
			}
		})
	}
}

func TestS3Close(t *testing.T) {
	calls := 0
	fake := putFunc(func(context.Context, *s3.PutObjectInput, ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
		calls++
		return &s3.PutObjectOutput{}, nil
	})
	s := NewS3(fake, S3Options{Bucket: "b"})
	for i := range 2 {
		if err := s.Close(t.Context()); err != nil {
			t.Errorf("Close #%d: %v", i+1, err)
		}
	}
	err := s.Write(t.Context(), testBatch(t, 1, row("a")))
	if !errors.Is(err, ErrClosed) || calls != 0 {
		t.Errorf("Write after Close: err = %v, %d puts; want ErrClosed, no put", err, calls)
	}
}

func TestRetryable(t *testing.T) {
	refused := &smithyhttp.RequestSendError{Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"slow down", apiError(503, "SlowDown"), true},
		{"throttling", apiError(400, "Throttling"), true},
		{"request timeout", apiError(400, "RequestTimeout"), true},
		{"internal error", apiError(500, "InternalError"), true},
		{"service unavailable", apiError(503, "ServiceUnavailable"), true},
		{"bad gateway without a code", apiError(502, ""), true},
		{"unknown code, 5xx", apiError(504, "Whatever"), true},
		{"too many requests", apiError(429, ""), true},
		{"conditional request conflict", apiError(409, "ConditionalRequestConflict"), true},
		{"access denied", apiError(403, "AccessDenied"), false},
		{"invalid access key", apiError(403, "InvalidAccessKeyId"), false},
		{"signature", apiError(403, "SignatureDoesNotMatch"), false},
		{"no such bucket", apiError(404, "NoSuchBucket"), false},
		{"versitygw unknown key", apiError(404, "XAdminUserNotFound"), false},
		{"bad request", apiError(400, "InvalidArgument"), false},
		{"unknown code, 4xx", apiError(400, "Whatever"), false},
		{"kms key not found", apiError(400, "KMS.NotFoundException"), false},
		{"connection refused", refused, true},
		{"connection reset", &smithyhttp.RequestSendError{Err: syscall.ECONNRESET}, true},
		{"bare net error", &net.DNSError{Err: "timeout", Name: "s3", IsTimeout: true}, true},
		{"unexpected EOF", io.ErrUnexpectedEOF, true},
		{"unknown authority", &smithyhttp.RequestSendError{Err: x509.UnknownAuthorityError{}}, false},
		{"deadline", context.DeadlineExceeded, true},
		{"canceled", &smithy.CanceledError{Err: context.Canceled}, false},
		{"closed", ErrClosed, false},
		{"plain error", errors.New("boom"), false},
		{"wrapped by the sink", fmt.Errorf("put s3://b/k: %w", &smithy.OperationError{Err: apiError(503, "SlowDown")}), true},
		{"after the SDK's attempts", &retry.MaxAttemptsError{Attempt: 3, Err: apiError(503, "SlowDown")}, true},
		{"wrapped permanent", fmt.Errorf("put s3://b/k: %w", &smithy.OperationError{Err: apiError(403, "AccessDenied")}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Retryable(tt.err); got != tt.want {
				t.Errorf("Retryable(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// BenchmarkS3Write measures one conditional put to versitygw over TLS on
// loopback: the cost of the SDK, TLS and the server's fsync, not S3's.
func BenchmarkS3Write(b *testing.B) {
	srv := s3test.Start(b)
	sink := NewS3(srv.Client(b), S3Options{Bucket: srv.Bucket, Layout: Layout{Function: "fn", Env: "bench"}})
	for _, size := range []int{16 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			data := make([]byte, size)
			for i := range data {
				data[i] = byte(i * 7)
			}
			ctx := context.Background()
			seq := uint64(0)
			b.SetBytes(int64(size))
			for b.Loop() {
				seq++
				err := sink.Write(ctx, &buffer.Batch{Seq: seq, Start: testStart.Add(time.Duration(size)), Data: data, Ext: ".json.zst"})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
