"""A run's results: results.json helpers, the paper's tables and figures."""
