// Package router owns the per-domain routing state machine (collecting,
// shadowing, serving, open_ended, pinned_teacher, pinned_student) and the
// per-request decision of who answers: the serving student when it is
// confident, else the teacher, with candidate versions scored in the
// teacher's shadow. Its effects on the world — loading models, persisting
// records, asking for retraining — are injected (Deps); it does no I/O
// itself. It also exports each domain's routing metrics.
package router
