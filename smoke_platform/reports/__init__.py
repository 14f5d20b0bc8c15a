"""Report files a person opens: Markdown with PNG plots (no dagster imports here)."""
