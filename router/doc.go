// Package router owns the per-domain routing state machine (collecting,
// shadowing, serving, open_ended, pinned_teacher, pinned_student) and the
// per-request decision of who answers: the serving student when it is
// confident, else the teacher, with candidate versions scored in the
// teacher's shadow. After each answered request the gateway makes one call,
// Answered, and the router counts the route, scores the serving version's
// prediction and submits the candidate's shadow job.
//
// It is the one owner of routing state: the only reader and writer of the
// routing records in storage (Store), which New reads and Run writes off
// the request path. The trainer reports what it produced on a channel that
// Run takes (a version, loaded from the artifact in the report, becomes
// the candidate; an open-ended domain is marked so); a demotion asks for a
// new version through Deps.Retrain. It also exports each domain's routing
// metrics.
//
// Replicas sharing one store (Deps.Replicas) share one gate: the router
// of the replica holding the learner lease leads (Lead) and writes the
// records; the others follow them (Follow) and publish their samples to
// it (replicas.go).
package router
