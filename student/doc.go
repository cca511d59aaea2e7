// Package student owns a student model at serving time: the featurizer
// shared with training, ONNX Runtime inference sessions, and the artifact
// format a trained version is stored in. It does not train.
package student
