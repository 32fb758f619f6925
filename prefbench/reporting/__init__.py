"""Reporting: results.json in; leaderboard (Markdown, CSV, terminal), report.md, report.html, plots
and run comparisons out. It reads results and never trains: nothing here imports the engine."""
