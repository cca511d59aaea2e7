// Package shadow owns the scoring pool that compares a student's answer with
// the teacher's on live traffic, and the agreement statistics (a sequential
// test valid under continuous monitoring) that gate promotion and demotion,
// with, for answers that are JSON records, agreement and coverage per field
// beside them (fields.go). It never blocks a request.
package shadow
