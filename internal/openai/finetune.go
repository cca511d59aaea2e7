package openai

import (
	"bytes"
	"encoding/json"
	"io"
	"unicode/utf8"
)

// FineTuningExample is one example of OpenAI's chat fine-tuning format: a
// conversation and the assistant's answer to it.
type FineTuningExample struct {
	// Messages, when there are any, are the conversation as the request
	// sent it, one JSON message object each (see SplitMessages).
	Messages []json.RawMessage
	// System and Input are the conversation when there are no Messages:
	// a system message (left out when System is empty) and a user message.
	System, Input string
	// Answer is the assistant's message.
	Answer string
}

// SplitMessages splits a request's messages array, as Request.Messages
// holds it, into its messages, for FineTuningExample.Messages. It is an
// error for anything but a JSON array (null reads as no messages).
func SplitMessages(array []byte) ([]json.RawMessage, error) {
	var msgs []json.RawMessage
	if err := json.Unmarshal(array, &msgs); err != nil {
		return nil, err
	}
	return msgs, nil
}

// FineTuningWriter writes examples in OpenAI's chat fine-tuning format,
// JSONL, one line each:
//
//	{"messages":[{"role":"system","content":S},{"role":"user","content":I},{"role":"assistant","content":A}]}
//
// Messages are written compact, strings as encoding/json writes them but
// for HTML characters, which are left as they are.
type FineTuningWriter struct {
	w    io.Writer
	line bytes.Buffer
	enc  *json.Encoder // writes a message to line
}

// NewFineTuningWriter returns a writer of examples to w, which receives one
// Write a line.
func NewFineTuningWriter(w io.Writer) *FineTuningWriter {
	f := &FineTuningWriter{w: w}
	f.enc = json.NewEncoder(&f.line)
	f.enc.SetEscapeHTML(false)
	return f
}

// chatMessage is a message as the writer writes it.
type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Write writes e as one line.
func (f *FineTuningWriter) Write(e FineTuningExample) error {
	f.line.Reset()
	f.line.WriteString(`{"messages":[`)
	if len(e.Messages) > 0 {
		for i, m := range e.Messages {
			if i > 0 {
				f.line.WriteByte(',')
			}
			if err := f.rawMessage(m); err != nil {
				return err
			}
		}
	} else {
		if e.System != "" {
			if err := f.message("system", e.System); err != nil {
				return err
			}
			f.line.WriteByte(',')
		}
		if err := f.message("user", e.Input); err != nil {
			return err
		}
	}
	f.line.WriteByte(',')
	if err := f.message("assistant", e.Answer); err != nil {
		return err
	}
	f.line.WriteString("]}\n")
	_, err := f.w.Write(f.line.Bytes())
	return err
}

// rawMessage appends a message as the request sent it, compacted. A
// message holding invalid UTF-8 (a client may send raw bytes in a JSON
// string) is decoded and written again, its invalid bytes as U+FFFD:
// OpenAI refuses a fine-tuning file that is not UTF-8.
func (f *FineTuningWriter) rawMessage(m json.RawMessage) error {
	if utf8.Valid(m) {
		return json.Compact(&f.line, m)
	}
	var v any
	if err := json.Unmarshal(m, &v); err != nil {
		return err
	}
	if err := f.enc.Encode(v); err != nil {
		return err
	}
	f.line.Truncate(f.line.Len() - 1) // the newline Encode ends with
	return nil
}

// message appends one message object to the line.
func (f *FineTuningWriter) message(role, content string) error {
	if err := f.enc.Encode(chatMessage{Role: role, Content: content}); err != nil {
		return err
	}
	f.line.Truncate(f.line.Len() - 1) // the newline Encode ends with
	return nil
}
