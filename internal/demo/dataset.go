package demo

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/understudy-dev/understudy/internal/cache"
	"github.com/understudy-dev/understudy/internal/teachersim"
)

// ErrNoDataset is returned when the task files are missing.
var ErrNoDataset = errors.New("the data set's task files are missing: run \"make deps\" to fetch them")

// taskSpec is one task of the demo: a file of the dataset, the domain its
// requests are sent to, the system prompt that selects it at the teacher,
// and its share of the traffic. A structured task's answers are JSON
// objects, asked for with its schema.
type taskSpec struct {
	domain, file, system string
	weight               int
	schema               *answerSchema // nil: a plain text answer
}

// dataset is a set of tasks the demo can replay, with the directory that
// holds their files: .cache/data/<dir>, <dir> its name unless set.
type dataset struct {
	name, dir string
	tasks     []taskSpec
}

// cacheDir is the directory under the cache's data/ that holds d's files.
func (d dataset) cacheDir() string {
	if d.dir != "" {
		return d.dir
	}
	return d.name
}

// The structured tasks' schemas; cmd/spamdata and cmd/wordnetdata write
// their records in these fields' order.
var (
	spamKindSchema = &answerSchema{name: "spam_kind", fields: []schemaField{
		{name: "spam", typ: "boolean"},
		{name: "kind", typ: "string", enum: []string{"easy_ham", "hard_ham", "spam"}},
	}}
	posCategorySchema = &answerSchema{name: "pos_category", fields: []schemaField{
		{name: "pos", typ: "string", enum: []string{"noun", "verb"}},
		{name: "category", typ: "string", enum: []string{"person", "physical", "abstract", "action"}},
	}}
)

// datasets are the data sets the demo knows, each written under
// .cache/data/<dir> by scripts/fetch-<dir>.sh (make deps). The first is
// the default.
var datasets = []dataset{
	// SpamAssassin: closed tasks that can be distilled — spam/ham, the
	// 3-way triage as a word and as a JSON record — and subjects,
	// open-ended (nearly every answer differs), which no student may ever
	// answer.
	{name: "spamassassin", tasks: []taskSpec{
		{domain: "spam-ham", file: "spam-ham.jsonl", weight: 2,
			system: "Is this e-mail spam or ham? Answer with one word."},
		{domain: "spam-triage", file: "spam-3way.jsonl", weight: 2,
			system: "Classify this e-mail as spam, easy_ham or hard_ham. Answer with the label only."},
		{domain: "spam-json", file: "spam-kind.jsonl", weight: 2, schema: spamKindSchema,
			system: "Triage this e-mail. Answer in JSON: spam (true or false) and kind (spam, easy_ham or hard_ham)."},
		{domain: "subjects", file: "subjects.jsonl", weight: 1,
			system: "What is the subject line of this e-mail? Answer with the subject only."},
	}},
	// WordNet: a moderately hard task, a noun's definition classified into
	// one of 25 categories of meaning.
	{name: "wordnet", tasks: []taskSpec{
		{domain: "noun-sense", file: "nouns.jsonl", weight: 1,
			system: "Which category of meaning does this noun belong to (artifact, person, plant, animal, act, ...)? Answer with the category only."},
	}},
	// WordNet as a structured task: a noun's or a verb's definition into
	// its part of speech and a coarse semantic type.
	{name: "wordnet-json", dir: "wordnet", tasks: []taskSpec{
		{domain: "sense-json", file: "pos-category.jsonl", weight: 1, schema: posCategorySchema,
			system: "Describe this word sense in JSON: pos (noun or verb) and category (person, physical, abstract or action)."},
	}},
}

// findDataset resolves the demo's --dataset: a known data set's name (its
// files under data/<name> in the cache: the repository's .cache, or the
// user cache directory; see internal/cache), or a directory holding one's
// files.
func findDataset(arg string) (dataset, error) {
	for _, d := range datasets {
		if arg == d.name {
			path, err := cache.Find(filepath.Join("data", d.cacheDir(), d.tasks[0].file))
			if err != nil {
				return dataset{}, fmt.Errorf("reading dataset %s: %w (%w)", d.name, ErrNoDataset, err)
			}
			d.dir = filepath.Dir(path)
			return d, nil
		}
	}
	for _, d := range datasets {
		if _, err := os.Stat(filepath.Join(arg, d.tasks[0].file)); err == nil {
			d.dir = arg
			return d, nil
		}
	}
	names := make([]string, len(datasets))
	for i, d := range datasets {
		names[i] = d.name
	}
	return dataset{}, fmt.Errorf("reading dataset %s (a name: %s, or a directory of one's files): %w",
		arg, strings.Join(names, ", "), ErrNoDataset)
}

// load reads the task files for the teacher simulator, in the order of
// the tasks.
func (d dataset) load() ([]teachersim.Task, error) {
	out := make([]teachersim.Task, 0, len(d.tasks))
	for _, spec := range d.tasks {
		path := filepath.Join(d.dir, spec.file)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("reading dataset %s: %w", d.dir, ErrNoDataset)
		}
		t, err := teachersim.LoadTask(spec.domain, path, spec.system)
		if err != nil {
			return nil, fmt.Errorf("reading dataset %s: %w", d.dir, err)
		}
		if len(t.Examples) == 0 {
			return nil, fmt.Errorf("reading dataset %s: %s has no examples", d.dir, path)
		}
		out = append(out, t)
	}
	return out, nil
}

// job is one request of the replay.
type job struct {
	index  int
	task   int      // index into the data set's tasks
	spec   taskSpec // that task
	text   string
	label  string
	stream bool
	// responses: sent on the Responses API rather than as a chat
	// completion, in the same domain.
	responses bool
}

// schedule builds the replay: n requests whose tasks are drawn by weight,
// each task's e-mails in a seeded shuffled order (the files are grouped by
// label), cycling when a task runs out; every third request on average is
// streamed, and, drawn apart, every third is sent on the Responses API.
func schedule(tasks []taskSpec, loaded []teachersim.Task, n int, seed uint64) []job {
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
		t := pickTask(tasks, rng.IntN(total))
		ex := orders[t][next[t]%len(orders[t])]
		next[t]++
		jobs[i] = job{index: i, task: t, spec: tasks[t], text: ex.Text, label: ex.Label, stream: rng.IntN(3) == 0, responses: rng.IntN(3) == 0}
	}
	return jobs
}

// pickTask maps a draw in [0, sum of weights) to a task.
func pickTask(tasks []taskSpec, draw int) int {
	for i, spec := range tasks {
		if draw < spec.weight {
			return i
		}
		draw -= spec.weight
	}
	return len(tasks) - 1
}
