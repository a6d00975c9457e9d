package agent

import (
	"github.com/portico-dev/portico/nodeagent/render"
	"github.com/portico-dev/portico/nodeagent/secrets"
)

// convertedSecret is one listed Secret turned into SDS secrets, kept until the
// Secret changes: parsing a certificate and key costs tens of microseconds, and
// every render asks for every listed Secret.
type convertedSecret struct {
	resourceVersion string
	exists          bool
	state           render.SecretState
}

// secretStates is what render needs to know of the listed Secrets: those read so
// far, converted (a Secret not read yet is left out, so what needs it waits).
func (a *agent) secretStates(refs []string) map[string]render.SecretState {
	out := make(map[string]render.SecretState, len(refs))
	keep := make(map[string]*convertedSecret, len(refs))
	for _, ref := range refs {
		st := a.secrets.Get(ref)
		if !st.Known {
			continue
		}
		rv := ""
		if st.Secret != nil {
			rv = st.Secret.ResourceVersion
		}
		c := a.converted[ref]
		if c == nil || c.exists != (st.Secret != nil) || c.resourceVersion != rv {
			res, problem := secrets.FromKube(ref, st.Secret)
			c = &convertedSecret{resourceVersion: rv, exists: st.Secret != nil, state: render.SecretState{Resources: res}}
			if problem != nil {
				c.state.Reason, c.state.Message = problem.Reason, problem.Message
			}
		}
		keep[ref] = c
		out[ref] = c.state
	}
	a.converted = keep
	return out
}
