package config

import (
	"fmt"
	"strings"
)

// FlagError is one problem with one setting. Load reports all of them at
// once, joined; errors.As finds the first.
type FlagError struct {
	// Flag is the flag's name without dashes, such as "admin-addr". It is
	// empty for a setting that has no flag, only a variable (Env).
	Flag string
	// Env names the variable of a setting that has no flag, such as
	// BERTH_OIDC_GOOGLE_ISSUER; it is empty when Flag is set.
	Env string
	// Value is the rejected value as given (one element of a list). It is
	// empty for a setting whose value is a secret.
	Value string
	// Problem says what is expected and, where it is not obvious, why.
	Problem string
}

// Error names the flag and its variable, quotes the value and says what is
// wrong, e.g. `--addr (env BERTH_ADDR) = "localhost": want host:port …`, or
// `env BERTH_OIDC_X_ISSUER = "x": …` for a setting without a flag.
func (e *FlagError) Error() string {
	if e.Flag == "" {
		return fmt.Sprintf("env %s = %q: %s", e.Env, e.Value, e.Problem)
	}
	return fmt.Sprintf("--%s (env %s) = %q: %s", e.Flag, EnvName(e.Flag), e.Value, e.Problem)
}

// problems collects every FlagError of one Load. As an error it prints one
// problem per line.
type problems []*FlagError

func (p *problems) add(flagName, value, format string, args ...any) {
	*p = append(*p, &FlagError{Flag: flagName, Value: value, Problem: fmt.Sprintf(format, args...)})
}

// addEnv records a problem with a variable that has no flag.
func (p *problems) addEnv(env, value, format string, args ...any) {
	*p = append(*p, &FlagError{Env: env, Value: value, Problem: fmt.Sprintf(format, args...)})
}

func (p problems) Error() string {
	var b strings.Builder
	b.WriteString("berth serve: invalid configuration (berth serve --help lists every flag):")
	for _, err := range p {
		b.WriteString("\n  - ")
		b.WriteString(err.Error())
	}
	return b.String()
}

func (p problems) Unwrap() []error {
	errs := make([]error, len(p))
	for i, fe := range p {
		errs[i] = fe
	}
	return errs
}
