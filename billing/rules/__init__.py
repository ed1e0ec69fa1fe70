"""Pure billing rules: money, ledger postings, tariffs, arrears policy, invoice content. No I/O."""
