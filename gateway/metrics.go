package gateway

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

// LatencyBuckets reach 300 s, the duration of a long LLM answer.
var LatencyBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300}

// requestBuckets add sub-millisecond buckets to LatencyBuckets: a
// student's answer takes well under a millisecond, and would be invisible
// under the first 5 ms bucket.
var requestBuckets = append([]float64{.0001, .00025, .0005, .001, .0025}, LatencyBuckets...)

// overheadBuckets resolve the gateway's own time, from 10 µs up.
var overheadBuckets = []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .1, 1}

type metrics struct {
	log *slog.Logger

	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	overhead       *prometheus.HistogramVec
	inFlight       prometheus.Gauge
	teacherTTFT    prometheus.Histogram
	teacherTime    *prometheus.HistogramVec
	teacherErrors  *prometheus.CounterVec
	teacherRetries *prometheus.CounterVec
	studentTime    prometheus.Histogram
	studentInvalid *prometheus.CounterVec
	keptErrors     prometheus.Counter
	domainsRefused *prometheus.CounterVec

	breakerState       prometheus.Gauge
	breakerTransitions *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, log *slog.Logger) *metrics {
	m := &metrics{
		log: log,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "understudy", Subsystem: "gateway", Name: "requests_total",
			Help: "Requests answered, by endpoint (chat_completions, completions, the API family of a relayed path: files, audio, realtime, ..., or other), domain, route (teacher, student, student-fallback, deferred, none) and HTTP status code.",
		}, []string{"endpoint", "domain", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "understudy", Subsystem: "gateway", Name: "request_duration_seconds",
			Help:    "Time from receiving a request to the end of its response, streams included.",
			Buckets: requestBuckets,
		}, []string{"endpoint", "route"}),
		overhead: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "understudy", Subsystem: "gateway", Name: "overhead_seconds",
			Help:    "Time the gateway adds to a request: total time minus the time waiting on the teacher.",
			Buckets: overheadBuckets,
		}, []string{"endpoint"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "understudy", Subsystem: "gateway", Name: "in_flight_requests",
			Help: "Requests being handled now.",
		}),
		teacherTTFT: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "understudy", Subsystem: "teacher", Name: "time_to_first_token_seconds",
			Help:    "For streamed answers, time from sending the request to the teacher to relaying its first event.",
			Buckets: LatencyBuckets,
		}),
		teacherTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "understudy", Subsystem: "teacher", Name: "request_duration_seconds",
			Help:    "Time spent on teacher exchanges, by endpoint.",
			Buckets: LatencyBuckets,
		}, []string{"endpoint"}),
		teacherErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "understudy", Subsystem: "teacher", Name: "errors_total",
			Help: "Teacher exchanges that failed without an answer, by reason (connect, timeout, transport, stream, incomplete_stream, breaker_open, busy).",
		}, []string{"reason"}),
		teacherRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "understudy", Subsystem: "teacher", Name: "retries_total",
			Help: "Requests sent again because they never reached the teacher, by reason (connect: the connect failed; stale_connection: the teacher had closed the kept-alive connection).",
		}, []string{"reason"}),
		breakerState: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "understudy", Subsystem: "teacher", Name: "breaker_state",
			Help: "State of the teacher's circuit breaker: 0 closed, 1 half-open, 2 open.",
		}),
		breakerTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "understudy", Subsystem: "teacher", Name: "breaker_transitions_total",
			Help: "Changes of the teacher's circuit breaker state, by the state entered.",
		}, []string{"state"}),
	}
	m.studentTime = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "understudy", Subsystem: "student", Name: "prediction_duration_seconds",
		Help: "Time a serving student takes to answer one request (featurizing and ONNX Runtime).",
		// Fine around the tens of µs a prediction takes, so a p50 reads true.
		Buckets: []float64{.00001, .00002, .00003, .00004, .00005, .00006, .00007, .00008, .0001, .000125, .00015, .0002, .00025, .0005, .001, .0025, .005, .01, .1},
	})
	m.studentInvalid = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "understudy", Subsystem: "student", Name: "invalid_answers_total",
		Help: "Confident student answers not sent because they are not the answer the request asked for (response_format / text.format: json_object or json_schema), by domain and reason (not_json, duplicate_key, schema_mismatch, bad_schema: the request's schema could not be used); the teacher answered them, or, when the teacher had failed, the client got its failure.",
	}, []string{"domain", "reason"})
	m.keptErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "understudy", Subsystem: "gateway", Name: "kept_response_errors_total",
		Help: "Responses API answers a student made that could not be kept, so cannot be read back or continued (a full disk, say).",
	})
	m.domainsRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "understudy", Subsystem: "gateway", Name: "domains_refused_total",
		Help: "Requests of a new automatic domain refused by its bound, by reason (rate: gateway.new_domains_per_minute; total: gateway.max_auto_domains): the teacher answered them, and they were neither logged nor learned from.",
	}, []string{"reason"})
	// Series exist from the start, so dashboards and alerts see zeros.
	for _, r := range []string{"connect", "stale_connection"} {
		m.teacherRetries.WithLabelValues(r)
	}
	for _, r := range []string{refusedRate, refusedTotal} {
		m.domainsRefused.WithLabelValues(r)
	}
	reg.MustRegister(m.domainsRefused, m.studentTime, m.studentInvalid, m.keptErrors, m.requests, m.duration, m.overhead, m.inFlight, m.teacherTTFT, m.teacherTime,
		m.teacherErrors, m.teacherRetries, m.breakerState, m.breakerTransitions)
	return m
}
