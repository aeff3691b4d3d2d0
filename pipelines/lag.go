package pipelines

import "github.com/weirhub/weir/connectors"

// SourceLags returns the upstream lag of every source whose connector
// reports one (connectors.Lagger: a Kafka source's records past its last
// fetch), by stats name (sources.NAME). It is safe to call while Run runs.
func (e *Engine) SourceLags() map[string]int64 {
	out := map[string]int64{}
	for _, s := range e.sources {
		if l, ok := s.src.(connectors.Lagger); ok {
			out["sources."+s.cfg.Name] = l.Lag()
		}
	}
	return out
}
