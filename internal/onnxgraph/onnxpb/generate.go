// Package onnxpb holds Go types for the subset of the ONNX IR protobuf
// (onnx.proto beside this file) that Understudy writes: models, graphs,
// nodes, attributes, tensors and their types.
//
// onnx.pb.go is generated and committed; builds and CI never regenerate it.
// To regenerate after editing onnx.proto, install protoc (Debian:
// apt-get install -y protobuf-compiler) and run, from the repository root:
//
//	go generate ./internal/onnxgraph/onnxpb
//
// protoc-gen-go is pinned as a Go tool in go.mod, so `go tool protoc-gen-go`
// is always the version the committed code was generated with.
package onnxpb

//go:generate sh -c "protoc --plugin=protoc-gen-go=$(go tool -n protoc-gen-go) --go_out=. --go_opt=paths=source_relative onnx.proto"
