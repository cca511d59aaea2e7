// Package e2e holds the end-to-end tests: each builds the understudy binary
// (cmd/understudy) once and runs it as child processes, teacher-sim and the
// gateway, on loopback, driving them with the official openai-go SDK and
// reading what an operator would read (the admin API, /metrics, the status
// command, Prometheus). The package has no code outside its tests.
//
// They need the ONNX Runtime library and the SpamAssassin and WordNet task
// files in .cache/ (make deps fetches them), and Prometheus for the dashboard test
// (make prometheus); -short skips everything that runs the binary.
//
//	go test ./e2e
package e2e
