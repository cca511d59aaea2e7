package teachersim

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"
)

// Config configures a Server. Zero values mean the documented defaults.
type Config struct {
	// Tasks are the labelled tasks the teacher answers from; names must be
	// unique. Default: none, so every answer is UnknownAnswer.
	Tasks []Task
	// Models are the model ids /v1/models lists. Default ["teacher-sim"].
	// Requests may name any model; responses echo the requested one.
	Models []string
	// Latency is how long each valid API request waits before it is
	// answered; Serve's shutdown cuts the wait short. Default 0.
	Latency time.Duration
	// Jitter widens Latency to a uniform draw from Latency±Jitter, never
	// below zero. Default 0.
	Jitter time.Duration
	// ChunkDelay is the wait before each content chunk of a stream after
	// the first chunk. Default 0.
	ChunkDelay time.Duration
	// ErrorRate is the probability, in [0,1], that an API request that
	// would succeed is answered with an injected ErrorStatus error instead,
	// after its latency. Default 0.
	ErrorRate float64
	// ErrorStatus is the HTTP status of injected errors, in [400,599].
	// Default 500.
	ErrorStatus int
	// APIKey, when set, is the bearer token every request outside /sim/
	// must carry. Default "": no authentication. /sim/ is never
	// authenticated.
	APIKey string
	// EmbeddingDims is the length of embedding vectors when a request does
	// not ask for "dimensions", at most 8192. Default 16.
	EmbeddingDims int
	// UnknownAnswer is the answer to a text no task knows. Default
	// "unknown".
	UnknownAnswer string
	// RecordVariation is the share, in [0,1], of answers that are JSON
	// objects (a structured task's records) written in another layout than
	// the task file's, as an LLM's vary: keys in another order, spaced, or
	// indented over lines; the same members, still valid JSON. Default 0:
	// every answer as the file has it.
	RecordVariation float64
	// Seed seeds the random draws of jitter and error injection. Default 1.
	Seed uint64
	// Logger receives the server's few log lines (recovered panics,
	// connection errors, /sim/config changes). Default nil: log nothing.
	Logger *slog.Logger
}

// Defaults of the zero Config fields.
const (
	defaultModel         = "teacher-sim"
	defaultErrorStatus   = 500
	defaultEmbeddingDims = 16
	defaultUnknown       = "unknown"
	defaultSeed          = 1
)

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if len(c.Models) == 0 {
		c.Models = []string{defaultModel}
	}
	if c.ErrorStatus == 0 {
		c.ErrorStatus = defaultErrorStatus
	}
	if c.EmbeddingDims == 0 {
		c.EmbeddingDims = defaultEmbeddingDims
	}
	if c.UnknownAnswer == "" {
		c.UnknownAnswer = defaultUnknown
	}
	if c.Seed == 0 {
		c.Seed = defaultSeed
	}
	return c
}

// validate checks a Config with its defaults applied; its errors name the
// field in the snake_case that /sim/config uses.
func (c Config) validate() error {
	var errs []error
	if err := c.settings().validate(); err != nil {
		errs = append(errs, err)
	}
	if c.EmbeddingDims < 1 || c.EmbeddingDims > maxEmbeddingDims {
		errs = append(errs, fmt.Errorf("embedding_dims: must be in [1,%d], got %d", maxEmbeddingDims, c.EmbeddingDims))
	}
	seen := make(map[string]bool, len(c.Models))
	for i, m := range c.Models {
		switch {
		case m == "":
			errs = append(errs, fmt.Errorf("models[%d]: must not be empty", i))
		case seen[m]:
			errs = append(errs, fmt.Errorf("models[%d]: duplicate model %q", i, m))
		}
		seen[m] = true
	}
	return errors.Join(errs...)
}

// settings are the knobs /sim/config changes at run time. A Server holds
// them behind an atomic pointer and never mutates a published value.
type settings struct {
	Latency         time.Duration
	Jitter          time.Duration
	ChunkDelay      time.Duration
	ErrorRate       float64
	ErrorStatus     int
	SwapLabels      bool
	UnknownAnswer   string
	RecordVariation float64
}

func (c Config) settings() *settings {
	return &settings{
		Latency:         c.Latency,
		Jitter:          c.Jitter,
		ChunkDelay:      c.ChunkDelay,
		ErrorRate:       c.ErrorRate,
		ErrorStatus:     c.ErrorStatus,
		UnknownAnswer:   c.UnknownAnswer,
		RecordVariation: c.RecordVariation,
	}
}

// fieldError is a settings error that names the offending field.
type fieldError struct {
	field string
	msg   string
}

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

func (s *settings) validate() error {
	var errs []error
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"latency", s.Latency}, {"jitter", s.Jitter}, {"chunk_delay", s.ChunkDelay}} {
		if d.v < 0 {
			errs = append(errs, &fieldError{d.field, fmt.Sprintf("must not be negative, got %v", d.v)})
		}
	}
	if math.IsNaN(s.ErrorRate) || s.ErrorRate < 0 || s.ErrorRate > 1 {
		errs = append(errs, &fieldError{"error_rate", fmt.Sprintf("must be in [0,1], got %v", s.ErrorRate)})
	}
	if math.IsNaN(s.RecordVariation) || s.RecordVariation < 0 || s.RecordVariation > 1 {
		errs = append(errs, &fieldError{"record_variation", fmt.Sprintf("must be in [0,1], got %v", s.RecordVariation)})
	}
	if s.ErrorStatus < 400 || s.ErrorStatus > 599 {
		errs = append(errs, &fieldError{"error_status", fmt.Sprintf("must be in [400,599], got %d", s.ErrorStatus)})
	}
	return errors.Join(errs...)
}

// settingsJSON is the /sim/config representation of settings.
type settingsJSON struct {
	Latency         string  `json:"latency"`
	Jitter          string  `json:"jitter"`
	ChunkDelay      string  `json:"chunk_delay"`
	ErrorRate       float64 `json:"error_rate"`
	ErrorStatus     int     `json:"error_status"`
	SwapLabels      bool    `json:"swap_labels"`
	UnknownAnswer   string  `json:"unknown_answer"`
	RecordVariation float64 `json:"record_variation"`
}

func (s *settings) MarshalJSON() ([]byte, error) {
	return json.Marshal(settingsJSON{
		Latency:         s.Latency.String(),
		Jitter:          s.Jitter.String(),
		ChunkDelay:      s.ChunkDelay.String(),
		ErrorRate:       s.ErrorRate,
		ErrorStatus:     s.ErrorStatus,
		SwapLabels:      s.SwapLabels,
		UnknownAnswer:   s.UnknownAnswer,
		RecordVariation: s.RecordVariation,
	})
}

// settingsPatch is a POST /sim/config body: every field optional.
type settingsPatch struct {
	Latency         *string  `json:"latency"`
	Jitter          *string  `json:"jitter"`
	ChunkDelay      *string  `json:"chunk_delay"`
	ErrorRate       *float64 `json:"error_rate"`
	ErrorStatus     *int     `json:"error_status"`
	SwapLabels      *bool    `json:"swap_labels"`
	UnknownAnswer   *string  `json:"unknown_answer"`
	RecordVariation *float64 `json:"record_variation"`
}

// apply returns a copy of old with the patch applied and validated.
func (p *settingsPatch) apply(old *settings) (*settings, error) {
	s := *old
	for _, d := range []struct {
		field string
		src   *string
		dst   *time.Duration
	}{{"latency", p.Latency, &s.Latency}, {"jitter", p.Jitter, &s.Jitter}, {"chunk_delay", p.ChunkDelay, &s.ChunkDelay}} {
		if d.src == nil {
			continue
		}
		v, err := time.ParseDuration(*d.src)
		if err != nil {
			return nil, &fieldError{d.field, fmt.Sprintf("want a duration such as \"150ms\", got %q", *d.src)}
		}
		*d.dst = v
	}
	if p.ErrorRate != nil {
		s.ErrorRate = *p.ErrorRate
	}
	if p.ErrorStatus != nil {
		s.ErrorStatus = *p.ErrorStatus
	}
	if p.SwapLabels != nil {
		s.SwapLabels = *p.SwapLabels
	}
	if p.RecordVariation != nil {
		s.RecordVariation = *p.RecordVariation
	}
	if p.UnknownAnswer != nil {
		s.UnknownAnswer = *p.UnknownAnswer
		if s.UnknownAnswer == "" {
			s.UnknownAnswer = defaultUnknown
		}
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	return &s, nil
}
