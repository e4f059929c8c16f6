package archive

import (
	"context"
	"errors"

	"github.com/aws/smithy-go"
)

// Problem is what an error means to the person reading the archive.
type Problem int

const (
	// ProblemOther is anything else: a network failure, a damaged object.
	ProblemOther Problem = iota
	// ProblemBadCredentials: S3 rejected the credentials (unknown key,
	// wrong secret, expired token).
	ProblemBadCredentials
	// ProblemAccessDenied: the credentials may not list or read the prefix.
	ProblemAccessDenied
	// ProblemNoSuchBucket: the bucket does not exist.
	ProblemNoSuchBucket
)

// Classify says what err means, from S3's error code (smithy.APIError),
// never from the text of a message. Missing credentials are found before
// any request: see the logs command, which retrieves them first.
func Classify(err error) Problem {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "AccessDenied", "AllAccessDisabled", "AccountProblem":
			return ProblemAccessDenied
		case "NoSuchBucket":
			return ProblemNoSuchBucket
		case "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
			"TokenRefreshRequired", "XAdminUserNotFound": // versitygw: unknown access key
			return ProblemBadCredentials
		}
	}
	return ProblemOther
}

// Fatal reports whether err makes the rest of a read pointless: a cancelled
// read, or a problem that every object would share. Other errors of one
// object skip that object.
func Fatal(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	return Classify(err) != ProblemOther
}
