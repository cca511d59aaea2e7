package teachersim

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestErrorResponses(t *testing.T) {
	ts := start(t, Config{Tasks: loadTasks(t)})
	msgs := `"messages":[{"role":"user","content":"hi"}]`
	tests := []struct {
		name, method, path, body string
		status                   int
		param, code              string // "<null>" for null
	}{
		{"bad JSON", "POST", "/v1/chat/completions", `{"model":`, 400, "<null>", "<null>"},
		{"missing model", "POST", "/v1/chat/completions", `{` + msgs + `}`, 400, "model", "missing_required_parameter"},
		{"missing messages", "POST", "/v1/chat/completions", `{"model":"m"}`, 400, "messages", "missing_required_parameter"},
		{"empty messages", "POST", "/v1/chat/completions", `{"model":"m","messages":[]}`, 400, "messages", "missing_required_parameter"},
		{"bad content", "POST", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":42}]}`, 400, "messages[0].content", "invalid_value"},
		{"chat wrong method", "GET", "/v1/chat/completions", "", 405, "<null>", "method_not_allowed"},
		{"response_format not an object", "POST", "/v1/chat/completions", `{"model":"m",` + msgs + `,"response_format":"json"}`, 400, "response_format", "invalid_type"},
		{"response_format without type", "POST", "/v1/chat/completions", `{"model":"m",` + msgs + `,"response_format":{}}`, 400, "response_format.type", "missing_required_parameter"},
		{"response_format unknown type", "POST", "/v1/chat/completions", `{"model":"m",` + msgs + `,"response_format":{"type":"xml"}}`, 400, "response_format.type", "invalid_value"},
		{"json_schema without json_schema", "POST", "/v1/chat/completions", `{"model":"m",` + msgs + `,"response_format":{"type":"json_schema"}}`, 400, "response_format.json_schema", "missing_required_parameter"},
		{"json_schema without name", "POST", "/v1/chat/completions", `{"model":"m",` + msgs + `,"response_format":{"type":"json_schema","json_schema":{"schema":{}}}}`, 400, "response_format.json_schema.name", "missing_required_parameter"},
		{"json_schema schema not an object", "POST", "/v1/chat/completions", `{"model":"m",` + msgs + `,"response_format":{"type":"json_schema","json_schema":{"name":"n","schema":[]}}}`, 400, "response_format.json_schema.schema", "invalid_type"},
		{"unknown path", "POST", "/v1/nope", `{}`, 404, "<null>", "unknown_url"},
		{"root", "GET", "/", "", 404, "<null>", "unknown_url"},
		{"unknown model", "GET", "/v1/models/nope", "", 404, "model", "model_not_found"},
		{"models wrong method", "POST", "/v1/models", `{}`, 405, "<null>", "method_not_allowed"},
		{"completion missing prompt", "POST", "/v1/completions", `{"model":"m"}`, 400, "prompt", "missing_required_parameter"},
		{"completion token prompt", "POST", "/v1/completions", `{"model":"m","prompt":[1,2]}`, 400, "prompt", "invalid_value"},
		{"completion bad JSON", "POST", "/v1/completions", `[`, 400, "<null>", "<null>"},
		{"embeddings missing model", "POST", "/v1/embeddings", `{"input":"a"}`, 400, "model", "missing_required_parameter"},
		{"embeddings missing input", "POST", "/v1/embeddings", `{"model":"m"}`, 400, "input", "missing_required_parameter"},
		{"embeddings token input", "POST", "/v1/embeddings", `{"model":"m","input":[[1,2]]}`, 400, "input", "invalid_value"},
		{"embeddings bad format", "POST", "/v1/embeddings", `{"model":"m","input":"a","encoding_format":"hex"}`, 400, "encoding_format", "invalid_value"},
		{"embeddings bad dimensions", "POST", "/v1/embeddings", `{"model":"m","input":"a","dimensions":-1}`, 400, "dimensions", "invalid_value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := ts.do(t, tt.method, tt.path, tt.body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if !strings.HasPrefix(resp.Header.Get("x-request-id"), "sim-") {
				t.Errorf("x-request-id %q", resp.Header.Get("x-request-id"))
			}
			e := decodeErr(t, body)
			if e.Error.Type != "invalid_request_error" || deref(e.Error.Param) != tt.param || deref(e.Error.Code) != tt.code {
				t.Errorf("error %s: want type invalid_request_error, param %s, code %s", body, tt.param, tt.code)
			}
			if tt.param != "<null>" && !strings.Contains(e.Error.Message, tt.param) && tt.code != "model_not_found" {
				t.Errorf("message %q does not name %s", e.Error.Message, tt.param)
			}
		})
	}
	t.Run("unknown model message", func(t *testing.T) {
		_, body := ts.do(t, "GET", "/v1/models/gpt-x", "")
		if got := decodeErr(t, body).Error.Message; got != "The model 'gpt-x' does not exist" {
			t.Errorf("message %q", got)
		}
	})
	t.Run("405 names the allowed method", func(t *testing.T) {
		resp, _ := ts.do(t, "GET", "/v1/embeddings", "")
		if got := resp.Header.Get("Allow"); got != "POST" {
			t.Errorf("Allow %q, want POST", got)
		}
	})
}

func TestAuth(t *testing.T) {
	ts := start(t, Config{Tasks: loadTasks(t), APIKey: "sk-test"})
	body := chatBody(t, "", "Terrible service, never again.", nil)
	tests := []struct {
		name, path, auth string
		status           int
	}{
		{"no header", "/v1/chat/completions", "", 401},
		{"wrong key", "/v1/chat/completions", "Bearer sk-wrong", 401},
		{"key without Bearer", "/v1/chat/completions", "sk-test", 401},
		{"key prefix", "/v1/chat/completions", "Bearer sk-tes", 401},
		{"right key", "/v1/chat/completions", "Bearer sk-test", 200},
		{"unknown path needs the key too", "/v1/nope", "", 401},
		{"control surface is open", "/sim/stats", "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method, b := "POST", body
			if strings.HasPrefix(tt.path, "/sim/") {
				method, b = "GET", ""
			}
			var hdr []string
			if tt.auth != "" {
				hdr = []string{"Authorization", tt.auth}
			}
			resp, got := ts.do(t, method, tt.path, b, hdr...)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, got)
			}
			if tt.status == 401 {
				e := decodeErr(t, got)
				if e.Error.Message != "Incorrect API key provided" || e.Error.Type != "invalid_request_error" ||
					deref(e.Error.Code) != "invalid_api_key" || e.Error.Param != nil {
					t.Errorf("error %s", got)
				}
			}
		})
	}
}

func TestErrorInjection(t *testing.T) {
	body := chatBody(t, "", "Terrible service, never again.", nil)
	tests := []struct {
		name   string
		cfg    Config
		patch  string // POST /sim/config before the requests
		status int
	}{
		{"rate 1 from config", Config{ErrorRate: 1}, "", 500},
		{"rate 1 with status", Config{ErrorRate: 1, ErrorStatus: 503}, "", 503},
		{"rate 1 from /sim/config", Config{}, `{"error_rate":1,"error_status":429}`, 429},
		{"rate 0 from /sim/config", Config{ErrorRate: 1}, `{"error_rate":0}`, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Tasks = loadTasks(t)
			ts := start(t, tt.cfg)
			if tt.patch != "" {
				if resp, b := ts.do(t, "POST", "/sim/config", tt.patch); resp.StatusCode != 200 {
					t.Fatalf("POST /sim/config: %d %s", resp.StatusCode, b)
				}
			}
			for _, req := range []struct{ method, path, body string }{
				{"POST", "/v1/chat/completions", body},
				{"POST", "/v1/completions", `{"model":"m","prompt":"x"}`},
				{"POST", "/v1/embeddings", `{"model":"m","input":"x"}`},
				{"GET", "/v1/models", ""},
			} {
				resp, got := ts.do(t, req.method, req.path, req.body)
				if resp.StatusCode != tt.status {
					t.Fatalf("%s: status %d, want %d: %s", req.path, resp.StatusCode, tt.status, got)
				}
				if tt.status != 200 {
					e := decodeErr(t, got)
					if e.Error.Message != "teacher-sim injected error" || e.Error.Type != "server_error" ||
						deref(e.Error.Code) != "injected_error" || e.Error.Param != nil {
						t.Errorf("%s: error %s", req.path, got)
					}
				}
			}
			wantErrors := int64(0)
			if tt.status != 200 {
				wantErrors = 4
			}
			if got := ts.Stats(); got != (Stats{Requests: 4, Errors: wantErrors}) {
				t.Errorf("Stats() = %+v, want 4 requests, %d errors", got, wantErrors)
			}
		})
	}
	t.Run("rate one half", func(t *testing.T) {
		ts := start(t, Config{Tasks: loadTasks(t), ErrorRate: 0.5, ErrorStatus: 502})
		counts := map[int]int{}
		for range 100 {
			resp, _ := ts.do(t, "POST", "/v1/chat/completions", body)
			counts[resp.StatusCode]++
		}
		if len(counts) != 2 || counts[200] == 0 || counts[502] == 0 {
			t.Errorf("statuses %v, want both 200 and 502", counts)
		}
		if got := ts.Stats(); got.Errors != int64(counts[502]) {
			t.Errorf("Stats().Errors = %d, want %d", got.Errors, counts[502])
		}
	})
}

func chatAnswer(t *testing.T, ts *testServer, system, user string) string {
	t.Helper()
	resp, body := ts.do(t, "POST", "/v1/chat/completions", chatBody(t, system, user, nil))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var got struct {
		Choices []struct{ Message struct{ Content string } }
	}
	if err := json.Unmarshal(body, &got); err != nil || len(got.Choices) != 1 {
		t.Fatalf("decoding %s: %v", body, err)
	}
	return got.Choices[0].Message.Content
}

func TestSwapLabels(t *testing.T) {
	tasks := loadTasks(t)
	ts := start(t, Config{Tasks: tasks})
	setSwap := func(on bool) {
		resp, body := ts.do(t, "POST", "/sim/config", `{"swap_labels":`+strconv.FormatBool(on)+`}`)
		if resp.StatusCode != 200 || decode(t, body)["swap_labels"] != on {
			t.Fatalf("POST /sim/config: %d %s", resp.StatusCode, body)
		}
	}
	tests := []struct {
		name, system string
		task         Task
	}{
		{"sentiment", tasks[0].System, tasks[0]},
		{"topic", tasks[1].System, tasks[1]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			labels := map[string]bool{}
			for _, e := range tt.task.Examples {
				labels[e.Label] = true
			}
			setSwap(true)
			swapped := map[string]string{}
			for _, e := range tt.task.Examples {
				got := chatAnswer(t, ts, tt.system, e.Text)
				if got == e.Label || !labels[got] {
					t.Errorf("%q: swapped answer %q, want another label of the task", e.Text, got)
				}
				if prev, ok := swapped[e.Label]; ok && prev != got {
					t.Errorf("label %q swapped to both %q and %q", e.Label, prev, got)
				}
				swapped[e.Label] = got
			}
			if got := chatAnswer(t, ts, tt.system, "never seen"); got != "unknown" {
				t.Errorf("unknown text answered %q while swapped", got)
			}
			setSwap(false)
			for _, e := range tt.task.Examples {
				if got := chatAnswer(t, ts, tt.system, e.Text); got != e.Label {
					t.Errorf("%q: answer %q after unswapping, want %q", e.Text, got, e.Label)
				}
			}
		})
	}
}

func TestSimConfig(t *testing.T) {
	ts := start(t, Config{Tasks: loadTasks(t)})
	want := map[string]any{"latency": "0s", "jitter": "0s", "chunk_delay": "0s", "error_rate": json.Number("0"),
		"error_status": json.Number("500"), "swap_labels": false, "unknown_answer": "unknown",
		"record_variation": json.Number("0")}
	resp, body := ts.do(t, "GET", "/sim/config", "")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /sim/config: %d %s", resp.StatusCode, body)
	}
	if got := decode(t, body); !equalJSON(got, want) {
		t.Errorf("GET /sim/config = %s, want %v", body, want)
	}

	resp, body = ts.do(t, "POST", "/sim/config", `{"latency":"1ms","jitter":"500us","unknown_answer":"dunno"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("POST /sim/config: %d %s", resp.StatusCode, body)
	}
	want["latency"], want["jitter"], want["unknown_answer"] = "1ms", "500µs", "dunno"
	if got := decode(t, body); !equalJSON(got, want) {
		t.Errorf("POST /sim/config = %s, want %v", body, want)
	}
	if got := chatAnswer(t, ts, "", "never seen"); got != "dunno" {
		t.Errorf("unknown text answered %q, want dunno", got)
	}

	bad := []struct {
		name, method, path, body string
		status                   int
		param                    string
	}{
		{"error_rate above 1", "POST", "/sim/config", `{"error_rate":1.5}`, 400, "error_rate"},
		{"error_status below 400", "POST", "/sim/config", `{"error_status":200}`, 400, "error_status"},
		{"record_variation above 1", "POST", "/sim/config", `{"record_variation":2}`, 400, "record_variation"},
		{"negative latency", "POST", "/sim/config", `{"latency":"-1s"}`, 400, "latency"},
		{"latency not a duration", "POST", "/sim/config", `{"latency":"soon"}`, 400, "latency"},
		{"unknown field", "POST", "/sim/config", `{"latencyy":"1s"}`, 400, "<null>"},
		{"bad JSON", "POST", "/sim/config", `{`, 400, "<null>"},
		{"wrong method", "PUT", "/sim/config", `{}`, 405, "<null>"},
		{"stats wrong method", "POST", "/sim/stats", `{}`, 405, "<null>"},
		{"unknown control path", "GET", "/sim/nope", "", 404, "<null>"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := ts.do(t, tt.method, tt.path, tt.body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if e := decodeErr(t, body); deref(e.Error.Param) != tt.param {
				t.Errorf("error %s, want param %s", body, tt.param)
			}
		})
	}
	// A rejected update changes nothing.
	if _, body := ts.do(t, "GET", "/sim/config", ""); !equalJSON(decode(t, body), want) {
		t.Errorf("after rejected updates GET /sim/config = %s, want %v", body, want)
	}
}

func equalJSON(a, b map[string]any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestStatsAndRequestIDs(t *testing.T) {
	ts := start(t, Config{Tasks: loadTasks(t)})
	var last uint64
	for i := range 5 {
		path := "/v1/models"
		if i == 4 {
			path = "/v1/nope"
		}
		resp, _ := ts.do(t, "GET", path, "")
		n, err := strconv.ParseUint(strings.TrimPrefix(resp.Header.Get("x-request-id"), "sim-"), 10, 64)
		if err != nil || n <= last {
			t.Fatalf("x-request-id %q after sim-%d, want increasing", resp.Header.Get("x-request-id"), last)
		}
		last = n
	}
	resp, body := ts.do(t, "GET", "/sim/stats", "")
	if resp.StatusCode != 200 || string(body) != `{"requests":5,"errors":1}` {
		t.Errorf("GET /sim/stats = %d %s, want {\"requests\":5,\"errors\":1}", resp.StatusCode, body)
	}
}

func TestModels(t *testing.T) {
	ts := start(t, Config{Models: []string{"teacher-big", "teacher-small"}})
	resp, body := ts.do(t, "GET", "/v1/models", "")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var list struct {
		Object string `json:"object"`
		Data   []struct {
			ID      string `json:"id"`
			Object  string `json:"object"`
			Created int64  `json:"created"`
			OwnedBy string `json:"owned_by"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatal(err)
	}
	if list.Object != "list" || len(list.Data) != 2 || list.Data[0].ID != "teacher-big" || list.Data[1].ID != "teacher-small" {
		t.Fatalf("list %s", body)
	}
	for _, m := range list.Data {
		if m.Object != "model" || m.OwnedBy != "teacher-sim" || m.Created == 0 {
			t.Errorf("model %+v", m)
		}
	}
	resp, body = ts.do(t, "GET", "/v1/models/teacher-small", "")
	if m := decode(t, body); resp.StatusCode != 200 || m["id"] != "teacher-small" || m["object"] != "model" {
		t.Errorf("GET /v1/models/teacher-small = %d %s", resp.StatusCode, body)
	}
}

func TestCompletions(t *testing.T) {
	ts := start(t, Config{Tasks: loadTasks(t)})
	tests := []struct {
		name   string
		prompt any
		want   string
	}{
		{"string prompt", "The central bank raised interest rates.", "business"},
		{"array prompt uses the first", []string{"Terrible service, never again.", "The central bank raised interest rates."}, "negative"},
		{"trimmed prompt", " An absolute masterpiece.\n", "positive"},
		{"unknown prompt", "Once upon a time", "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := ts.do(t, "POST", "/v1/completions", mustJSON(t, map[string]any{"model": "davinci-sim", "prompt": tt.prompt}))
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			var got struct {
				ID      string `json:"id"`
				Object  string `json:"object"`
				Created int64  `json:"created"`
				Model   string `json:"model"`
				Choices []struct {
					Text         string    `json:"text"`
					Index        int       `json:"index"`
					Logprobs     *struct{} `json:"logprobs"`
					FinishReason string    `json:"finish_reason"`
				} `json:"choices"`
				Usage struct {
					PromptTokens     int `json:"prompt_tokens"`
					CompletionTokens int `json:"completion_tokens"`
					TotalTokens      int `json:"total_tokens"`
				} `json:"usage"`
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			if got.ID != "cmpl-sim-"+strings.TrimPrefix(resp.Header.Get("x-request-id"), "sim-") || got.Object != "text_completion" ||
				got.Model != "davinci-sim" || got.Created == 0 || len(got.Choices) != 1 {
				t.Fatalf("response %s", body)
			}
			if c := got.Choices[0]; c.Text != tt.want || c.FinishReason != "stop" || c.Index != 0 || c.Logprobs != nil {
				t.Errorf("choice %+v, want text %q", c, tt.want)
			}
			if u := got.Usage; u.PromptTokens < 1 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
				t.Errorf("usage %+v", u)
			}
		})
	}
}

func TestEmbeddingsWire(t *testing.T) {
	ts := start(t, Config{EmbeddingDims: 8})
	req := func(format string) []json.RawMessage {
		t.Helper()
		resp, body := ts.do(t, "POST", "/v1/embeddings", mustJSON(t, map[string]any{
			"model": "embed-sim", "input": []string{"alpha", "beta", "alpha"}, "encoding_format": format}))
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		var got struct {
			Object string `json:"object"`
			Model  string `json:"model"`
			Data   []struct {
				Object    string          `json:"object"`
				Index     int             `json:"index"`
				Embedding json.RawMessage `json:"embedding"`
			} `json:"data"`
			Usage struct {
				PromptTokens int `json:"prompt_tokens"`
				TotalTokens  int `json:"total_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		// "alpha" is (5+3)/4 = 2 tokens, "beta" (4+3)/4 = 1.
		if got.Object != "list" || got.Model != "embed-sim" || len(got.Data) != 3 || got.Usage.PromptTokens != 5 || got.Usage.TotalTokens != 5 {
			t.Fatalf("response %s", body)
		}
		var out []json.RawMessage
		for i, d := range got.Data {
			if d.Object != "embedding" || d.Index != i {
				t.Errorf("data[%d] object %q index %d", i, d.Object, d.Index)
			}
			out = append(out, d.Embedding)
		}
		return out
	}
	floats, b64 := req("float"), req("base64")
	for i := range floats {
		var fv []float32
		if err := json.Unmarshal(floats[i], &fv); err != nil {
			t.Fatalf("float embedding %s: %v", floats[i], err)
		}
		var s string
		if err := json.Unmarshal(b64[i], &s); err != nil {
			t.Fatalf("base64 embedding %s is not a string: %v", b64[i], err)
		}
		raw, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(raw) != 4*8 {
			t.Fatalf("base64 embedding %q: %d bytes, %v", s, len(raw), err)
		}
		var norm float64
		for j := range fv {
			bv := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*j:]))
			if bv != fv[j] {
				t.Errorf("input %d dim %d: base64 %v, float %v", i, j, bv, fv[j])
			}
			norm += float64(fv[j]) * float64(fv[j])
		}
		if math.Abs(norm-1) > 1e-5 {
			t.Errorf("input %d: squared norm %v, want 1", i, norm)
		}
	}
	if string(floats[0]) != string(floats[2]) || string(floats[0]) == string(floats[1]) {
		t.Errorf("want equal vectors for equal inputs only: %s %s %s", floats[0], floats[1], floats[2])
	}
}

func TestNewValidates(t *testing.T) {
	task := func(name string) Task { return Task{Name: name, Examples: []Example{{"a", "b"}}} }
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"error rate above 1", Config{ErrorRate: 1.5}, "error_rate: must be in [0,1], got 1.5"},
		{"error rate negative", Config{ErrorRate: -0.1}, "error_rate: must be in [0,1]"},
		{"error rate NaN", Config{ErrorRate: math.NaN()}, "error_rate: must be in [0,1], got NaN"},
		{"record variation above 1", Config{RecordVariation: 1.5}, "record_variation: must be in [0,1], got 1.5"},
		{"error status", Config{ErrorStatus: 200}, "error_status: must be in [400,599], got 200"},
		{"negative latency", Config{Latency: -time.Second}, "latency: must not be negative"},
		{"negative jitter", Config{Jitter: -time.Second}, "jitter: must not be negative"},
		{"negative chunk delay", Config{ChunkDelay: -time.Second}, "chunk_delay: must not be negative"},
		{"embedding dims", Config{EmbeddingDims: -1}, "embedding_dims: must be in [1,8192], got -1"},
		{"empty model", Config{Models: []string{"a", ""}}, "models[1]: must not be empty"},
		{"duplicate model", Config{Models: []string{"a", "a"}}, `models[1]: duplicate model "a"`},
		{"duplicate task", Config{Tasks: []Task{task("x"), task("y"), task("x")}}, `tasks[2].name: duplicate task name "x"`},
		{"unnamed task", Config{Tasks: []Task{task("")}}, "tasks[0].name: must not be empty"},
		{"empty label", Config{Tasks: []Task{{Name: "x", Examples: []Example{{"a", ""}}}}}, "tasks[0].examples[0].label: must not be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	t.Run("zero config is valid", func(t *testing.T) {
		if _, err := New(Config{}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestServe(t *testing.T) {
	t.Run("returns nil on cancel and closes the listener", func(t *testing.T) {
		s, err := New(Config{})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := s.Serve(ctx, ln); err != nil {
			t.Fatalf("Serve = %v, want nil", err)
		}
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			c.Close()
			t.Error("listener still accepts after Serve returned")
		}
		if err := s.Serve(context.Background(), ln); err == nil {
			t.Error("second Serve succeeded, want an error")
		}
	})
	t.Run("idle keep-alive connections do not hold up shutdown", func(t *testing.T) {
		ts := start(t, Config{})
		if resp, _ := ts.do(t, "GET", "/v1/models", ""); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		// The client keeps its connection open; stop returns once Serve
		// has closed it.
		ts.stop()
	})
	t.Run("malformed HTTP gets an OpenAI error", func(t *testing.T) {
		ts := start(t, Config{})
		c, err := net.Dial("tcp", strings.TrimPrefix(ts.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 400 || decodeErr(t, body).Error.Type != "invalid_request_error" || !strings.HasPrefix(resp.Header.Get("x-request-id"), "sim-") {
			t.Errorf("got %d %s", resp.StatusCode, body)
		}
	})
	t.Run("handler works without Serve", func(t *testing.T) {
		s, err := New(Config{Tasks: loadTasks(t), Latency: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		var req fasthttp.Request
		req.Header.SetMethod("POST")
		req.SetRequestURI("/v1/chat/completions")
		req.SetBodyString(chatBody(t, "", "Terrible service, never again.", nil))
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, nil, nil)
		s.Handler()(&ctx)
		if ctx.Response.StatusCode() != 200 || !strings.Contains(string(ctx.Response.Body()), `"content":"negative"`) {
			t.Errorf("got %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	})
}

func TestConcurrentClients(t *testing.T) {
	ts := start(t, Config{Tasks: loadTasks(t), Jitter: time.Millisecond, ErrorRate: 0.1})
	const workers, each = 8, 25
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range each {
				body := chatBody(t, "", "Terrible service, never again.", map[string]any{"stream": (w+i)%2 == 0})
				resp, err := ts.client.Post(ts.base+"/v1/chat/completions", "application/json", strings.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					errs <- err
					return
				}
				if resp.StatusCode == 200 && !strings.Contains(string(b), "negative") {
					errs <- fmt.Errorf("answer %s", b)
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if got := ts.Stats().Requests; got != workers*each {
		t.Errorf("Stats().Requests = %d, want %d", got, workers*each)
	}
}
