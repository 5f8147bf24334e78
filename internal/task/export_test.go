package task

// SetFaultHook makes r call hook where a bug could panic in a goroutine
// that no real input reaches (see Runner.faultHook). Call it before Run.
func SetFaultHook(r *Runner, hook func(where, taskID string)) { r.faultHook = hook }
