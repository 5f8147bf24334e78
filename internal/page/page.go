// Package page turns the list requests' page and page_size into offsets and
// the list responses' pagination block, the same way for every list.
package page

import berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"

// Defaults and bounds for page_size.
const (
	DefaultSize = 10
	MaxSize     = 100
)

// Request is a normalised page request: Number >= 1 and 1 <= Size <= MaxSize.
type Request struct {
	Number int
	Size   int
}

// New normalises a page request: 0 means the first page and the default
// size; sizes are clamped to MaxSize.
func New(number, size int32) Request {
	r := Request{Number: int(number), Size: int(size)}
	if r.Number < 1 {
		r.Number = 1
	}
	if r.Size < 1 {
		r.Size = DefaultSize
	}
	if r.Size > MaxSize {
		r.Size = MaxSize
	}
	return r
}

// Offset is the number of items before the page.
func (r Request) Offset() int { return (r.Number - 1) * r.Size }

// Info describes a page within its result.
type Info struct {
	Number     int
	Size       int
	Total      int64
	TotalPages int
	HasPrev    bool
	HasNext    bool
}

// Of describes the page r of a result of total items.
func (r Request) Of(total int64) Info {
	pages := int((total + int64(r.Size) - 1) / int64(r.Size))
	return Info{
		Number:     r.Number,
		Size:       r.Size,
		Total:      total,
		TotalPages: pages,
		HasPrev:    r.Number > 1,
		HasNext:    r.Number < pages,
	}
}

// Proto converts the page description to its API message.
func (i Info) Proto() *berthv1.Pagination {
	return &berthv1.Pagination{
		Page:       int32(i.Number), // #nosec G115 -- from the request's int32
		PageSize:   int32(i.Size),   // #nosec G115 -- at most 100
		Total:      i.Total,
		TotalPages: int32(i.TotalPages), // #nosec G115 -- rows / page size; 2^31 pages is beyond any store
		HasPrev:    i.HasPrev,
		HasNext:    i.HasNext,
	}
}
