package objstore_test

import (
	"testing"

	"github.com/weirhub/weir/internal/objstore"
	"github.com/weirhub/weir/internal/objstore/s3test"
)

// TestS3 runs the Store contract against a real S3 server (versitygw).
func TestS3(t *testing.T) {
	srv := s3test.Start(t)
	s, err := objstore.NewS3(srv.Options("pre/"))
	if err != nil {
		t.Fatal(err)
	}
	objstore.TestStore(t, s)
}
