package workspace

import "github.com/berthhq/berth/internal/access"

// LimitOwned caps the workspaces one user may own (0: no cap): Create is
// refused with fault.ErrResourceExhausted past it, counted and inserted
// atomically by the store. Admins are exempt: they import directories and
// set up workspaces for others, and can change the quota anyway. Call it
// before the service is used.
func (s *Service) LimitOwned(n int64) { s.maxOwned = n }

// ownedQuota is the cap on the workspaces p may own: none for an admin.
func (s *Service) ownedQuota(p access.Principal) int64 {
	if p.IsAdmin() {
		return 0
	}
	return s.maxOwned
}
