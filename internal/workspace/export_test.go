package workspace

import "slices"

// Tracked returns the ids of the workspaces whose last use the service
// keeps, sorted: what the idle sweep's pruning leaves.
func (s *Service) Tracked() []string {
	s.activity.mu.Lock()
	defer s.activity.mu.Unlock()
	ids := make([]string, 0, len(s.activity.last))
	for id := range s.activity.last {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
