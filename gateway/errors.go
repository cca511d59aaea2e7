package gateway

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/valyala/fasthttp"
)

// apiError is an error with the HTTP status and the fields of OpenAI's error
// object. Handlers return it; writeError renders it.
type apiError struct {
	Status  int
	Message string
	Type    string
	Param   string // "" renders as null
	Code    string // "" renders as null
	// RetryAfter, when positive, sets retry-after (seconds) and
	// x-should-retry: true, the headers OpenAI's SDKs honour.
	RetryAfter int
}

func (e *apiError) Error() string { return e.Message }

func invalidRequest(param, format string, args ...any) *apiError {
	return &apiError{Status: fasthttp.StatusBadRequest, Type: "invalid_request_error", Param: param, Message: fmt.Sprintf(format, args...)}
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

// writeError is the one place an error becomes a response.
func writeError(ctx *fasthttp.RequestCtx, e *apiError) {
	body, _ := json.Marshal(errorBody{Error: errorObject{
		Message: e.Message, Type: e.Type, Param: nullable(e.Param), Code: nullable(e.Code),
	}})
	ctx.Response.Reset()
	ctx.SetStatusCode(e.Status)
	ctx.SetContentType("application/json")
	if e.RetryAfter > 0 {
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(e.RetryAfter))
		ctx.Response.Header.Set("X-Should-Retry", "true")
	}
	ctx.SetBody(body)
}
