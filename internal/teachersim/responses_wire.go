package teachersim

import (
	"strconv"
)

// This file writes the Responses API's side of the wire format: the
// Response object and the events of its stream, in the shapes and field
// order OpenAI sends.

// responseReply is one answer of the Responses API: everything its
// Response object and its stream of events are written from. It holds no
// request memory, so a stream writer may keep it past a handler.
type responseReply struct {
	id    string // "resp_sim-<n>"
	msgID string // "msg_sim-<n>", its one output message
	// createdAt and completedAt are in Unix seconds; completedAt is set
	// when the text is complete.
	createdAt, completedAt int64
	model                  string
	// instructions is echoed as given, or null without hasInstructions.
	instructions    string
	hasInstructions bool
	previousID      string // "" is written as null
	store           bool
	// maxOutputTokens is echoed, or null without hasMaxOutputTokens.
	maxOutputTokens    int64
	hasMaxOutputTokens bool
	temperature, topP  float64
	format             []byte // text.format, compact JSON
	metadata           []byte // compact JSON object
	text               string // the answer
	// inputTokens and outputTokens are the usage reported.
	inputTokens, outputTokens int
	// seq is the sequence_number of the next stream event.
	seq int64
}

// appendResponse appends the Response object: in progress (no output, null
// usage) or, when done, completed.
func (r *responseReply) appendResponse(dst []byte, done bool) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, r.id)
	dst = append(dst, `,"object":"response","created_at":`...)
	dst = strconv.AppendInt(dst, r.createdAt, 10)
	if done {
		dst = append(dst, `,"status":"completed","background":false,"completed_at":`...)
		dst = strconv.AppendInt(dst, r.completedAt, 10)
	} else {
		dst = append(dst, `,"status":"in_progress","background":false,"completed_at":null`...)
	}
	dst = append(dst, `,"error":null,"incomplete_details":null,"instructions":`...)
	if r.hasInstructions {
		dst = appendString(dst, r.instructions)
	} else {
		dst = append(dst, "null"...)
	}
	dst = append(dst, `,"max_output_tokens":`...)
	if r.hasMaxOutputTokens {
		dst = strconv.AppendInt(dst, r.maxOutputTokens, 10)
	} else {
		dst = append(dst, "null"...)
	}
	dst = append(dst, `,"max_tool_calls":null,"model":`...)
	dst = appendString(dst, r.model)
	dst = append(dst, `,"output":[`...)
	if done {
		dst = r.appendItem(dst, true)
	}
	dst = append(dst, `],"parallel_tool_calls":true,"previous_response_id":`...)
	dst = appendNullable(dst, r.previousID)
	dst = append(dst, `,"prompt_cache_key":null,"reasoning":{"effort":null,"summary":null},"safety_identifier":null,"service_tier":"default","store":`...)
	dst = strconv.AppendBool(dst, r.store)
	dst = append(dst, `,"temperature":`...)
	dst = strconv.AppendFloat(dst, r.temperature, 'g', -1, 64)
	dst = append(dst, `,"text":{"format":`...)
	dst = append(dst, r.format...)
	dst = append(dst, `,"verbosity":"medium"},"tool_choice":"auto","tools":[],"top_logprobs":0,"top_p":`...)
	dst = strconv.AppendFloat(dst, r.topP, 'g', -1, 64)
	dst = append(dst, `,"truncation":"disabled","usage":`...)
	if done {
		dst = append(dst, `{"input_tokens":`...)
		dst = strconv.AppendInt(dst, int64(r.inputTokens), 10)
		dst = append(dst, `,"input_tokens_details":{"cached_tokens":0},"output_tokens":`...)
		dst = strconv.AppendInt(dst, int64(r.outputTokens), 10)
		dst = append(dst, `,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":`...)
		dst = strconv.AppendInt(dst, int64(r.inputTokens+r.outputTokens), 10)
		dst = append(dst, '}')
	} else {
		dst = append(dst, "null"...)
	}
	dst = append(dst, `,"user":null,"metadata":`...)
	dst = append(dst, r.metadata...)
	return append(dst, '}')
}

// appendItem appends the output message: in progress with no content, or
// completed with its one output_text part.
func (r *responseReply) appendItem(dst []byte, done bool) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, r.msgID)
	if !done {
		return append(dst, `,"type":"message","status":"in_progress","content":[],"role":"assistant"}`...)
	}
	dst = append(dst, `,"type":"message","status":"completed","content":[`...)
	dst = r.appendPart(dst, r.text)
	return append(dst, `],"role":"assistant"}`...)
}

// appendPart appends an output_text content part holding text.
func (r *responseReply) appendPart(dst []byte, text string) []byte {
	dst = append(dst, `{"type":"output_text","annotations":[],"logprobs":[],"text":`...)
	dst = appendString(dst, text)
	return append(dst, '}')
}

// eventKind is what a Responses stream event carries.
type eventKind int

// Kinds of stream event, in the order a stream sends them;
// eventTextDelta repeats, once for each piece of the text.
const (
	eventCreated eventKind = iota
	eventInProgress
	eventItemAdded
	eventPartAdded
	eventTextDelta
	eventTextDone
	eventPartDone
	eventItemDone
	eventCompleted
)

var eventTypes = [...]string{
	eventCreated:    "response.created",
	eventInProgress: "response.in_progress",
	eventItemAdded:  "response.output_item.added",
	eventPartAdded:  "response.content_part.added",
	eventTextDelta:  "response.output_text.delta",
	eventTextDone:   "response.output_text.done",
	eventPartDone:   "response.content_part.done",
	eventItemDone:   "response.output_item.done",
	eventCompleted:  "response.completed",
}

// appendEvent appends one server-sent event, "event: <type>\ndata: {…}\n\n",
// of kind, numbered with the next sequence_number; piece is an
// eventTextDelta's text.
func (r *responseReply) appendEvent(dst []byte, kind eventKind, piece string) []byte {
	typ := eventTypes[kind]
	dst = append(dst, "event: "...)
	dst = append(dst, typ...)
	dst = append(dst, "\ndata: {\"type\":\""...)
	dst = append(dst, typ...)
	dst = append(dst, `","sequence_number":`...)
	dst = strconv.AppendInt(dst, r.seq, 10)
	r.seq++
	switch kind {
	case eventCreated, eventInProgress:
		dst = append(dst, `,"response":`...)
		dst = r.appendResponse(dst, false)
	case eventCompleted:
		dst = append(dst, `,"response":`...)
		dst = r.appendResponse(dst, true)
	case eventItemAdded, eventItemDone:
		dst = append(dst, `,"output_index":0,"item":`...)
		dst = r.appendItem(dst, kind == eventItemDone)
	default: // events on the content part
		dst = append(dst, `,"item_id":`...)
		dst = appendString(dst, r.msgID)
		dst = append(dst, `,"output_index":0,"content_index":0`...)
		switch kind {
		case eventPartAdded:
			dst = append(dst, `,"part":`...)
			dst = r.appendPart(dst, "")
		case eventTextDelta:
			dst = append(dst, `,"delta":`...)
			dst = appendString(dst, piece)
			dst = append(dst, `,"logprobs":[]`...)
		case eventTextDone:
			dst = append(dst, `,"text":`...)
			dst = appendString(dst, r.text)
			dst = append(dst, `,"logprobs":[]`...)
		case eventPartDone:
			dst = append(dst, `,"part":`...)
			dst = r.appendPart(dst, r.text)
		}
	}
	return append(dst, "}\n\n"...)
}
