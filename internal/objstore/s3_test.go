package objstore_test

import (
	"context"
	"fmt"
	"strings"
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

// TestS3DeleteKeys deletes many keys with DeleteObjects, missing ones
// included, and leaves the others.
func TestS3DeleteKeys(t *testing.T) {
	srv := s3test.Start(t)
	s, err := objstore.NewS3(srv.Options("pre/"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var keys []string
	for i := range 30 {
		k := fmt.Sprintf("d/%02d", i)
		if err := s.Put(ctx, k, strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	if err := objstore.DeleteKeys(ctx, s, append(keys[:20:20], "d/missing")); err != nil {
		t.Fatal(err)
	}
	objs, err := s.List(ctx, "d/")
	if err != nil || len(objs) != 10 || objs[0].Key != "d/20" {
		t.Fatalf("after deleting 20 of 30: %v, %v", objs, err)
	}
}
