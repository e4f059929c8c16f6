package sinks

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/sluice-logs/sluice/buffer"
)

// contentType is what the objects hold once Athena (or anyone) has
// decompressed them. Content-Encoding stays empty on purpose: the ".zst"
// extension is what tells Athena, and a Content-Encoding would make HTTP
// clients that fetch an object decompress it behind the caller's back.
const contentType = "application/x-ndjson"

// contentTypeOf is contentType, or Parquet's media type for Parquet batches.
func contentTypeOf(b *buffer.Batch) string {
	if b.Ext == buffer.ExtParquet {
		return "application/vnd.apache.parquet"
	}
	return contentType
}

// SDK retry bounds. The extension retries across invocations itself, so the
// SDK only smooths over a blip; a long SDK backoff would hold up
// /event/next and so the function's billed duration.
const (
	sdkMaxAttempts = 3
	sdkMaxBackoff  = time.Second
)

// PutObjectAPI is the part of the S3 client the sink uses; tests pass a
// function or a real client.
type PutObjectAPI interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}

// S3Options configures an S3 sink.
type S3Options struct {
	Bucket string
	Layout Layout
	// ExpectedBucketOwner, when set, is the account id the bucket must
	// belong to: S3 refuses the write (403) if someone else owns it.
	ExpectedBucketOwner string
	// KMSKeyID, when set, encrypts objects with SSE-KMS under this key
	// (id, ARN or alias); otherwise the bucket's default encryption applies.
	KMSKeyID string
}

// S3 is a Sink that writes each batch as one object with a conditional put
// (If-None-Match: *), so a retried batch never overwrites or duplicates
// its object.
type S3 struct {
	client PutObjectAPI
	opts   S3Options
	closed atomic.Bool
}

// NewS3 returns a sink writing to o.Bucket through client.
func NewS3(client PutObjectAPI, o S3Options) *S3 {
	return &S3{client: client, opts: o}
}

// Write uploads b. It returns nil once S3 holds the object, including when
// an earlier attempt of the same batch already stored it (412). The error
// names the object; Retryable says whether trying again can help.
func (s *S3) Write(ctx context.Context, b *buffer.Batch) error {
	key := s.opts.Layout.Key(b)
	if s.closed.Load() {
		return fmt.Errorf("put s3://%s/%s: %w", s.opts.Bucket, key, ErrClosed)
	}
	in := &s3.PutObjectInput{
		Bucket: aws.String(s.opts.Bucket),
		Key:    aws.String(key),
		// A bytes.Reader is seekable: over https the SDK streams the body
		// with a trailing checksum, and a retry can rewind it.
		Body:              bytes.NewReader(b.Data),
		ContentLength:     aws.Int64(int64(len(b.Data))),
		ContentType:       aws.String(contentTypeOf(b)),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
		IfNoneMatch:       aws.String("*"),
	}
	if o := s.opts.ExpectedBucketOwner; o != "" {
		in.ExpectedBucketOwner = aws.String(o)
	}
	if k := s.opts.KMSKeyID; k != "" {
		in.ServerSideEncryption = types.ServerSideEncryptionAwsKms
		in.SSEKMSKeyId = aws.String(k)
	}
	_, err := s.client.PutObject(ctx, in)
	if err != nil && !alreadyExists(err) {
		return fmt.Errorf("put s3://%s/%s: %w", s.opts.Bucket, key, err)
	}
	return nil
}

// Close marks the sink closed; later writes fail. It is idempotent.
func (s *S3) Close(context.Context) error {
	s.closed.Store(true)
	return nil
}

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("sink closed")

// alreadyExists reports whether err is the answer to a conditional put whose
// object is already there: 412 Precondition Failed.
func alreadyExists(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "PreconditionFailed" {
		return true
	}
	var re httpStatusError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusPreconditionFailed
}

// httpStatusError is met by the response errors of every layer of the SDK
// (smithyhttp.ResponseError and the AWS and S3 wrappers around it), so
// errors.As finds the status whichever of them is outermost.
type httpStatusError interface {
	error
	HTTPStatusCode() int
}

var errNoCredentials = errors.New("s3 client: no credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_CONTAINER_CREDENTIALS_FULL_URI)")

// cmpOr returns the first non-empty string.
func cmpOr(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// LazyS3Client is the S3 client of the extension: a PutObjectAPI that
// builds its client (AWSConfigFromEnv, NewS3ClientFromConfig) at the first
// upload instead of at init. Building it took about a third of sluice's
// init CPU (and parsing AWS_CA_BUNDLE, when set, more), and init is billed
// and delays the function's first invocation; the first upload comes
// later, while the function runs.
//
// A client that fails to build is not kept: the error is returned by
// PutObject and the next call tries again.
type LazyS3Client struct {
	env    awsEnv
	mu     sync.Mutex
	client *s3.Client
}

// NewLazyS3Client returns a client for region (else AWS_REGION or
// AWS_DEFAULT_REGION) that is built at its first use. What can be checked
// without building it is checked now, so that a missing region or
// credentials, a malformed AWS_* value, or an AWS_CA_BUNDLE that does not
// exist, fail init with the variable's name.
func NewLazyS3Client(region string) (*LazyS3Client, error) {
	env, err := readAWSEnv(os.Getenv)
	errs := []error{err}
	env.region = cmpOr(region, env.region)
	if env.region == "" {
		errs = append(errs, errors.New("s3 client: no region (set AWS_REGION)"))
	}
	if !env.hasCredentials() {
		errs = append(errs, errNoCredentials)
	}
	if f := env.caBundle; f != "" {
		if _, err := os.Stat(f); err != nil {
			errs = append(errs, fmt.Errorf("s3 client: AWS_CA_BUNDLE=%q: %w", f, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &LazyS3Client{env: env}, nil
}

// PutObject builds the client if it is not built yet, then puts.
func (c *LazyS3Client) PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	cl, err := c.get()
	if err != nil {
		return nil, err
	}
	return cl.PutObject(ctx, in, opts...)
}

// Built reports whether the client has been built.
func (c *LazyS3Client) Built() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.client != nil
}

func (c *LazyS3Client) get() (*s3.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client == nil {
		cfg, err := c.env.config()
		if err != nil {
			return nil, fmt.Errorf("s3 client: %w", err)
		}
		c.client = NewS3ClientFromConfig(cfg)
	}
	return c.client, nil
}

func newRetryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = sdkMaxAttempts
		o.MaxBackoff = sdkMaxBackoff
		o.Retryables = append(o.Retryables, retry.RetryableErrorCode{
			Codes: map[string]struct{}{"ConditionalRequestConflict": {}},
		})
	})
}

// codeRetryable classifies S3 error codes: retry says whether the code is
// known to be transient, known says whether it is known at all.
func codeRetryable(code string) (retry, known bool) {
	switch code {
	case "SlowDown", "Throttling", "ThrottlingException", "ThrottledException",
		"RequestThrottled", "RequestThrottledException", "TooManyRequestsException",
		"RequestLimitExceeded", "RequestTimeout", "RequestTimeoutException",
		"InternalError", "ServiceUnavailable",
		"ConditionalRequestConflict", // 409: a concurrent conditional write on the key
		"OperationAborted",           // 409: a conflicting operation is in progress
		"RequestTimeTooSkewed":       // the SDK corrects its clock skew on the next attempt
		return true, true
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
		"AuthorizationHeaderMalformed", "ExpiredToken", "InvalidToken",
		"NoSuchBucket", "InvalidBucketName", "PermanentRedirect",
		"InvalidArgument", "InvalidRequest",
		"KMS.NotFoundException", "KMS.DisabledException",
		"XAdminUserNotFound": // versitygw: unknown access key
		return false, true
	}
	return false, false
}

// Retryable reports whether the failed write err may succeed if tried
// again later: throttling, server errors (5xx), timeouts and network
// failures are retryable; refusals (403, 400, 404 such as NoSuchBucket, bad
// credentials, a bad KMS key) and certificate errors are permanent, as is a
// cancelled context. A context deadline counts as retryable: it ended one
// attempt, not the sink. Unknown errors are permanent.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, ErrClosed) {
		return false
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		if retry, known := codeRetryable(ae.ErrorCode()); known {
			return retry
		}
	}
	var re httpStatusError
	if errors.As(err, &re) {
		switch status := re.HTTPStatusCode(); {
		case status >= 500, status == http.StatusTooManyRequests, status == http.StatusRequestTimeout:
			return true
		case status >= 400:
			return false
		}
	}
	if certificateError(err) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var se *smithyhttp.RequestSendError
	var ne net.Error
	return errors.As(err, &se) || errors.As(err, &ne) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE)
}

// S3Hint says what a person should change for a permanent S3 refusal,
// from the error's code.
func S3Hint(err error) string {
	code := ""
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	var re httpStatusError
	switch {
	case code == "AccessDenied", code == "AllAccessDisabled",
		code == "" && errors.As(err, &re) && re.HTTPStatusCode() == http.StatusForbidden:
		return "the function's role needs s3:PutObject on the SLUICE_SINK prefix (and kms:GenerateDataKey with SLUICE_S3_KMS_KEY_ID)"
	case code == "NoSuchBucket":
		return "the bucket in SLUICE_SINK does not exist (or is in another region)"
	case code == "InvalidAccessKeyId", code == "SignatureDoesNotMatch", code == "ExpiredToken", code == "InvalidToken", code == "XAdminUserNotFound":
		return "the credentials were refused: check the execution role"
	case strings.HasPrefix(code, "KMS."):
		return "the KMS key in SLUICE_S3_KMS_KEY_ID is missing, disabled or not usable by the role"
	case certificateError(err):
		return "the endpoint's TLS certificate is not trusted: check AWS_ENDPOINT_URL_S3 and AWS_CA_BUNDLE"
	case errors.Is(err, ErrClosed):
		return "the sink was closed"
	}
	return "see the error"
}

// certificateError reports whether err is a TLS verification failure,
// which does not heal by itself (a wrong CA bundle or a wrong endpoint).
func certificateError(err error) bool {
	var ua x509.UnknownAuthorityError
	var ci x509.CertificateInvalidError
	var he x509.HostnameError
	var tv *tls.CertificateVerificationError
	return errors.As(err, &ua) || errors.As(err, &ci) || errors.As(err, &he) || errors.As(err, &tv)
}
