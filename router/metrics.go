package router

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/understudy-dev/understudy/shadow"
)

// metrics are the router's: counters it increments, and gauges of every
// domain's statistics read at scrape time.
type metrics struct {
	domains     *MetricDomains
	samples     *prometheus.CounterVec
	transitions *prometheus.CounterVec

	selective, lower, coverage, tau, backtest, threshold, state *prometheus.Desc
	fieldAgreement, fieldCoverage                               *prometheus.Desc
	leader                                                      *prometheus.Desc
}

func newMetrics(domains *MetricDomains) *metrics {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("understudy_router_"+name, help, labels, nil)
	}
	return &metrics{
		domains: domains,
		samples: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "understudy", Subsystem: "shadow", Name: "samples_total",
			Help: "Student answers scored against the teacher's, by domain and outcome: agree, disagree (both confident), unconfident.",
		}, []string{"domain", "outcome"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "understudy", Subsystem: "router", Name: "transitions_total",
			Help: "Changes of a domain's routing state, by the state entered.",
		}, []string{"domain", "to"}),
		selective: d("selective_agreement", "Selective agreement with the teacher (among confident answers) of a domain's student version, all time.", "domain", "version", "role"),
		lower:     d("agreement_lower_bound", "Anytime-valid lower confidence bound of the selective agreement.", "domain", "version", "role"),
		coverage:  d("coverage", "Share of scored requests on which the student version was confident (at its τ in use): the coverage the gate has certified once it passed.", "domain", "version", "role"),
		tau:       d("tau", "The confidence threshold in use: the lowest the gate certified, or the next it tests.", "domain", "version", "role"),
		backtest:  d("backtest_samples", "Samples of the version scored by back-testing on pairs it never trained on.", "domain", "version", "role"),
		threshold: d("agreement_threshold", "Selective agreement a student must be shown to reach to serve.", "domain"),
		state:     d("domain_state", "1 for a domain's current routing state.", "domain", "state"),
		leader: prometheus.NewDesc("understudy_leader",
			"1 on the replica that trains and runs the gate (it holds the learner lease; a single gateway always does), else 0.", nil, nil),
		fieldAgreement: prometheus.NewDesc("understudy_shadow_field_agreement",
			"For a domain whose answers are JSON records: a student version's agreement with the teacher on one field, among the uniform samples confident in that field at the τ in use (at most 32 fields a version by path, the rest pooled as _other). Only defined values are exported.",
			[]string{"domain", "version", "role", "field"}, nil),
		fieldCoverage: prometheus.NewDesc("understudy_shadow_field_coverage",
			"For a domain whose answers are JSON records: the share of a student version's uniform samples with a field in which it was confident in that field at the τ in use.",
			[]string{"domain", "version", "role", "field"}, nil),
	}
}

// outcome names a sample for the samples counter: confident means at the
// version's τ in use.
func outcome(s shadow.Sample, tau float64) string {
	switch {
	case s.Confidence < tau:
		return "unconfident"
	case s.Agree:
		return "agree"
	default:
		return "disagree"
	}
}

// Describe implements prometheus.Collector.
func (r *Router) Describe(ch chan<- *prometheus.Desc) {
	r.m.samples.Describe(ch)
	r.m.transitions.Describe(ch)
	for _, d := range []*prometheus.Desc{r.m.selective, r.m.lower, r.m.coverage, r.m.tau, r.m.backtest, r.m.threshold, r.m.state,
		r.m.fieldAgreement, r.m.fieldCoverage, r.m.leader} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the counters, and the gauges of
// every domain that has its own label.
func (r *Router) Collect(ch chan<- prometheus.Metric) {
	r.m.samples.Collect(ch)
	r.m.transitions.Collect(ch)
	leading := 0.0
	if r.Leading() {
		leading = 1
	}
	ch <- prometheus.MustNewConstMetric(r.m.leader, prometheus.GaugeValue, leading)
	r.mu.RLock()
	ds := make([]*domain, 0, len(r.domains))
	for _, d := range r.domains {
		ds = append(ds, d)
	}
	r.mu.RUnlock()
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	}
	for _, d := range ds {
		if !r.m.domains.Named(d.name) {
			continue
		}
		d.mu.Lock()
		gauge(r.m.threshold, r.cfg.Gate.Threshold, d.name)
		gauge(r.m.state, 1, d.name, string(d.rec.State))
		type roled struct {
			ver  *version
			role string
		}
		vs := []roled{{d.serving, "serving"}}
		for _, c := range d.candidates {
			vs = append(vs, roled{c, "candidate"})
		}
		for _, v := range vs {
			if v.ver == nil {
				continue
			}
			st := v.ver.scores.Stats()
			n := strconv.Itoa(v.ver.n)
			gauge(r.m.selective, st.SelectiveAgreement, d.name, n, v.role)
			gauge(r.m.lower, st.LowerBound, d.name, n, v.role)
			gauge(r.m.coverage, st.Coverage, d.name, n, v.role)
			gauge(r.m.tau, st.Tau, d.name, n, v.role)
			gauge(r.m.backtest, float64(st.Backtest), d.name, n, v.role)
			for _, f := range st.Fields {
				if f.Confident > 0 {
					gauge(r.m.fieldAgreement, f.Agreement, d.name, n, v.role, f.Path)
				}
				if f.Samples > 0 {
					gauge(r.m.fieldCoverage, f.Coverage, d.name, n, v.role, f.Path)
				}
			}
		}
		d.mu.Unlock()
	}
}

var _ prometheus.Collector = (*Router)(nil)
