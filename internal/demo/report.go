package demo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"time"

	"github.com/understudy-dev/understudy/router"
)

// Report is the outcome of a run: the settings, a summary per domain, and
// the per-request trace every summary figure is computed from.
type Report struct {
	Settings Settings  `json:"settings"`
	Started  time.Time `json:"started"`
	// DurationS is the replay's wall time in seconds.
	DurationS float64 `json:"duration_s"`
	// Domains summarises each task domain, in the order of the tasks.
	Domains []Summary `json:"domains"`
	// Trace is every request sent, by index.
	Trace []Request `json:"trace,omitempty"`
}

// Settings are the run's settings as the report records them.
type Settings struct {
	Dataset          string  `json:"dataset"`
	Requests         int     `json:"requests"`
	Concurrency      int     `json:"concurrency"`
	TeacherLatencyMS float64 `json:"teacher_latency_ms"`
	TeacherJitterMS  float64 `json:"teacher_jitter_ms"`
	Seed             uint64  `json:"seed"`
	// InputPrice and OutputPrice are the teacher's prices, in US dollars
	// per million tokens.
	InputPrice  float64 `json:"input_price"`
	OutputPrice float64 `json:"output_price"`
}

// Summary is one domain's outcome. Every field but the gateway's own
// figures (State, PromotedAtMS, PromotedVersion, Gateway*) is computed from
// the trace alone.
type Summary struct {
	Domain string `json:"domain"`
	// GatewayDomain is the gateway's name of the domain where it differs:
	// a request that asks for a JSON schema is in the domain it names with
	// the schema's shape appended.
	GatewayDomain string `json:"gateway_domain,omitempty"`
	// State is the domain's routing state at the end, per the gateway.
	State string `json:"state"`
	// PromotedAtMS is when the gateway first promoted the domain's student
	// (milliseconds since the replay began, as the trace's StartMS), and
	// PromotedVersion which version it was; nil and 0 when never promoted.
	PromotedAtMS    *float64 `json:"promoted_at_ms"`
	PromotedVersion int      `json:"promoted_version,omitempty"`
	// PromotedAtRequest is how many requests (of all domains) had been sent
	// before the promotion: requests from that index on could be answered
	// by the student. Nil when never promoted.
	PromotedAtRequest *int `json:"promoted_at_request"`
	// Requests is how many of the domain's requests were sent, Errors how
	// many failed; Routes counts them by route.
	Requests int            `json:"requests"`
	Errors   int            `json:"errors"`
	Routes   map[string]int `json:"routes"`
	// RequestsAfterPromotion are the domain's requests sent after the
	// promotion; OffloadAfterPromotion the share of them a student
	// answered.
	RequestsAfterPromotion int     `json:"requests_after_promotion"`
	OffloadAfterPromotion  float64 `json:"offload_after_promotion"`
	// StudentAnswers and StudentCorrect count the student's answers and
	// those equal to the data set's label; StudentAgreement is their ratio
	// (0 without student answers). TeacherAgreement is the same for the
	// teacher's answers (routes teacher and deferred).
	StudentAnswers   int     `json:"student_answers"`
	StudentCorrect   int     `json:"student_correct"`
	StudentAgreement float64 `json:"student_agreement"`
	TeacherAgreement float64 `json:"teacher_agreement"`
	// Latency is the latency by route, in milliseconds.
	Latency map[string]LatencyStats `json:"latency"`
	// Routing is the domain's routing state at the end, as the admin API
	// gave it: τ in use, the versions' evidence per threshold, why a
	// candidate waits, the transitions.
	Routing *router.View `json:"routing,omitempty"`
	// SpentUSD is what the teacher's answers cost; SavedUSD what the
	// student's answers would have cost the teacher (each at the token
	// usage its response reported).
	SpentUSD float64 `json:"spent_usd"`
	SavedUSD float64 `json:"saved_usd"`
	// Structured is set for a domain whose answers are JSON records asked
	// for with a schema.
	Structured *StructuredSummary `json:"structured,omitempty"`
	// GatewaySpentUSD and GatewaySavedUSD are the gateway's own figures
	// (admin API; it prices a student answer at the domain's mean teacher
	// usage).
	GatewaySpentUSD float64 `json:"gateway_spent_usd"`
	GatewaySavedUSD float64 `json:"gateway_saved_usd"`
}

// StructuredSummary is what a structured domain's answers were, from the
// trace: valid JSON of the schema they were asked with, and how the
// student's fields compare with the data set's records.
type StructuredSummary struct {
	// Schema is the name of the JSON schema the requests sent (strict).
	Schema string `json:"schema"`
	// Answers counts the domain's answers (requests less errors), Valid
	// those valid of the schema; StudentAnswers and StudentValid the same
	// for the student's.
	Answers        int `json:"answers"`
	Valid          int `json:"valid"`
	StudentAnswers int `json:"student_answers"`
	StudentValid   int `json:"student_valid"`
	// StudentFields is, per field of the schema, the share of the
	// student's answers whose field equals the data set's (every field
	// equal is Summary.StudentAgreement).
	StudentFields map[string]float64 `json:"student_fields"`
}

// summarizeStructured computes a structured domain's StructuredSummary
// from the trace.
func summarizeStructured(domain string, schema *answerSchema, trace []Request) *StructuredSummary {
	s := &StructuredSummary{Schema: schema.name, StudentFields: map[string]float64{}}
	fieldsRight := map[string]int{}
	for _, r := range trace {
		if r.Domain != domain || r.Route == routeError {
			continue
		}
		valid := r.Valid != nil && *r.Valid
		s.Answers++
		if valid {
			s.Valid++
		}
		if !isStudent(r.Route) {
			continue
		}
		s.StudentAnswers++
		if valid {
			s.StudentValid++
		}
		for f, ok := range fieldsEqual(r.Answer, r.Label) {
			if ok {
				fieldsRight[f]++
			}
		}
	}
	for _, f := range schema.fields {
		s.StudentFields[f.name] = ratio(fieldsRight[f.name], s.StudentAnswers)
	}
	return s
}

// LatencyStats are one route's latency percentiles (nearest rank).
type LatencyStats struct {
	N     int     `json:"n"`
	P50MS float64 `json:"p50_ms"`
	P99MS float64 `json:"p99_ms"`
}

// summarize computes a domain's summary from the trace; p is its first
// promotion when ok.
func summarize(domain string, trace []Request, p *float64) Summary {
	s := Summary{Domain: domain, Routes: map[string]int{}, Latency: map[string]LatencyStats{}, PromotedAtMS: p}
	if p != nil {
		n := 0
		for _, r := range trace {
			if r.StartMS < *p {
				n++
			}
		}
		s.PromotedAtRequest = &n
	}
	latencies := map[string][]float64{}
	teacher, teacherCorrect, after, afterStudent := 0, 0, 0, 0
	for _, r := range trace {
		if r.Domain != domain {
			continue
		}
		s.Requests++
		s.Routes[r.Route]++
		latencies[r.Route] = append(latencies[r.Route], r.LatencyMS)
		student := isStudent(r.Route)
		switch {
		case r.Route == routeError:
			s.Errors++
		case student:
			s.StudentAnswers++
			s.SavedUSD += r.CostUSD
			if r.Correct {
				s.StudentCorrect++
			}
		default:
			teacher++
			s.SpentUSD += r.CostUSD
			if r.Correct {
				teacherCorrect++
			}
		}
		if p != nil && r.StartMS >= *p {
			after++
			if student {
				afterStudent++
			}
		}
	}
	s.RequestsAfterPromotion = after
	s.OffloadAfterPromotion = ratio(afterStudent, after)
	s.StudentAgreement = ratio(s.StudentCorrect, s.StudentAnswers)
	s.TeacherAgreement = ratio(teacherCorrect, teacher)
	for route, l := range latencies {
		s.Latency[route] = latencyStats(l)
	}
	return s
}

// ratio is a/b, 0 when b is 0.
func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// latencyStats sorts l and takes its percentiles.
func latencyStats(l []float64) LatencyStats {
	slices.Sort(l)
	return LatencyStats{N: len(l), P50MS: Percentile(l, 0.50), P99MS: Percentile(l, 0.99)}
}

// Percentile returns the nearest-rank q-quantile of sorted values: the
// smallest value with at least a share q of the values at or below it. It
// is 0 for no values.
func Percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// writeReport writes r as indented JSON, with one trace entry a line.
func writeReport(path string, r *Report) error {
	b, err := encodeReport(r)
	if err != nil {
		return fmt.Errorf("encoding the report: %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	return nil
}

// encodeReport encodes r: indented but for the trace, whose entries take a
// line each so that a long run stays readable.
func encodeReport(r *Report) ([]byte, error) {
	head := *r
	head.Trace = nil
	b, err := json.MarshalIndent(head, "", "  ")
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSuffix(b, []byte("\n}"))
	b = append(b, ",\n  \"trace\": ["...)
	for i, req := range r.Trace {
		line, err := json.Marshal(req)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, "\n    "...)
		b = append(b, line...)
	}
	return append(b, "\n  ]\n}\n"...), nil
}
