// Package teachersim owns the teacher simulator: an OpenAI-compatible HTTP
// server, built on fasthttp, that stands in for a large LLM ("teacher") in
// tests, benchmarks and demos.
//
// It answers from labelled JSONL files (see [LoadTask]): a chat, Responses
// or completion request whose text equals an example's text gets that
// example's label as the answer, anything else gets [Config.UnknownAnswer].
// A chat request's system prompt (its first system or developer message)
// chooses the tasks searched, and its text is the text of its other
// messages joined by "\n". A Responses request is answered as the chat
// request with the same conversation: "instructions", or failing that the
// first system or developer input item (of the previous_response_id chain,
// then of the request), is the system prompt, and the request's other
// input items are the text.
//
// A task whose labels are JSON objects is a structured one: the teacher
// answers with the record as JSON text, whatever the request's
// response_format (chat) or text.format (Responses API) asks, which are
// checked as OpenAI checks them but do not change the answer; with
// [Config.RecordVariation] a share of those answers is written with its
// keys in another order, spaced or indented, as an LLM's vary (still the
// same, valid JSON object). It serves
//
//	POST   /v1/chat/completions  (plain and "stream": true)
//	POST   /v1/responses         (plain and "stream": true, OpenAI's event stream)
//	GET    /v1/responses/{id}    (the newest 10,000 responses with "store" not false)
//	DELETE /v1/responses/{id}
//	POST   /v1/completions       (plain and "stream": true)
//	POST   /v1/embeddings        (deterministic unit vectors, float or base64)
//	GET    /v1/models, GET /v1/models/{id}
//
// in the wire format of the OpenAI API, so the official SDKs parse it, and a
// control surface for tests that is not part of that API:
//
//	GET/POST /sim/config   latency, jitter, chunk delay, error injection,
//	                       label swapping (simulated task drift), record
//	                       variation
//	GET      /sim/stats    request and error counts
//
// Latency, jitter and injected errors are drawn per request, on every API
// path; the chat and completion paths take no global lock (storing a
// Responses answer takes one), so the simulator can serve as the zero-latency
// upstream of a throughput benchmark. [Server.Serve] owns every goroutine it
// starts and waits for all of them before it returns.
package teachersim
