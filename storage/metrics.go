package storage

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Drop and deletion reasons of the Badger DB besides the Queue's: closed
// sets of label values.
const (
	reasonDiskFull = "disk_full"
	reasonTTL      = "ttl"
	reasonCap      = "cap"
)

// metrics are the Badger DB's own; the pair log's common ones are its
// Queue's.
type metrics struct {
	retentionDeleted *prometheus.CounterVec
	diskFree         prometheus.GaugeFunc
	paused           prometheus.GaugeFunc
}

func newMetrics(sp *space) *metrics {
	m := &metrics{
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
	for _, r := range []string{reasonTTL, reasonCap} {
		m.retentionDeleted.WithLabelValues(r)
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.retentionDeleted, m.diskFree, m.paused}
}
