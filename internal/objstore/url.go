package objstore

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// OpenURL returns the store a URL names:
//
//	file:///path                                 a Dir rooted at /path
//	s3://BUCKET/PREFIX?endpoint=http://HOST:PORT an S3 bucket, keys under PREFIX/
//
// The S3 endpoint's scheme says whether to use TLS (https, the default
// without one); its query may add region=, and sign_payload=true for a
// plain-HTTP server that takes no trailing checksums (S3Options.SignPayload). Credentials and the region come
// from where the AWS tools find them (AWSCredentials, AWSRegion): the
// AWS_* environment variables, else the profile AWS_PROFILE of
// ~/.aws/credentials and ~/.aws/config (or AWS_SHARED_CREDENTIALS_FILE,
// AWS_CONFIG_FILE); none: anonymous requests.
func OpenURL(raw string) (Store, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("objstore: %q: %w", raw, err)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" || u.Path == "" {
			return nil, fmt.Errorf("objstore: %q: want file:///absolute/path", raw)
		}
		return NewDir(u.Path)
	case "s3":
		if u.Host == "" {
			return nil, fmt.Errorf("objstore: %q: want s3://BUCKET/PREFIX?endpoint=http://HOST:PORT", raw)
		}
		q := u.Query()
		creds, err := AWSCredentials()
		if err != nil {
			return nil, err
		}
		region, err := AWSRegion()
		if err != nil {
			return nil, err
		}
		opts := S3Options{Bucket: u.Host, Creds: creds, Region: region}
		if r := q.Get("region"); r != "" {
			opts.Region = r
		}
		if v := q.Get("sign_payload"); v != "" {
			if opts.SignPayload, err = strconv.ParseBool(v); err != nil {
				return nil, fmt.Errorf("objstore: %q: sign_payload=%q: want true or false", raw, v)
			}
		}
		if p := strings.Trim(u.Path, "/"); p != "" {
			opts.Prefix = p + "/"
		}
		ep := q.Get("endpoint")
		if ep == "" {
			region := opts.Region
			if region == "" {
				region = "us-east-1"
			}
			ep = "https://s3." + region + ".amazonaws.com"
		}
		if !strings.Contains(ep, "://") {
			ep = "https://" + ep
		}
		e, err := url.Parse(ep)
		if err != nil || e.Host == "" || (e.Scheme != "http" && e.Scheme != "https") {
			return nil, fmt.Errorf("objstore: %q: endpoint %q: want http://HOST:PORT or https://HOST", raw, ep)
		}
		opts.Endpoint, opts.Insecure = e.Host, e.Scheme == "http"
		return NewS3(opts)
	}
	return nil, fmt.Errorf("objstore: %q: want s3://BUCKET/PREFIX?endpoint=... or file:///path", raw)
}
