package oidc

import (
	"net/http"

	"github.com/berthhq/berth/internal/config"
)

// Flow is the content of a flow cookie, for tests that tamper with one.
type Flow = flow

// FlowCookieName returns the name of pc's flow cookie.
func FlowCookieName(pc config.OIDCProvider) string { return flowCookieName(pc) }

// OpenFlowCookie opens a flow cookie value of pc, as the callback does.
func OpenFlowCookie(pc config.OIDCProvider, value string) (*Flow, error) {
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(&http.Cookie{Name: flowCookieName(pc), Value: value})
	return openFlow(flowCookies(pc, "/", false), flowCookieName(pc), r)
}

// SealFlowCookie seals f as pc's flow cookie value, as login does.
func SealFlowCookie(pc config.OIDCProvider, f *Flow) (string, error) {
	c, err := sealFlow(flowCookies(pc, "/", false), flowCookieName(pc), f)
	if err != nil {
		return "", err
	}
	return c.Value, nil
}
