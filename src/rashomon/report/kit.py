"""The one HTML kit of every page rashomon writes: the run report, the sweep page and the compare
page.

It holds the page shell and its stylesheet (plain CSS, system fonts), escaping and number
formatting, tables, key-value tables, embedded PNG figures, section boxes and warning / failure
boxes. Pages built from it have no scripts and load nothing from the network: figures are PNG
bytes embedded as base64 data URIs.

Convention: functions taking `text` escape it; arguments named `html` or `body` are markup the
caller wrote (captions, notes with <code> or <i>) and go in as they are.
"""

from __future__ import annotations

import base64
import html as _html
import io
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

CSS = """
:root { --ink:#1d2330; --muted:#5b6472; --line:#e3e6eb; --bg:#f6f7f9; --accent:#1f5fa8;
        --warn:#b4470b; --good:#23803a; --fail:#a61b1b; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
       "DejaVu Sans", sans-serif; }
header { background:#16263d; color:#fff; padding:28px 0 22px; }
header .wrap { display:flex; justify-content:space-between; align-items:flex-end; gap:24px;
               flex-wrap:wrap; }
header h1 { margin:0; font-size:26px; font-weight:650; letter-spacing:.2px; }
header .sub { color:#b9c6d8; font-size:13.5px; margin-top:4px; }
header .meta { color:#b9c6d8; font-size:12.5px; text-align:right; }
header code { background:none; color:#fff; }
.wrap { max-width:1080px; margin:0 auto; padding:0 28px; }
nav { background:#fff; border-bottom:1px solid var(--line); position:sticky; top:0; z-index:2; }
nav .wrap { display:flex; flex-wrap:wrap; gap:4px 18px; padding-top:9px; padding-bottom:9px; }
nav a { color:var(--muted); text-decoration:none; font-size:13px; }
nav a:hover { color:var(--accent); }
nav a.failed { color:var(--fail); }
main { padding:22px 0 40px; }
section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:20px 24px;
          margin:0 0 18px; }
section h2 { margin:0 0 10px; font-size:19px; font-weight:650; }
section h3 { margin:18px 0 6px; font-size:15px; font-weight:650; color:#2d3644; }
p { margin:6px 0 10px; }
.summary { border-left:5px solid var(--accent); }
.summary .headline { font-size:19px; line-height:1.4; font-weight:600; margin:2px 0 12px; }
.summary ul { margin:6px 0 0 0; padding-left:20px; }
.summary li { margin:3px 0; }
.cards { display:grid; grid-template-columns:repeat(auto-fit, minmax(170px, 1fr)); gap:12px;
         margin:16px 0 4px; }
.card { background:var(--bg); border:1px solid var(--line); border-radius:7px; padding:10px 14px; }
.card .v { font-size:23px; font-weight:650; color:var(--accent); }
.card .k { font-size:12.5px; color:var(--muted); }
figure { margin:12px 0 8px; text-align:center; }
figure img { max-width:100%; height:auto; border:1px solid var(--line); border-radius:5px; }
figcaption { color:var(--muted); font-size:13px; margin-top:5px; text-align:left; }
.row { display:flex; flex-wrap:wrap; gap:14px; align-items:flex-start; }
.row > figure { flex:1 1 380px; }
table.tbl { border-collapse:collapse; font-size:13px; margin:8px 0 12px; width:auto;
            font-variant-numeric: tabular-nums; }
table.tbl th, table.tbl td { border-bottom:1px solid var(--line); padding:4px 10px;
                             text-align:right; white-space:nowrap; }
table.tbl th { background:var(--bg); font-weight:600; color:#2d3644; }
table.tbl td:first-child, table.tbl th:first-child,
table.tbl td.t, table.tbl th.t { text-align:left; }
table.kv th, table.kv td { text-align:left; }
.side { display:flex; flex-wrap:wrap; gap:10px 28px; align-items:flex-start; }
.side > figure { flex:1 1 420px; margin-top:0; }
.side > div, .row > div { min-width:0; max-width:100%; }
/* A table wider than its box scrolls inside it; shadows at the edges show there is more. */
.scroll { overflow-x:auto; max-width:100%;
  background:
    linear-gradient(to right, #fff 30%, #fff0) left / 28px 100% no-repeat local,
    linear-gradient(to left, #fff 30%, #fff0) right / 28px 100% no-repeat local,
    radial-gradient(farthest-side at 0 50%, #0002, #0000) left / 10px 100% no-repeat scroll,
    radial-gradient(farthest-side at 100% 50%, #0002, #0000) right / 10px 100% no-repeat scroll; }
.note { color:var(--muted); font-size:13.5px; background:var(--bg); border-radius:6px;
        padding:8px 12px; }
.within { display:block; color:var(--muted); font-size:13.5px; margin:3px 0 0 12px; }
.missing { color:var(--warn); }
.box { border-radius:6px; padding:10px 14px; margin:8px 0 12px; font-size:14px; }
.box.warning { background:#fff4e5; border:1px solid #f0c48a; border-left:5px solid var(--warn); }
.box.failure { background:#fdecec; border:1px solid #eeb4b4; border-left:5px solid var(--fail); }
.box .what { font-weight:650; }
.box.failure .what { color:var(--fail); }
.box.warning .what { color:var(--warn); }
section.failed { border-left:5px solid var(--fail); }
.tag { display:inline-block; font-size:11.5px; padding:1px 7px; border-radius:10px;
       background:#e8eef7; color:var(--accent); margin-left:4px; }
.good { color:var(--good); font-weight:600; }
.bad { color:var(--warn); font-weight:600; }
code { background:#eef0f3; padding:1px 5px; border-radius:4px; font-size:12.5px; }
footer { color:var(--muted); font-size:12px; text-align:center; padding:0 0 30px; }
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<header><div class="wrap">
  <div><h1>{title}</h1><div class="sub">{subtitle}</div></div>
  <div class="meta">{meta}</div>
</div></header>
<nav><div class="wrap">{nav}</div></nav>
<main><div class="wrap">
{sections}
</div></main>
<footer>{footer}</footer>
</body>
</html>
"""


# --- text ------------------------------------------------------------------------------------


def esc(x: Any) -> str:
    """`x` as text safe inside HTML (and inside quoted attributes)."""
    return _html.escape(str(x))


def fmt(v: Any, digits: int = 3) -> str:
    """A value as a table shows it: yes/no, thousands separators, `digits` decimals, – for NaN."""
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return f"{int(v):,}"
    if isinstance(v, float | np.floating):
        x = float(v)
        if np.isnan(x):
            return "–"
        if x.is_integer() and abs(x) >= 100:
            return f"{int(x):,}"
        return f"{x:.{digits}f}"
    if v is None or v is pd.NA:
        return "–"
    return str(v)


# --- blocks ----------------------------------------------------------------------------------


def table_html(df: pd.DataFrame, digits: int = 3, max_rows: int | None = 60) -> str:
    """A compact HTML table (values escaped, floats rounded to `digits`); text columns align left.
    `max_rows=None` shows every row."""
    text_cols = {c for c in df.columns if df[c].map(lambda v: isinstance(v, str)).all()}
    head = "".join(
        f'<th class="t">{esc(c)}</th>' if c in text_cols else f"<th>{esc(c)}</th>"
        for c in df.columns
    )
    shown = df if max_rows is None else df.head(max_rows)
    rows = []
    for r in shown.itertuples(index=False):
        cells = "".join(
            f'<td class="t">{esc(v)}</td>'
            if isinstance(v, str)
            else f"<td>{esc(fmt(v, digits))}</td>"
            for v in r
        )
        rows.append(f"<tr>{cells}</tr>")
    more = ""
    if max_rows is not None and len(df) > max_rows:
        more = note(f"Showing {max_rows} of {len(df)} rows; the CSV has them all.")
    return (
        f'<div class="scroll"><table class="tbl"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>{more}"
    )


def kv_table(pairs: Sequence[tuple[str, Any]], digits: int = 4) -> str:
    """A two-column table of (name, value) pairs."""
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(fmt(v, digits))}</td></tr>" for k, v in pairs)
    return f'<div class="scroll"><table class="tbl kv">{rows}</table></div>'


def note(html: str) -> str:
    """A muted aside."""
    return f'<p class="note">{html}</p>'


def png_bytes(fig: Any) -> bytes:
    """A matplotlib Figure as PNG bytes (white background, the figure's own dpi)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white")
    return buf.getvalue()


def figure_html(png: bytes, caption: str, alt: str | None = None) -> str:
    """An embedded PNG with its caption (`caption` is markup; `alt` defaults to it, escaped)."""
    b64 = base64.b64encode(png).decode("ascii")
    alt_text = esc(alt or caption)
    return (
        f'<figure><img src="data:image/png;base64,{b64}" alt="{alt_text}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def warning_box(what: str, html: str = "") -> str:
    """A visible warning: `what` (text) in bold, then `html`."""
    rest = f" {html}" if html else ""
    return f'<div class="box warning" role="note"><span class="what">{esc(what)}</span>{rest}</div>'


def failure_box(name: str, reason: str, html: str = "") -> str:
    """What a part of the page that could not be built shows instead: its name and the one-line
    reason (both text), then `html`."""
    rest = f" {html}" if html else ""
    return (
        f'<div class="box failure" role="alert"><span class="what">{esc(name)} could not be '
        f"built</span>: <code>{esc(reason)}</code>.{rest}</div>"
    )


def section_html(id: str, title: str, body: str, extra_class: str = "") -> str:
    """One section box: an anchor, a heading (text) and its body (markup)."""
    cls = f' class="{esc(extra_class)}"' if extra_class else ""
    return f'<section id="{esc(id)}"{cls}><h2>{esc(title)}</h2>{body}</section>'


def nav_html(links: Sequence[tuple[str, str]], failed: Sequence[str] = ()) -> str:
    """Links to the sections (id, title); the ids in `failed` are marked."""
    marked = ' class="failed"'
    return "".join(
        f'<a href="#{esc(i)}"{marked if i in failed else ""}>{esc(t)}</a>' for i, t in links
    )


def page(
    title: str,
    sections: str,
    *,
    subtitle: str = "",
    meta: str | None = None,
    nav: str = "",
    footer: str | None = None,
) -> str:
    """The whole page: header (title and `subtitle` are text, `meta` markup, default the time it
    was generated), navigation bar (`nav` markup, see `nav_html`), the sections and a footer
    (default: the rashomon version)."""
    from rashomon import __version__

    return PAGE.format(
        title=esc(title),
        css=CSS,
        subtitle=esc(subtitle),
        meta=meta if meta is not None else f"generated {time.strftime('%Y-%m-%d %H:%M')}",
        nav=nav,
        sections=sections,
        footer=footer if footer is not None else f"rashomon {esc(__version__)}",
    )
