package gateway_test

import (
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/understudy-dev/understudy/gateway"
	"github.com/understudy-dev/understudy/internal/teachersim"
)

// benchBody is a chat request with a ~1 KB user message.
var benchText = strings.Repeat("Quarterly numbers attached, please review before Friday. ", 18)

func benchBody() []byte {
	return []byte(`{"model":"teacher-sim","messages":[{"role":"system","content":"` + spamSystem + `"},{"role":"user","content":"` + benchText + `"}]}`)
}

func BenchmarkParseChatRequest(b *testing.B) {
	body := benchBody()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := gateway.ParseChatRequest(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRoundTrip compares one sequential chat completion round trip on
// loopback straight to teacher-sim and through the gateway; the difference
// of the two ns/op is the gateway's added latency without load.
func BenchmarkRoundTrip(b *testing.B) {
	task := teachersim.Task{Name: "bench", System: spamSystem, Examples: []teachersim.Example{{Text: benchText, Label: "ham"}}}
	h := start(b, teachersim.Config{Tasks: []teachersim.Task{task}}, nil)
	for _, target := range []struct{ name, url string }{{"direct", h.simURL}, {"gateway", h.gwURL}} {
		b.Run(target.name, func(b *testing.B) {
			c := &fasthttp.Client{}
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.Header.SetMethod("POST")
			req.SetRequestURI(target.url + "/chat/completions")
			req.Header.SetContentType("application/json")
			req.SetBody(benchBody())
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 {
					b.Fatalf("status %d, %v", resp.StatusCode(), err)
				}
			}
			c.CloseIdleConnections()
		})
	}
}
