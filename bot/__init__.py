"""trbot's bot: the answering core (answer, records, config) and its adapters (CLI, Slack)."""
