package sinks

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/weirhub/weir/connectors"
	"github.com/weirhub/weir/internal/redistest"
)

func keyed(key, value string, offset int64) *connectors.Message {
	m := &connectors.Message{Key: []byte(key), Time: time.UnixMilli(1_700_000_000_000), Dataset: "users", Partition: 0, Offset: offset}
	if value != "" {
		m.Value = []byte(value)
	}
	return m
}

// TestRedisPublish: each record is PUBLISHed to the channel of its dataset
// as a subscription event that a SUBSCRIBEd client receives, with its id.
func TestRedisPublish(t *testing.T) {
	url := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	opts, _ := redis.ParseURL(url)
	sub := redis.NewClient(opts).Subscribe(ctx, "cache:users")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // the subscription's confirmation
		t.Fatal(err)
	}
	s, err := newRedis(parseConfig(t, &redisSpec, "url: "+url+"\nchannel: \"cache:{dataset}\""), connectors.Resources{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if err := s.Write(ctx, []*connectors.Message{keyed("u1", `{"n":1}`, 7), keyed("u2", "", 8)}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct{ typ, id, key, value string }{{"record", "0-7", "u1", `{"n":1}`}, {"delete", "0-8", "u2", ""}} {
		msg, err := sub.ReceiveMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var e struct {
			Type, ID, Key string
			Value         json.RawMessage
		}
		if err := json.Unmarshal([]byte(msg.Payload), &e); err != nil {
			t.Fatalf("payload %q: %v", msg.Payload, err)
		}
		if e.Type != want.typ || e.ID != want.id || e.Key != want.key || string(e.Value) != want.value {
			t.Errorf("published %s, want %+v", msg.Payload, want)
		}
	}
}

// TestRedisCache: mode cache deletes the keys of deletes and updates
// (on_update: delete) or sets the new values (on_update: set).
func TestRedisCache(t *testing.T) {
	url := redistest.Start(t)
	ctx := context.Background()
	opts, _ := redis.ParseURL(url)
	c := redis.NewClient(opts)
	defer c.Close()
	for _, k := range []string{"user:a", "user:b", "user:c"} {
		c.Set(ctx, k, "stale", 0)
	}
	inv, err := newRedis(parseConfig(t, &redisSpec, "url: "+url+"\nmode: cache\nkey_prefix: \"user:\""), connectors.Resources{})
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close(ctx)
	if err := inv.Write(ctx, []*connectors.Message{keyed("a", "new", 1), keyed("b", "", 2)}); err != nil {
		t.Fatal(err)
	}
	if n := c.Exists(ctx, "user:a", "user:b", "user:c").Val(); n != 1 {
		t.Errorf("after invalidating a and b, %d of a, b, c exist, want 1 (c)", n)
	}
	set, err := newRedis(parseConfig(t, &redisSpec, "url: "+url+"\nmode: cache\nkey_prefix: \"user:\"\non_update: set\ndelete_command: del\nttl: 1h"), connectors.Resources{})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close(ctx)
	err = set.Write(ctx, []*connectors.Message{keyed("a", "v2", 3), keyed("c", "", 4), {Value: []byte("no key")}})
	var we *connectors.WriteError
	if !errors.As(err, &we) || len(we.Failures) != 1 || we.Failures[0].Index != 2 {
		t.Errorf("a record without a key: %v, want a WriteError for it alone", err)
	}
	if v := c.Get(ctx, "user:a").Val(); v != "v2" {
		t.Errorf("user:a = %q, want v2", v)
	}
	if ttl := c.TTL(ctx, "user:a").Val(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("user:a TTL %v, want up to 1h", ttl)
	}
	if c.Exists(ctx, "user:c").Val() != 0 {
		t.Errorf("user:c still exists after its delete")
	}
}
