package objstore

import (
	"testing"
)

func TestOpenURL(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenURL("file://" + dir + "/cold")
	if d, ok := s.(*Dir); err != nil || !ok || d.Root() != dir+"/cold" {
		t.Fatalf("OpenURL(file://...) = %#v, %v; want the Dir %s/cold", s, err, dir)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "k")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "s")
	s, err = OpenURL("s3://bucket/hub1/?endpoint=http://127.0.0.1:7070")
	if s3, ok := s.(*S3); err != nil || !ok || s3.bucket != "bucket" || s3.prefix != "hub1/" || s3.c.EndpointURL().Scheme != "http" {
		t.Fatalf("OpenURL(s3://...) = %#v, %v", s, err)
	}
	for url, crc := range map[string]bool{
		"s3://b/p?endpoint=http://127.0.0.1:7070":                    true,
		"s3://b/p?endpoint=http://127.0.0.1:7070&sign_payload=true":  false,
		"s3://b/p?endpoint=http://127.0.0.1:7070&sign_payload=false": true,
		"s3://b/p?endpoint=https://s3.example.com":                   false,
	} {
		if s, err := OpenURL(url); err != nil || s.(*S3).crc != crc {
			t.Errorf("OpenURL(%q): %v, want a CRC32C trailer on PUTs %v", url, err, crc)
		}
	}
	for _, bad := range []string{"s3:///x", "ftp://h/x", "s3://b/p?endpoint=ftp://h", "file://host/x", "s3://b/p?sign_payload=maybe"} {
		if _, err := OpenURL(bad); err == nil {
			t.Errorf("OpenURL(%q) succeeded", bad)
		}
	}
}
