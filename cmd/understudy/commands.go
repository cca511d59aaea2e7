package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"unicode"
)

// commandDoc is what the help says about one sub-command: its summary is
// the line in the top-level usage and, as a sentence, the first line of
// its -h.
type commandDoc struct {
	name     string
	synopsis []string // what follows "understudy NAME", one form a line
	summary  string   // one line, lower case, no period
	about    string   // more, for -h; optional
	nargs    int      // positional arguments it takes
}

// commandDocs lists the sub-commands in the order the usage shows them.
var commandDocs = []commandDoc{
	{name: "serve", synopsis: []string{"[--config FILE] [flags]"},
		summary: "run the gateway: relay to the teacher, log pairs, train and route to students",
		about: `The gateway (the main job), its admin API, the background trainer and the
shadow scorer. Settings come from config.Default(), then the --config file,
then the environment, then these flags. It stops cleanly on SIGINT/SIGTERM,
writing every accepted pair.`},
	{name: "status", synopsis: []string{"[--watch] [--limit N] [flags]"},
		summary: "summarize every domain: state, agreement, coverage, offload, savings",
		about: `Reads a running server's admin API (see --admin-url, --config, --token).
Agreement is the serving student's (else the leading candidate's) selective
agreement with the teacher at its τ, with the lower confidence bound the
gate tests in parentheses; offload is the share of eligible answers the
student gave since the domain began, and in parentheses of the last 1,000
answered since the server started. It reads every domain, a page of 1,000
at a time; --limit shows the first N by name.`},
	{name: "domains", synopsis: []string{"[--json] [--limit N] [flags]", "NAME [--json] [flags]"}, nargs: -1,
		summary: "list the task domains with pairs, labels, students and agreement",
		about: `Reads a running server's admin API (see --admin-url, --config, --token).
Why an open-ended domain has no student is printed below the table. It reads
every domain, a page of 1,000 at a time; --limit shows the first N by name.

With a NAME it shows that domain in detail: its state and student, the
evidence the gate weighs, and, for a domain answered with JSON records, the
agreement and coverage of each field (the serving version's, else the
leading candidate's; at most 32 fields by name, the rest as _other), its
most frequent labels and its latest transitions.`},
	{name: "export", synopsis: []string{"--domain NAME [--out FILE] [flags]"},
		summary: "write a domain's pairs as OpenAI fine-tuning JSONL",
		about: `Reads a running server's admin API. With --out it shows a progress bar on a
terminal; an export the server could not finish exits 1 and says how many
pairs were written.`},
	{name: "train", synopsis: []string{
		"--data FILE.jsonl [--json] [--save FILE]",
		"--data FILE.jsonl --curve 500,1000,... [--seeds N] [--json]"},
		summary: "train a student offline on a JSONL file and print its metrics",
		about: `Trains a student on {"text": ..., "label": ...} lines exactly as the
background trainer would on logged pairs (labels are normalized the same
way), and prints its holdout metrics: size a task before putting traffic
through the gateway.

With --curve it prints a learning curve instead: the lines are shuffled
(seed k for the k-th of --seeds runs), the last 20% become a test set, and a
student is trained on the first N of the rest for each N, as if the gateway
had logged N pairs; each is measured on the test set, predicting as serving
does: accuracy, coverage and selective agreement at its τ, and the oracle
coverage (the most a threshold chosen on the test set itself could cover at
router.agreement_threshold).`},
	{name: "config check", synopsis: []string{"FILE"}, nargs: 1,
		summary: "validate a config file and print the effective configuration",
		about: `Reports every problem by the setting's path (teacher.url,
trainer.cooldown), with its line in FILE where the problem is in the YAML
itself; on success prints the configuration after the environment is applied,
secrets masked.`},
	{name: "teacher-sim", synopsis: []string{"--task NAME=FILE.jsonl [--system NAME=PROMPT] [flags]"},
		summary: "run an OpenAI-compatible teacher that answers from JSONL files",
		about: `Answers from labelled JSONL files ({"text": ..., "label": ...} per line; a
{"system": ...} line sets the task's system prompt). Chat and Responses
requests are matched to a task by system prompt (Responses: instructions) and
answered with the label of the example whose text equals the user message.`},
	{name: "demo", synopsis: []string{"[flags]"},
		summary: "watch a student take over replayed traffic (data: make deps)",
		about: `Runs a simulated teacher LLM and the gateway on loopback, replays the
e-mails of three tasks through it with the OpenAI SDK, and reports per task
when the student was promoted, how much it answered, how often it matched the
data, latency and cost saved. The data comes from "make deps".`},
	{name: "version", summary: "print the version and where ONNX Runtime was found"},
	{name: "help", synopsis: []string{"[COMMAND]"}, nargs: -1,
		summary: "print this, or what COMMAND does and its flags"},
}

func docOf(name string) commandDoc {
	for _, d := range commandDocs {
		if d.name == name {
			return d
		}
	}
	panic("no commandDoc for " + name)
}

// topUsage is what `understudy -h` prints.
func topUsage() string {
	var b strings.Builder
	b.WriteString("Understudy: an OpenAI-compatible gateway that distills its teacher model.\n\n")
	b.WriteString("Usage: understudy COMMAND [flags]\n\nCommands:\n")
	for _, d := range commandDocs {
		fmt.Fprintf(&b, "  %-14s%s\n", d.name, d.summary)
	}
	b.WriteString("\nRun \"understudy COMMAND -h\" for what a command does and its flags.\n")
	return b.String()
}

// sentence makes a summary the sentence that starts a command's help.
func sentence(s string) string {
	r := []rune(s)
	r[0] = unicode.ToUpper(r[0])
	return string(r) + "."
}

// cmdFlags is a sub-command's flag set with its help.
type cmdFlags struct {
	*flag.FlagSet
	doc    commandDoc
	stdout io.Writer
}

// newFlags returns the flag set of the sub-command name (of commandDocs).
// Its -h prints to stdout; its errors are returned, not printed.
func newFlags(name string, stdout io.Writer) *cmdFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // parse returns what flag would print
	fs.Usage = func() {}
	return &cmdFlags{FlagSet: fs, doc: docOf(name), stdout: stdout}
}

// parse parses args. -h or --help anywhere among them prints the help to
// stdout and returns flag.ErrHelp, which run reports as success. A bad
// flag or a wrong number of arguments is a usageError carrying the usage.
func (c *cmdFlags) parse(args []string) error {
	if wantsHelp(args) {
		fmt.Fprint(c.stdout, c.help())
		return flag.ErrHelp
	}
	if err := c.Parse(args); err != nil {
		return c.usageError(flagMessage(err))
	}
	switch {
	case c.doc.nargs >= 0 && c.NArg() > c.doc.nargs:
		return c.usageError(fmt.Sprintf("unexpected argument %q", c.Arg(c.doc.nargs)))
	case c.NArg() < c.doc.nargs:
		return c.usageError("missing argument")
	}
	return nil
}

// flagMessage is the flag package's error, with flags spelled --name as
// the help spells them.
func flagMessage(err error) string {
	return strings.NewReplacer(
		"flag provided but not defined: -", "unknown flag --",
		"for flag -", "for flag --",
		"flag needs an argument: -", "flag needs an argument: --",
	).Replace(err.Error())
}

// wantsHelp reports whether args ask for help anywhere before "--".
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help", "--h":
			return true
		}
	}
	return false
}

// usageError returns msg, prefixed with the command, as a usage error that
// prints the command's usage.
func (c *cmdFlags) usageError(msg string) error {
	return usageError{msg: c.doc.name + ": " + msg, usage: c.usage()}
}

// usage is the synopsis and the flags: what a usage error shows.
func (c *cmdFlags) usage() string {
	var b strings.Builder
	for i, s := range c.doc.synopsis {
		lead := "Usage: "
		if i > 0 {
			lead = "       "
		}
		fmt.Fprintf(&b, "%sunderstudy %s %s\n", lead, c.doc.name, s)
	}
	if len(c.doc.synopsis) == 0 {
		fmt.Fprintf(&b, "Usage: understudy %s\n", c.doc.name)
	}
	if flags := c.flagList(); flags != "" {
		b.WriteString("\nFlags:\n" + flags)
	}
	return b.String()
}

// help is what -h prints: what the command does, then its usage, more
// about it, and its flags.
func (c *cmdFlags) help() string {
	u := c.usage()
	synopsis, flags, _ := strings.Cut(u, "\nFlags:\n")
	var b strings.Builder
	b.WriteString(sentence(c.doc.summary) + "\n\n" + synopsis)
	if c.doc.about != "" {
		b.WriteString("\n" + c.doc.about + "\n")
	}
	if flags != "" {
		b.WriteString("\nFlags:\n" + flags)
	}
	return b.String()
}

// flagList lists the flags like flag.PrintDefaults, spelled --name as the
// rest of the help spells them.
func (c *cmdFlags) flagList() string {
	var b strings.Builder
	c.VisitAll(func(f *flag.Flag) {
		arg, text := flag.UnquoteUsage(f)
		b.WriteString("  --" + f.Name)
		if arg != "" {
			b.WriteString(" " + arg)
		}
		b.WriteString("\n    \t" + strings.ReplaceAll(text, "\n", "\n    \t"))
		switch def := f.DefValue; def {
		case "", "0", "0s", "false":
		default:
			if g, ok := f.Value.(flag.Getter); ok {
				if _, isString := g.Get().(string); isString {
					def = fmt.Sprintf("%q", def)
				}
			}
			fmt.Fprintf(&b, " (default %s)", def)
		}
		b.WriteString("\n")
	})
	return b.String()
}

// usageError is a mistake on the command line: exit status 2. Its message
// is printed once, then usage.
type usageError struct {
	msg   string
	usage string
}

func (e usageError) Error() string { return e.msg }

// exitCode is the exit status for what run returned: 0 for success, 2 for
// a usage error, 1 for anything else.
func exitCode(err error) int {
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		return 2
	}
	return 1
}
