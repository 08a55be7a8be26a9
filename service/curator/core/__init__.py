"""What every layer shares: the domain's refusals (errors), the ticket states (tickets),
the settings (config) and the Prometheus counters (metrics)."""
