package openai

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// responseWire reads the answer of a Responses API Response object.
type responseWire struct {
	Status string `json:"status"`
	Output []struct {
		Type    string `json:"type"`
		Content []struct {
			Type string  `json:"type"`
			Text *string `json:"text"`
		} `json:"content"`
	} `json:"output"`
	Usage *struct {
		InputTokens  int `json:"input_tokens"`
		OutputTokens int `json:"output_tokens"`
	} `json:"usage"`
}

// answer returns the text of the response's messages. ok is false unless
// the response completed with text and nothing but messages and
// reasoning: a function call, a refusal or an incomplete response (cut
// off at max_output_tokens) is no label to learn.
func (w *responseWire) answer() (a Answer, ok bool) {
	if w.Status != "" && w.Status != "completed" {
		return a, false
	}
	var text []byte
	for _, item := range w.Output {
		switch item.Type {
		case "reasoning":
			continue
		case "message":
		default:
			return a, false
		}
		for _, part := range item.Content {
			if part.Type != "output_text" || part.Text == nil {
				return a, false
			}
			text = append(text, *part.Text...)
			ok = true
		}
	}
	if w.Usage != nil {
		a.PromptTokens, a.CompletionTokens = w.Usage.InputTokens, w.Usage.OutputTokens
	}
	a.Text = string(text)
	return a, ok
}

// ParseResponse reads a non-streamed Responses API answer, with
// ParseAnswer's ok.
func ParseResponse(body []byte) (a Answer, ok bool) {
	var w responseWire
	if err := json.Unmarshal(body, &w); err != nil {
		return a, false
	}
	return w.answer()
}

// The events that end a Responses API stream: response.completed carries
// the whole response; the other two end it without an answer to keep.
var (
	eventCompleted  = []byte(`"response.completed"`)
	eventFailed     = []byte(`"response.failed"`)
	eventIncomplete = []byte(`"response.incomplete"`)
)

// ResponseStreamEnd reports whether an event stream line is the data of
// the event that ends a Responses API stream. The quoted type only occurs
// as the event's own type: inside a JSON string its quotes are escaped.
func ResponseStreamEnd(line []byte) bool {
	if !bytes.HasPrefix(line, dataPrefix) {
		return false
	}
	return bytes.Contains(line, eventCompleted) || bytes.Contains(line, eventFailed) || bytes.Contains(line, eventIncomplete)
}

// ResponseStreamAnswer rebuilds the answer of a Responses API event
// stream from its lines: the response that response.completed carries.
// The zero value is ready to use.
type ResponseStreamAnswer struct {
	a        Answer
	ok, bad  bool
	finished bool
}

// Line takes one line of the event stream.
func (c *ResponseStreamAnswer) Line(l []byte) {
	if c.bad || c.finished || !ResponseStreamEnd(l) {
		return
	}
	c.finished = true
	var ev struct {
		Type     string       `json:"type"`
		Response responseWire `json:"response"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(l[len(dataPrefix):]), &ev); err != nil || ev.Type != "response.completed" {
		c.bad = true
		return
	}
	c.a, c.ok = ev.Response.answer()
}

// Discard gives up on the answer.
func (c *ResponseStreamAnswer) Discard() { c.bad = true }

// Answer returns the answer the stream carried; ok is false unless it
// ended with response.completed holding a whole text answer.
func (c *ResponseStreamAnswer) Answer() (Answer, bool) { return c.a, c.ok && !c.bad }

// Response is a Responses API answer the gateway makes itself, for a
// student: everything its Response object, or its stream of events, is
// written from.
type Response struct {
	// ID ("resp_…") and MessageID ("msg_…") name the response and its
	// one output message.
	ID, MessageID string
	Created       int64 // Unix seconds
	Model         string
	// Instructions, Text and Metadata are the request's, as sent (JSON;
	// nil when absent).
	Instructions, Text, Metadata []byte
	PreviousResponseID           string
	Store                        bool
	InputTokens, OutputTokens    int
}

// AppendJSON appends the completed Response object answering text.
func (r *Response) AppendJSON(dst []byte, text string) []byte {
	return r.appendObject(dst, text, true)
}

// AppendEvents appends the server-sent events of a stream answering text,
// as OpenAI sends them: response.created, response.in_progress, the
// message's item and part opening, its text in deltas (Pieces), their closing,
// and response.completed, numbered by sequence_number. A Responses stream
// has no [DONE].
func (r *Response) AppendEvents(dst []byte, text string) []byte {
	seq := 0
	event := func(kind string) {
		dst = append(dst, "event: "...)
		dst = append(dst, kind...)
		dst = append(dst, "\ndata: {\"type\":\""...)
		dst = append(dst, kind...)
		dst = append(dst, `","sequence_number":`...)
		dst = strconv.AppendInt(dst, int64(seq), 10)
		seq++
	}
	end := func() { dst = append(dst, "}\n\n"...) }
	part := func(text string) {
		dst = append(dst, `{"type":"output_text","annotations":[],"logprobs":[],"text":`...)
		dst = AppendString(dst, text)
		dst = append(dst, '}')
	}
	at := func() {
		dst = append(dst, `,"item_id":`...)
		dst = AppendString(dst, r.MessageID)
		dst = append(dst, `,"output_index":0,"content_index":0`...)
	}
	for _, kind := range []string{"response.created", "response.in_progress"} {
		event(kind)
		dst = append(dst, `,"response":`...)
		dst = r.appendObject(dst, "", false)
		end()
	}
	event("response.output_item.added")
	dst = append(dst, `,"output_index":0,"item":`...)
	dst = r.appendMessage(dst, "", false)
	end()
	event("response.content_part.added")
	at()
	dst = append(dst, `,"part":`...)
	part("")
	end()
	for piece := range Pieces(text) {
		event("response.output_text.delta")
		at()
		dst = append(dst, `,"delta":`...)
		dst = AppendString(dst, piece)
		dst = append(dst, `,"logprobs":[]`...)
		end()
	}
	event("response.output_text.done")
	at()
	dst = append(dst, `,"text":`...)
	dst = AppendString(dst, text)
	dst = append(dst, `,"logprobs":[]`...)
	end()
	event("response.content_part.done")
	at()
	dst = append(dst, `,"part":`...)
	part(text)
	end()
	event("response.output_item.done")
	dst = append(dst, `,"output_index":0,"item":`...)
	dst = r.appendMessage(dst, text, true)
	end()
	event("response.completed")
	dst = append(dst, `,"response":`...)
	dst = r.appendObject(dst, text, true)
	end()
	return dst
}

// appendObject appends the Response object: completed with its message
// and usage, or in progress with neither.
func (r *Response) appendObject(dst []byte, text string, completed bool) []byte {
	dst = append(dst, `{"id":`...)
	dst = AppendString(dst, r.ID)
	dst = append(dst, `,"object":"response","created_at":`...)
	dst = strconv.AppendInt(dst, r.Created, 10)
	if completed {
		dst = append(dst, `,"status":"completed"`...)
	} else {
		dst = append(dst, `,"status":"in_progress"`...)
	}
	dst = append(dst, `,"background":false,"error":null,"incomplete_details":null,"instructions":`...)
	dst = appendRaw(dst, r.Instructions, "null")
	dst = append(dst, `,"max_output_tokens":null,"metadata":`...)
	dst = appendRaw(dst, r.Metadata, "{}")
	dst = append(dst, `,"model":`...)
	dst = AppendString(dst, r.Model)
	dst = append(dst, `,"output":[`...)
	if completed {
		dst = r.appendMessage(dst, text, true)
	}
	dst = append(dst, `],"parallel_tool_calls":true,"previous_response_id":`...)
	if r.PreviousResponseID == "" {
		dst = append(dst, "null"...)
	} else {
		dst = AppendString(dst, r.PreviousResponseID)
	}
	dst = append(dst, `,"reasoning":{"effort":null,"summary":null},"store":`...)
	dst = strconv.AppendBool(dst, r.Store)
	dst = append(dst, `,"temperature":1,"text":`...)
	dst = appendRaw(dst, r.Text, `{"format":{"type":"text"}}`)
	dst = append(dst, `,"tool_choice":"auto","tools":[],"top_p":1,"truncation":"disabled","usage":`...)
	if completed {
		dst = append(dst, `{"input_tokens":`...)
		dst = strconv.AppendInt(dst, int64(r.InputTokens), 10)
		dst = append(dst, `,"input_tokens_details":{"cached_tokens":0},"output_tokens":`...)
		dst = strconv.AppendInt(dst, int64(r.OutputTokens), 10)
		dst = append(dst, `,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":`...)
		dst = strconv.AppendInt(dst, int64(r.InputTokens+r.OutputTokens), 10)
		dst = append(dst, '}')
	} else {
		dst = append(dst, "null"...)
	}
	return append(dst, `,"user":null}`...)
}

// appendMessage appends the response's output message: with its text
// part when completed, empty while in progress.
func (r *Response) appendMessage(dst []byte, text string, completed bool) []byte {
	dst = append(dst, `{"id":`...)
	dst = AppendString(dst, r.MessageID)
	if !completed {
		return append(dst, `,"type":"message","status":"in_progress","content":[],"role":"assistant"}`...)
	}
	dst = append(dst, `,"type":"message","status":"completed","content":[{"type":"output_text","annotations":[],"logprobs":[],"text":`...)
	dst = AppendString(dst, text)
	return append(dst, `}],"role":"assistant"}`...)
}

// appendRaw appends raw JSON, or def when there is none.
func appendRaw(dst, raw []byte, def string) []byte {
	if len(raw) == 0 {
		return append(dst, def...)
	}
	return append(dst, raw...)
}
