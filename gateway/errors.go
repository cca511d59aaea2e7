package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/valyala/fasthttp"
)

// apiError is an error with the HTTP status and the fields of OpenAI's error
// object. Handlers return it; serveErrors renders it.
type apiError struct {
	Status  int
	Message string
	Type    string
	Param   string // "" renders as null
	Code    string // "" renders as null
	// RetryAfter, when positive, sets retry-after (seconds) and
	// x-should-retry: true, the headers OpenAI's SDKs honour.
	RetryAfter int
	// Allow, when set, is the Allow header of a 405.
	Allow string
}

func (e *apiError) Error() string { return e.Message }

func invalidRequest(param, format string, args ...any) *apiError {
	return &apiError{Status: fasthttp.StatusBadRequest, Type: "invalid_request_error", Param: param, Message: fmt.Sprintf(format, args...)}
}

// errInternal is what a client sees of an error that is not an apiError:
// a bug, whose details stay in the log.
var errInternal = &apiError{Status: fasthttp.StatusInternalServerError, Type: "server_error",
	Message: "The gateway had an internal error handling the request."}

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

// handler is a request handler that returns its error instead of
// answering with it (Caddy's caddyhttp.Handler).
type handler func(ctx *fasthttp.RequestCtx) error

// serveErrors adapts h to fasthttp: an error h returns becomes the
// response, through writeError; one that is not an apiError is logged and
// answered 500.
func serveErrors(log *slog.Logger, h handler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		err := h(ctx)
		if err == nil {
			return
		}
		var e *apiError
		if !errors.As(err, &e) {
			log.Error("handling request", "path", string(ctx.Path()), "err", err)
		}
		writeError(ctx, err)
	}
}

// writeError is the one place an error becomes a response: its status and
// OpenAI's error object. An error that is not an apiError is answered as
// errInternal.
func writeError(ctx *fasthttp.RequestCtx, err error) {
	var e *apiError
	if !errors.As(err, &e) {
		e = errInternal
	}
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
	if e.Allow != "" {
		ctx.Response.Header.Set("Allow", e.Allow)
	}
	ctx.SetBody(body)
}
