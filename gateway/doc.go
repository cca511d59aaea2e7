// Package gateway owns Understudy's HTTP surface: the fasthttp server that
// speaks the OpenAI API to applications, its middleware (recover, request
// id, metrics, auth), request parsing with task-domain and eligibility
// detection, the teacher client (keep-alive, timeouts, dial retries, one
// circuit breaker), the SSE relay that streams teacher answers to the
// client as they arrive, student answers rendered as OpenAI responses,
// token and cost accounting, and the admin API. Routing policy is the
// router's: the gateway asks it who answers and tells it what the teacher
// said.
//
// Handlers return errors (an apiError carries the status and the OpenAI
// error object's fields); serveErrors adapts them to fasthttp, and
// writeError is the one place an error becomes an HTTP status and the
// object {"error":{"message","type","param","code"}}.
package gateway
