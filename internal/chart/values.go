package chart

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"helm.sh/helm/v3/pkg/chartutil"
)

// Controller is one entry of values.yaml's controllers: the one list of controller
// binaries that the chart, the images and the bundle are made from.
type Controller struct {
	// Key is the entry's key (controllers.<Key>.enabled).
	Key       string
	Component string
	Binary    string
	Producer  string
	Webhooks  []string
	// Shipped: the chart carries the component's generated role, i.e. its binary is
	// part of this version and it can be enabled.
	Shipped bool
}

// Agent is the node agent's entry (component and binary).
type Agent struct{ Component, Binary string }

// Values reads the chart's values.yaml.
func Values() (chartutil.Values, error) {
	return chartutil.ReadValuesFile(filepath.Join(Dir(), "values.yaml"))
}

// Controllers lists values.yaml's controllers, sorted by key.
func Controllers() ([]Controller, error) {
	v, err := Values()
	if err != nil {
		return nil, err
	}
	entries, ok := v["controllers"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("values.yaml: controllers is not a map")
	}
	var out []Controller
	for key, raw := range entries {
		m, _ := raw.(map[string]any)
		c := Controller{Key: key}
		c.Component, _ = m["component"].(string)
		c.Binary, _ = m["binary"].(string)
		c.Producer, _ = m["producer"].(string)
		hooks, _ := m["webhooks"].([]any)
		for _, w := range hooks {
			s, _ := w.(string)
			c.Webhooks = append(c.Webhooks, s)
		}
		if c.Component == "" || c.Binary == "" {
			return nil, fmt.Errorf("values.yaml: controllers.%s needs component and binary", key)
		}
		_, err := os.Stat(filepath.Join(Dir(), "files", "rbac", c.Component+".yaml"))
		c.Shipped = err == nil
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// NodeAgent reads the agent's entry.
func NodeAgent() (Agent, error) {
	v, err := Values()
	if err != nil {
		return Agent{}, err
	}
	m, _ := v["nodeAgent"].(map[string]any)
	a := Agent{}
	a.Component, _ = m["component"].(string)
	a.Binary, _ = m["binary"].(string)
	return a, nil
}

// AllShippedOn are values switching on every shipped controller (and nothing else),
// with extra applied to each controller entry (e.g. replicas).
func AllShippedOn(extra map[string]any) (map[string]any, error) {
	cs, err := Controllers()
	if err != nil {
		return nil, err
	}
	ctrls := map[string]any{}
	for _, c := range cs {
		e := map[string]any{"enabled": c.Shipped}
		for k, v := range extra {
			e[k] = v
		}
		ctrls[c.Key] = e
	}
	return map[string]any{"controllers": ctrls}, nil
}
