package gateway_test

import (
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/understudy-dev/understudy/internal/teachersim"
	"github.com/understudy-dev/understudy/router"
)

// benchBody is a chat request with a ~1 KB user message.
var benchText = strings.Repeat("Quarterly numbers attached, please review before Friday. ", 18)

func benchBody() []byte {
	return []byte(`{"model":"teacher-sim","messages":[{"role":"system","content":"` + spamSystem + `"},{"role":"user","content":"` + benchText + `"}]}`)
}

// BenchmarkRoundTrip compares one sequential chat completion round trip on
// loopback straight to teacher-sim and through the gateway; the difference
// of the two ns/op is the gateway's added latency without load.
func BenchmarkRoundTrip(b *testing.B) {
	h := start(b, teachersim.Config{Tasks: []teachersim.Task{benchTask}}, nil)
	for _, target := range []struct{ name, url string }{{"direct", h.simURL}, {"gateway", h.gwURL}} {
		b.Run(target.name, func(b *testing.B) { roundTrips(b, target.url) })
	}
}

// BenchmarkRoutedRoundTrip is BenchmarkRoundTrip's gateway with a router
// (one that costs nothing and keeps every domain collecting): the teacher
// answers, and the gateway captures the answer, counts its cost and tells
// the router.
func BenchmarkRoutedRoundTrip(b *testing.B) {
	h := startRouted(b, teachersim.Config{Tasks: []teachersim.Task{benchTask}}, nil, nil, collectingRouter{})
	roundTrips(b, h.gwURL)
}

// collectingRouter decides "collecting" for every domain and forgets what
// it is told.
type collectingRouter struct{}

func (collectingRouter) Decide(string) router.Decision {
	return router.Decision{State: router.Collecting}
}
func (collectingRouter) Answered(router.Outcome) {}

var benchTask = teachersim.Task{Name: "bench", System: spamSystem, Examples: []teachersim.Example{{Text: benchText, Label: "ham"}}}

// roundTrips sends the bench chat completion to base, one at a time.
func roundTrips(b *testing.B, base string) {
	c := &fasthttp.Client{}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod("POST")
	req.SetRequestURI(base + "/chat/completions")
	req.Header.SetContentType("application/json")
	req.SetBody(benchBody())
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 {
			b.Fatalf("status %d, %v", resp.StatusCode(), err)
		}
	}
	c.CloseIdleConnections()
}
