package demo

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/understudy-dev/understudy/internal/teachersim"
)

// ErrNoDataset is returned when the task files are missing.
var ErrNoDataset = errors.New("the SpamAssassin task files are missing: run \"make deps\" to fetch them")

// taskSpec is one task of the demo: a file of the dataset, the domain its
// requests are sent to, the system prompt that selects it at the teacher,
// and its share of the traffic.
type taskSpec struct {
	domain, file, system string
	weight               int
}

// tasks are the demo's tasks, in display order. The two closed tasks can be
// distilled; subjects is open-ended (nearly every answer differs), so no
// student may ever answer it.
var tasks = []taskSpec{
	{domain: "spam-ham", file: "spam-ham.jsonl", weight: 2,
		system: "Is this e-mail spam or ham? Answer with one word."},
	{domain: "spam-triage", file: "spam-3way.jsonl", weight: 2,
		system: "Classify this e-mail as spam, easy_ham or hard_ham. Answer with the label only."},
	{domain: "subjects", file: "subjects.jsonl", weight: 1,
		system: "What is the subject line of this e-mail? Answer with the subject only."},
}

// loadTasks reads the task files of dir for the teacher simulator, in the
// order of tasks.
func loadTasks(dir string) ([]teachersim.Task, error) {
	out := make([]teachersim.Task, 0, len(tasks))
	for _, spec := range tasks {
		path := filepath.Join(dir, spec.file)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("reading dataset %s: %w", dir, ErrNoDataset)
		}
		t, err := teachersim.LoadTask(spec.domain, path, spec.system)
		if err != nil {
			return nil, fmt.Errorf("reading dataset %s: %w", dir, err)
		}
		if len(t.Examples) == 0 {
			return nil, fmt.Errorf("reading dataset %s: %s has no examples", dir, path)
		}
		out = append(out, t)
	}
	return out, nil
}

// job is one request of the replay.
type job struct {
	index  int
	task   int // index into tasks
	text   string
	label  string
	stream bool
}

// schedule builds the replay: n requests whose tasks are drawn by weight,
// each task's e-mails in a seeded shuffled order (the files are grouped by
// label), cycling when a task runs out; every third request on average is
// streamed.
func schedule(loaded []teachersim.Task, n int, seed uint64) []job {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	orders := make([][]teachersim.Example, len(loaded))
	for i, t := range loaded {
		ex := append([]teachersim.Example(nil), t.Examples...)
		rng.Shuffle(len(ex), func(a, b int) { ex[a], ex[b] = ex[b], ex[a] })
		orders[i] = ex
	}
	total := 0
	for _, spec := range tasks {
		total += spec.weight
	}
	next := make([]int, len(loaded))
	jobs := make([]job, n)
	for i := range jobs {
		t := pickTask(rng.IntN(total))
		ex := orders[t][next[t]%len(orders[t])]
		next[t]++
		jobs[i] = job{index: i, task: t, text: ex.Text, label: ex.Label, stream: rng.IntN(3) == 0}
	}
	return jobs
}

// pickTask maps a draw in [0, sum of weights) to a task.
func pickTask(draw int) int {
	for i, spec := range tasks {
		if draw < spec.weight {
			return i
		}
		draw -= spec.weight
	}
	return len(tasks) - 1
}
