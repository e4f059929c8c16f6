package sinks

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// containerCredentialsHost is where AWS_CONTAINER_CREDENTIALS_RELATIVE_URI
// points, as the SDK resolves it.
const containerCredentialsHost = "http://169.254.170.2"

// The hosts an http:// AWS_CONTAINER_CREDENTIALS_FULL_URI may name besides
// loopback: the ECS and EKS credential agents (the SDK's rule, so that a
// token is never sent in clear text off the machine).
var containerCredentialIPs = []net.IP{
	net.IPv4(169, 254, 170, 2),
	net.IPv4(169, 254, 170, 23),
	net.ParseIP("fd00:ec2::23"),
}

// awsEnv is the part of the SDK's environment configuration that an
// extension can meet in Lambda, read without the SDK's configuration
// loader (github.com/aws/aws-sdk-go-v2/config). The loader also links the
// SSO, STS and sign-in clients, the INI parser and the EC2 metadata client
// for profiles that do not exist in Lambda; their package initialisation
// alone cost about 1 ms of every cold start and 2 MB of resident memory.
//
// It reads, with the loader's meaning:
//
//	AWS_REGION, AWS_DEFAULT_REGION
//	AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
//	AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI, with
//	  AWS_CONTAINER_AUTHORIZATION_TOKEN or _TOKEN_FILE (SnapStart, Managed Instances)
//	AWS_CA_BUNDLE
//	AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_<SERVICE>, AWS_IGNORE_CONFIGURED_ENDPOINT_URLS
//	AWS_USE_FIPS_ENDPOINT, AWS_USE_DUALSTACK_ENDPOINT
//
// Shared config and credentials files, profiles, SSO, web identity and
// the EC2 instance metadata service are not read: Lambda uses none of them.
//
// awsEnv also serves as the configuration source the service clients
// consult (aws.Config.ConfigSources) for endpoints, FIPS and dual-stack.
type awsEnv struct {
	region string
	static aws.Credentials // from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY when both are set
	// credsURL is the container credentials endpoint, credsVar the variable
	// that gave it.
	credsURL, credsVar       string
	authToken, authTokenFile string
	caBundle                 string
	endpoint                 string // AWS_ENDPOINT_URL
	ignoreEndpoints          bool
	fips                     aws.FIPSEndpointState
	dualStack                aws.DualStackEndpointState
	// getenv reads AWS_ENDPOINT_URL_<SERVICE> for whichever service asks.
	getenv func(string) string
}

// readAWSEnv reads the AWS environment through getenv. It does no I/O:
// the CA bundle is read and the container endpoint's host checked when a
// configuration is built. Every malformed value is reported, each naming
// its variable.
func readAWSEnv(getenv func(string) string) (awsEnv, error) {
	e := awsEnv{
		region:        cmpOr(getenv("AWS_REGION"), getenv("AWS_DEFAULT_REGION")),
		authToken:     getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
		authTokenFile: getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
		caBundle:      getenv("AWS_CA_BUNDLE"),
		endpoint:      getenv("AWS_ENDPOINT_URL"),
		getenv:        getenv,
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if id, secret := getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY"); id != "" && secret != "" {
		e.static = aws.Credentials{AccessKeyID: id, SecretAccessKey: secret, SessionToken: getenv("AWS_SESSION_TOKEN")}
	}
	// The SDK prefers the relative URI to the full one.
	if rel := getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"); rel != "" {
		e.credsURL, e.credsVar = containerCredentialsHost+rel, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"
	} else if full := getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI"); full != "" {
		e.credsURL, e.credsVar = full, "AWS_CONTAINER_CREDENTIALS_FULL_URI"
	}
	if e.credsURL != "" && !e.static.HasKeys() {
		if u, err := url.Parse(e.credsURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
			bad("%s=%q: want an http:// or https:// URL", e.credsVar, getenv(e.credsVar))
		}
	}
	for _, k := range []string{"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"} {
		if v := getenv(k); v != "" {
			if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				bad("%s=%q: want an http:// or https:// URL", k, v)
			}
		}
	}
	var err error
	if e.ignoreEndpoints, err = envBool(getenv, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"); err != nil {
		errs = append(errs, err)
	}
	switch fips, err := envBool(getenv, "AWS_USE_FIPS_ENDPOINT"); {
	case err != nil:
		errs = append(errs, err)
	case fips:
		e.fips = aws.FIPSEndpointStateEnabled
	case getenv("AWS_USE_FIPS_ENDPOINT") != "":
		e.fips = aws.FIPSEndpointStateDisabled
	}
	switch dual, err := envBool(getenv, "AWS_USE_DUALSTACK_ENDPOINT"); {
	case err != nil:
		errs = append(errs, err)
	case dual:
		e.dualStack = aws.DualStackEndpointStateEnabled
	case getenv("AWS_USE_DUALSTACK_ENDPOINT") != "":
		e.dualStack = aws.DualStackEndpointStateDisabled
	}
	return e, errors.Join(errs...)
}

// envBool reads a true/false variable (any case); empty is false.
func envBool(getenv func(string) string, key string) (bool, error) {
	switch v := getenv(key); {
	case v == "", strings.EqualFold(v, "false"):
		return false, nil
	case strings.EqualFold(v, "true"):
		return true, nil
	default:
		return false, fmt.Errorf("%s=%q: want true or false", key, v)
	}
}

// hasCredentials reports whether the environment names a source of
// credentials: keys, or a container credentials endpoint.
func (e awsEnv) hasCredentials() bool { return e.static.HasKeys() || e.credsURL != "" }

// config builds the aws.Config e describes. Credentials is nil when the
// environment names no source; Region may be empty: the caller says which
// of them it needs, and how to fix it.
func (e awsEnv) config() (aws.Config, error) {
	hc := awshttp.NewBuildableClient()
	if e.caBundle != "" {
		pem, err := os.ReadFile(e.caBundle)
		if err != nil {
			return aws.Config{}, fmt.Errorf("AWS_CA_BUNDLE=%q: %w", e.caBundle, err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return aws.Config{}, fmt.Errorf("AWS_CA_BUNDLE=%q: no certificate in the CA bundle", e.caBundle)
		}
		hc = hc.WithTransportOptions(func(tr *http.Transport) {
			if tr.TLSClientConfig == nil {
				tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
			}
			tr.TLSClientConfig.RootCAs = roots
		})
	}
	cfg := aws.Config{
		Region:        e.region,
		HTTPClient:    hc,
		ConfigSources: []any{e},
	}
	if e.endpoint != "" && !e.ignoreEndpoints {
		cfg.BaseEndpoint = aws.String(e.endpoint)
	}
	switch {
	case e.static.HasKeys():
		cfg.Credentials = aws.NewCredentialsCache(credentials.StaticCredentialsProvider{Value: e.static})
	case e.credsURL != "":
		p, err := e.containerCredentials()
		if err != nil {
			return aws.Config{}, err
		}
		// The SDK refreshes container credentials 5 minutes early.
		cfg.Credentials = aws.NewCredentialsCache(p, func(o *aws.CredentialsCacheOptions) {
			o.ExpiryWindow = 5 * time.Minute
		})
	}
	return cfg, nil
}

// containerCredentials returns the provider of the container credentials
// endpoint. Over http the endpoint must be on this machine (loopback, or
// the ECS/EKS agents), as the SDK requires: the request carries a token.
func (e awsEnv) containerCredentials() (*endpointcreds.Provider, error) {
	u, err := url.Parse(e.credsURL)
	if err != nil {
		return nil, fmt.Errorf("%s=%q: %w", e.credsVar, e.getenv(e.credsVar), err)
	}
	if u.Scheme == "http" && e.credsVar == "AWS_CONTAINER_CREDENTIALS_FULL_URI" {
		if ok, err := localHost(u.Hostname()); err != nil || !ok {
			return nil, fmt.Errorf("%s=%q: over http the host must be loopback or the ECS/EKS credential agent (%v)", e.credsVar, e.credsURL, err)
		}
	}
	file := e.authTokenFile
	return endpointcreds.New(e.credsURL, func(o *endpointcreds.Options) {
		o.AuthorizationToken = e.authToken
		o.Retryer = newRetryer()
		if file != "" {
			// Read at each retrieval: the token may be rotated.
			o.AuthorizationTokenProvider = endpointcreds.TokenProviderFunc(func() (string, error) {
				b, err := os.ReadFile(file)
				if err != nil {
					return "", fmt.Errorf("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=%q: %w", file, err)
				}
				return string(b), nil
			})
		}
	}), nil
}

// localHost reports whether host is, or resolves only to, loopback or
// container credential agent addresses.
func localHost(host string) (bool, error) {
	if ip := net.ParseIP(host); ip != nil {
		return localIP(ip), nil
	}
	addrs, err := net.LookupHost(host)
	if err != nil {
		return false, err
	}
	for _, a := range addrs {
		if ip := net.ParseIP(a); ip == nil || !localIP(ip) {
			return false, nil
		}
	}
	return true, nil
}

func localIP(ip net.IP) bool {
	if ip.IsLoopback() {
		return true
	}
	for _, c := range containerCredentialIPs {
		if ip.Equal(c) {
			return true
		}
	}
	return false
}

// GetServiceBaseEndpoint returns AWS_ENDPOINT_URL_<SERVICE> for the SDK id
// sdkID ("S3", "Secrets Manager"), as the SDK's loader does.
func (e awsEnv) GetServiceBaseEndpoint(_ context.Context, sdkID string) (string, bool, error) {
	v := e.getenv("AWS_ENDPOINT_URL_" + strings.ReplaceAll(strings.ToUpper(sdkID), " ", "_"))
	return v, v != "", nil
}

// GetIgnoreConfiguredEndpoints reports AWS_IGNORE_CONFIGURED_ENDPOINT_URLS.
func (e awsEnv) GetIgnoreConfiguredEndpoints(context.Context) (bool, bool, error) {
	return e.ignoreEndpoints, e.ignoreEndpoints, nil
}

// GetUseFIPSEndpoint reports AWS_USE_FIPS_ENDPOINT.
func (e awsEnv) GetUseFIPSEndpoint(context.Context) (aws.FIPSEndpointState, bool, error) {
	return e.fips, e.fips != aws.FIPSEndpointStateUnset, nil
}

// GetUseDualStackEndpoint reports AWS_USE_DUALSTACK_ENDPOINT.
func (e awsEnv) GetUseDualStackEndpoint(context.Context) (aws.DualStackEndpointState, bool, error) {
	return e.dualStack, e.dualStack != aws.DualStackEndpointStateUnset, nil
}

// AWSConfigFromEnv returns the extension's aws.Config, built from the
// Lambda environment through getenv without the SDK's configuration loader
// (see awsEnv for the variables it reads). Its Credentials is nil when
// neither keys nor a container credentials endpoint are set, and its
// Region empty without AWS_REGION or AWS_DEFAULT_REGION: the caller
// decides whether it needs them. It reads AWS_CA_BUNDLE, if set.
func AWSConfigFromEnv(getenv func(string) string) (aws.Config, error) {
	e, err := readAWSEnv(getenv)
	if err != nil {
		return aws.Config{}, err
	}
	return e.config()
}

// NewS3ClientFromConfig returns the S3 client sluice uses, from cfg (the
// extension's AWSConfigFromEnv, or the SDK's full default chain for `sluice
// logs`). When an endpoint is configured (AWS_ENDPOINT_URL_S3 or
// AWS_ENDPOINT_URL, e.g. MinIO or versitygw) the client addresses buckets
// by path, which such servers expect. The SDK's retryer stays but is
// bounded to a few quick attempts and also retries 409
// ConditionalRequestConflict.
func NewS3ClientFromConfig(cfg aws.Config) *s3.Client {
	cfg.Retryer = newRetryer
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		// The SDK has resolved the endpoint, the service's own included.
		o.UsePathStyle = o.BaseEndpoint != nil
	})
}
