// Package gateway owns Understudy's HTTP surface: the fasthttp server that
// speaks the OpenAI API to applications, its middleware (recover, request
// id, metrics, auth), task-domain detection, the teacher client
// (keep-alive, timeouts, dial retries, one circuit breaker), the SSE relay
// that streams teacher answers to the client as they arrive, student
// answers rendered as OpenAI responses (streamed in pieces, as a teacher
// streams tokens, and sent only when they are the JSON the request asked
// for: schema.go), token and cost accounting, and the admin API. The wire format itself (parsing requests and their
// eligibility, writing responses, reading teacher answers back) is
// internal/openai's. Routing policy is the
// router's: the gateway asks it who answers (Decide) and, once a request is
// answered, tells it how in one call (Answered); scoring is the router's
// and the shadow's.
//
// Only the requests the gateway learns from are read: POSTs to
// /v1/chat/completions, /v1/completions and /v1/responses (learnedPaths),
// whose bodies are read whole within gateway.max_body_size, and GET and
// DELETE of a stored response, which may be a student's the gateway kept
// (responseByID; the teacher's are relayed). Every other /v1 request (files, audio, images, batches, fine-tuning, models,
// embeddings, ...) is relayed to the teacher unchanged, its bodies streamed
// both ways without a size limit (relay.go), and a WebSocket upgrade (the
// Realtime API) is relayed on a hijacked connection (websocket.go). Only
// /healthz, /readyz, /metrics and the gateway's own errors are answered
// locally.
//
// A completion's path runs one way: completion (the completion handler,
// completion.go) asks the router, perhaps the student, then askTeacher,
// which returns an error when nothing reached the client, or relays the
// answer (relayAnswer) and hands its text back; completion alone decides
// on a fallback student. exchange.end is the one place a teacher's
// response is released and its outcome given to the breaker. "Route"
// means one thing here: who answered a request (router.Route: teacher,
// student, deferred, student-fallback), as the X-Understudy-Route header
// and the metrics' route label tell it; dispatch finds a path's handler.
//
// Handlers return errors (an apiError carries the status and the OpenAI
// error object's fields; the request parser's *openai.Error is a 400);
// serveErrors adapts them to fasthttp, and writeError is the one place an
// error becomes an HTTP status and the object
// {"error":{"message","type","param","code"}}.
package gateway
