package jetstream

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/understudy-dev/understudy/storage"
)

// Drop reasons: a closed set of label values. The first two mean what
// they mean for the Badger DB; the store adds two (dropReasons).
const (
	reasonClosed    = "closed"    // Log after Close, or still queued when Close gave up
	reasonDuplicate = "duplicate" // a caller-given ID the stream saw within its duplicate window
	reasonRejected  = "rejected"  // the server refused the publish (an error, not an acknowledgement)
	reasonTooLarge  = "too_large" // larger than the servers' max_payload
)

// dropReasons are the store's drop reasons besides the storage.Queue's.
var dropReasons = []storage.Reason{
	{Name: reasonRejected, Meaning: "the NATS server refused it"},
	{Name: reasonTooLarge, Meaning: "over the NATS max_payload"},
}

// metrics are the connection's; the pair log's common ones are the
// store's storage.Queue's.
type metrics struct {
	retries   prometheus.Counter
	connected prometheus.GaugeFunc

	samplesPublished prometheus.Counter
	samplesDropped   prometheus.Counter

	replicas prometheus.GaugeFunc
}

func newMetrics(connected func() bool, replicas func() int64) *metrics {
	m := &metrics{
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "understudy_storage_nats_publish_retries_total",
			Help: "Pairs published again after no acknowledgement came (a lost connection, a timeout); the stream drops a repeat by its ID.",
		}),
		connected: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "understudy_storage_nats_connected",
			Help: "1 while connected to a NATS server, else 0 (pairs wait in the queue).",
		}, func() float64 {
			if connected() {
				return 1
			}
			return 0
		}),
		samplesPublished: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "understudy_storage_nats_samples_published_total",
			Help: "Shadow samples this replica published for the gate of the learner lease's holder.",
		}),
		samplesDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "understudy_storage_nats_samples_dropped_total",
			Help: "Shadow samples this replica dropped instead of publishing: the queue was full, or no connection took them.",
		}),
		replicas: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "understudy_replicas",
			Help: "Live gateway replicas sharing the store that this replica saw at its last announcement, itself included (0 before the first).",
		}, func() float64 { return float64(replicas()) }),
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.retries, m.connected, m.samplesPublished, m.samplesDropped, m.replicas}
}
