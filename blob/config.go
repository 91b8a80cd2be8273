package blob

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/wharfjobs/wharfjobs/internal/settings"
)

// Backends that Config.Backend accepts.
const (
	BackendFS    = "fs"
	BackendMinIO = "minio"
	BackendS3    = "s3"
)

// Config selects and configures a store. It is read from the environment
// with envconfig under the WHARFJOBS_ prefix (see docs/operating.md); the
// remote backends (minio, s3) share every field but FSRoot.
type Config struct {
	// Backend is fs, minio or s3.
	Backend string `envconfig:"STORE" default:"fs" desc:"store backend: fs, minio or s3"`
	// Endpoint is host:port of the S3 API (minio: required; s3: empty means
	// AWS's regional endpoint). A URL with a scheme is accepted too, and its
	// scheme then decides TLS.
	Endpoint string `envconfig:"STORE_ENDPOINT" desc:"host:port (or URL) of the S3 API; minio: required, s3: empty is AWS"`
	// Bucket holds every build's objects.
	Bucket string `envconfig:"STORE_BUCKET" default:"wharf-builds" desc:"bucket holding every build's objects"`
	// Region of the bucket.
	Region string `envconfig:"STORE_REGION" default:"us-east-1" desc:"region of the bucket"`
	// AccessKey and SecretKey are static credentials. For s3 both empty
	// means the AWS default credential chain (environment, IRSA, instance
	// role).
	AccessKey string `envconfig:"STORE_ACCESS_KEY" desc:"access key; s3 with both keys empty: the AWS credential chain"`
	SecretKey string `envconfig:"STORE_SECRET_KEY" desc:"secret key (from a Secret, never a flag)"`
	// TLS selects https for the endpoint.
	TLS bool `envconfig:"STORE_TLS" default:"false" desc:"use https to the endpoint"`
	// PathStyle addresses buckets as endpoint/bucket rather than
	// bucket.endpoint; MinIO and most self-hosted S3 services need it.
	PathStyle bool `envconfig:"STORE_PATH_STYLE" default:"true" desc:"address buckets as endpoint/bucket (MinIO needs it)"`
	// CreateBucket creates the bucket on start when it is missing.
	CreateBucket bool `envconfig:"STORE_CREATE_BUCKET" default:"true" desc:"create the bucket on start when it is missing"`
	// Timeout bounds every request that is not a streaming transfer, and the
	// wait for response headers of those that are.
	Timeout time.Duration `envconfig:"STORE_TIMEOUT" default:"30s" desc:"bound of a store request (of a transfer: until its response headers)"`
	// UnsignedPayload (minio backend) signs requests without hashing their
	// bodies (UNSIGNED-PAYLOAD). It saves a SHA-256 pass over every byte on
	// both ends, which is most of the CPU of shipping logs; with TLS the
	// body is protected anyway.
	UnsignedPayload bool `envconfig:"STORE_UNSIGNED_PAYLOAD" default:"false" desc:"minio: sign requests without hashing their bodies (saves CPU)"`
	// FSRoot is the directory of the fs backend.
	FSRoot string `envconfig:"STORE_FS_ROOT" default:".wharfjobs/store" desc:"directory of the fs store"`
}

// DefaultTimeout is Config.Timeout's default, and the bound HTTPTransport
// takes for a timeout of 0 (a Config built in code).
const DefaultTimeout = 30 * time.Second

// Validate refuses a backend that does not exist and a negative timeout;
// the error names the variable and what it expects.
func (c Config) Validate() error {
	switch c.Backend {
	case BackendFS, BackendMinIO, BackendS3:
	default:
		return fmt.Errorf("WHARFJOBS_STORE=%q: expected %s, %s or %s", c.Backend, BackendFS, BackendMinIO, BackendS3)
	}
	if err := settings.NonNegative(c); err != nil {
		return err
	}
	if c.Backend == BackendFS && c.FSRoot == "" {
		return fmt.Errorf("WHARFJOBS_STORE_FS_ROOT is empty: the fs store needs a directory")
	}
	return nil
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
		timeout = DefaultTimeout
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
