package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/understudy-dev/understudy/internal/openai"
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

// object is e's OpenAI error object.
func (e *apiError) object() *openai.Error {
	return &openai.Error{Message: e.Message, Type: e.Type, Param: e.Param, Code: e.Code}
}

// asAPIError returns the apiError a client gets for err: err itself, a 400
// for a request body the parser refused (an *openai.Error), else
// errInternal; ok is false for errInternal.
func asAPIError(err error) (e *apiError, ok bool) {
	if errors.As(err, &e) {
		return e, true
	}
	var oe *openai.Error
	if errors.As(err, &oe) {
		return &apiError{Status: fasthttp.StatusBadRequest, Message: oe.Message, Type: oe.Type, Param: oe.Param, Code: oe.Code}, true
	}
	return errInternal, false
}

// handler is a request handler that returns its error instead of
// answering with it (Caddy's caddyhttp.Handler).
type handler func(ctx *fasthttp.RequestCtx) error

// serveErrors adapts h to fasthttp: an error h returns becomes the
// response, through writeError; one that is neither an apiError nor the
// parser's *openai.Error is logged and answered 500.
func serveErrors(log *slog.Logger, h handler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		err := h(ctx)
		if err == nil {
			return
		}
		if _, ok := asAPIError(err); !ok {
			log.Error("handling request", "path", string(ctx.Path()), "err", err)
		}
		writeError(ctx, err)
	}
}

// ownHeaders are the headers the gateway sets on every answer.
var ownHeaders = [...]string{"X-Request-Id", "X-Understudy-Route", "X-Understudy-Domain"}

// writeError is the one place an error becomes a response: its status and
// OpenAI's error object, as asAPIError reads it.
func writeError(ctx *fasthttp.RequestCtx, err error) {
	e, _ := asAPIError(err)
	// The gateway's own headers stay: a client (or its operator) reading
	// an error needs the request id and the route as much as with an
	// answer.
	var kept [len(ownHeaders)][]byte
	for i, k := range ownHeaders {
		kept[i] = append([]byte(nil), ctx.Response.Header.Peek(k)...)
	}
	ctx.Response.Reset()
	for i, k := range ownHeaders {
		if len(kept[i]) > 0 {
			ctx.Response.Header.SetBytesV(k, kept[i])
		}
	}
	ctx.SetStatusCode(e.Status)
	ctx.SetContentType("application/json")
	if e.RetryAfter > 0 {
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(e.RetryAfter))
		ctx.Response.Header.Set("X-Should-Retry", "true")
	}
	if e.Allow != "" {
		ctx.Response.Header.Set("Allow", e.Allow)
	}
	ctx.SetBody(e.object().Body())
}
