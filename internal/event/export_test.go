package event

// SharedEntries is how many messages the registry of shared messages holds.
func SharedEntries() int {
	n := 0
	shared.Range(func(any, any) bool { n++; return true })
	return n
}
