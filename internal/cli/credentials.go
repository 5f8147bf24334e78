package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Credentials are the tokens the CLI keeps for one server.
type Credentials struct {
	Email        string    `json:"email,omitempty"`
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	Expiry       time.Time `json:"expiry"`
}

// credentialsFile is credentials.json: the tokens of every server logged in
// to, keyed by server URL, and the server used when none is named.
type credentialsFile struct {
	Current string                  `json:"current,omitempty"`
	Servers map[string]*Credentials `json:"servers"`
}

// credentialStore reads and writes credentials.json. It holds no state of
// its own: every change re-reads the file, so two berth processes that
// refresh at once lose no server's entry.
type credentialStore struct {
	path string
}

// configDir is os.UserConfigDir()/berth, found from the environment the CLI
// was given (XDG_CONFIG_HOME, else HOME/.config on Unix), not the process's.
func configDir(env map[string]string) (string, error) {
	if d := env["XDG_CONFIG_HOME"]; d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "berth"), nil
	}
	if h := env["HOME"]; h != "" {
		return filepath.Join(h, ".config", "berth"), nil
	}
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("finding the config directory: %w (set XDG_CONFIG_HOME or HOME)", err)
	}
	return filepath.Join(d, "berth"), nil
}

func (s credentialStore) load() (*credentialsFile, error) {
	f := &credentialsFile{Servers: map[string]*Credentials{}}
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading credentials: %w", err)
	}
	if err := json.Unmarshal(data, f); err != nil {
		return nil, fmt.Errorf("reading credentials %s: %w (delete it and log in again)", s.path, err)
	}
	if f.Servers == nil {
		f.Servers = map[string]*Credentials{}
	}
	return f, nil
}

// get returns the credentials stored for server, nil when there are none.
func (s credentialStore) get(server string) (*Credentials, error) {
	f, err := s.load()
	if err != nil {
		return nil, err
	}
	return f.Servers[server], nil
}

// update applies change to the file and writes it back atomically: a temp
// file in the same directory (mode 0600), fsynced, renamed over the old one.
// A refresh rotates the refresh token, so a torn write would log the user out.
func (s credentialStore) update(change func(*credentialsFile)) error {
	f, err := s.load()
	if err != nil {
		return err
	}
	change(f)
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	// #nosec G302 -- G302: a directory needs its x bit; 0700 is owner-only
	if err := os.Chmod(dir, 0o700); err != nil { // an older, wider directory
		return fmt.Errorf("securing %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, ".credentials-*.json")
	if err != nil {
		return fmt.Errorf("writing credentials: %w", err)
	}
	defer os.Remove(tmp.Name()) // #nosec G104 -- gone after the rename; only a failed write leaves it
	if err := tmp.Chmod(0o600); err != nil {
		_ = tmp.Close() // the chmod error is the one to report
		return fmt.Errorf("writing credentials: %w", err)
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		_ = tmp.Close() // the write error is the one to report
		return fmt.Errorf("writing credentials: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close() // the sync error is the one to report
		return fmt.Errorf("writing credentials: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing credentials: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("writing credentials: %w", err)
	}
	return nil
}
