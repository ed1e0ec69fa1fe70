"""Billing: the registry, the prepaid ledger, tariffs, top-ups, remote control, arrears and invoices.

`billing.rules` is pure (no I/O); persistence and use cases sit beside it in clearly named modules.
"""
