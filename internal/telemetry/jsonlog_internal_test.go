package telemetry

import (
	"bytes"
	"context"
	"log/slog"
	"math"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// logOptions are the options NewLogger gives the JSON handler.
var logOptions = &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: redact}

// slogLine is what slog's own JSONHandler writes for r.
func slogLine(t testing.TB, r slog.Record) string {
	t.Helper()
	var buf bytes.Buffer
	if err := slog.NewJSONHandler(&buf, logOptions).Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// fastLine is what jsonHandler writes for r, and whether it encoded r
// itself.
func fastLine(t testing.TB, r slog.Record) (string, bool) {
	t.Helper()
	var buf bytes.Buffer
	if err := newJSONHandler(&buf, logOptions).Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	_, ok := encode(nil, r)
	return buf.String(), ok
}

var (
	testKeys = []string{
		"method", "path", "status", "user", "request_id", "a b", "x.y", "Key", "KEY", "api-key",
		"password", "Refresh_Token", "access-token-ttl", "session_cookie", "x.Secret", "token ",
		"ticket", "jwt-key-file", "apikey", "authorization", "passwords", `quo"te`, "new\nline",
		"é_token", "paſsword", "\u212Aey", "tab\there", "\xff_key", "日本", "-", "_key", "key_",
	}
	testStrings = []string{
		"", "plain", `quo"te`, `back\slash`, "nl\ncr\rtab\t", "\x00\x01\x1f\x7f", "<html>&'",
		"\u2028\u2029", "\xff\xfe", "日本語", "a\xc3", "emoji 🚀", strings.Repeat("long ", 4000),
	}
	testZones = []*time.Location{time.UTC, time.FixedZone("X", -(3*3600 + 1800)), time.FixedZone("", 5*3600)}
)

// randomAttr is an attribute of a kind jsonHandler encodes itself.
func randomAttr(rng *rand.Rand) slog.Attr {
	key := testKeys[rng.IntN(len(testKeys))]
	switch rng.IntN(6) {
	case 0:
		return slog.String(key, testStrings[rng.IntN(len(testStrings))])
	case 1:
		return slog.Int64(key, []int64{0, -1, 42, math.MinInt64, math.MaxInt64}[rng.IntN(5)])
	case 2:
		return slog.Uint64(key, []uint64{0, 7, math.MaxUint64}[rng.IntN(3)])
	case 3:
		return slog.Bool(key, rng.IntN(2) == 0)
	case 4:
		return slog.Duration(key, time.Duration(rng.Int64N(1e12)-5e11))
	default:
		return slog.Time(key, randomTime(rng))
	}
}

// randomTime is a time in some zone, now or far from 1970 (past what
// UnixNano holds), or the zero time.
func randomTime(rng *rand.Rand) time.Time {
	zone := testZones[rng.IntN(len(testZones))]
	switch rng.IntN(5) {
	case 0:
		return time.Time{}
	case 1:
		return time.Date(1500, 3, 4, 5, 6, 7, 8, zone)
	case 2:
		return time.Date(9999, 12, 31, 23, 59, 59, 999999999, zone)
	default:
		return time.Now().In(zone).Add(time.Duration(rng.Int64N(1e15)))
	}
}

// TestJSONHandlerWritesWhatSlogWrites holds jsonHandler to slog's
// JSONHandler with berth's redaction, byte for byte, over random records
// of the kinds it encodes itself, and checks that it did encode them.
func TestJSONHandlerWritesWhatSlogWrites(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	levels := []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn + 1, slog.LevelError + 4}
	for i := range 5000 {
		when := time.Now()
		if i%7 == 0 {
			when = randomTime(rng)
		}
		r := slog.NewRecord(when, levels[rng.IntN(len(levels))], testStrings[rng.IntN(len(testStrings))], 0)
		for range rng.IntN(14) {
			r.AddAttrs(randomAttr(rng))
		}
		want := slogLine(t, r)
		got, ok := fastLine(t, r)
		if !ok {
			t.Fatalf("record %d not encoded by jsonHandler itself: %s", i, want)
		}
		if got != want {
			t.Fatalf("record %d:\n got %q\nwant %q", i, got, want)
		}
	}
}

// TestJSONHandlerLeavesTheRestToSlog checks that what jsonHandler does not
// encode itself is written as slog writes it: groups, values of kind Any,
// LogValuers, floats, empty keys, years past 9999, and derived handlers.
func TestJSONHandlerLeavesTheRestToSlog(t *testing.T) {
	t.Parallel()
	records := map[string][]slog.Attr{
		"group":     {slog.String("a", "b"), slog.Group("req", "api-key", "k", "n", 1)},
		"any":       {slog.Any("err", context.Canceled), slog.Any("level", slog.LevelWarn), slog.Any("password", []int{1})},
		"logvaluer": {slog.Any("v", slog.StringValue("x")), slog.Any("token", secretValuer{})},
		"float":     {slog.Float64("f", 0.1), slog.Float64("g", 1e21)},
		"empty key": {slog.String("", "v"), {}},
		"year":      {slog.Time("t", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))},
	}
	for name, attrs := range records {
		r := slog.NewRecord(time.Now(), slog.LevelInfo, name, 0)
		r.AddAttrs(attrs...)
		got, ok := fastLine(t, r)
		if ok {
			t.Errorf("%s: encoded by jsonHandler itself", name)
		}
		if want := slogLine(t, r); got != want {
			t.Errorf("%s:\n got %q\nwant %q", name, got, want)
		}
	}
	r := slog.NewRecord(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), slog.LevelInfo, "record's year", 0)
	if got, ok := fastLine(t, r); ok || got != slogLine(t, r) {
		t.Errorf("a record in year 10000: encoded itself %v, %q", ok, got)
	}

	var got, want bytes.Buffer
	fast, std := slog.New(newJSONHandler(&got, logOptions)), slog.New(slog.NewJSONHandler(&want, logOptions))
	for _, l := range []*slog.Logger{fast, std} {
		l.With("password", "p", "n", 1).WithGroup("g").Info("derived", "token", "t", "k", "v")
		l.WithGroup("").With().Info("not derived", "status", 200)
	}
	// The lines' times differ; the rest must not.
	times := regexp.MustCompile(`"time":"[^"]*"`)
	if g, w := times.ReplaceAllString(got.String(), "T"), times.ReplaceAllString(want.String(), "T"); g != w || !strings.Contains(g, `"msg":"derived"`) {
		t.Errorf("derived loggers:\n got %q\nwant %q", got.String(), want.String())
	}
}

// secretValuer is a LogValuer whose value is a secret.
type secretValuer struct{}

func (secretValuer) LogValue() slog.Value { return slog.StringValue("hunter2") }

// TestJSONHandlerLinesDoNotInterleave writes through both of jsonHandler's
// paths at once to a writer that is not safe for concurrent use: the race
// detector and the line check catch writes that are not serialised.
func TestJSONHandlerLinesDoNotInterleave(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	logger := slog.New(newJSONHandler(&buf, logOptions))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				if (g+i)%2 == 0 {
					logger.Info("fast", "i", i)
				} else {
					logger.Info("slow", "f", 0.5)
				}
			}
		})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 800 {
		t.Fatalf("%d lines, want 800", len(lines))
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, `{"time":`) || !strings.HasSuffix(l, "}") || strings.Count(l, `"msg"`) != 1 {
			t.Fatalf("mixed line %q", l)
		}
	}
}

// TestSecretKeyAsBefore holds secretKey to the rule it replaced: the key
// lower-cased, its last word after any of "_-. ", one of secretWords.
func TestSecretKeyAsBefore(t *testing.T) {
	t.Parallel()
	rule := func(key string) bool {
		key = strings.ToLower(key)
		if i := strings.LastIndexAny(key, "_-. "); i >= 0 {
			key = key[i+1:]
		}
		return slices.Contains(secretWords, key)
	}
	keys := append([]string{"", "_", "TOKEN", "x-Api.KEY", "keys", "ke", "PASSWORD ", "a.b_c-cookie", "Tic\u212Aet", "\u212Aey", "paſsword", "İkey", "x_İ_token"}, testKeys...)
	for _, w := range secretWords {
		keys = append(keys, w, strings.ToUpper(w), "x_"+w, w+"_x", "x."+strings.ToUpper(w[:1])+w[1:], w[1:], w+"s")
	}
	for _, k := range keys {
		if got, want := secretKey(k), rule(k); got != want {
			t.Errorf("secretKey(%q) = %v, the rule says %v", k, got, want)
		}
	}
}

// FuzzJSONHandler holds jsonHandler to slog's JSONHandler on arbitrary
// keys, strings and messages.
func FuzzJSONHandler(f *testing.F) {
	for _, s := range testStrings[:len(testStrings)-1] {
		f.Add("k", s, s)
	}
	for _, k := range testKeys {
		f.Add(k, "v", "m")
	}
	f.Fuzz(func(t *testing.T, key, value, msg string) {
		r := slog.NewRecord(time.Now(), slog.LevelInfo, msg, 0)
		r.AddAttrs(slog.String(key, value), slog.Int(key, len(value)))
		got, ok := fastLine(t, r)
		if want := slogLine(t, r); got != want {
			t.Fatalf("\n got %q\nwant %q", got, want)
		}
		if !ok && key != "" {
			t.Fatalf("key %q: not encoded by jsonHandler itself", key)
		}
	})
}
