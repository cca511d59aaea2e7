package openai

import (
	"encoding/json"
	"fmt"
)

// Error is OpenAI's error object. An error response's body wraps it:
//
//	{"error":{"message":"…","type":"invalid_request_error","param":"messages","code":null}}
//
// The request parsers return it, as invalid_request_error, for a body they
// refuse; OpenAI's API answers those with status 400.
type Error struct {
	Message string
	Type    string
	Param   string // "" is written as null
	Code    string // "" is written as null
}

func (e *Error) Error() string { return e.Message }

// Body returns the error response's body, {"error":{…}}, written by
// encoding/json (HTML characters escaped as \u003c, \u003e, \u0026).
func (e *Error) Body() []byte {
	b, _ := json.Marshal(errorBody{Error: errorObject{
		Message: e.Message, Type: e.Type, Param: nullable(e.Param), Code: nullable(e.Code),
	}})
	return b
}

type errorBody struct {
	Error errorObject `json:"error"`
}

type errorObject struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// invalidRequest is the error for a request body the parsers refuse.
func invalidRequest(param, format string, args ...any) *Error {
	return &Error{Type: "invalid_request_error", Param: param, Message: fmt.Sprintf(format, args...)}
}
