package jetstream

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Drop reasons: a closed set of label values. The first four mean what
// they mean for the Badger DB.
const (
	reasonQueueFull = "queue_full" // the queue (QueueSize, QueueBytes) was full
	reasonClosed    = "closed"     // Log after Close, or still queued when Close gave up
	reasonInvalid   = "invalid"    // bad domain name or ID
	reasonDuplicate = "duplicate"  // a caller-given ID the stream saw within its duplicate window
	reasonRejected  = "rejected"   // the server refused the publish (an error, not an acknowledgement)
	reasonTooLarge  = "too_large"  // larger than the servers' max_payload
)

// metrics are the Badger DB's, by the same names where they mean the
// same, and the connection's.
type metrics struct {
	logged      prometheus.Counter
	dropped     *prometheus.CounterVec
	queueLength prometheus.GaugeFunc
	batches     prometheus.Counter
	writeErrors prometheus.Counter
	retries     prometheus.Counter
	connected   prometheus.GaugeFunc

	samplesPublished prometheus.Counter
	samplesDropped   prometheus.Counter
}

func newMetrics(queueLen func() int, connected func() bool) *metrics {
	m := &metrics{
		logged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "understudy_storage_pairs_logged_total",
			Help: "Pairs written to the pair log (NATS: acknowledged by the stream).",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "understudy_storage_pairs_dropped_total",
			Help: "Pairs not logged, by reason: queue_full, closed, invalid (bad domain name or ID), duplicate (ID already stored), rejected (the NATS server refused it), too_large (over the NATS max_payload).",
		}, []string{"reason"}),
		queueLength: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "understudy_storage_queue_length",
			Help: "Pairs accepted and not yet written (NATS: acknowledged).",
		}, func() float64 { return float64(queueLen()) }),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "understudy_storage_write_batches_total",
			Help: "Batches of pairs written (NATS: published and acknowledged).",
		}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "understudy_storage_write_errors_total",
			Help: "Batches of pairs that failed to write; their pairs are lost (NATS: batches with a pair the server refused).",
		}),
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
	}
	for _, r := range []string{reasonQueueFull, reasonClosed, reasonInvalid, reasonDuplicate, reasonRejected, reasonTooLarge} {
		m.dropped.WithLabelValues(r)
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.logged, m.dropped, m.queueLength, m.batches, m.writeErrors, m.retries, m.connected, m.samplesPublished, m.samplesDropped}
}

func (m *metrics) register(reg prometheus.Registerer) error {
	var done []prometheus.Collector
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			for _, d := range done {
				reg.Unregister(d)
			}
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return fmt.Errorf("registering storage metrics: already registered (is another pair log open on this registry?): %w", err)
			}
			return fmt.Errorf("registering storage metrics: %w", err)
		}
		done = append(done, c)
	}
	return nil
}

func (m *metrics) unregister(reg prometheus.Registerer) {
	for _, c := range m.collectors() {
		reg.Unregister(c)
	}
}
