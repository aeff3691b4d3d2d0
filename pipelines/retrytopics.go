package pipelines

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/connectors"
	"github.com/weirhub/weir/hub"
)

// Non-blocking retries (a sink's retry: {mode: topics, delays: [...]}), as
// Spring Kafka's retry topics and RocketMQ's %RETRY% queues: a record
// that fails transiently in the sink goes to the retry dataset
// <pipeline>.<sink>.retry-1 with the time it may be tried again
// (weir.retry_at), and the pipeline moves on. A retry pipeline of its own
// per delay reads retry-N, waits until its records are due (each retry
// dataset has one delay, so its records come in due order), writes them to
// the same sink, and sends those that fail again to retry-N+1, or after
// the last delay to the dead-letter dataset. Records retried so lose their
// order against the others; blocking retries stay the default.

// Header names on records in retry datasets.
const (
	HeaderRetryAt      = "weir.retry_at"      // Unix milliseconds
	HeaderRetryAttempt = "weir.retry.attempt" // 1 for retry-1, ...
)

func retryDataset(pipeline, sink string, level int) string {
	return fmt.Sprintf("%s.%s.retry-%d", pipeline, sink, level)
}

// withRetryPipelines adds, for every sink with retry mode topics, one
// retry pipeline per delay.
func withRetryPipelines(pcs []*PipelineConfig) []*PipelineConfig {
	out := pcs
	for _, pc := range pcs {
		for _, sc := range pc.To {
			if sc.Retry.Mode != "topics" || sc.Retry.level > 0 {
				continue
			}
			for i := range sc.Retry.Delays {
				level := i + 1
				s := *sc
				s.Retry.level = level
				out = append(out, &PipelineConfig{Name: fmt.Sprintf("%s.%s.retry-%d", pc.Name, sc.Name, level),
					From:  []string{retryDataset(pc.Name, sc.Name, level)},
					Group: fmt.Sprintf("%s.%s.retry-%d", pc.Group, sc.Name, level), Start: "earliest",
					To: []*SinkConfig{&s}, DeadLetter: pc.DeadLetter, pos: pc.pos, retryOf: pc.Name,
					Processing: pc.Processing, TransactionalID: fmt.Sprintf("%s.%s.retry-%d", pc.TransactionalID, sc.Name, level)})
			}
		}
	}
	return out
}

// later leaves m to be retried from a retry dataset.
func (s *sinkRunner) later(m *connectors.Message, err error) {
	s.retries = append(s.retries, failure{m: m, stage: "sink " + s.cfg.Name, err: err, attempts: s.cfg.Retry.level + 1})
}

// sendRetries writes the sink's records to retry in its next retry
// dataset, or, past the last delay, leaves them to the dead-letter
// dataset.
func (p *pipelineRunner) sendRetries(ctx context.Context, s *sinkRunner, stop <-chan struct{}) error {
	if len(s.retries) == 0 {
		return nil
	}
	next := s.cfg.Retry.level + 1
	if next > len(s.cfg.Retry.Delays) {
		s.fails = append(s.fails, s.retries...)
		return nil
	}
	pipeline := p.cfg.Name
	if p.cfg.retryOf != "" {
		pipeline = p.cfg.retryOf
	}
	dataset := retryDataset(pipeline, s.cfg.Name, next)
	at := strconv.AppendInt(nil, time.Now().Add(s.cfg.Retry.Delays[next-1]).UnixMilli(), 10)
	recs := make([]hub.Record, 0, len(s.retries))
	for _, f := range s.retries {
		m := f.m
		hs := make([]codecs.RecordHeader, 0, len(m.Headers)+3)
		for _, h := range m.Headers {
			if k := string(h.Key); k != HeaderRetryAt && k != HeaderRetryAttempt && k != HeaderError {
				hs = append(hs, h)
			}
		}
		hs = append(hs, codecs.RecordHeader{Key: []byte(HeaderRetryAt), Value: at},
			codecs.RecordHeader{Key: []byte(HeaderRetryAttempt), Value: strconv.AppendInt(nil, int64(next), 10)},
			codecs.RecordHeader{Key: []byte(HeaderError), Value: []byte(f.err.Error())})
		recs = append(recs, hub.Record{Key: m.Key, Value: m.Value, Headers: hs, Timestamp: m.Time})
	}
	for attempt := 0; ; attempt++ {
		rs := p.client.Produce(ctx, dataset, recs, hub.ProduceOptions{})
		err := rs.FirstErr()
		if err == nil {
			p.log.Info("weir: records sent to a retry dataset", "dataset", dataset, "records", len(recs), "first_err", s.retries[0].err.Error())
			s.stats.retried.Add(int64(len(recs)))
			return nil
		}
		kept := recs[:0]
		for i := range rs {
			if rs[i].Err != nil {
				kept = append(kept, recs[i])
			}
		}
		recs = kept
		if attempt%10 == 0 {
			p.log.Error("weir: cannot write to the retry dataset; holding back", "dataset", dataset, "err", err)
		}
		if !backoff(attempt, 100*time.Millisecond, 5*time.Second, stop) {
			return context.Canceled
		}
	}
}

// waitRetryDue waits, in a retry pipeline, until the records polled are
// due (their latest weir.retry_at). It returns false if stopped first.
func (p *pipelineRunner) waitRetryDue(msgs []*connectors.Message, stop <-chan struct{}) bool {
	if p.cfg.retryOf == "" {
		return true
	}
	var due int64
	for _, m := range msgs {
		for _, h := range m.Headers {
			if string(h.Key) == HeaderRetryAt {
				if at, err := strconv.ParseInt(string(h.Value), 10, 64); err == nil {
					due = max(due, at)
				}
			}
		}
	}
	wait := time.Until(time.UnixMilli(due))
	if wait <= 0 {
		return true
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
		return false
	}
}
