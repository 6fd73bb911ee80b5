"""Risk: fraud, credit and account-takeover assessment (signals, rules as data, scores, lists,
reviews and the decisions that restrict or block a customer).

Pages, the `crm` command, the batch and models use these names; modules inside crm_core import
the submodule they need.
"""

__all__: list[str] = []
