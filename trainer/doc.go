// Package trainer owns background training of students: the label space
// from normalized teacher answers, the distillability rule, featurizing, the
// ONNX train-step graph run through ONNX Runtime, calibration, export of a
// trained version, and the Scheduler that trains domains in the background.
// It does not serve traffic.
package trainer
