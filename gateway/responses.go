package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/understudy-dev/understudy/internal/openai"
	"github.com/understudy-dev/understudy/storage"
)

// responses handles POST /v1/responses like a chat completion: learned
// from, shadow-scored and answered by students. A request continuing a
// response a student made (previous_response_id) goes on with that
// conversation inlined as input items, since the teacher never saw it;
// one continuing a teacher's response is relayed as it is.
func (s *Server) responses(ctx *fasthttp.RequestCtx) error {
	r, err := openai.ParseResponsesRequest(ctx.PostBody())
	if err != nil {
		return err
	}
	if r.PreviousResponseID != "" && s.kept != nil {
		if r, err = s.continueKept(ctx, r); err != nil {
			return err
		}
	}
	return s.completion(ctx, r)
}

// keptResponse is the gateway's record of a response a student made.
type keptResponse struct {
	// Response is the Response object, as GET returns it.
	Response json.RawMessage `json:"response"`
	// Input is the conversation's input items up to the response: its
	// request's, with those of the responses before it inlined.
	Input json.RawMessage `json:"input"`
	// Output is the answer's text.
	Output string `json:"output"`
}

// continueKept returns r with its previous response inlined when a student
// made that response, and r as it is otherwise.
func (s *Server) continueKept(ctx *fasthttp.RequestCtx, r *openai.Request) (*openai.Request, error) {
	b, err := s.kept.Response(r.PreviousResponseID)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return r, nil // the teacher's
	case err != nil:
		s.log.Error("reading a kept response", "request_id", infoOf(ctx).id, "response_id", r.PreviousResponseID, "err", err)
		return nil, &apiError{Status: fasthttp.StatusInternalServerError, Type: "server_error",
			Message: "The gateway could not read the previous response; try again."}
	}
	var prev keptResponse
	if err := json.Unmarshal(b, &prev); err != nil {
		return nil, err
	}
	body := ctx.PostBody()
	if r.Forward != nil {
		body = r.Forward
	}
	inlined, err := inlineConversation(body, prev, r.Items)
	if err != nil {
		return nil, err
	}
	r2, err := openai.ParseResponsesRequest(inlined)
	if err != nil {
		return nil, err
	}
	// The task was read, and taken out, from the client's body.
	r2.Task, r2.PreviousResponseID = r.Task, r.PreviousResponseID
	if r2.Forward == nil {
		r2.Forward = inlined
	}
	return r2, nil
}

// inlineConversation rewrites a Responses request body that continues
// prev: its input becomes prev's input items, prev's answer as an
// assistant message, then its own items; previous_response_id goes.
func inlineConversation(body []byte, prev keptResponse, items []byte) ([]byte, error) {
	answer := openai.AppendString([]byte(`{"role":"assistant","content":[{"type":"output_text","text":`), prev.Output)
	answer = append(answer, "}]}"...)
	input := []byte{'['}
	for _, part := range [][]byte{arrayElements(prev.Input), answer, arrayElements(items)} {
		if len(part) == 0 {
			continue
		}
		if len(input) > 1 {
			input = append(input, ',')
		}
		input = append(input, part...)
	}
	input = append(input, ']')
	var p, q fastjson.Parser
	v, err := p.ParseBytes(body)
	if err != nil {
		return nil, err
	}
	iv, err := q.ParseBytes(input)
	if err != nil {
		return nil, err
	}
	o, err := v.Object()
	if err != nil {
		return nil, err
	}
	o.Del("previous_response_id")
	o.Set("input", iv)
	return o.MarshalTo(nil), nil
}

// arrayElements returns what is between a JSON array's brackets.
func arrayElements(a []byte) []byte {
	s := strings.TrimSpace(string(a))
	if len(s) < 2 {
		return nil
	}
	return []byte(strings.TrimSpace(s[1 : len(s)-1]))
}

// studentResponse writes a student's answer as a Response object or its
// event stream, and keeps it when the request lets it be stored.
func (s *Server) studentResponse(ctx *fasthttp.RequestCtx, info *reqInfo, r *openai.Request, text string, promptTokens, completionTokens int) {
	id := newResponseID()
	resp := openai.Response{ID: "resp_" + id, MessageID: "msg_" + id, Created: time.Now().Unix(), Model: r.Model,
		Instructions: r.Instructions, Text: r.Text, Metadata: r.Metadata, PreviousResponseID: r.PreviousResponseID,
		Store: r.Store, InputTokens: promptTokens, OutputTokens: completionTokens}
	b := ctx.Response.SwapBody(nil)[:0]
	defer func() { ctx.Response.SwapBody(b) }()
	if r.Stream {
		ctx.SetContentType("text/event-stream")
		ctx.Response.Header.Set("Cache-Control", "no-cache")
		b = resp.AppendEvents(b, text)
	} else {
		ctx.SetContentType("application/json")
		b = resp.AppendJSON(b, text)
	}
	if !r.Store || s.kept == nil {
		return
	}
	rec, err := json.Marshal(keptResponse{Response: resp.AppendJSON(nil, text), Input: r.Items, Output: text})
	if err == nil {
		err = s.kept.PutResponse(resp.ID, rec)
	}
	if err != nil {
		s.m.keptErrors.Inc()
		s.log.Warn("keeping a student's response failed: it cannot be read back or continued",
			"request_id", info.id, "response_id", resp.ID, "err", err)
	}
}

// newResponseID returns 48 random hex digits: a response's id is all it
// takes to read it back.
func newResponseID() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// responseByID handles /v1/responses/{id}: GET and DELETE of a response a
// student made are answered here; everything else, and every response
// the teacher made, is relayed.
func (s *Server) responseByID(ctx *fasthttp.RequestCtx) error {
	id := strings.TrimPrefix(string(ctx.Path()), "/v1/responses/")
	method := string(ctx.Method())
	id, sub, _ := strings.Cut(id, "/")
	if s.kept == nil || sub != "" && (sub != "input_items" || method != fasthttp.MethodGet) ||
		(method != fasthttp.MethodGet && method != fasthttp.MethodDelete) {
		return s.relayToTeacher(ctx)
	}
	b, err := s.kept.Response(id)
	if errors.Is(err, storage.ErrNotFound) {
		return s.relayToTeacher(ctx)
	}
	if err != nil {
		return err
	}
	infoOf(ctx).endpoint = "responses"
	ctx.SetContentType("application/json")
	if method == fasthttp.MethodDelete {
		if err := s.kept.DeleteResponse(id); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		ctx.SetBody(openai.AppendString([]byte(`{"id":`), id))
		ctx.Response.AppendBodyString(`,"object":"response","deleted":true}`)
		return nil
	}
	var rec keptResponse
	if err := json.Unmarshal(b, &rec); err != nil {
		return err
	}
	if sub == "input_items" {
		return inputItems(ctx, id, rec.Input)
	}
	ctx.SetBody(rec.Response)
	return nil
}

// inputItem is an input item as GET /v1/responses/{id}/input_items lists
// it: a message with an id and its content as parts.
type inputItem struct {
	ID      string     `json:"id"`
	Type    string     `json:"type"`
	Role    string     `json:"role"`
	Status  string     `json:"status"`
	Content []itemPart `json:"content"`
}

type itemPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// inputItems answers GET /v1/responses/{id}/input_items for a response a
// student made, from the conversation kept with it, as OpenAI pages them:
// order (desc by default), limit (20, at most 100), after (an item id).
func inputItems(ctx *fasthttp.RequestCtx, id string, raw json.RawMessage) error {
	var items []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	}
	if err := json.Unmarshal(raw, &items); err != nil {
		return err
	}
	all := make([]inputItem, 0, len(items))
	for i, it := range items {
		kind := "input_text"
		if it.Role == "assistant" {
			kind = "output_text"
		}
		item := inputItem{ID: "msg_" + strings.TrimPrefix(id, "resp_") + "_" + strconv.Itoa(i), Type: "message", Role: it.Role, Status: "completed"}
		var text string
		var parts []itemPart
		switch {
		case json.Unmarshal(it.Content, &text) == nil:
			item.Content = []itemPart{{Type: kind, Text: text}}
		case json.Unmarshal(it.Content, &parts) == nil:
			item.Content = parts
		}
		all = append(all, item)
	}
	args := ctx.QueryArgs()
	if string(args.Peek("order")) != "asc" {
		slices.Reverse(all)
	}
	if after := string(args.Peek("after")); after != "" {
		for i, it := range all {
			if it.ID == after {
				all = all[i+1:]
				break
			}
		}
	}
	limit := 20
	if n, err := strconv.Atoi(string(args.Peek("limit"))); err == nil && n >= 1 && n <= 100 {
		limit = n
	}
	page := struct {
		Object  string      `json:"object"`
		Data    []inputItem `json:"data"`
		FirstID *string     `json:"first_id"`
		LastID  *string     `json:"last_id"`
		HasMore bool        `json:"has_more"`
	}{Object: "list", Data: all[:min(limit, len(all))], HasMore: len(all) > limit}
	if len(page.Data) > 0 {
		page.FirstID, page.LastID = &page.Data[0].ID, &page.Data[len(page.Data)-1].ID
	}
	body, err := json.Marshal(page)
	if err != nil {
		return err
	}
	ctx.SetBody(body)
	return nil
}
