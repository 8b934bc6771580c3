# Refund rules that outgrow the YAML: the refund agent's `issueRefund`
# constraint requires `data.refunds.within_policy` (see customer-service.yaml).
package refunds

import rego.v1

# Goodwill refunds are small; the other reasons go up to the approval ceiling.
default within_policy := false

within_policy if {
	input.args.reason != "goodwill"
}

within_policy if {
	input.args.reason == "goodwill"
	input.args.amount <= 2000
}
