// Package teachersim owns the teacher simulator: an OpenAI-compatible HTTP
// server, built on fasthttp, that stands in for a large LLM ("teacher") in
// tests, benchmarks and demos.
//
// It answers from labelled JSONL files (see [LoadTask]): a chat or completion
// request whose text equals an example's text gets that example's label as
// the answer, anything else gets [Config.UnknownAnswer]. It serves
//
//	POST /v1/chat/completions   (plain and "stream": true)
//	POST /v1/completions        (plain and "stream": true)
//	POST /v1/embeddings         (deterministic unit vectors, float or base64)
//	GET  /v1/models, GET /v1/models/{id}
//
// in the wire format of the OpenAI API, so the official SDKs parse it, and a
// control surface for tests that is not part of that API:
//
//	GET/POST /sim/config   latency, jitter, chunk delay, error injection,
//	                       label swapping (simulated task drift)
//	GET      /sim/stats    request and error counts
//
// Latency, jitter and injected errors are drawn per request; the hot path
// takes no global lock, so the simulator can serve as the zero-latency
// upstream of a throughput benchmark. [Server.Serve] owns every goroutine it
// starts and waits for all of them before it returns.
package teachersim
