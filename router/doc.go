// Package router owns the per-domain routing state machine (collecting,
// shadowing, serving, open_ended, pinned_teacher, pinned_student) and the
// per-request decision of who answers: the serving student when it is
// confident, else the teacher, with candidate versions scored in the
// teacher's shadow. After each answered request the gateway makes one call,
// Answered, and the router counts the route, scores the serving version's
// prediction and submits the candidate's shadow job. Its effects on the
// world — loading models, persisting records, asking for retraining,
// scoring in the shadow — are injected (Deps); it does no I/O itself. It
// also exports each domain's routing metrics.
package router
