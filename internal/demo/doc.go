// Package demo owns `understudy demo`: a self-contained run that shows a
// student model taking over real traffic.
//
// [Run] starts the teacher simulator in-process on loopback, answering the
// tasks of a data set, each with its own system prompt and a latency like
// a real LLM's: four built from the SpamAssassin corpus (spam/ham,
// spam/easy_ham/hard_ham as a word and as a JSON record, and the
// open-ended "what is the subject line"), or, harder, WordNet's noun
// definitions classified into 25 categories of meaning, or WordNet's nouns
// and verbs described as a JSON record (part of speech and a coarse
// semantic type). A structured task's requests carry its strict JSON
// schema (response_format, text.format), the teacher writes a fifth of its
// records in another layout, as an LLM's vary, and every answer is checked
// against the schema. It starts the gateway as a child process (the running
// executable's `serve`), with a temporary data directory and default
// settings, and replays the tasks' texts through it concurrently with the
// official openai-go SDK, streamed and plain, each task in its own domain
// (X-Understudy-Domain).
//
// While it runs it draws a progress line per domain (requests, routing
// state, offload, agreement, cost saved), and at the end it prints a
// summary per domain: when the student was promoted, the share it answered
// afterwards, how often its answers match the data set's labels, latency by
// route and the teacher cost saved. The same summary, with the per-request
// trace it is computed from, can be written as JSON ([Report]), and a chart
// of offload and rolling agreement against the request index as PNG.
//
// Costs are computed by the demo from the token usage each response reports
// and the teacher prices in [Config]: what the teacher charged for its
// answers, and what it would have charged for the student's.
package demo
