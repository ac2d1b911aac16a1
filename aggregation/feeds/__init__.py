"""Input adapters: Redis pub/sub and the market-data cache keys (contract 3.1)."""
