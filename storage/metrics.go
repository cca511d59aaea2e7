package storage

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Drop and deletion reasons: closed sets of label values.
const (
	reasonQueueFull = "queue_full"
	reasonClosed    = "closed"
	reasonInvalid   = "invalid"
	reasonDuplicate = "duplicate"
	reasonDiskFull  = "disk_full"
	reasonTTL       = "ttl"
	reasonCap       = "cap"
)

type metrics struct {
	logged           prometheus.Counter
	dropped          *prometheus.CounterVec
	queueLength      prometheus.GaugeFunc
	batches          prometheus.Counter
	writeErrors      prometheus.Counter
	retentionDeleted *prometheus.CounterVec
	diskFree         prometheus.GaugeFunc
	paused           prometheus.GaugeFunc
}

func newMetrics(queueLen func() int, sp *space) *metrics {
	m := &metrics{
		logged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "understudy_storage_pairs_logged_total",
			Help: "Pairs written to the pair log.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "understudy_storage_pairs_dropped_total",
			Help: "Pairs not logged, by reason: queue_full, closed, invalid (bad domain name or ID), duplicate (ID already stored), disk_full (logging paused under storage MinFreeBytes).",
		}, []string{"reason"}),
		queueLength: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "understudy_storage_queue_length",
			Help: "Pairs accepted and not yet written.",
		}, func() float64 { return float64(queueLen()) }),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "understudy_storage_write_batches_total",
			Help: "Batches (Badger transactions) of pairs written.",
		}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "understudy_storage_write_errors_total",
			Help: "Batches of pairs that failed to write; their pairs are lost.",
		}),
		retentionDeleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "understudy_storage_retention_deleted_total",
			Help: "Pairs deleted by retention, by reason: ttl, cap.",
		}, []string{"reason"}),
		diskFree: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "understudy_storage_disk_free_bytes",
			Help: "Bytes free on the filesystem holding the pair log (-1: unknown).",
		}, func() float64 { return float64(sp.free()) }),
		paused: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "understudy_storage_logging_paused",
			Help: "1 while pair logging is paused because the disk is (almost) full, else 0.",
		}, func() float64 {
			if sp.paused.Load() {
				return 1
			}
			return 0
		}),
	}
	for _, r := range []string{reasonQueueFull, reasonClosed, reasonInvalid, reasonDuplicate, reasonDiskFull} {
		m.dropped.WithLabelValues(r)
	}
	for _, r := range []string{reasonTTL, reasonCap} {
		m.retentionDeleted.WithLabelValues(r)
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.logged, m.dropped, m.queueLength, m.batches, m.writeErrors, m.retentionDeleted, m.diskFree, m.paused}
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
