package sinks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/weirhub/weir/connectors"
	"github.com/weirhub/weir/hub"
)

var redisSpec = connectors.Spec{
	Kind:    connectors.SinkKind,
	Name:    "redis",
	Summary: "Broadcast records to Redis: PUBLISH each as an event, or keep a Redis cache in step (DEL, UNLINK or SET).",
	Doc: "mode publish sends each record with PUBLISH to the channel the template names, as the JSON of a " +
		"subscription event (type record or delete, id PARTITION-OFFSET, key, value, partition, offset, time, " +
		"headers): subscribers see the id of every event and can tell a gap. mode cache applies each record to " +
		"the Redis key key_prefix + its key: a delete (null value) removes it (UNLINK, or DEL with delete_command), " +
		"and a new value either removes it too (on_update: delete, invalidating the cache) or is SET (on_update: set, " +
		"with ttl). A batch is one pipeline; commands are idempotent, so a failed batch is retried whole, and the " +
		"pipeline's position is committed only after Redis answered. Records without a key fail in cache mode " +
		"(to the dead-letter dataset).",
	Scalar: "url",
	Fields: []connectors.Field{
		{Name: "url", Type: connectors.TypeString, Required: true, Doc: "redis://[user:password@]host:port[/db] or rediss:// for TLS.", Example: "redis://127.0.0.1:6379/0"},
		{Name: "mode", Type: connectors.TypeString, Default: "publish", Enum: []string{"publish", "cache"}, Doc: "publish: PUBLISH events; cache: delete or set keys."},
		{Name: "channel", Type: connectors.TypeString, Default: "weir:{dataset}", Doc: "Channel of mode publish; {dataset}, {partition} and {key} are replaced."},
		{Name: "key_prefix", Type: connectors.TypeString, Doc: "Prefix of the Redis keys of mode cache.", Example: "user:"},
		{Name: "on_update", Type: connectors.TypeString, Default: "delete", Enum: []string{"delete", "set"}, Doc: "What a new value does to its key in mode cache."},
		{Name: "delete_command", Type: connectors.TypeString, Default: "unlink", Enum: []string{"unlink", "del"}, Doc: "How mode cache removes a key."},
		{Name: "ttl", Type: connectors.TypeDuration, Doc: "Expiry of keys SET by on_update: set; none by default."},
		{Name: "timeout", Type: connectors.TypeDuration, Default: "10s", Doc: "Longest wait for Redis to answer a batch."},
	},
	Example: `pipelines:
  invalidate:
    from: users
    broadcast: true
    to:
      - redis: {url: "redis://127.0.0.1:6379/0", mode: cache, key_prefix: "user:"}
      - redis: {url: "redis://127.0.0.1:6379/0", channel: "cache:{dataset}"}`,
}

func init() { connectors.MustRegisterSink(redisSpec, newRedis) }

type redisSink struct {
	opts      *redis.Options
	cache     bool
	channel   string
	prefix    string
	setValues bool
	unlink    bool
	ttl       time.Duration
	timeout   time.Duration

	mu     sync.Mutex // held by Write
	client *redis.Client
	buf    []byte
	closed atomic.Bool
}

var _ connectors.Sink = (*redisSink)(nil)

func newRedis(conf *connectors.Config, _ connectors.Resources) (connectors.Sink, error) {
	opts, err := redis.ParseURL(conf.String("url"))
	if err != nil {
		return nil, conf.Errorf("url", "%v", err)
	}
	s := &redisSink{opts: opts, cache: conf.String("mode") == "cache", channel: conf.String("channel"),
		prefix: conf.String("key_prefix"), setValues: conf.String("on_update") == "set",
		unlink: conf.String("delete_command") != "del", ttl: conf.Duration("ttl"), timeout: conf.Duration("timeout")}
	if s.timeout <= 0 {
		return nil, conf.Errorf("timeout", "must be positive")
	}
	if s.ttl < 0 {
		return nil, conf.Errorf("ttl", "must not be negative")
	}
	if !s.cache && s.channel == "" {
		return nil, conf.Errorf("channel", "must not be empty")
	}
	return s, nil
}

// redisChannel fills the channel template for a message.
func (s *redisSink) redisChannel(m *connectors.Message) string {
	if !strings.Contains(s.channel, "{") {
		return s.channel
	}
	return strings.NewReplacer("{dataset}", m.Dataset, "{partition}", strconv.Itoa(int(m.Partition)), "{key}", string(m.Key)).Replace(s.channel)
}

// redisEvent is the subscription event of a message, as the broadcast
// sinks send it: its id is PARTITION-OFFSET.
func redisEvent(m *connectors.Message) *hub.Event {
	e := &hub.Event{Type: hub.EventRecord, Token: fmt.Sprintf("%d-%d", m.Partition, m.Offset), Partition: m.Partition,
		Offset: m.Offset, Time: m.Time.UnixMilli(), Key: m.Key, Value: m.Value, Headers: m.Headers}
	if m.Value == nil && m.Key != nil {
		e.Type = hub.EventDelete
	}
	return e
}

func (s *redisSink) Write(ctx context.Context, batch []*connectors.Message) error {
	if s.closed.Load() {
		return errSinkClosed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		s.client = redis.NewClient(s.opts)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	pipe := s.client.Pipeline()
	var failures []connectors.Failure
	for i, m := range batch {
		switch {
		case !s.cache:
			s.buf = hub.AppendEventJSON(s.buf[:0], redisEvent(m), true)
			pipe.Publish(ctx, s.redisChannel(m), string(s.buf))
		case m.Key == nil:
			failures = append(failures, connectors.Failure{Index: i, Err: errors.New("sinks: redis: a record without a key cannot name a cache key")})
		case m.Value != nil && s.setValues:
			pipe.Set(ctx, s.prefix+string(m.Key), m.Value, s.ttl)
		case s.unlink:
			pipe.Unlink(ctx, s.prefix+string(m.Key))
		default:
			pipe.Del(ctx, s.prefix+string(m.Key))
		}
	}
	if pipe.Len() > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			var ne net.Error
			if errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) {
				return connectors.Unavailable(fmt.Errorf("sinks: redis: %w", err))
			}
			return fmt.Errorf("sinks: redis: %w", err)
		}
	}
	if len(failures) > 0 {
		return &connectors.WriteError{Failures: failures}
	}
	return nil
}

// Close closes the connections; it is safe to call more than once.
func (s *redisSink) Close(context.Context) error {
	if s.closed.Swap(true) {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil {
		return s.client.Close()
	}
	return nil
}
