package gateway

import (
	"log/slog"
	"sync"
	"time"
)

// failureLog logs failures that come in floods at most once a second per
// reason: teacher failures (connect, timeout, breaker_open, ...), since
// while the teacher is down every request fails alike, and student answers
// not sent (schema_mismatch, ...), since a student repeats itself. A line
// per request would bury the log and cost the gateway time. A line says
// how many like it were left out since the last one. Reasons come from a
// closed set, which bounds its map.
type failureLog struct {
	log *slog.Logger
	mu  sync.Mutex
	by  map[string]*failureCount
}

type failureCount struct {
	last    time.Time
	skipped int
}

// failureLogEvery is how often one reason of failure is logged.
const failureLogEvery = time.Second

func newFailureLog(log *slog.Logger) *failureLog {
	return &failureLog{log: log, by: map[string]*failureCount{}}
}

// warn logs a failure of reason, unless one was logged less than
// failureLogEvery ago.
func (l *failureLog) warn(reason, msg string, args ...any) {
	now := time.Now()
	l.mu.Lock()
	c := l.by[reason]
	if c == nil {
		c = &failureCount{}
		l.by[reason] = c
	}
	if now.Sub(c.last) < failureLogEvery {
		c.skipped++
		l.mu.Unlock()
		return
	}
	skipped := c.skipped
	c.last, c.skipped = now, 0
	l.mu.Unlock()
	if skipped > 0 {
		args = append(args, "like_it_since_last_logged", skipped)
	}
	l.log.Warn(msg, append(args, "reason", reason)...)
}
