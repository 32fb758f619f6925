"""The report as one standalone HTML page: images inlined, styles inline, nothing fetched."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import markdown

CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;
max-width:1300px;margin:2em auto;padding:0 1em}
h1{font-size:1.6em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:1em 0;font-size:.9em;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #ccc;padding:.3em .6em}td{white-space:nowrap}th{background:#f3f3f3}
tr:nth-child(even) td{background:#fafafa}
img{max-width:100%;height:auto;display:block;margin:1em 0}
pre{background:#f6f8fa;padding:1em;overflow-x:auto;font-size:.85em}
details{margin:1em 0}summary{cursor:pointer;font-weight:600}
"""


def markdown_to_html(text: str, base_dir: Path, title: str) -> str:
    """Convert the report Markdown to one standalone HTML page: local ``plots/*.png`` become base64
    data URIs, styling is inline, and nothing is fetched from anywhere."""
    body = markdown.markdown(text, extensions=["tables", "fenced_code", "md_in_html"])

    def inline(m: re.Match) -> str:
        data = base64.b64encode((base_dir / m.group(1)).read_bytes()).decode("ascii")
        return f'src="data:image/png;base64,{data}"'

    body = re.sub(r'src="(plots/[^"/]+\.png)"', inline, body)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{escape_html(title)}</title>\n'
            f"<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def escape_html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
