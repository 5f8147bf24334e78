package workspace

import "github.com/berthhq/berth/internal/access"

// ownedQuota is the cap on the workspaces p may own (Deps.MaxOwned): none
// for an admin.
func (s *Service) ownedQuota(p access.Principal) int64 {
	if p.IsAdmin() {
		return 0
	}
	return s.maxOwned
}
