"""Building blocks that several methods share: EMA targets, a key queue, the online probe."""
