package openai

import "testing"

// TestErrorBody pins the error response's bytes: SDKs read param and code
// as null when empty, and HTML characters are escaped as encoding/json
// escapes them.
func TestErrorBody(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    Error
		want string
	}{
		{"param and code null", Error{Message: "Missing required parameter: 'messages'.", Type: "invalid_request_error"},
			`{"error":{"message":"Missing required parameter: 'messages'.","type":"invalid_request_error","param":null,"code":null}}`},
		{"param and code set", Error{Message: "m", Type: "server_error", Param: "model", Code: "export_incomplete"},
			`{"error":{"message":"m","type":"server_error","param":"model","code":"export_incomplete"}}`},
		{"escapes", Error{Message: "Duplicate key '<a>&\"\n' in the request body.", Type: "invalid_request_error", Param: "<a>&\"\n"},
			`{"error":{"message":"Duplicate key '\u003ca\u003e\u0026\"\n' in the request body.","type":"invalid_request_error","param":"\u003ca\u003e\u0026\"\n","code":null}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(tc.e.Body()); got != tc.want {
				t.Errorf("Body() = %s\nwant     %s", got, tc.want)
			}
		})
	}
}
