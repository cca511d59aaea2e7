package gateway

import (
	"github.com/understudy-dev/understudy/internal/openai"
	"github.com/understudy-dev/understudy/storage"
)

// PairLog receives the pairs the gateway captures. Log must not block; it
// returns false when the pair was dropped (and counted).
type PairLog interface {
	Log(p storage.Pair) bool
}

var _ PairLog = (*storage.DB)(nil)

// logPair hands an eligible request's answer, with its label, to the pair
// log.
func (s *Server) logPair(info *reqInfo, r *openai.Request, a openai.Answer, label string, stream, deferred bool) {
	if s.pairs == nil || r == nil || r.Ineligible != "" {
		return
	}
	p := storage.Pair{
		Time:             info.start,
		Domain:           info.domain,
		Model:            r.Model,
		Input:            r.Input,
		System:           r.System,
		Answer:           a.Text,
		Label:            label,
		PromptTokens:     a.PromptTokens,
		CompletionTokens: a.CompletionTokens,
		TeacherLatency:   info.teacherTime,
		Stream:           stream,
		Deferred:         deferred,
	}
	if s.cfg.Storage.KeepRequests {
		p.Messages = r.Messages
	}
	if p.Label == "" {
		return
	}
	s.pairs.Log(p)
}
