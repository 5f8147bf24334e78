package config

import "log/slog"

// Secret is a setting that must never be printed: a key, a password, a
// connection string with credentials. Formatting it with fmt (%v, %s, %+v,
// %#v), logging it with slog or encoding it as JSON or text all give
// "[redacted]" (or "" when it is empty, so whether it is set stays visible);
// Reveal returns the value for the one place that uses it.
//
// OIDC client secrets (OIDCProvider.ClientSecret) are Secrets; the at-rest
// encryption key will be one too.
type Secret string

const redacted = "[redacted]"

// Reveal returns the secret itself. Call it only where the value is used,
// never to print it.
func (s Secret) Reveal() string { return string(s) }

// String returns "[redacted]", or "" for an empty secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString keeps %#v from printing the secret.
func (s Secret) GoString() string { return `config.Secret("` + s.String() + `")` }

// LogValue keeps slog from printing the secret.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText keeps encoders (JSON, text) from printing the secret.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
