package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/understudy-dev/understudy/student"
	"github.com/understudy-dev/understudy/trainer"
)

func trainCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("train", stdout)
	path := fs.String("config", "", "config `file` (trainer, labels and onnxruntime settings)")
	data := fs.String("data", "", "labelled `file`: one {\"text\",\"label\"} JSON object per line")
	asJSON := fs.Bool("json", false, "print the metrics as JSON")
	save := fs.String("save", "", "also write the trained artifact to `file`")
	curve := fs.String("curve", "", "print a learning curve at these `sizes` (pairs, comma-separated)")
	seeds := fs.Int("seeds", 1, "with --curve, average over this many shuffles and trainer seeds")
	if err := fs.parse(args); err != nil {
		return err
	}
	if *data == "" {
		return fs.usageError("--data is required")
	}
	var sizes []int
	if *curve != "" {
		var err error
		if sizes, err = parseSizes(*curve); err != nil {
			return fs.usageError(err.Error())
		}
		if *seeds < 1 {
			return fs.usageError(fmt.Sprintf("--seeds: must be at least 1, got %d", *seeds))
		}
		if *save != "" {
			return fs.usageError("--save trains one student; --curve trains many")
		}
	}
	cfg, err := loadConfig(*path, fs.FlagSet, nil)
	if err != nil {
		return err
	}
	if err := student.InitRuntime(cfg.ONNXRuntime.Library); err != nil {
		return err
	}
	opts := trainerOptions(cfg) // with the labels section's normalizer
	examples, err := readExamples(*data, *opts.Normalizer)
	if err != nil {
		return err
	}
	opts.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if sizes != nil {
		points, err := learningCurve(ctx, examples, sizes, *seeds, opts)
		if err != nil {
			return err
		}
		return printCurve(stdout, points, opts.Target, *asJSON)
	}
	a, err := trainer.Train(ctx, examples, opts)
	if err != nil {
		return err
	}
	if *save != "" {
		a.Domain, a.Version = "offline", 1
		b, err := a.Marshal()
		if err != nil {
			return err
		}
		if err := os.WriteFile(*save, b, 0o644); err != nil {
			return err
		}
	}
	m := a.Metrics
	if *asJSON {
		return json.NewEncoder(stdout).Encode(m)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "labels\t%d\t(%s)\n", m.Labels, summarize(a.Surface, 8))
	if len(a.Heads) > 0 {
		fmt.Fprintf(tw, "fields\t%d\t(%s)\n", len(a.Heads), describeHeads(a))
	}
	fmt.Fprintf(tw, "pairs\t%d trained on, %d held out\t(each predicted by a round that left it out)\n", m.TrainPairs, m.HoldoutPairs)
	fmt.Fprintf(tw, "holdout accuracy\t%.4f\n", m.HoldoutAccuracy)
	fmt.Fprintf(tw, "confidence threshold τ\t%.4f\t(calibrated; temperature %.3f)\n", m.Tau, m.Temperature)
	fmt.Fprintf(tw, "coverage at τ\t%.4f\tshare of inputs the student would answer\n", m.CoverageAtTau)
	fmt.Fprintf(tw, "selective agreement at τ\t%.4f\tagreement with the teacher on those\n", m.SelectiveAgreementAtTau)
	fmt.Fprintf(tw, "training\t%.1f s, %d epochs, %.0f examples/s\n", m.TrainSeconds, m.Epochs, m.ExamplesPerSecond)
	fmt.Fprintf(tw, "model\t%.1f MB\n", float64(m.ModelBytes)/1e6)
	return tw.Flush()
}

// describeHeads lists a structured answer's fields in its key order, each
// with its number of values (a tags field: of tags).
func describeHeads(a *student.Artifact) string {
	var parts []string
	for _, p := range a.Order {
		for _, h := range a.Heads {
			if h.Path != p {
				continue
			}
			what := "values"
			if h.Tags {
				what = "tags"
			}
			parts = append(parts, fmt.Sprintf("%s: %d %s", truncate(p, 20), h.End-h.Start, what))
		}
	}
	return strings.Join(parts, ", ")
}

func summarize(xs []string, n int) string {
	s := ""
	for i, x := range xs {
		if i == n {
			return s + fmt.Sprintf(", … %d more", len(xs)-n)
		}
		if i > 0 {
			s += ", "
		}
		s += truncate(x, 20)
	}
	return s
}

// readExamples reads {"text","label"} lines; the label is the teacher's
// raw answer, normalized like logged answers.
func readExamples(path string, norm student.Normalizer) ([]trainer.Example, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []trainer.Example
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for n := 1; sc.Scan(); n++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var l struct {
			Text  *string `json:"text"`
			Label *string `json:"label"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		if l.Text == nil || l.Label == nil {
			return nil, fmt.Errorf("%s:%d: want {\"text\": ..., \"label\": ...}", path, n)
		}
		out = append(out, trainer.Example{Text: *l.Text, Label: norm.Label(*l.Label), Answer: *l.Label})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, errors.New(path + ": no examples")
	}
	return out, nil
}
