"""A report as a list of blocks (headings, paragraphs, lists, tables, figures), written out as
Markdown or as self-contained HTML from the same list, so the two can never say different things.

Used by the search and sweep reports; the matrix report has its own layout (render.py).
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field


@dataclass
class Blocks:
    """Blocks in reading order; ``images`` holds each figure's PNG by key."""

    items: list[tuple] = field(default_factory=list)
    images: dict[str, bytes] = field(default_factory=dict)

    def heading(self, text: str, level: int = 2) -> None:
        self.items.append(("heading", level, text))

    def paragraph(self, text: str) -> None:
        self.items.append(("paragraph", text))

    def bullets(self, lines: list[str]) -> None:
        if lines:
            self.items.append(("bullets", lines))

    def table(self, headers: list[str], rows: list[list[str]]) -> None:
        self.items.append(("table", headers, rows))

    def figure(self, key: str, png: bytes, caption: str) -> None:
        self.images[key] = png
        self.items.append(("figure", key, caption))

    def code(self, text: str) -> None:
        self.items.append(("code", text))


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(blocks: Blocks, plot_files: dict[str, str]) -> str:
    """Markdown; figures link to ``plot_files[key]`` (relative paths)."""
    out: list[str] = []
    for kind, *args in blocks.items:
        if kind == "heading":
            level, text = args
            out.append(f"{'#' * level} {text}")
        elif kind == "paragraph":
            out.append(args[0])
        elif kind == "bullets":
            out.append("\n".join(f"- {line}" for line in args[0]))
        elif kind == "table":
            headers, rows = args
            lines = ["| " + " | ".join(_md_cell(h) for h in headers) + " |"]
            lines.append("|" + "---|" * len(headers))
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            out.append("\n".join(lines))
        elif kind == "figure":
            key, caption = args
            out.append(f"![{caption}]({plot_files[key]})")
        elif kind == "code":
            out.append(f"```\n{args[0]}\n```")
    return "\n\n".join(out) + "\n"


STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;padding:3px 6px;"
    "text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
    "img{max-width:100%}pre{background:#f6f6f6;padding:8px;overflow-x:auto}"
)


def html_page(blocks: Blocks, title: str) -> str:
    """One self-contained page: figures are embedded as base64 PNG."""
    esc = html.escape
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"]
    out.append(f"<style>{STYLE}</style></head><body>")
    for kind, *args in blocks.items:
        if kind == "heading":
            level, text = args
            out.append(f"<h{level}>{esc(text)}</h{level}>")
        elif kind == "paragraph":
            out.append(f"<p>{esc(args[0])}</p>")
        elif kind == "bullets":
            out.append("<ul>" + "".join(f"<li>{esc(line)}</li>" for line in args[0]) + "</ul>")
        elif kind == "table":
            headers, rows = args
            head = "".join(f"<th>{esc(h)}</th>" for h in headers)
            body = "".join(
                "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows
            )
            out.append(f"<table><tr>{head}</tr>{body}</table>")
        elif kind == "figure":
            key, caption = args
            data = base64.b64encode(blocks.images[key]).decode()
            out.append(
                f"<figure><img alt='{esc(caption)}' src='data:image/png;base64,{data}'>"
                f"<figcaption>{esc(caption)}</figcaption></figure>"
            )
        elif kind == "code":
            out.append(f"<pre>{esc(args[0])}</pre>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
