// Package trainer owns background training of students: the label space
// from normalized teacher answers (of a structured answer, field by field:
// one output head per field), the distillability rule, featurizing, the
// ONNX train-step graph run through ONNX Runtime, calibration, export of a
// trained version, and the Scheduler that trains domains in the background.
// The Scheduler stores each version it trains and reports it (Reports), or
// the reason a domain is open-ended; it writes no routing state, which is
// the router's. It does not serve traffic.
package trainer
