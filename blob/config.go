package blob

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Backends that Config.Backend accepts.
const (
	BackendFS    = "fs"
	BackendMinIO = "minio"
	BackendS3    = "s3"
)

// Config selects and configures a store. It is read from the environment
// with envconfig under the WHARFJOBS_ prefix (see the README's table); the
// remote backends (minio, s3) share every field but FSRoot.
type Config struct {
	// Backend is fs, minio or s3.
	Backend string `envconfig:"STORE" default:"fs"`
	// Endpoint is host:port of the S3 API (minio: required; s3: empty means
	// AWS's regional endpoint). A URL with a scheme is accepted too, and its
	// scheme then decides TLS.
	Endpoint string `envconfig:"STORE_ENDPOINT"`
	// Bucket holds every build's objects.
	Bucket string `envconfig:"STORE_BUCKET" default:"wharf-builds"`
	// Region of the bucket.
	Region string `envconfig:"STORE_REGION" default:"us-east-1"`
	// AccessKey and SecretKey are static credentials. For s3 both empty
	// means the AWS default credential chain (environment, IRSA, instance
	// role).
	AccessKey string `envconfig:"STORE_ACCESS_KEY"`
	SecretKey string `envconfig:"STORE_SECRET_KEY"`
	// TLS selects https for the endpoint.
	TLS bool `envconfig:"STORE_TLS" default:"false"`
	// PathStyle addresses buckets as endpoint/bucket rather than
	// bucket.endpoint; MinIO and most self-hosted S3 services need it.
	PathStyle bool `envconfig:"STORE_PATH_STYLE" default:"true"`
	// CreateBucket creates the bucket on start when it is missing.
	CreateBucket bool `envconfig:"STORE_CREATE_BUCKET" default:"true"`
	// Timeout bounds every request that is not a streaming transfer, and the
	// wait for response headers of those that are.
	Timeout time.Duration `envconfig:"STORE_TIMEOUT" default:"30s"`
	// UnsignedPayload (minio backend) signs requests without hashing their
	// bodies (UNSIGNED-PAYLOAD). It saves a SHA-256 pass over every byte on
	// both ends, which is most of the CPU of shipping logs; with TLS the
	// body is protected anyway.
	UnsignedPayload bool `envconfig:"STORE_UNSIGNED_PAYLOAD" default:"false"`
	// FSRoot is the directory of the fs backend.
	FSRoot string `envconfig:"STORE_FS_ROOT" default:".wharfjobs/store"`
}

// LogValue keeps the secret key out of every log line that prints a Config.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("backend", c.Backend),
		slog.String("endpoint", c.Endpoint),
		slog.String("bucket", c.Bucket),
		slog.String("fsRoot", c.FSRoot),
	)
}

// String keeps the secret key out of %v and %+v.
func (c Config) String() string {
	return fmt.Sprintf("store %s endpoint=%q bucket=%q fsRoot=%q", c.Backend, c.Endpoint, c.Bucket, c.FSRoot)
}

// Where names the store in error messages: backend and endpoint or
// directory, never a credential.
func (c Config) Where() string {
	if c.Backend == BackendFS {
		return fmt.Sprintf("fs store at %s", c.FSRoot)
	}
	ep := c.Endpoint
	if ep == "" {
		ep = "the default endpoint"
	}
	return fmt.Sprintf("%s store at %s (bucket %q)", c.Backend, ep, c.Bucket)
}

// HTTPTransport is the transport of the remote stores' clients: every phase
// of a request that can hang has a deadline. A streaming body is bounded by
// the response header timeout once sent, not by a whole-request timeout that
// would cut off a large artifact.
func HTTPTransport(timeout time.Duration) *http.Transport {
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: timeout,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   64,
		// Log chunks are compact JSON already; transparent gzip would cost
		// CPU and break Content-Length.
		DisableCompression: true,
	}
}
