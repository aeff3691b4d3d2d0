package main

// The Prometheus adapter: the core packages expose stats snapshots
// (hub.Hub.Stats, hub.Hub.GroupStats, pipelines.Engine.Stats) and a small
// observer interface (kafka.Observer); this file turns them into metrics
// with client_golang. Snapshots are read at scrape time by collectors, so
// the hot paths pay only the atomic counters they already keep; the one
// hook on a hot path, the Kafka request observer, caches its series per
// API and version.

import (
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/hub/kafka"
	"github.com/weirhub/weir/pipelines"
)

// metrics is one process's registry: no package-global collectors.
type metrics struct {
	reg *prometheus.Registry
}

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &metrics{reg: reg}
}

// handler serves the exposition; errors of a collector are logged and
// the rest is still served.
func (m *metrics) handler(logger *slog.Logger) http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg,
	})
}

// addHub registers the hub's datasets and groups; perPartition adds series
// per partition (offsets, produced records, disk bytes), which a hub of
// thousands of partitions may not want.
func (m *metrics) addHub(h *hub.Hub, perPartition bool) {
	m.reg.MustRegister(&hubCollector{h: h, perPartition: perPartition})
}

// addKafka registers the Kafka server's connection gauges and returns the
// observer to put in its options (before the server is created).
func (m *metrics) kafkaObserver() *kafkaObserver {
	o := &kafkaObserver{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_kafka_requests_total",
			Help: "Kafka protocol requests answered, by API and version."}, []string{"api", "version"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "weir_kafka_request_duration_seconds",
			Help:    "Time from reading a Kafka request to writing its response, by API and version (long polls included).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}, []string{"api", "version"}),
	}
	o.errors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_kafka_errors_total",
		Help: "Error codes in Kafka responses (top level, per topic, per partition), by API and code."}, []string{"api", "code"})
	m.reg.MustRegister(o.requests, o.latency, o.errors)
	return o
}

// addKafkaServers registers the connection gauges of the listeners'
// servers, summed over them.
func (m *metrics) addKafkaServers(srvs []*kafka.Server) {
	sum := func(f func(*kafka.Server) int64) func() float64 {
		return func() float64 {
			var n int64
			for _, srv := range srvs {
				n += f(srv)
			}
			return float64(n)
		}
	}
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "weir_kafka_connections",
			Help: "Open Kafka client connections."}, sum(func(s *kafka.Server) int64 { return int64(s.Connections()) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "weir_kafka_connections_rejected_total",
			Help: "Kafka connections refused or closed to make room because of the connection limits."},
			sum((*kafka.Server).Rejected)),
	)
}

// addEngine registers the pipeline file's components.
func (m *metrics) addEngine(e engineView) {
	m.reg.MustRegister(&engineCollector{e: e})
}

// fsyncObserver implements hub.Observer: fdatasync latency per dataset.
type fsyncObserver struct {
	latency *prometheus.HistogramVec
	series  sync.Map // dataset -> prometheus.Observer
}

var _ hub.Observer = (*fsyncObserver)(nil)

func (m *metrics) fsyncObserver() *fsyncObserver {
	o := &fsyncObserver{latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "weir_dataset_fsync_duration_seconds",
		Help:    "Time of one fdatasync of a segment file, by dataset.",
		Buckets: prometheus.ExponentialBuckets(0.00005, 3, 11)}, []string{"dataset"})}
	m.reg.MustRegister(o.latency)
	return o
}

func (o *fsyncObserver) ObserveFsync(dataset string, _ int32, took time.Duration) {
	v, ok := o.series.Load(dataset)
	if !ok {
		v, _ = o.series.LoadOrStore(dataset, o.latency.WithLabelValues(dataset))
	}
	v.(prometheus.Observer).Observe(took.Seconds())
}

// sinkObserver implements pipelines.Observer: write latency, batch sizes
// and errors per sink.
type sinkObserver struct {
	latency *prometheus.HistogramVec
	delay   *prometheus.HistogramVec
	records *prometheus.HistogramVec
	errors  *prometheus.CounterVec
	series  sync.Map // component -> *sinkSeries
}

type sinkSeries struct {
	latency, delay, records prometheus.Observer
	errors                  prometheus.Counter
}

var _ pipelines.Observer = (*sinkObserver)(nil)

func (m *metrics) sinkObserver() *sinkObserver {
	o := &sinkObserver{
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "weir_sink_write_duration_seconds",
			Help:    "Time of one sink write (a batch), failed ones included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}, []string{"component"}),
		delay: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "weir_sink_delivery_delay_seconds",
			Help:    "End-to-end delay: from the timestamp of the oldest record of a successful sink write to the write's end.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12)}, []string{"component"}),
		records: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "weir_sink_write_records",
			Help:    "Records in one sink write: the batch sizes.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10)}, []string{"component"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_sink_write_errors_total",
			Help: "Sink writes that returned an error (retried, or their records dead-lettered)."}, []string{"component"}),
	}
	m.reg.MustRegister(o.latency, o.delay, o.records, o.errors)
	return o
}

func (o *sinkObserver) SinkWrite(component string, records int, oldest time.Time, took time.Duration, err error) {
	v, ok := o.series.Load(component)
	if !ok {
		v, _ = o.series.LoadOrStore(component, &sinkSeries{latency: o.latency.WithLabelValues(component), delay: o.delay.WithLabelValues(component),
			records: o.records.WithLabelValues(component), errors: o.errors.WithLabelValues(component)})
	}
	s := v.(*sinkSeries)
	s.latency.Observe(took.Seconds())
	s.records.Observe(float64(records))
	if err != nil {
		s.errors.Inc()
	} else if !oldest.IsZero() {
		s.delay.Observe(max(time.Since(oldest), 0).Seconds())
	}
}

// kafkaObserver implements kafka.Observer with a counter and a histogram
// per API and version; the series are looked up once and cached.
type kafkaObserver struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	errors   *prometheus.CounterVec
	series   sync.Map // int32(key)<<16 | version -> *kafkaSeries
}

type kafkaSeries struct {
	count   prometheus.Counter
	latency prometheus.Observer
}

var (
	_ kafka.Observer      = (*kafkaObserver)(nil)
	_ kafka.ErrorObserver = (*kafkaObserver)(nil)
)

func apiName(key int16) string {
	if api := kmsg.NameForKey(key); api != "" {
		return api
	}
	return "Unknown" + strconv.Itoa(int(key))
}

// ObserveError counts an error code; errors are rare, so the series is
// looked up each time.
func (o *kafkaObserver) ObserveError(key, code int16) {
	name := strconv.Itoa(int(code))
	if e := kerr.ErrorForCode(code); e != nil {
		if ke, ok := e.(*kerr.Error); ok {
			name = ke.Message
		}
	}
	o.errors.WithLabelValues(apiName(key), name).Inc()
}

func (o *kafkaObserver) ObserveRequest(key, version int16, took time.Duration) {
	id := int32(key)<<16 | int32(uint16(version))
	v, ok := o.series.Load(id)
	if !ok {
		api := apiName(key)
		ver := strconv.Itoa(int(version))
		v, _ = o.series.LoadOrStore(id, &kafkaSeries{count: o.requests.WithLabelValues(api, ver),
			latency: o.latency.WithLabelValues(api, ver)})
	}
	s := v.(*kafkaSeries)
	s.count.Inc()
	s.latency.Observe(took.Seconds())
}

// hubCollector reads hub.Stats and hub.GroupStats at each scrape.
type hubCollector struct {
	h            *hub.Hub
	perPartition bool
}

var (
	dsLabels   = []string{"dataset"}
	partLabels = []string{"dataset", "partition"}
	grpLabels  = []string{"group", "dataset", "partition"}

	descPartitions    = prometheus.NewDesc("weir_dataset_partitions", "Partitions of the dataset.", dsLabels, nil)
	descStored        = prometheus.NewDesc("weir_dataset_records", "Records stored: end offset minus start offset, over the partitions.", dsLabels, nil)
	descProduced      = prometheus.NewDesc("weir_dataset_produced_records_total", "Records appended to the dataset since the hub started.", dsLabels, nil)
	descProducedBytes = prometheus.NewDesc("weir_dataset_produced_bytes_total", "Bytes of record batches appended since the hub started.", dsLabels, nil)
	descProducedBatch = prometheus.NewDesc("weir_dataset_produced_batches_total", "Record batches appended since the hub started.", dsLabels, nil)
	descFetchedBytes  = prometheus.NewDesc("weir_dataset_fetched_bytes_total", "Bytes of record batches returned to consumers (Kafka clients and pipelines).", dsLabels, nil)
	descDiskBytes     = prometheus.NewDesc("weir_dataset_disk_bytes", "Bytes of the dataset's segment files, by tier.", []string{"dataset", "tier"}, nil)
	descSegments      = prometheus.NewDesc("weir_dataset_segments", "Segment files of the dataset, by tier.", []string{"dataset", "tier"}, nil)
	descFsyncs        = prometheus.NewDesc("weir_dataset_fsyncs_total", "fdatasync calls on the dataset's segment files.", dsLabels, nil)
	descRolls         = prometheus.NewDesc("weir_dataset_segment_rolls_total", "Segments closed and new ones started.", dsLabels, nil)
	descDeleted       = prometheus.NewDesc("weir_dataset_segments_deleted_total", "Segments deleted by retention.", dsLabels, nil)
	descColdFailures  = prometheus.NewDesc("weir_dataset_cold_store_failures_total", "Failed passes of moving segments to the cold store (each retried; local segments stay meanwhile).", dsLabels, nil)
	descColdUploaded  = prometheus.NewDesc("weir_dataset_cold_store_uploaded_segments_total", "Segments uploaded to the cold store.", dsLabels, nil)
	descColdMerged    = prometheus.NewDesc("weir_dataset_cold_store_merged_segments_total", "Small segments in the cold store merged into larger ones.", dsLabels, nil)
	descColdMergeBad  = prometheus.NewDesc("weir_dataset_cold_store_merge_check_failures_total", "Merges of small cold segments dropped because a segment object failed its batch check (CRC, offsets) as it streamed; that segment stays in the store as it is.", dsLabels, nil)
	descColdFenced    = prometheus.NewDesc("weir_dataset_cold_store_fenced_partitions", "Partitions fenced out of their cold store prefix by another server's manifest write (uploads stopped, local segments stay).", dsLabels, nil)
	descUnconsumed    = prometheus.NewDesc("weir_dataset_unconsumed_deleted_records_total", "Records retention deleted before a consumer group with a committed offset had read them (summed over groups).", dsLabels, nil)

	descPartStart    = prometheus.NewDesc("weir_partition_start_offset", "First offset still stored in the partition.", partLabels, nil)
	descPartEnd      = prometheus.NewDesc("weir_partition_end_offset", "Offset after the last readable record (the high watermark).", partLabels, nil)
	descPartProduced = prometheus.NewDesc("weir_partition_produced_records_total", "Records appended to the partition since the hub started.", partLabels, nil)
	descPartDisk     = prometheus.NewDesc("weir_partition_disk_bytes", "Bytes of the partition's local segment files.", partLabels, nil)

	descGroupCommitted = prometheus.NewDesc("weir_group_committed_offset", "The group's committed offset: the next record it reads.", grpLabels, nil)
	descGroupLag       = prometheus.NewDesc("weir_group_lag", "Records between the group's committed offset and the partition's end.", grpLabels, nil)
	descGroupMembers   = prometheus.NewDesc("weir_group_members", "Members of the consumer group.", []string{"group"}, nil)
	descGroupRebal     = prometheus.NewDesc("weir_group_rebalances_total", "Rebalances of the group since the hub started (its generation).", []string{"group"}, nil)
	descGroupState     = prometheus.NewDesc("weir_group_state", "1 for the group's current state.", []string{"group", "state"}, nil)
)

func (c *hubCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPartitions, descStored, descProduced, descProducedBytes, descProducedBatch,
		descFetchedBytes, descDiskBytes, descSegments, descFsyncs, descRolls, descDeleted, descUnconsumed,
		descColdFailures, descColdUploaded, descColdMerged, descColdMergeBad, descColdFenced,
		descGroupCommitted, descGroupLag, descGroupMembers, descGroupRebal, descGroupState} {
		ch <- d
	}
	if c.perPartition {
		ch <- descPartStart
		ch <- descPartEnd
		ch <- descPartProduced
		ch <- descPartDisk
	}
}

type dsTotals struct {
	partitions                                int
	stored, produced, bytes, batches, fetched int64
	disk, fsyncs, rolls, deleted              int64
	segments                                  int
	remoteDisk, remoteSegments                int64
	coldFailures, coldUploaded, coldFenced    int64
	coldMerged, coldMergeBad                  int64
}

func (c *hubCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	var order []string
	totals := map[string]*dsTotals{}
	for _, p := range c.h.Stats() {
		t := totals[p.Dataset]
		if t == nil {
			t = &dsTotals{}
			totals[p.Dataset] = t
			order = append(order, p.Dataset)
		}
		t.partitions++
		t.stored += p.HighWatermark - p.StartOffset
		t.produced += p.Log.Records
		t.bytes += p.Log.Bytes
		t.batches += p.Log.Batches
		t.fetched += p.FetchedBytes
		t.disk += p.DiskBytes
		t.segments += p.Segments
		t.remoteDisk += p.RemoteBytes
		t.remoteSegments += p.RemoteSegments
		t.coldFailures += p.Tier.UploadFailures
		t.coldUploaded += p.Tier.Uploaded
		t.coldMerged += p.Tier.MergedSegments
		t.coldMergeBad += p.Tier.MergeCorrupt
		if p.Tier.Fenced {
			t.coldFenced++
		}
		t.fsyncs += p.Log.Fsyncs
		t.rolls += p.Log.Rolls
		t.deleted += p.Log.SegmentsDeleted
		if c.perPartition {
			part := strconv.Itoa(int(p.Partition))
			gauge(descPartStart, float64(p.StartOffset), p.Dataset, part)
			gauge(descPartEnd, float64(p.HighWatermark), p.Dataset, part)
			counter(descPartProduced, float64(p.Log.Records), p.Dataset, part)
			gauge(descPartDisk, float64(p.DiskBytes), p.Dataset, part)
		}
	}
	unconsumed := c.h.DatasetStats()
	for _, ds := range order {
		t := totals[ds]
		counter(descUnconsumed, float64(unconsumed[ds].UnconsumedDeleted), ds)
		gauge(descPartitions, float64(t.partitions), ds)
		gauge(descStored, float64(t.stored), ds)
		counter(descProduced, float64(t.produced), ds)
		counter(descProducedBytes, float64(t.bytes), ds)
		counter(descProducedBatch, float64(t.batches), ds)
		counter(descFetchedBytes, float64(t.fetched), ds)
		gauge(descDiskBytes, float64(t.disk), ds, "local")
		gauge(descSegments, float64(t.segments), ds, "local")
		gauge(descDiskBytes, float64(t.remoteDisk), ds, "remote")
		gauge(descSegments, float64(t.remoteSegments), ds, "remote")
		counter(descFsyncs, float64(t.fsyncs), ds)
		counter(descRolls, float64(t.rolls), ds)
		counter(descDeleted, float64(t.deleted), ds)
		counter(descColdFailures, float64(t.coldFailures), ds)
		counter(descColdUploaded, float64(t.coldUploaded), ds)
		counter(descColdMerged, float64(t.coldMerged), ds)
		counter(descColdMergeBad, float64(t.coldMergeBad), ds)
		gauge(descColdFenced, float64(t.coldFenced), ds)
	}
	for _, g := range c.h.GroupStats() {
		gauge(descGroupMembers, float64(g.Members), g.Name)
		counter(descGroupRebal, float64(g.Generation), g.Name)
		gauge(descGroupState, 1, g.Name, strings.ToLower(g.State.String()))
		for _, p := range g.Partitions {
			part := strconv.Itoa(int(p.Partition))
			gauge(descGroupCommitted, float64(p.Committed), g.Name, p.Dataset, part)
			if p.Lag >= 0 {
				gauge(descGroupLag, float64(p.Lag), g.Name, p.Dataset, part)
			}
		}
	}
}

// engineCollector reads pipelines.Engine.Stats at each scrape.
type engineCollector struct {
	e engineView
}

var (
	compLabels     = []string{"component", "kind"}
	descCompIn     = prometheus.NewDesc("weir_component_received_records_total", "Records a component received.", compLabels, nil)
	descCompOut    = prometheus.NewDesc("weir_component_sent_records_total", "Records a component passed on: stored by a source, delivered by a pipeline or sink.", compLabels, nil)
	descCompBytes  = prometheus.NewDesc("weir_component_sent_bytes_total", "Bytes a component passed on.", compLabels, nil)
	descCompFailed = prometheus.NewDesc("weir_component_failures_total", "Failed reads or writes of a component, each retried.", compLabels, nil)
	descCompDead   = prometheus.NewDesc("weir_component_dead_lettered_records_total", "Records a component sent to its dead-letter dataset.", compLabels, nil)
	descCompDrop   = prometheus.NewDesc("weir_component_dropped_records_total", "Records a processor (a filter) left out on purpose, or all of a pipeline's processors together.", compLabels, nil)
	descCompRetry  = prometheus.NewDesc("weir_component_retried_records_total", "Records a sink (or a source storing into its dataset) wrote again after a transient failure.", compLabels, nil)
	descCompSkip   = prometheus.NewDesc("weir_component_skipped_records_total", "Records retention deleted before the pipeline read them.", compLabels, nil)
	descPipeLag    = prometheus.NewDesc("weir_pipeline_lag", "Records waiting in the hub for the pipeline.", []string{"component"}, nil)
	descSourceLag  = prometheus.NewDesc("weir_source_lag", "Records waiting upstream for a source that reads a log (a Kafka topic), as of its last fetch.", []string{"component"}, nil)
)

func (c *engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCompIn, descCompOut, descCompBytes, descCompFailed, descCompDead,
		descCompDrop, descCompRetry, descCompSkip, descPipeLag, descSourceLag} {
		ch <- d
	}
}

// componentKind is source, pipeline, processor or sink from a stats name:
// sources.NAME, pipelines.NAME, pipelines.NAME.to.SINK,
// pipelines.NAME.processors[I].TYPE (sources' processors likewise).
func componentKind(name string) string {
	switch {
	case strings.Contains(name, ".processors["):
		return "processor"
	case strings.HasPrefix(name, "sources."):
		return "source"
	case strings.Contains(name, ".to."):
		return "sink"
	default:
		return "pipeline"
	}
}

func (c *engineCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.e.Stats() {
		kind := componentKind(s.Name)
		counter := func(d *prometheus.Desc, v int64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), s.Name, kind)
		}
		if kind != "sink" { // sinks count what they delivered, not what they were given
			counter(descCompIn, s.In)
		}
		counter(descCompOut, s.Out)
		counter(descCompBytes, s.Bytes)
		counter(descCompFailed, s.Failed)
		counter(descCompDead, s.Dead)
		counter(descCompDrop, s.Dropped)
		if kind == "sink" || kind == "source" {
			counter(descCompRetry, s.Retried)
		}
		if kind == "pipeline" {
			counter(descCompSkip, s.Skipped)
			ch <- prometheus.MustNewConstMetric(descPipeLag, prometheus.GaugeValue, float64(s.Lag), s.Name)
		}
	}
	for name, lag := range c.e.SourceLags() {
		ch <- prometheus.MustNewConstMetric(descSourceLag, prometheus.GaugeValue, float64(lag), name)
	}
}
