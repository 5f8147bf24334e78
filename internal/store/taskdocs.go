package store

import (
	"database/sql"
	"fmt"

	"github.com/berthhq/berth/internal/taskdoc"
)

// The structured parts of a task row (config, git, docker_build, progress,
// result, error) are JSON documents of the taskdoc types. They are encoded
// here as a row is written and decoded here, once, as it is read; a stored
// document that does not decode (corrupt, or a field renamed since it was
// written) fails the read with the task's id and the column, rather than
// reading as a default.

// encodeDoc returns a document as stored: TEXT, or NULL when v is nil.
func encodeDoc[T any](v *T) (sql.NullString, error) {
	b, err := taskdoc.Encode(v)
	if err != nil || b == nil {
		return sql.NullString{}, err
	}
	return sql.NullString{String: string(b), Valid: true}, nil
}

// docEncoder returns a function that encodes v, or nil when v is nil: for
// writes where a nil document means "leave the column as it is".
func docEncoder[T any](v *T) func() (sql.NullString, error) {
	if v == nil {
		return nil
	}
	return func() (sql.NullString, error) { return encodeDoc(v) }
}

// encodeTaskDocs returns t's documents in taskColumns' order: config, git,
// docker_build, progress, result, error.
func encodeTaskDocs(t *TaskRecord) ([6]any, error) {
	var docs [6]any
	for i, enc := range [...]func() (sql.NullString, error){
		func() (sql.NullString, error) { return encodeDoc(t.Config) },
		func() (sql.NullString, error) { return encodeDoc(t.Git) },
		func() (sql.NullString, error) { return encodeDoc(t.DockerBuild) },
		func() (sql.NullString, error) { return encodeDoc(t.Progress) },
		func() (sql.NullString, error) { return encodeDoc(t.Result) },
		func() (sql.NullString, error) { return encodeDoc(t.Error) },
	} {
		v, err := enc()
		if err != nil {
			return docs, err
		}
		docs[i] = v
	}
	return docs, nil
}

// decodeDoc decodes one stored document into *dst: nil when NULL.
func decodeDoc[T any](column string, s sql.NullString, dst **T) error {
	if !s.Valid {
		*dst = nil
		return nil
	}
	v, err := taskdoc.Decode[T]([]byte(s.String))
	if err != nil {
		return fmt.Errorf("column %s: %w", column, err)
	}
	*dst = v
	return nil
}

// decodeTaskDocs decodes a row's documents into t.
func decodeTaskDocs(t *TaskRecord, config, git, build, progress, result, failure sql.NullString) error {
	for _, decode := range []func() error{
		func() error { return decodeDoc("config", config, &t.Config) },
		func() error { return decodeDoc("git", git, &t.Git) },
		func() error { return decodeDoc("docker_build", build, &t.DockerBuild) },
		func() error { return decodeDoc("progress", progress, &t.Progress) },
		func() error { return decodeDoc("result", result, &t.Result) },
		func() error { return decodeDoc("error", failure, &t.Error) },
	} {
		if err := decode(); err != nil {
			return err
		}
	}
	return nil
}
