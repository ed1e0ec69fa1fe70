"""Payment providers at the edge: Stripe Checkout and webhooks, other providers' signed webhooks."""
