"""Reporting: summaries, tables, figures, paired comparisons across result folders and predictions."""
