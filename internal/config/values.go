package config

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The definitions below put each flag on the standard library's flag
// functions (StringVar, BoolVar, DurationVar, Int64Var, IntVar,
// Float64Var, Func), which also set the bound field to the default. What
// they add is the placeholder for --help, the reading of the value for the
// start-up log, and the wording of a value that does not parse.

// str defines a string flag. Strings are taken as given, spaces included.
func (s *flagSet) str(p *string, name, arg, value, usage string) *flag.Flag {
	s.fs.StringVar(p, name, value, usage)
	return s.define(name, arg, "", false, func() any { return *p })
}

func (s *flagSet) boolean(p *bool, name string, value bool, usage string) *flag.Flag {
	s.fs.BoolVar(p, name, value, usage)
	return s.define(name, "", "want true or false", true, func() any { return *p })
}

// duration defines a duration flag; its default shows without trailing
// zero units (15m, not 15m0s).
func (s *flagSet) duration(p *time.Duration, name string, value time.Duration, usage string) *flag.Flag {
	s.fs.DurationVar(p, name, value, usage)
	f := s.define(name, "duration", "want a duration such as 90s, 15m or 1h30m", true, func() any { return *p })
	f.DefValue = formatDuration(value)
	return f
}

// count defines a whole-number flag; arg names its unit ("count", "MiB").
func (s *flagSet) count(p *int64, name, arg string, value int64, usage string) *flag.Flag {
	s.fs.Int64Var(p, name, value, usage)
	return s.define(name, arg, "want a whole number", true, func() any { return *p })
}

// number defines a flag that takes a fraction, such as a number of cores.
func (s *flagSet) number(p *float64, name, arg string, value float64, usage string) *flag.Flag {
	s.fs.Float64Var(p, name, value, usage)
	return s.define(name, arg, "want a number such as 1.5", true, func() any { return *p })
}

// bytesFlag defines a size in bytes, held in an int or an int64.
func bytesFlag[T int | int64](s *flagSet, p *T, name string, value T, usage string) *flag.Flag {
	switch p := any(p).(type) {
	case *int:
		s.fs.IntVar(p, name, int(value), usage)
	case *int64:
		s.fs.Int64Var(p, name, int64(value), usage)
	}
	return s.define(name, "bytes", "want a whole number of bytes such as 1048576", true, func() any { return *p })
}

// secret defines a flag whose value must never be printed: not in --help,
// not in an error, not in the log.
func (s *flagSet) secret(p *Secret, name, arg, usage string) *flag.Flag {
	s.fs.Func(name, usage, func(v string) error { *p = Secret(v); return nil })
	f := s.define(name, arg, "", false, func() any { return *p })
	f.Value.(*reported).secret = true
	return f
}

// list defines a comma-separated list; repeating the flag appends, and
// the variable is read the same way. Blank items are dropped.
func (s *flagSet) list(p *[]string, name, arg, usage string) *flag.Flag {
	s.fs.Func(name, usage, func(v string) error {
		for item := range strings.SplitSeq(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				*p = append(*p, item)
			}
		}
		return nil
	})
	return s.define(name, arg, "", false, func() any { return *p })
}

// paths defines a repeatable path flag. Each flag gives one path, taken as
// written; the variable gives a list separated by commas or the OS path
// list separator.
func (s *flagSet) paths(p *[]string, name, arg, usage string) *flag.Flag {
	s.fs.Func(name, usage, func(v string) error { *p = append(*p, v); return nil })
	f := s.define(name, arg, "", false, func() any { return *p })
	f.Value.(*reported).fromEnv = func(v string) error {
		for _, part := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == os.PathListSeparator }) {
			if part = strings.TrimSpace(part); part != "" {
				*p = append(*p, part)
			}
		}
		return nil
	}
	return f
}

// fn defines a flag parsed by set, which is called with value now to set
// the default. set's error says what is expected; get reads the value for
// the start-up log.
func (s *flagSet) fn(name, arg, value, usage string, set func(string) error, get func() any) *flag.Flag {
	if err := set(value); err != nil {
		panic(fmt.Sprintf("config: default of --%s: %v", name, err))
	}
	s.fs.Func(name, usage, set)
	f := s.define(name, arg, "", false, get)
	f.DefValue = value
	return f
}

// define records what berth adds to the flag just defined, wraps its value
// so that a bad one becomes a problem rather than ending the parse, and
// places it in the current section. want replaces the parser's error (the
// standard parsers say only "parse error"); trim drops surrounding spaces,
// which the number, duration and boolean parsers refuse.
func (s *flagSet) define(name, arg, want string, trim bool, get func() any) *flag.Flag {
	f := s.fs.Lookup(name)
	f.Value = &reported{Value: f.Value, name: name, want: want, trim: trim, problems: s.problems}
	s.info[name] = &flagInfo{arg: arg, get: get}
	last := &s.sections[len(s.sections)-1]
	last.names = append(last.names, name)
	return f
}

// reported wraps a flag's value so that a value that fails to parse becomes
// a FlagError in the load's problems instead of stopping the parse: every
// bad flag and variable is reported in one pass.
type reported struct {
	flag.Value
	name     string
	want     string
	trim     bool
	problems *problems
	// fromEnv parses the variable where that differs from the flag.
	fromEnv func(string) error
	// secret keeps the value out of the problem reported for it.
	secret bool
}

func (r *reported) Set(s string) error {
	r.record(s, r.Value.Set)
	return nil
}

func (r *reported) setFromEnv(s string) {
	set := r.Value.Set
	if r.fromEnv != nil {
		set = r.fromEnv
	}
	r.record(s, set)
}

func (r *reported) record(s string, set func(string) error) {
	v := s
	if r.trim {
		v = strings.TrimSpace(v)
	}
	// The standard parsers (the flag.Getters) write their zero value on a
	// failure; the default stays in place instead, so that the checks that
	// follow report the bad value once, not its zero again.
	before := r.Value.String()
	err := set(v)
	if _, typed := r.Value.(flag.Getter); err != nil && typed {
		_ = r.Value.Set(before) // String gives what Set reads back
	}
	if r.secret {
		s = Secret(s).String()
	}
	switch {
	case err == nil:
	case r.want != "":
		r.problems.add(r.name, s, "%s", r.want)
	default:
		r.problems.add(r.name, s, "%v", err)
	}
}

// IsBoolFlag lets a boolean flag be written without a value (--name).
func (r *reported) IsBoolFlag() bool {
	b, ok := r.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func (f *LogFormat) set(s string) error {
	switch v := LogFormat(strings.ToLower(strings.TrimSpace(s))); v {
	case LogFormatJSON, LogFormatText:
		*f = v
		return nil
	}
	return errors.New("want json or text")
}

// setLogLevel accepts the four level names, in any case; slog's own
// parser would also take offsets such as INFO+2.
func setLogLevel(p *slog.Level, s string) error {
	levels := map[string]slog.Level{
		"debug": slog.LevelDebug,
		"info":  slog.LevelInfo,
		"warn":  slog.LevelWarn,
		"error": slog.LevelError,
	}
	l, ok := levels[strings.ToLower(strings.TrimSpace(s))]
	if !ok {
		return errors.New("want one of debug, info, warn, error")
	}
	*p = l
	return nil
}

// setChoice sets *p to s when s is one of choices.
func setChoice(p *string, s string, choices ...string) error {
	if !slices.Contains(choices, s) {
		return fmt.Errorf("want one of %s", strings.Join(choices, ", "))
	}
	*p = s
	return nil
}

// parseRate reads a Rate written "rate:burst" (rate per second, may be a
// fraction such as 0.2), or "0" (or "off") for no limit.
func parseRate(p *Rate, s string) error {
	s = strings.TrimSpace(s)
	if s == "0" || s == "off" {
		*p = Rate{}
		return nil
	}
	rs, bs, ok := strings.Cut(s, ":")
	r, err1 := strconv.ParseFloat(strings.TrimSpace(rs), 64)
	b, err2 := strconv.Atoi(strings.TrimSpace(bs))
	if !ok || err1 != nil || err2 != nil || r <= 0 || r > 1e6 || b < 1 || b > 1e6 {
		return errors.New("want rate:burst such as 10:20 (10 a second, bursts of 20), 0.5:5, or 0 for no limit")
	}
	*p = Rate{PerSecond: r, Burst: b}
	return nil
}

// parsePrefixes reads a comma-separated list of addresses or CIDR
// prefixes, dropping duplicates. It replaces *p: the last flag wins.
func parsePrefixes(p *[]netip.Prefix, s string) error {
	var out []netip.Prefix
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		var pfx netip.Prefix
		var err error
		if strings.Contains(part, "/") {
			pfx, err = netip.ParsePrefix(part)
		} else {
			var a netip.Addr
			a, err = netip.ParseAddr(part)
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		if err != nil {
			return fmt.Errorf("want addresses or CIDRs such as 10.0.0.0/8,::1; %q is neither", part)
		}
		if pfx = pfx.Masked(); !slices.Contains(out, pfx) {
			out = append(out, pfx)
		}
	}
	*p = out
	return nil
}

// prefixStrings writes prefixes as text, for the start-up log.
func prefixStrings(prefixes []netip.Prefix) []string {
	out := make([]string, len(prefixes))
	for i, p := range prefixes {
		out[i] = p.String()
	}
	return out
}
