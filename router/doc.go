// Package router owns the per-domain routing state machine (collecting,
// shadowing, serving, open_ended, pinned) and the per-request decision of
// who answers: the teacher, the student, or the teacher with the student
// scored in its shadow. It does no I/O itself.
//
// Until students exist (see the students and shadow issues), every request
// goes to the teacher; the gateway marks it "X-Understudy-Route: teacher".
package router
