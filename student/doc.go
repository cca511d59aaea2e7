// Package student owns a student model at serving time: the label
// normalizer and featurizer shared with training, the ONNX Runtime
// environment and inference sessions, the artifact format a trained version
// is stored in, and Model, which answers with a label, its surface form and
// a calibrated confidence. It does not train.
package student
