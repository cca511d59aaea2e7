// Package openai owns the OpenAI wire format Understudy reads and writes:
// the requests it parses (chat completions and legacy completions, with
// their eligibility for a student), the responses and stream chunks it
// writes for student answers, the error object, the teacher answers it
// reads back (JSON and event streams), and the fine-tuning JSONL it
// exports. It is bytes in and bytes out: no HTTP server, no fasthttp.
//
// The request parser and the response writers are on every request's
// path: the parser reads with fastjson, the writers append to a caller's
// byte slice, and neither uses reflection.
package openai
