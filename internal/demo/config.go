package demo

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// Config configures a demo run. Zero values mean the documented defaults.
type Config struct {
	// Dataset is the data set replayed: "spamassassin" (spam/ham,
	// spam/easy_ham/hard_ham as a word and as a JSON record, and the
	// open-ended subject line, from .cache/data/spamassassin), "wordnet"
	// (a noun's definition into 25 categories of meaning, from
	// .cache/data/wordnet) or "wordnet-json" (a noun's or verb's
	// definition into a JSON record of its part of speech and coarse
	// semantic type, from .cache/data/wordnet), as make deps fetches them,
	// or a directory holding one's task files. Default "spamassassin".
	Dataset string
	// Requests is how many requests the replay sends in all, over every
	// task. Default 12000.
	Requests int
	// Concurrency is how many requests are in flight at once. Default 64.
	Concurrency int
	// TeacherLatency is the simulated teacher's answer latency. Default 0
	// (none); the command's flag defaults to DefaultTeacherLatency, like a
	// real LLM's.
	TeacherLatency time.Duration
	// TeacherJitter widens TeacherLatency to a uniform draw from
	// latency±jitter. Default 0; the command's flag defaults to
	// DefaultTeacherJitter.
	TeacherJitter time.Duration
	// Seed seeds the shuffle of the data, the task mix, which requests
	// are streamed, and the teacher's jitter. Default 1.
	Seed uint64
	// InputPrice and OutputPrice are the teacher's prices in US dollars
	// per million prompt and completion tokens. Default 2.50 and 10.00
	// (a large hosted model's list price).
	InputPrice, OutputPrice float64
	// Executable is the understudy binary started as the gateway with
	// `serve`. Required (the command passes os.Executable()).
	Executable string
	// GatewayConfig is YAML appended to the gateway's config, for tests
	// and experiments that change its settings (sections other than the
	// demo's own teacher, pricing and log). Default "": the defaults a
	// user gets.
	GatewayConfig string
	// ReportPath, when set, is where the JSON report is written.
	ReportPath string
	// ChartPath, when set, is where the PNG chart is written.
	ChartPath string
	// Out receives the progress and the summary. Default io.Discard.
	Out io.Writer
	// Live redraws the progress lines in place (Out is a terminal);
	// otherwise they are printed every ProgressEvery. Default false.
	Live bool
	// ProgressEvery is how often plain progress lines are printed when
	// not Live. Default 5s.
	ProgressEvery time.Duration
}

// Defaults of the zero Config fields.
const (
	DefaultDataset        = "spamassassin"
	DefaultRequests       = 12000
	DefaultConcurrency    = 64
	DefaultTeacherLatency = 300 * time.Millisecond
	DefaultTeacherJitter  = 150 * time.Millisecond
	DefaultInputPrice     = 2.50
	DefaultOutputPrice    = 10.00
	defaultProgressEvery  = 5 * time.Second
	liveRedrawEvery       = 250 * time.Millisecond
)

// withDefaults returns c with its unset fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Dataset == "" {
		c.Dataset = DefaultDataset
	}
	if c.Requests == 0 {
		c.Requests = DefaultRequests
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.InputPrice == 0 {
		c.InputPrice = DefaultInputPrice
	}
	if c.OutputPrice == 0 {
		c.OutputPrice = DefaultOutputPrice
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = defaultProgressEvery
	}
	return c
}

// validate checks a Config with its defaults applied; each error names the
// setting as the command's flag does.
func (c Config) validate() error {
	var errs []error
	if c.Requests < 1 {
		errs = append(errs, fmt.Errorf("requests: must be at least 1, got %d", c.Requests))
	}
	if c.Concurrency < 1 || c.Concurrency > 4096 {
		errs = append(errs, fmt.Errorf("concurrency: must be in [1,4096], got %d", c.Concurrency))
	}
	if c.TeacherLatency < 0 || c.TeacherJitter < 0 {
		errs = append(errs, fmt.Errorf("teacher-latency, teacher-jitter: must not be negative, got %v and %v", c.TeacherLatency, c.TeacherJitter))
	}
	if c.InputPrice < 0 || c.OutputPrice < 0 {
		errs = append(errs, fmt.Errorf("prices: must not be negative, got %v and %v", c.InputPrice, c.OutputPrice))
	}
	if c.Executable == "" {
		errs = append(errs, errors.New("executable: the understudy binary to run as the gateway is required"))
	}
	return errors.Join(errs...)
}
