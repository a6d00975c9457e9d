// Package webhooks holds Portico's validating admission webhooks. Each is served by the
// controller binary that owns the kind, and validates with the same pure parser the
// controller uses, so admission and the controller never disagree on what is valid.
package webhooks
